"""Cost of one unfolded NequIP heat-flux evaluation relative to one force call.

Usage: python benchmarks/heat_flux.py [--sizes 64 216] [--repeat 20] [--threads 1]
                                      [--train] [--compiled] [--no-virials]
       python benchmarks/heat_flux.py --model path/to/model.nequip.zip

Times, on zincblende CuI (a = 6.05 Å, cubic cell repeated 2x2x2 = 64 atoms, 3x3x3 = 216, ...;
``--sizes`` takes atom counts 8 k^3) with one small NequIP model (2 layers, l_max 1, 32
features, r_max 5 Å):

- a force call of the periodic cell: :class:`alkappa.models._nequip_ensemble.
  NequIPEnsembleCalculator` with the member eager (and compiled with ``--compiled``), the
  calculator production MD runs with;
- one heat flux, :meth:`alkappa.models.nequip.UnfoldedHeatFlux.heat_flux` (a forward-mode
  JVP on the periodic graph plus a forward and a backward pass on the unfolded system within
  2 x 5 Å of the cell), in float64 and in float32 (``dtype="float32"``, whose relative
  deviation from float64 is printed too);
- the atomic virials, :meth:`~alkappa.models.nequip.UnfoldedHeatFlux.atomic_virials` (four
  backward passes; only needed for a few frames, for the average virial),

and prints ms per call and the ratios to the force call, and the overhead on an MD run that
evaluates the flux every k steps. All sizes run in one process; within a size the calls
alternate (force call, flux, ...), ``--repeat`` rounds after ``--warmup`` rounds, and the
ratios are medians over rounds of the ratio within a round, which keeps them meaningful on
a shared machine. By default the model is built untrained (random weights; they do not
matter for timing, and building takes a second); ``--train`` trains it for one epoch on a few
Lennard-Jones-labelled frames instead and caches the package in
``~/.cache/alkappa/heat_flux_benchmark`` (needed for ``--compiled``, which AOTInductor-compiles
it once, about a minute). Run it on an otherwise idle machine; it prints the load average.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial
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


def cui(n_atoms: int) -> Atoms:
    """Rattled CuI supercell of ``n_atoms`` (8 k^3) atoms with small random velocities."""
    repeat = round((n_atoms / 8) ** (1 / 3))
    if 8 * repeat**3 != n_atoms:
        raise SystemExit(f"--sizes takes 8 k^3 atoms (64, 216, 512, ...), not {n_atoms}")
    atoms = cui_supercell(repeat)
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


def alternate(
    calls: dict[str, Callable[[int], Any]], repeat: int, warmup: int
) -> dict[str, list[float]]:
    """Wall times (ms) of each call, round-robin: ``warmup`` rounds untimed, then ``repeat``."""
    for k in range(warmup):
        for fn in calls.values():
            fn(k)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for k in range(repeat):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn(warmup + k)
            times[name].append(1000.0 * (time.perf_counter() - start))
    return times


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def bench_size(args: argparse.Namespace, n_atoms: int, member: Any, compiled: Any) -> None:
    """Time the force calls and fluxes of one cell size and print the table."""
    from alkappa.models._nequip_ensemble import NequIPEnsembleCalculator
    from alkappa.models.nequip import UnfoldedHeatFlux

    atoms = cui(n_atoms)
    rng = np.random.default_rng(1)
    # a new small displacement every call: nothing may come from a cache
    moves = rng.normal(scale=1e-3, size=(args.repeat + args.warmup, len(atoms), 3))

    def moved(k: int) -> Atoms:
        work = atoms.copy()
        work.positions += moves[k]
        return work

    def force(calc: NequIPEnsembleCalculator) -> Callable[[int], Any]:
        return lambda k: calc.calculate(moved(k), ["energy", "forces"])

    fluxes = {
        "float64": UnfoldedHeatFlux([member]),
        "float32": UnfoldedHeatFlux([member], dtype="float32"),
    }
    calls: dict[str, Callable[[int], Any]] = {
        "force call (eager)": force(NequIPEnsembleCalculator([member]))
    }
    if compiled is not None:
        calls["force call (compiled)"] = force(NequIPEnsembleCalculator([compiled]))
    for dtype, flux in fluxes.items():
        calls[f"heat flux ({dtype})"] = partial(lambda f, k: f.heat_flux(moved(k)), flux)
    times = alternate(calls, args.repeat, args.warmup)
    if not args.no_virials:
        virials = partial(lambda f, k: f.atomic_virials(moved(k)), fluxes["float64"])
        times.update(alternate({"atomic virials": virials}, max(3, args.repeat // 4), 1))
    j64, j32 = (f.heat_flux(atoms) for f in fluxes.values())
    res = fluxes["float64"].results
    print(
        f"\nCuI {len(atoms)} atoms; unfolded system: {res['unfolded_atoms']} atoms, "
        f"{res['unfolded_edges']} edges (margin {fluxes['float64'].margin:g} Å); "
        f"float32 flux deviates by {np.linalg.norm(j32 - j64) / np.linalg.norm(j64):.1e} "
        f"(relative); load average {load_average()}"
    )
    base = times["force call (eager)"]
    print(
        f"  {'':24s} {'ms/call':>9s}   {'/ eager force':>13s}" + ("   / compiled" * bool(compiled))
    )
    for name, ms in times.items():
        line = f"  {name:24s} {statistics.median(ms):9.2f}   x {ratio(ms, base):11.2f}"
        if compiled is not None:
            line += f"   x {ratio(ms, times['force call (compiled)']):8.2f}"
        print(line)
    reference = times.get("force call (compiled)", base)
    r = ratio(times["heat flux (float64)"], reference)
    print(
        f"flux / force call = {r:.2f} (float64), "
        f"{ratio(times['heat flux (float32)'], reference):.2f} (float32); the float64 flux "
        f"every {args.interval} MD steps adds {100 * r / args.interval:.0f}% to the MD"
        + (" (compiled force calls)" if compiled is not None else "")
    )


def ratio(times: list[float], base: list[float]) -> float:
    """Median over rounds of ``times / base`` (both timed in the same rounds, or medians)."""
    if len(times) != len(base):
        return statistics.median(times) / statistics.median(base)
    return statistics.median(t / b for t, b in zip(times, base, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 216], help="atoms")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", type=Path, help="a packaged model instead of a fresh one")
    parser.add_argument("--train", action="store_true", help="train (and cache) the model")
    parser.add_argument("--compiled", action="store_true", help="also a compiled force call")
    parser.add_argument("--no-virials", action="store_true", help="skip the atomic virials")
    parser.add_argument("--interval", type=int, default=4, help="MD steps per flux (k)")
    args = parser.parse_args()

    import torch

    from alkappa.models._nequip_ensemble import load_member

    torch.set_num_threads(args.threads)
    path = args.model or (trained_package(args.threads) if args.train or args.compiled else None)
    member = untrained_member() if path is None else load_member(path, compiled=False)
    compiled = None
    if args.compiled:
        from alkappa.models._nequip_ensemble import compiled_is_fresh
        from alkappa.models.nequip import compile_nequip_model

        assert path is not None
        if not compiled_is_fresh(path):
            print("compiling with AOTInductor (about a minute) ...", flush=True)
            compile_nequip_model(path, threads=args.threads)
        compiled = load_member(path, compiled=True)
    print(
        f"model {'untrained' if path is None else path}, {args.threads} thread(s), "
        f"{args.repeat} alternating rounds; load average {load_average()}"
    )
    for n_atoms in args.sizes:
        bench_size(args, n_atoms, member, compiled)


if __name__ == "__main__":
    main()
