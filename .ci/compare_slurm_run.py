"""Check a SLURM run of config/test.yaml (.ci/slurm_test.sh): its jobs went through SLURM, and its
results equal those of a local run of the same config.

Evidence of SLURM: every job Snakemake reports as submitted has a SLURM job id; slurmctld's log
shows each one submitted, allocated to the node and completed with exit status 0; squeue lists
those it still keeps (MinJobAge) as COMPLETED; each has a SLURM log file in which Snakemake ran
the rule; labelling jobs ran in batches. Equality: the same output files; the datasets
(positions, energies, forces, to tolerances far below physical scales), selections, decisions
and the oracle ledger equal; kappa and the Green-Kubo summary within a tight relative tolerance.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
from ase.io import read

SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.")
RAN = re.compile(r"^\s*(rule|checkpoint|localrule|localcheckpoint) \w+:", flags=re.M)
# oracle/ is the oracle store, a cache keyed by positions rounded to 1e-6 Å: harmonic sampling
# differs between runs at ~1e-8 Å (issue 18), so a key can fall on the other side of a rounding
# boundary while the labelled datasets, compared frame by frame below, agree
# samples/: a cache of draws named by a digest of floating-point inputs, not a result
IGNORED_PARTS = {"logs", "work", ".snakemake_timestamp", "oracle", "samples"}


def fail(message: str) -> None:
    print(f"slurm test FAILED: {message}")
    sys.exit(1)


def check_slurm_evidence(
    log: Path, slurm_logs: Path, squeue: Path, slurmctld_log: Path
) -> list[str]:
    submitted = SUBMITTED.findall(log.read_text())
    if not submitted:
        fail(f"no 'submitted with SLURM jobid' line in {log}")
    states = {}
    for line in squeue.read_text().splitlines():
        jobid, _name, state = line.split()
        states[jobid] = state
    controller = slurmctld_log.read_text()
    ids = [slurm_id for _, slurm_id, _ in submitted]
    if len(set(ids)) != len(ids):
        fail("a SLURM job id was reported twice")
    for _, slurm_id, logfile in submitted:
        # the controller's own record: submitted, allocated a node, exited with 0
        for event in (
            f"_slurm_rpc_submit_batch_job: JobId={slurm_id} ",
            f"_job_complete: JobId={slurm_id} WEXITSTATUS 0",
        ):
            if event not in controller:
                fail(f"slurmctld log has no '{event}'")
        # started by the main scheduler or by the backfill scheduler
        started = (
            f"sched: Allocate JobId={slurm_id} NodeList=",
            f"sched/backfill: _start_job: Started JobId={slurm_id} ",
        )
        if not any(event in controller for event in started):
            fail(f"slurmctld log does not show SLURM job {slurm_id} started on a node")
        # squeue keeps finished jobs for MinJobAge; those it still knows must be COMPLETED
        if slurm_id in states and states[slurm_id] != "COMPLETED":
            fail(f"SLURM job {slurm_id} is {states[slurm_id]!r} in squeue, not COMPLETED")
        text = Path(logfile).read_text()
        if not RAN.search(text) or "steps (100%) done" not in text:
            fail(f"SLURM log {logfile} shows no rule run to completion")
    if not any(Path(p).is_relative_to(slurm_logs) for _, _, p in submitted):
        fail(f"no SLURM log under {slurm_logs}")
    return ids


def check_label_batches(log: Path, results: Path) -> int:
    """Labelling jobs went in batches (the profile's group-components): some SLURM job ran
    more than one of them. Returns the largest batch."""
    labels = list(results.glob("*/al/iter_*/labels/frame_*.extxyz"))
    batches = [
        Path(p).read_text().split("rule label:")[0].count("label:material=")
        for _, _, p in SUBMITTED.findall(log.read_text())
        if "group_label" in p
    ]
    largest = max(batches, default=0)
    if len(labels) > 1 and largest < 2:
        fail(f"{len(labels)} frames labelled, but no SLURM job ran more than one label job")
    return largest


def outputs(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not IGNORED_PARTS & set(p.relative_to(root).parts)
    }


# Frames agree to well below any physical scale, not bit for bit: floating-point reductions in
# torch and numpy depend on the thread count, which differs between a SLURM job and the local run
POSITION_ATOL = 1e-6  # Å
ENERGY_ATOL = 1e-6  # eV
FORCE_ATOL = 1e-5  # eV/Å


def same_frames(a: Path, b: Path) -> None:
    fa, fb = read(a, index=":"), read(b, index=":")
    if len(fa) != len(fb):
        fail(f"{a.name}: {len(fa)} frames locally, {len(fb)} on SLURM")
    for x, y in zip(fa, fb, strict=True):
        np.testing.assert_allclose(x.positions, y.positions, atol=POSITION_ATOL, err_msg=str(a))
        np.testing.assert_allclose(x.cell.array, y.cell.array, atol=POSITION_ATOL, err_msg=str(a))
        if (x.calc is None) != (y.calc is None):
            fail(f"{a.name}: labelled in one run only")
        if x.calc is None:  # unlabelled samples (data/samples) are kept before labelling
            continue
        np.testing.assert_allclose(
            x.get_potential_energy(), y.get_potential_energy(), atol=ENERGY_ATOL, err_msg=str(a)
        )
        np.testing.assert_allclose(x.get_forces(), y.get_forces(), atol=FORCE_ATOL, err_msg=str(a))


def same_csv(a: Path, b: Path, rtol: float) -> None:
    with open(a, newline="") as fa, open(b, newline="") as fb:
        ra, rb = list(csv.DictReader(fa)), list(csv.DictReader(fb))
    if len(ra) != len(rb) or (ra and ra[0].keys() != rb[0].keys()):
        fail(f"{a}: rows or columns differ")
    for x, y in zip(ra, rb, strict=True):
        for key in x:
            try:
                u, v = float(x[key]), float(y[key])
            except ValueError:
                if x[key] != y[key]:
                    fail(f"{a}: {key} {x[key]!r} locally, {y[key]!r} on SLURM")
                continue
            if not (math.isclose(u, v, rel_tol=rtol, abs_tol=1e-10) or (u != u and v != v)):
                fail(f"{a}: {key} {u} locally, {v} on SLURM")


def same_numbers(a, b, where: str, rtol: float) -> None:
    if isinstance(a, dict):
        if a.keys() != b.keys():
            fail(f"{where}: keys differ")
        for key in a:
            same_numbers(a[key], b[key], f"{where}.{key}", rtol)
    elif isinstance(a, list):
        if len(a) != len(b):
            fail(f"{where}: lengths differ")
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same_numbers(x, y, f"{where}[{i}]", rtol)
    elif isinstance(a, float) and isinstance(b, float):
        if not (math.isclose(a, b, rel_tol=rtol, abs_tol=1e-10) or (a != a and b != b)):
            fail(f"{where}: {a} locally, {b} on SLURM")
    elif a != b:
        fail(f"{where}: {a!r} locally, {b!r} on SLURM")


def compare(local: Path, slurm: Path, required: list[str]) -> int:
    """Compare the SLURM run's results with the local run's. ``required`` (relative paths): the
    SLURM run built only these targets (and what they need); otherwise it built everything."""
    files_local, files_slurm = outputs(local), outputs(slurm)
    if required:
        missing = [rel for rel in required if rel not in files_slurm]
        if missing:
            fail(f"the SLURM run did not make its targets: {missing}")
        if not files_slurm <= files_local:
            fail(f"outputs the local run lacks: {sorted(files_slurm - files_local)[:10]}")
    elif files_local != files_slurm:
        fail(f"different outputs: {sorted(files_local ^ files_slurm)[:10]}")
    n = 0
    for rel in sorted(files_slurm):
        a, b = local / rel, slurm / rel
        name = Path(rel).name
        if rel.endswith(".extxyz") and ("/data/" in rel or "/oracle/" in rel or "dataset" in name):
            same_frames(a, b)
        elif name == "selection.csv":
            same_csv(a, b, rtol=1e-6)
        elif name == "decision.json":
            da, db = json.loads(a.read_text()), json.loads(b.read_text())
            same_numbers(da, db, rel, rtol=1e-6)
        elif rel.endswith("greenkubo/summary.json") or rel.endswith("conductivity/comparison.json"):
            same_numbers(json.loads(a.read_text()), json.loads(b.read_text()), rel, rtol=1e-6)
        else:
            continue
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--local", type=Path, required=True)
    parser.add_argument("--slurm", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--slurm-logs", type=Path, required=True)
    parser.add_argument("--squeue", type=Path, required=True)
    parser.add_argument("--slurmctld-log", type=Path, required=True)
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        help="result path (relative to the results dir) the SLURM run was asked for; "
        "without it the two runs must have made the same files",
    )
    args = parser.parse_args()
    ids = check_slurm_evidence(args.log, args.slurm_logs, args.squeue, args.slurmctld_log)
    batch = check_label_batches(args.log, args.slurm)
    n = compare(args.local, args.slurm, args.target)
    print(
        f"slurm test passed: {len(ids)} SLURM jobs (ids {ids[0]}..{ids[-1]}), each submitted, "
        f"allocated and exited 0 (slurmctld), COMPLETED where squeue still lists it; "
        f"up to {batch} label jobs in one SLURM job; "
        f"{n} result files equal to the local run's"
    )


if __name__ == "__main__":
    main()
