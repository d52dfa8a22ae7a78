"""Green-Kubo validation on Lennard-Jones argon: one cell, independent routes to kappa.

Reads the NVE runs of ``lj_argon_md.py`` (exact LJ pair flux) and reports, in one JSON file:

* **(i) Green-Kubo** with alkappa's estimator (no per-run mean subtraction, common cutoff),
  the same runs with FHI-vibes' per-run mean subtraction (for comparing with vibes' numbers),
  and the cepstral estimator;
* **(ii) harmonic-model kappa** from the MD mode lifetimes at the cell's commensurate
  q-points, sum_s k_B v_s v_s tau_s / V, and its harmonic interpolation to the bulk, whose
  difference to (ii) is the finite-size correction of the GK value (Knoop et al., PRB 107,
  224304 (2023));
* **(iii) phono3py RTA with classical statistics** from the LJ fc2/fc3 of the same cell:
  (a) on the commensurate grid itself (tetrahedron method), (b) with phono3py's lifetimes of
  a dense mesh taken at the commensurate points and summed like (ii), (c) on dense meshes
  (the bulk value, to compare with the finite-size-corrected GK value).

    python validation/lj_argon.py results/validation/lj_argon/N108_T56 [--no-phono3py]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lj import ARGON, PairListLennardJones

from alkappa.greenkubo import (
    compare_mode_lifetimes,
    harmonic_kappa,
    mode_velocities,
    run_finite_size_correction,
    run_green_kubo,
    run_mode_lifetimes,
)
from alkappa.phonons import run_fc3, run_harmonic, run_phono3py


def _scalar(ds, name: str) -> float | None:
    return float(ds[name]) if name in ds else None


def green_kubo_routes(runs: list[str]) -> tuple[dict, object]:
    """(i): the default estimator, FHI-vibes' per-run mean subtraction, the cepstral value."""
    gk = run_green_kubo(runs)
    vibes = run_green_kubo(runs, subtract_mean=True)
    out = {
        "kappa": float(gk["kappa_scalar"]),
        "kappa_error": float(gk["kappa_scalar_error"]),
        "cutoff_ps": float(np.diagonal(gk["cutoff_time"].values, axis1=1, axis2=2).mean() / 1e3),
        "kappa_cepstral": _scalar(gk, "kappa_cepstral"),
        "kappa_cepstral_error": _scalar(gk, "kappa_cepstral_error"),
        "kappa_vibes_convention": float(vibes["kappa_scalar"]),
        "kappa_vibes_convention_error": float(vibes["kappa_scalar_error"]),
        "temperature_md": float(gk.attrs["temperature"]),
        "n_runs": int(gk.attrs["n_runs"]),
        "simulated_ps": float(gk["n_samples"].sum() * gk.attrs["dt_fs"] / 1e3),
    }
    return out, gk


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("directory", help="output directory of lj_argon_md.py")
    p.add_argument("--no-phono3py", action="store_true", help="skip route (iii)")
    p.add_argument("--dense-mesh", type=int, default=12, help="multiple of 2 x repeat")
    args = p.parse_args(argv)
    directory = Path(args.directory)
    setup = json.loads((directory / "setup.json").read_text())
    runs = sorted(str(r) for r in directory.glob("run_*.nc"))
    unit = bulk("Ar", "fcc", a=setup["lattice_constant"], cubic=True)
    repeat = round((setup["n_atoms"] / 4) ** (1 / 3))
    cell = unit.repeat(repeat)
    calc = PairListLennardJones(**setup.get("potential", ARGON))
    result: dict = {"setup": setup, "runs": runs}

    gk_numbers, gk = green_kubo_routes(runs)
    result["green_kubo"] = gk_numbers
    temperature = gk_numbers["temperature_md"]
    print(f"(i) GK {gk_numbers['kappa']:.3f} ± {gk_numbers['kappa_error']:.3f} W/mK", flush=True)

    # (ii) MD lifetimes with the LJ force constants of the MD cell
    phonon = run_harmonic(cell, calc, displacement=0.01, mesh=(8, 8, 8)).phonon
    lifetimes = run_mode_lifetimes(runs, phonon)
    fs = run_finite_size_correction(gk, lifetimes, phonon)
    result["harmonic_model"] = {
        "kappa_ha_commensurate": float(fs["kappa_ha_scalar"]),
        "kappa_ha_bulk": float(fs["interpolation_fit_intercept"]),
        "interpolation_correction": float(fs["interpolation_correction"]),
        "interpolation_fit_stderr": float(fs["interpolation_fit_stderr"]),
        "kappa_corrected": float(fs["kappa_corrected"]),
        "kappa_corrected_error": float(fs["kappa_corrected_error"]),
        "interpolation_meshes": [int(n) for n in fs["nq"].values],
        "interpolation_kappa": np.diagonal(fs["interpolation_kappa_array"].values, axis1=1, axis2=2)
        .mean(axis=1)
        .tolist(),
    }
    ha = result["harmonic_model"]
    print(
        f"(ii) harmonic model {ha['kappa_ha_commensurate']:.3f} W/mK at the commensurate "
        f"points; bulk {ha['kappa_ha_bulk']:.3f}; GK corrected {ha['kappa_corrected']:.3f} ± "
        f"{ha['kappa_corrected_error']:.3f}",
        flush=True,
    )

    if not args.no_phono3py:
        fc3 = run_fc3(unit, calc, supercell_matrix=[repeat] * 3, displacement=0.03)
        ph3 = fc3.phono3py
        temps = [temperature]
        on_grid = run_phono3py(ph3, mesh="commensurate", temperatures=temps, statistics="classical")
        n = args.dense_mesh
        dense = run_phono3py(ph3, mesh=n, temperatures=temps, statistics=("quantum", "classical"))
        # (iii-b): phono3py's dense-mesh classical lifetimes at the commensurate points
        comparison = compare_mode_lifetimes(
            lifetimes, dense.assign(tau=dense["tau_classical"]), temperature=temperature
        )
        q = lifetimes["qpoints"].values
        _, v = mode_velocities(phonon, q)
        tau_p3 = comparison["tau_phono3py"].values
        tau_p3 = np.where(np.isfinite(tau_p3), tau_p3, 0.0)  # acoustic modes at Gamma
        volume = float(cell.get_volume())
        k_iiib = float(np.trace(harmonic_kappa(v, tau_p3, volume)) / 3)
        tau_md = lifetimes["tau"].values
        ok = np.isfinite(tau_md) & (tau_p3 > 0)
        result["phono3py"] = {
            "n_fc3_supercells": fc3.n_supercells,
            "kappa_rta_classical_commensurate_grid": float(
                on_grid["kappa_rta_classical_average"][0]
            ),
            "kappa_rta_classical_commensurate_points_dense_tau": k_iiib,
            f"kappa_rta_classical_mesh{n}": float(dense["kappa_rta_classical_average"][0]),
            f"kappa_rta_quantum_mesh{n}": float(dense["kappa_rta_average"][0]),
            "median_tau_md_over_phono3py": float(np.median(tau_md[ok] / tau_p3[ok])),
        }
        p3 = result["phono3py"]
        print(
            f"(iii) phono3py classical RTA: commensurate grid "
            f"{p3['kappa_rta_classical_commensurate_grid']:.3f}, commensurate points with "
            f"dense-mesh lifetimes {k_iiib:.3f}, {n}^3 mesh "
            f"{p3[f'kappa_rta_classical_mesh{n}']:.3f} W/mK; median tau MD/phono3py "
            f"{p3['median_tau_md_over_phono3py']:.2f}",
            flush=True,
        )
        k1 = gk_numbers["kappa"]
        k2 = ha["kappa_ha_commensurate"]
        result["ratios"] = {
            "gk_over_harmonic_model": k1 / k2,
            "harmonic_model_over_phono3py_commensurate_points": k2 / k_iiib,
            "gk_corrected_over_phono3py_bulk": ha["kappa_corrected"]
            / p3[f"kappa_rta_classical_mesh{n}"],
        }
        print("ratios:", json.dumps(result["ratios"]), flush=True)
    out = directory / "validation.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
