"""How long Snakemake takes to plan a 112-material campaign (the first seed paper screened 112).

Usage: python benchmarks/dag_scale.py [--materials 112] [--iterations 10] [--workdir DIR]

Writes a synthetic campaign config (N small fcc cells, lattice parameters 1e-4 Å apart, EMT
oracle: validation costs nothing) and fakes the completed active-learning loop of every
material for ``--iterations`` iterations: empty files for every output up to the last
iteration's decision, with increasing modification times in pipeline order, ``decision.json``
saying "continue" until the last, ``selection.csv`` accepting 10 frames per iteration. So the
checkpoints (selection, convergence decision) resolve for all iterations and ``snakemake -n``
has to build the full DAG: 10 iterations of training, evaluation, exploration, selection,
labelling and merging per material, plus everything downstream (phonons, phono3py, Green-Kubo,
campaign summary) still to do. Prints the wall and CPU time of ``snakemake -n``; the CPU time
is held against the 60 s target (wall time on a busy machine includes waiting for a core).
A first start also pays a symmetry analysis per material (whether the oracle's fc3 is
computed), cached in ``.snakemake/alkappa/`` for later starts: run it twice to see both.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 60.0
SELECTED = 10
TEMPERATURES = (300, 900)
MEMBERS = 4


def campaign_config(n_materials: int, results: Path, iterations: int) -> dict:
    materials = {
        f"M{i:03d}": {
            # distinct lattice parameters: nothing cached for one material serves another
            "structure": {
                "build": {"name": "Cu", "crystalstructure": "fcc", "a": 3.6 + 0.0001 * i}
            },
            "supercell": [3, 3, 3],
        }
        for i in range(n_materials)
    }
    return {
        "results": str(results),
        "materials": materials,
        "oracle": {"name": "emt"},
        "model": {"name": "nequip"},
        "ensemble": {"size": MEMBERS},
        "explore": {"temperatures": list(TEMPERATURES)},
        "select": {"max_frames": SELECTED},
        "convergence": {"max_iterations": iterations},
        "greenkubo": {"temperatures": [300], "runs": 3},
    }


class Faker:
    """Creates files with strictly increasing modification times (pipeline order)."""

    def __init__(self) -> None:
        self.clock = time.time() - 1e6

    def touch(self, path: Path, text: str = "") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.clock += 1.0
        os.utime(path, (self.clock, self.clock))


def selection_csv(n_accepted: int) -> str:
    rows = ["trajectory,frame,accepted"]
    rows += [f"T300,{k},True" for k in range(n_accepted)]
    rows += [f"T900,{k},False" for k in range(5)]
    return "\n".join(rows) + "\n"


def fake_al_loop(faker: Faker, out: Path, iterations: int) -> None:
    """Every output of one material's AL loop up to the decision of the last iteration."""
    for name in ("structure/relaxed.extxyz", "structure/relax.json"):
        faker.touch(out / name)
    for name in ("data/initial.extxyz", "data/initial.json", "data/test.extxyz", "data/test.json"):
        faker.touch(out / name)
    for it in range(iterations):
        d = out / f"al/iter_{it}"
        if it > 0:
            prev = out / f"al/iter_{it - 1}"
            for k in range(SELECTED):
                faker.touch(prev / f"labels/frame_{k}.extxyz")
            faker.touch(d / "dataset.extxyz")
            faker.touch(d / "merge.json")
        for m in range(MEMBERS):
            faker.touch(d / f"ensemble/member_{m}/member.json", json.dumps({"model_file": "x"}))
        faker.touch(d / "test_metrics.json")
        for t in TEMPERATURES:
            faker.touch(d / f"explore/T{t}.nc")
        faker.touch(d / "selection.csv", selection_csv(SELECTED))
        faker.touch(d / "candidates.extxyz")
        stop = it == iterations - 1
        faker.touch(d / "decision.json", json.dumps({"iteration": it, "stop": stop}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--materials", type=int, default=112)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="alkappa-dag-"))
    results = work / "results"
    cfg = campaign_config(args.materials, results, args.iterations)
    cfgfile = work / "config.yaml"
    cfgfile.parent.mkdir(parents=True, exist_ok=True)
    cfgfile.write_text(yaml.safe_dump(cfg))
    faker = Faker()
    start = time.perf_counter()
    for m in cfg["materials"]:
        fake_al_loop(faker, results / m, args.iterations)
    print(
        f"faked {args.materials} materials x {args.iterations} iterations "
        f"in {time.perf_counter() - start:.1f} s ({work})"
    )

    snakemake = str(Path(sys.executable).parent / "snakemake")
    command = [
        snakemake,
        "-n",
        "--cores",
        "64",
        "--configfile",
        str(cfgfile),
        "--rerun-triggers",
        "mtime",
        "--quiet",
        "rules",
    ]
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        return 1
    text = proc.stdout + proc.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", text, flags=re.M))
    total = counts.pop("total", "?")
    # checkpoints resolved: nothing of the AL loop is left, downstream is planned per material
    print(f"snakemake -n: {total} jobs planned " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    expect = {"summary": args.materials, "fc3": None, "production": args.materials}
    for rule, n in expect.items():
        if rule not in counts or (n is not None and int(counts[rule]) != n):
            print(f"unexpected DAG: {rule} {counts.get(rule)} (expected {n})")
            return 1
    for rule in ("train_member", "select", "decide", "label", "merge"):
        if rule in counts:
            print(f"unexpected DAG: the faked AL loop has {counts[rule]} {rule} jobs to do")
            return 1
    # on a shared machine the wall time includes waiting for a core; the CPU time does not
    # (Snakemake plans in one thread: on an idle core wall time ~ CPU time), so it is judged
    verdict = "within" if cpu <= TARGET_SECONDS else "OVER"
    print(
        f"snakemake -n for {args.materials} materials, {args.iterations} AL iterations each: "
        f"{elapsed:.1f} s wall, {cpu:.1f} s CPU ({verdict} the {TARGET_SECONDS:.0f} s target)"
    )
    return 0 if cpu <= TARGET_SECONDS else 2


if __name__ == "__main__":
    sys.exit(main())
