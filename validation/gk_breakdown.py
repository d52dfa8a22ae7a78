"""Where a Green-Kubo kappa stands against phono3py, step by step, for one pipeline result.

Reads ``results/<material>/`` of a campaign with Green-Kubo, lifetimes and conductivity on
(``config/studies/CuI_greenkubo.yaml``) and prints, at one temperature, the chain from the
old analysis to the bulk phono3py value (written to ``greenkubo/T<T>/breakdown.json``):

1. kappa_GK with the per-run mean subtracted (the analysis before issue 16, FHI-vibes'
   convention) and 2. without (alkappa's estimator), with the cepstral value;
3. the harmonic-model kappa from the MD lifetimes at the commensurate q-points (same cell);
4. the same sum with phono3py's classical lifetimes of the dense mesh at those q-points
   (the lifetime difference MD vs phono3py, at fixed q-points);
5. phono3py classical RTA on exactly the commensurate grid (``kappa_commensurate.nc``);
6. the harmonic model interpolated to the bulk, and kappa_GK corrected by it;
7. phono3py RTA and LBTE on the dense mesh, classical and quantum.

    python validation/gk_breakdown.py results-cui-gk/CuI --temperature 300
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from alkappa.greenkubo import (
    compare_mode_lifetimes,
    harmonic_kappa,
    mode_velocities,
    run_green_kubo,
)
from alkappa.greenkubo.steps import production_runs, usable_runs
from alkappa.phonons import load_phonopy, read_netcdf


def _at(ds, name: str, temperature: float) -> float | None:
    if name not in ds:
        return None
    t = ds["temperature"].values
    k = int(np.argmin(np.abs(t - temperature)))
    return float(ds[name].values[k]) if abs(t[k] - temperature) < 1e-6 else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("material_dir", help="results/<material> of a campaign")
    p.add_argument("--temperature", type=float, default=300.0)
    args = p.parse_args(argv)
    root = Path(args.material_dir)
    t_dir = root / f"greenkubo/T{args.temperature:g}"
    runs = [str(r) for r in usable_runs(production_runs(t_dir / "production.json"))]
    gk = read_netcdf(t_dir / "greenkubo.nc")
    old = run_green_kubo(runs, subtract_mean=True)
    lifetimes = read_netcdf(t_dir / "lifetimes.nc")
    finite = read_netcdf(t_dir / "finite_size.nc")
    kappa = read_netcdf(root / "conductivity/mlip/kappa.nc")
    phonon = load_phonopy(root / "phonons/mlip/phonopy_params.yaml")
    temperature = float(gk.attrs["temperature"])

    q = lifetimes["qpoints"].values
    _, v = mode_velocities(phonon, q)
    dense = kappa.assign(tau=kappa["tau_classical"]) if "tau_classical" in kappa else kappa
    tau_p3 = compare_mode_lifetimes(lifetimes, dense, temperature=args.temperature)[
        "tau_phono3py"
    ].values
    tau_p3 = np.where(np.isfinite(tau_p3), tau_p3, 0.0)
    volume = float(abs(np.linalg.det(phonon.supercell.cell)))
    k_p3_points = float(np.trace(harmonic_kappa(v, tau_p3, volume)) / 3)
    tau_md = lifetimes["tau"].values
    ok = np.isfinite(tau_md) & (tau_p3 > 0)

    rows = {
        "temperature_md_K": temperature,
        "n_runs": int(gk.attrs["n_runs"]),
        "simulated_ps": float(gk["n_samples"].sum() * gk.attrs["dt_fs"] / 1e3),
        "1_gk_mean_subtracted": [float(old["kappa_scalar"]), float(old["kappa_scalar_error"])],
        "2_gk": [float(gk["kappa_scalar"]), float(gk["kappa_scalar_error"])],
        "2_gk_cepstral": [float(gk["kappa_cepstral"]), float(gk["kappa_cepstral_error"])],
        "3_harmonic_model_md_lifetimes_commensurate": float(finite["kappa_ha_scalar"])
        if "kappa_ha_scalar" in finite
        else None,
        "4_harmonic_model_phono3py_lifetimes_commensurate": k_p3_points,
        "4_median_tau_md_over_phono3py": float(np.median(tau_md[ok] / tau_p3[ok])),
        "6_harmonic_model_bulk": float(finite["interpolation_fit_intercept"])
        if "interpolation_fit_intercept" in finite
        else None,
        "6_gk_corrected": [
            float(finite["kappa_corrected"]),
            float(finite["kappa_corrected_error"]),
        ],
    }
    commensurate = root / "conductivity/mlip/kappa_commensurate.nc"
    if commensurate.is_file():
        kc = read_netcdf(commensurate)
        rows["5_phono3py_rta_classical_commensurate_grid"] = _at(
            kc, "kappa_rta_classical_average", args.temperature
        )
    for name in ("rta", "lbte", "rta_classical", "lbte_classical"):
        rows[f"7_phono3py_{name}_mesh{'x'.join(map(str, kappa.attrs['mesh']))}"] = _at(
            kappa, f"kappa_{name}_average", args.temperature
        )
    (t_dir / "breakdown.json").write_text(json.dumps(rows, indent=2))
    for key, value in rows.items():
        print(f"{key:55s} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
