"""Dynamic training with the trajectory-averaged Bayesian trigger vs labelling every k-th step.

Usage: python benchmarks/dynamic_training.py [--temperature 300] [--steps-per-round 300]
       [--rounds 4] [--test-steps 120] [--store /tmp/issue-8/bench_store]

Si, diamond, 2x2x2 conventional supercell (64 atoms, a = 5.43 Å), GFN1-xTB (tblite) as the
reference, force constants of orders 2-4 (cutoffs 5.0, 4.0, 3.0 Å), Langevin MD at
``--temperature``:

(a) :func:`alkappa.bayesfc.run_dynamic_training` (trigger f = 3 x rolling mean over W = 50
    steps, min gap 10; the check runs 200 unanalysed steps first), rounds of
    ``--steps-per-round`` MD steps until the frozen-model check passes (at most ``--rounds``):
    it makes K reference calls;
(b) :func:`alkappa.bayesfc.run_periodic_training`: the same start and the same MD length, one
    reference call every k-th step with k chosen so that it also makes K calls.

Both are scored on a reference-MD test set: ``--test-steps`` steps of GFN1-driven Langevin MD
at the same temperature (4 fs steps after 20 steps of equilibration; every 5th frame). The
script prints the oracle calls, the force RMSE (eV/Å) of (a) and (b) on the test set and the
ratio RMSE(b)/RMSE(a). Oracle results are kept in ``--store`` (the labelling ledger), so a
rerun costs only the model MD.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temperature", type=float, default=300.0)
    parser.add_argument("--steps-per-round", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--check-steps", type=int, default=300)
    parser.add_argument("--test-steps", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", default="/tmp/issue-8/bench_store")
    args = parser.parse_args()

    import ase.io
    from ase.build import bulk

    from alkappa.bayesfc import (
        MDSettings,
        TriggerRule,
        run_dynamic_training,
        run_periodic_training,
    )
    from alkappa.io import labels
    from alkappa.labelling import label_frames
    from alkappa.oracles import get_oracle

    spec = {"name": "tblite", "method": "GFN1-xTB"}
    oracle = get_oracle(spec)
    reference = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
    cutoffs = [5.0, 4.0, 3.0]

    def label(frames):
        # the stored copies also for fresh results, so a rerun follows the same trajectories
        # and finds every reference calculation in the store
        done = label_frames(frames, oracle, spec, args.store, purpose="benchmark").frames
        return [
            ase.io.read(Path(args.store) / f"{f.info['oracle_key']}.extxyz", format="extxyz")
            for f in done
        ]

    # reference-MD test set (GFN1-driven)
    t0 = time.perf_counter()
    test = _reference_md(reference, label, args.temperature, args.test_steps)
    print(f"test set: {len(test)} frames of GFN1 MD ({time.perf_counter() - t0:.0f} s)")

    md = MDSettings(temperature=args.temperature, timestep=2.0)
    rule = TriggerRule(window=50, factor=3.0, min_gap=10, warmup=10)
    t0 = time.perf_counter()
    dyn = run_dynamic_training(
        reference,
        label,
        cutoffs=cutoffs,
        rule=rule,
        md=md,
        steps_per_round=args.steps_per_round,
        max_rounds=args.rounds,
        check_steps=args.check_steps,
        check_equilibration=200,
        seed=args.seed,
        progress=print,
    )
    t_dyn = time.perf_counter() - t0
    calls = dyn.oracle_calls
    steps = len(dyn.errors)
    n_initial = 2
    every = max(1, steps // max(calls - n_initial, 1))
    t0 = time.perf_counter()
    per_model, per_calls = run_periodic_training(
        reference,
        label,
        cutoffs=cutoffs,
        md=md,
        steps=steps,
        every=every,
        seed=args.seed,
        n_initial=n_initial,
    )
    t_per = time.perf_counter() - t0

    def rmse(model):
        err = [model.predict(f).forces - labels(f)["forces"] for f in test]
        return float(np.sqrt(np.mean(np.square(err))))

    rms_force = float(np.sqrt(np.mean([np.square(labels(f)["forces"]) for f in test])))
    r_dyn, r_per = rmse(dyn.model), rmse(per_model)
    out = {
        "md_steps": steps,
        "converged": dyn.converged,
        "oracle_calls_trigger": calls,
        "oracle_calls_every_k": per_calls,
        "k": every,
        "test_frames": len(test),
        "test_force_rms": rms_force,
        "rmse_trigger": r_dyn,
        "rmse_every_k": r_per,
        "ratio_every_k_over_trigger": r_per / r_dyn,
        "wall_seconds_trigger": t_dyn,
        "wall_seconds_every_k": t_per,
    }
    print(json.dumps(out, indent=1))
    print(
        f"(a) trigger: {calls} oracle calls, force RMSE {r_dyn:.4f} eV/Å;  (b) every {every}th "
        f"step: {per_calls} calls, RMSE {r_per:.4f} eV/Å;  ratio (b)/(a) = {r_per / r_dyn:.3f}"
    )


def _reference_md(reference, label, temperature, test_steps):
    """GFN1-driven Langevin MD (4 fs); every 5th frame after 20 steps of equilibration.

    Every force call goes through the labelling ledger, so a rerun reads them back.
    """
    from ase import units
    from ase.calculators.calculator import Calculator, all_changes
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from alkappa.io import labels

    class Ledger(Calculator):
        implemented_properties = ["energy", "forces"]  # noqa: RUF012

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            lab = labels(label([self.atoms.copy()])[0])
            self.results = {"energy": lab["energy"], "forces": lab["forces"]}

    atoms = reference.copy()
    atoms.set_constraint(FixCom())
    rng = np.random.default_rng(12345)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    atoms.calc = Ledger()
    dyn = Langevin(
        atoms,
        4.0 * units.fs,
        temperature_K=temperature,
        friction=0.02 / units.fs,
        fixcm=False,
        rng=rng,
    )
    test = []
    for step in range(20 + test_steps):
        dyn.run(1)
        if step >= 20 and (step - 20) % 5 == 0:
            test.append(label([atoms.copy()])[0])
    return test


if __name__ == "__main__":
    main()
