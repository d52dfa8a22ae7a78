"""Cost of one unfolded NequIP heat-flux evaluation relative to one force call.

Usage: python benchmarks/heat_flux.py [--repeat 20] [--threads 1] [--train] [--compiled]
       python benchmarks/heat_flux.py --model path/to/model.nequip.zip

Times, on zincblende CuI (a = 6.05 Å, cubic cell repeated 2x2x2 = 64 atoms) with one small
NequIP model (2 layers, l_max 1, 32 features, r_max 5 Å):

- a force call of the periodic cell: :class:`alkappa.models._nequip_ensemble.
  NequIPEnsembleCalculator` with the member eager (and compiled with ``--compiled``), the
  calculator production MD runs with;
- one heat flux, :meth:`alkappa.greenkubo._flux.UnfoldedHeatFlux.heat_flux` (unfolded system
  within 2 x 5 Å of the cell, forward-mode JVP plus one backward pass);
- the atomic virials, :meth:`~alkappa.greenkubo._flux.UnfoldedHeatFlux.atomic_virials` (four
  backward passes; only needed for a few frames, for the average virial),

and prints ms per call and the ratios to the force call, and the overhead on an MD run that
evaluates the flux every k steps. By default the model is built untrained (random weights;
they do not matter for timing, and building takes a second); ``--train`` trains it for one
epoch on a few Lennard-Jones-labelled frames instead and caches the package in
``~/.cache/alkappa/heat_flux_benchmark`` (needed for ``--compiled``, which AOTInductor-compiles
it once, about a minute). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from _common import cui_supercell, write_timing_data

if TYPE_CHECKING:
    from collections.abc import Callable

    from ase import Atoms

MODEL = {
    "num_layers": 2,
    "l_max": 1,
    "num_features": 32,
    "r_max": 5.0,
    "max_epochs": 1,
    "batch_size": 2,
}
SPECIES = ["Cu", "I"]
CACHE = Path.home() / ".cache" / "alkappa" / "heat_flux_benchmark"


def cui() -> Atoms:
    atoms = cui_supercell(2)
    rng = np.random.default_rng(0)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    atoms.set_velocities(rng.normal(scale=0.02, size=atoms.positions.shape))
    return atoms


def untrained_member() -> Any:
    """An eager member with random weights, built directly (no package)."""
    from nequip.model import NequIPGNNModel
    from nequip.utils.global_state import set_global_state

    from alkappa.models._nequip_ensemble import Member

    set_global_state()
    opts = {k: v for k, v in MODEL.items() if k not in ("max_epochs", "batch_size")}
    model = NequIPGNNModel(
        seed=0,
        model_dtype="float64",
        type_names=SPECIES,
        radial_mlp_width=32,
        avg_num_neighbors=30.0,
        per_type_energy_scales=dict.fromkeys(SPECIES, 1.0),
        per_type_energy_shifts=dict.fromkeys(SPECIES, -2.0),
        **opts,
    )
    model.eval()
    return Member(path=None, model=model, kind="eager", r_max=MODEL["r_max"], type_names=SPECIES)


def trained_package(threads: int) -> Path:
    """A 1-epoch package under :data:`CACHE` (trained on first use)."""
    from alkappa.models.nequip import NequIPModel

    path = CACHE / "member_0" / "model.nequip.zip"
    stamp = CACHE / "settings.json"
    if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == MODEL:
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    write_timing_data(CACHE)
    print("training the model (1 epoch) ...", flush=True)
    result = NequIPModel(**MODEL).train(
        CACHE / "train.xyz",
        CACHE / "val.xyz",
        path.parent,
        species=SPECIES,
        seed=0,
        threads=threads,
    )
    stamp.write_text(json.dumps(MODEL))
    return result.model_path


def ms_per_call(fn: Callable[[int], Any], repeat: int, warmup: int) -> float:
    """Median wall time (ms) of ``fn(k)`` over ``repeat`` calls after ``warmup`` calls."""
    for k in range(warmup):
        fn(k)
    times = []
    for k in range(repeat):
        start = time.perf_counter()
        fn(warmup + k)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", type=Path, help="a packaged model instead of a fresh one")
    parser.add_argument("--train", action="store_true", help="train (and cache) the model")
    parser.add_argument("--compiled", action="store_true", help="also a compiled force call")
    parser.add_argument("--interval", type=int, default=4, help="MD steps per flux (k)")
    args = parser.parse_args()

    import torch

    from alkappa.greenkubo._flux import UnfoldedHeatFlux
    from alkappa.models._nequip_ensemble import NequIPEnsembleCalculator, load_member

    torch.set_num_threads(args.threads)
    path = args.model or (trained_package(args.threads) if args.train or args.compiled else None)
    member = untrained_member() if path is None else load_member(path, compiled=False)
    if args.compiled:
        from alkappa.models._nequip_ensemble import compiled_is_fresh
        from alkappa.models.nequip import compile_nequip_model

        assert path is not None
        if not compiled_is_fresh(path):
            print("compiling with AOTInductor (about a minute) ...", flush=True)
            compile_nequip_model(path, threads=args.threads)
    atoms = cui()
    rng = np.random.default_rng(1)
    # a new small displacement every call: nothing may come from a cache
    moves = rng.normal(scale=1e-3, size=(args.repeat + args.warmup, len(atoms), 3))

    def periodic(calc: NequIPEnsembleCalculator) -> Callable[[int], Any]:
        def call(k: int) -> None:
            work = atoms.copy()
            work.positions += moves[k]
            calc.calculate(work, ["energy", "forces"])

        return call

    flux = UnfoldedHeatFlux([member])

    def heat_flux(k: int) -> None:
        work = atoms.copy()
        work.positions += moves[k]
        flux.heat_flux(work)

    def virials(k: int) -> None:
        work = atoms.copy()
        work.positions += moves[k]
        flux.atomic_virials(work)

    rows = {
        "force call (eager)": ms_per_call(
            periodic(NequIPEnsembleCalculator([member])), args.repeat, args.warmup
        )
    }
    if args.compiled:
        assert path is not None
        compiled = NequIPEnsembleCalculator([load_member(path, compiled=True)])
        rows["force call (compiled)"] = ms_per_call(periodic(compiled), args.repeat, args.warmup)
    rows["heat flux (unfolded)"] = ms_per_call(heat_flux, args.repeat, args.warmup)
    rows["atomic virials"] = ms_per_call(virials, max(3, args.repeat // 4), 1)
    res = flux.results
    print(
        f"CuI {len(atoms)} atoms, model {'untrained' if path is None else path}, "
        f"{args.threads} thread(s); unfolded system: {res['unfolded_atoms']} atoms, "
        f"{res['unfolded_edges']} edges (margin {flux.margin:g} Å)"
    )
    base = rows["force call (eager)"]
    for name, ms in rows.items():
        print(f"  {name:24s} {ms:9.2f} ms   x {ms / base:6.2f} of an eager force call")
    reference = rows.get("force call (compiled)", base)
    ratio = rows["heat flux (unfolded)"] / reference
    print(
        f"flux / force call = {ratio:.2f}; flux every {args.interval} MD steps adds "
        f"{100 * ratio / args.interval:.0f}% to the MD"
        + (" (compiled force calls)" if "force call (compiled)" in rows else "")
    )


if __name__ == "__main__":
    main()
