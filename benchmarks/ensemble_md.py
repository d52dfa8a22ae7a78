"""Cost of an MD step with one NequIP model and with ensembles of 4 (ms/step).

Usage: python benchmarks/ensemble_md.py [--steps 200] [--threads 1] [--skip-compile]

Trains 4 small NequIP members (2 layers, l_max 1, 32 features; 1 epoch on a few
Lennard-Jones-labelled CuI frames: the weights do not matter for timing) into a cache
directory, compiles them with AOTInductor (about a minute each on one core; both are reused on
the next run), then times ASE velocity-Verlet steps of zincblende CuI (a = 6.05 Å, cubic cell
repeated 2x2x2 = 64 atoms and 3x3x3 = 216 atoms) for

- one member, eager (nequip's ASE calculator),
- one member, compiled (nequip's ASE calculator on the ``.nequip.pt2``),
- the naive ensemble of 4: :class:`alkappa.models.ensemble.EnsembleCalculator` over 4 eager
  nequip calculators (alkappa's calculator before the fast path; also over 4 compiled ones),
- the alkappa ensemble of 4 (:func:`alkappa.models.ensemble.load_ensemble`, the default fast
  path: one neighbour list per step with a Verlet skin, compiled members, members spread
  over ``--threads``), and the same with eager members,

- one member with its LLPR uncertainty (model option ``uncertainty: llpr``,
  :mod:`alkappa.models._nequip_llpr`; fitted on the same data, and compiled with its
  last-layer features as an output into ``model.llpr.nequip.pt2``), compiled and eager,

and prints the ratios (alkappa ensemble of 4) / (one compiled member), goal <= 2, and (LLPR) /
(one compiled member), goal <= 1.3. torch uses ``--threads`` intra-op threads (the alkappa
ensemble uses them for members). Run it on an otherwise idle machine: timings are meaningless
next to another CPU-bound job.

``--calibration`` instead compares the two uncertainties' quality: 4 members (bootstrap
resampled training frames, seeds 0-3; 2 layers, l_max 1, 16 features, r_max 4 Å) trained on
EMT-labelled 32-atom Ag-Cu cells (rattled and strained), LLPR fitted for member 0 on the same
training and validation sets (covariance per atom or per structure; force uncertainty from the
atom's own rigidity or summed over its neighbours), then on a test set (half like the training
frames, half further out) the Spearman rank correlation between predicted uncertainty and true
force error (per atom: ``u_i`` against ``|dF_i|``; per frame: ``force_max`` against ``max_i
|dF_i|``) and the miscalibration area of the force components (``u_i / sqrt(3)`` as their
standard deviation), each method against the errors of its own prediction (ensemble mean; member
0). The ensemble's raw spread is shown as is and rescaled by one factor fitted on the validation
set (the LLPR's ``alpha`` is fitted there too).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from _common import cui_supercell, write_timing_data

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator

MEMBERS = 4
MODEL = {
    "num_layers": 2,
    "l_max": 1,
    "num_features": 32,
    "r_max": 5.0,
    "max_epochs": 1,
    "batch_size": 2,
}
SPECIES = ["Cu", "I"]


def cuI(repeat: int) -> Atoms:
    return cui_supercell(repeat)


def train_members(cache: Path, threads: int) -> list[Path]:
    """The 4 members' packages under ``cache`` (trained on first use)."""
    from alkappa.models.nequip import NequIPModel

    stamp = cache / "settings.json"
    paths = [cache / f"member_{m}" / "model.nequip.zip" for m in range(MEMBERS)]
    done = stamp.is_file() and json.loads(stamp.read_text()) == MODEL
    if done and all(p.is_file() for p in paths):
        return paths
    cache.mkdir(parents=True, exist_ok=True)
    write_timing_data(cache)
    model = NequIPModel(**MODEL)
    for m, path in enumerate(paths):
        print(f"training member {m} ...", flush=True)
        result = model.train(
            cache / "train.xyz",
            cache / "val.xyz",
            path.parent,
            species=SPECIES,
            seed=m,
            threads=threads,
        )
        assert result.model_path == path
    stamp.write_text(json.dumps(MODEL))
    return paths


def compile_members(paths: list[Path], threads: int) -> None:
    """Compile the members that have no up-to-date ``.nequip.pt2`` (``threads`` at a time)."""
    from alkappa.models._nequip_ensemble import compiled_is_fresh
    from alkappa.models.nequip import compile_nequip_model

    todo = [p for p in paths if not compiled_is_fresh(p)]
    if not todo:
        return
    print(f"compiling {len(todo)} member(s) with AOTInductor ...", flush=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(lambda p: compile_nequip_model(p, threads=1), todo))
    print(f"compiled in {time.perf_counter() - start:.0f} s", flush=True)


def ms_per_step(atoms: Atoms, calc: Calculator, steps: int, warmup: int) -> float:
    """Wall time per velocity-Verlet step (2 fs, 300 K start), after ``warmup`` steps."""
    from ase import units
    from ase.md import velocitydistribution
    from ase.md.verlet import VelocityVerlet

    work = atoms.copy()
    work.calc = calc
    # ASE >= 3.29 names it thermalize_momenta; older releases MaxwellBoltzmannDistribution
    thermalize = getattr(
        velocitydistribution,
        "thermalize_momenta",
        velocitydistribution.MaxwellBoltzmannDistribution,
    )
    thermalize(work, temperature_K=300, rng=np.random.default_rng(1))
    dyn = VelocityVerlet(work, timestep=2.0 * units.fs)
    dyn.run(warmup)
    start = time.perf_counter()
    dyn.run(steps)
    return 1e3 * (time.perf_counter() - start) / steps


def variants(paths: list[Path], threads: int, compiled: bool) -> dict[str, Any]:
    """Name -> factory of a fresh calculator (``None``: not available)."""
    from nequip.integrations.ase import NequIPCalculator

    from alkappa.models._nequip_ensemble import compiled_path
    from alkappa.models.ensemble import EnsembleCalculator, load_ensemble
    from alkappa.models.nequip import load_nequip_calculator

    def one_compiled(path: Path) -> Calculator:
        return NequIPCalculator.from_compiled_model(
            str(compiled_path(path)), chemical_species_to_atom_type_map=True
        )

    def naive(load: Any) -> Calculator:
        return EnsembleCalculator([load(p) for p in paths])

    def alkappa(use_compiled: bool) -> Calculator:
        return load_ensemble(paths, threads=threads, compiled=use_compiled)

    llpr = {"name": "nequip", "uncertainty": "llpr"}

    def with_llpr(use_compiled: bool) -> Calculator:
        return load_ensemble(paths, model=llpr, threads=threads, compiled=use_compiled)

    return {
        "one member, eager": lambda: load_nequip_calculator(paths[0]),
        "one member, compiled": (lambda: one_compiled(paths[0])) if compiled else None,
        "naive ensemble of 4, eager": lambda: naive(load_nequip_calculator),
        "naive ensemble of 4, compiled": (lambda: naive(one_compiled)) if compiled else None,
        "alkappa ensemble of 4, eager": lambda: alkappa(False),
        "alkappa ensemble of 4": (lambda: alkappa(True)) if compiled else None,
        "alkappa, one member, eager": lambda: load_ensemble(
            paths[:1], threads=threads, compiled=False
        ),
        "alkappa, one member, compiled": (
            (lambda: load_ensemble(paths[:1], threads=threads)) if compiled else None
        ),
        "LLPR (one member), eager": lambda: with_llpr(False),
        "LLPR (one member), compiled": (lambda: with_llpr(True)) if compiled else None,
    }


def fit_llpr_member(path: Path, cache: Path, threads: int, compiled: bool) -> None:
    """``model.llpr.npz`` for the member ``path`` (and its compiled LLPR model), if missing."""
    from alkappa.models._nequip_llpr import llpr_compiled_path, llpr_path
    from alkappa.models.nequip import compile_llpr_model

    if not llpr_path(path).is_file():
        from alkappa.models._nequip_llpr import write_llpr

        write_llpr(path, cache / "train.xyz", cache / "val.xyz")
    pt2 = llpr_compiled_path(path)
    if compiled and not pt2.is_file():
        print("compiling the LLPR model with AOTInductor ...", flush=True)
        compile_llpr_model(path, threads=threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="timed MD steps (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=1, help="cores to use (default 1)")
    parser.add_argument("--skip-compile", action="store_true", help="no compiled models")
    parser.add_argument("--repeats", default="2,3", help="supercell repeats (default 2,3)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "alkappa"
        / "ensemble_md",
        help="where the members are trained and compiled (reused)",
    )
    parser.add_argument(
        "--calibration",
        action="store_true",
        help="compare the calibration of the ensemble and the LLPR instead of timing",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="--calibration: data and member seeds (default 0)"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated substrings: time only the matching variants"
    )
    args = parser.parse_args(argv)
    if args.calibration:
        from _calibration import main as calibration_main

        return calibration_main(
            args.cache.parent / "llpr_calibration", args.threads, seed=args.seed
        )
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="nequip")
    warnings.filterwarnings("ignore", category=FutureWarning)

    paths = train_members(args.cache, args.threads)
    if not args.skip_compile:
        compile_members(paths, args.threads)
    fit_llpr_member(paths[0], args.cache, args.threads, compiled=not args.skip_compile)
    factories = variants(paths, args.threads, compiled=not args.skip_compile)
    if args.only:
        keep = [w.strip() for w in args.only.split(",")]
        factories = {k: v for k, v in factories.items() if any(w in k for w in keep)}
    repeats = [int(r) for r in args.repeats.split(",")]
    sizes = [len(cuI(r)) for r in repeats]
    print(
        f"\nms per MD step ({args.steps} steps after {args.warmup}, {args.threads} thread(s), "
        f"torch {torch.__version__})"
    )
    print(f"{'':34s}" + "".join(f"{f'{n} atoms':>12s}" for n in sizes))
    table: dict[str, list[float]] = {}
    for name, factory in factories.items():
        row = []
        for repeat in repeats:
            if factory is None:
                row.append(float("nan"))
                continue
            atoms = cuI(repeat)
            atoms.rattle(0.02, seed=3)
            torch.set_num_threads(args.threads)
            row.append(ms_per_step(atoms, factory(), args.steps, args.warmup))
        table[name] = row
        cells = "".join(f"{'skipped':>12s}" if np.isnan(v) else f"{v:12.2f}" for v in row)
        print(f"{name:34s}{cells}", flush=True)
    print()
    reference = "one member, compiled" if not args.skip_compile else "one member, eager"
    ensemble = "alkappa ensemble of 4" if not args.skip_compile else "alkappa ensemble of 4, eager"
    kind = "eager" if args.skip_compile else "compiled"
    same_path = f"alkappa, one member, {kind}"
    llpr = f"LLPR (one member), {kind}"
    pairs = [(ensemble, reference, 2.0), (llpr, reference, 1.3), (llpr, same_path, 1.3)]
    for num, den, goal in pairs:
        if num not in table or den not in table:
            continue
        for k, n in enumerate(sizes):
            ratio = table[num][k] / table[den][k]
            print(f"{n} atoms: ({num}) / ({den}) = {ratio:.2f}  (goal <= {goal})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
