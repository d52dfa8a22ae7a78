"""Production MD of Lennard-Jones argon for the Green-Kubo validation (issue 16).

The exact-LJ route: fcc argon with FHI-vibes' LJ parameters (sigma 3.405 Å, epsilon
0.010325 eV, cutoff 13 Å; lattice constant 5.26 Å as in vibes' LJ-argon Green-Kubo tutorial),
the virial heat flux of the pair potential (exact for a pair potential), and alkappa's own
production MD (:func:`alkappa.greenkubo.run_production`: Langevin NVT, independent NVE runs
started from NVT snapshots). Resumable: finished runs are reused.

    python validation/lj_argon_md.py --repeat 3 --temperature 56 --runs 12 --ps 40 \
        --out results/validation/lj_argon/N108_T56
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lj import ARGON, PairListLennardJones

from alkappa.greenkubo import make_heat_flux, run_production

LATTICE_CONSTANT = 5.26  # Å, FHI-vibes' LJ-argon tutorial (108 atoms, 15.78 Å cube)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3, help="conventional cells per direction")
    p.add_argument("--temperature", type=float, default=56.0)
    p.add_argument("--runs", type=int, default=12)
    p.add_argument("--ps", type=float, default=40.0, help="NVE length of each run")
    p.add_argument("--timestep", type=float, default=4.0)
    p.add_argument("--sample-interval", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--rc",
        type=float,
        default=ARGON["rc"],
        help="LJ cutoff (Å); 8.5125 (2.5 sigma) for the MLIP comparison (lj_mlip.py)",
    )
    p.add_argument(
        "--target-error",
        type=float,
        default=None,
        help="add runs until kappa's relative error is this (default: exactly --runs runs)",
    )
    p.add_argument("--max-runs", type=int, default=20)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    atoms = bulk("Ar", "fcc", a=LATTICE_CONSTANT, cubic=True).repeat(args.repeat)
    potential = {**ARGON, "rc": args.rc}
    settings = {
        "timestep": args.timestep,
        "friction": 0.01,
        "equilibration_steps": round(10_000 / args.timestep),  # 10 ps NVT
        "runs": args.runs,
        "steps": round(1000 * args.ps / args.timestep),
        "snapshot_spacing": round(5_000 / args.timestep),  # 5 ps NVT between starts
        "sample_interval": args.sample_interval,
        "log_interval": 25,
        "seed": args.seed,
        "flush_every": 500,
        "target_error": args.target_error,
        "max_runs": max(args.max_runs, args.runs),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "setup.json").write_text(
        json.dumps(
            {
                "n_atoms": len(atoms),
                "lattice_constant": LATTICE_CONSTANT,
                "potential": potential,
                "temperature": args.temperature,
                "settings": settings,
            },
            indent=2,
        )
    )
    result = run_production(
        atoms,
        PairListLennardJones(**potential),
        make_heat_flux("virial"),
        out,
        temperature=args.temperature,
        settings=settings,
        attrs={"material": "Ar (Lennard-Jones)", "model": "exact LJ"},
        progress=False,
    )
    for run in result.runs:
        print(
            f"run {run.index}: <T> = {run.temperature_mean:.1f} K, drift {run.drift:.2e} "
            f"eV/atom/ps{'  FLAGGED' if run.drift_flagged else ''}",
            flush=True,
        )
    print(f"{len(result.runs)} runs in {result.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
