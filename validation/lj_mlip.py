"""Green-Kubo through the MLIP route against exact Lennard-Jones MD (issue 16).

Two sets of NVE runs of fcc argon with the same protocol (10 ps NVT, 40 ps NVE runs from NVT
snapshots 5 ps apart, flux every 20 fs):

* **exact**: ``validation/lj_argon_md.py --rc 8.5125 --timestep 5 --sample-interval 4``, the
  LJ potential itself with its pair (virial) heat flux, exact for a pair potential;
* **MLIP**: the pipeline on ``config/studies/Ar_lj_mlip.yaml``: its NequIP ensemble trained by
  active learning on labels of the same LJ potential, its production MD and unfolded heat flux.

Both are analysed here with the same estimators (alkappa's default, the cepstral one, and
FHI-vibes' per-run mean subtraction), so any difference comes from the model, its MD and its
flux. The MLIP kappa should equal the exact one within their combined standard error.

    python validation/lj_mlip.py results/validation/lj_argon/N108_T56_rc8.5 \
        results-ar-lj/Ar/greenkubo/T56 [--out results/validation/lj_mlip.json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from alkappa.greenkubo import run_green_kubo
from alkappa.greenkubo.steps import production_runs


def _routes(runs: list[str]) -> dict[str, float]:
    gk = run_green_kubo(runs)
    vibes = run_green_kubo(runs, subtract_mean=True)
    out = {
        "n_runs": int(gk.attrs["n_runs"]),
        "temperature_md": float(gk.attrs["temperature"]),
        "kappa": float(gk["kappa_scalar"]),
        "kappa_error": float(gk["kappa_scalar_error"]),
        "kappa_vibes_convention": float(vibes["kappa_scalar"]),
        "kappa_vibes_convention_error": float(vibes["kappa_scalar_error"]),
    }
    if "kappa_cepstral" in gk:
        out["kappa_cepstral"] = float(gk["kappa_cepstral"])
        out["kappa_cepstral_error"] = float(gk["kappa_cepstral_error"])
    return out


def compare(exact_dir: Path, mlip_dir: Path) -> dict:
    """Both sets of runs through the same estimators, and their differences in combined sigma."""
    exact_runs = sorted(str(p) for p in exact_dir.glob("run_*.nc"))
    if not exact_runs:
        raise SystemExit(f"{exact_dir}: no run_*.nc (run validation/lj_argon_md.py first)")
    record = mlip_dir / "production.json"
    if not record.is_file():
        raise SystemExit(f"{record}: missing (run the pipeline on config/studies/Ar_lj_mlip.yaml)")
    mlip_runs = [str(p) for p in production_runs(record)]
    result = {"exact": _routes(exact_runs), "mlip": _routes(mlip_runs)}
    for key in ("kappa", "kappa_cepstral", "kappa_vibes_convention"):
        a, b = result["exact"].get(key), result["mlip"].get(key)
        if a is None or b is None:
            continue
        sigma = math.hypot(result["exact"][f"{key}_error"], result["mlip"][f"{key}_error"])
        result[f"{key}_ratio"] = b / a
        result[f"{key}_difference_in_sigma"] = (b - a) / sigma
    summary = mlip_dir.parent / "summary.json"
    if summary.is_file():
        temps = json.loads(summary.read_text())["temperatures"]
        result["pipeline_summary"] = temps.get(mlip_dir.name.removeprefix("T"))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("exact", type=Path, help="output directory of lj_argon_md.py")
    p.add_argument("mlip", type=Path, help="the pipeline's greenkubo/T<temperature> directory")
    p.add_argument("--out", type=Path, default=None, help="JSON file (default: beside exact)")
    args = p.parse_args(argv)
    result = compare(args.exact, args.mlip)
    for name in ("exact", "mlip"):
        r = result[name]
        print(
            f"{name:5s}: {r['n_runs']} runs, <T> {r['temperature_md']:.1f} K; GK "
            f"{r['kappa']:.3f} ± {r['kappa_error']:.3f}; cepstral "
            f"{r.get('kappa_cepstral', float('nan')):.3f} ± "
            f"{r.get('kappa_cepstral_error', float('nan')):.3f}; mean subtracted "
            f"{r['kappa_vibes_convention']:.3f} ± {r['kappa_vibes_convention_error']:.3f} W/mK"
        )
    for key in ("kappa", "kappa_cepstral", "kappa_vibes_convention"):
        if f"{key}_ratio" in result:
            print(
                f"{key}: MLIP / exact = {result[f'{key}_ratio']:.2f} "
                f"({result[f'{key}_difference_in_sigma']:+.1f} combined sigma)"
            )
    out = args.out or args.exact / "mlip_comparison.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
