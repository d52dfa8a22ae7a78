"""Wall time of the Green-Kubo production stage with ``--cores 2``: one job per temperature
(the code of ``--before``, e.g. main before the NVE runs became jobs) against one job per
NVE run (this checkout), on the same model, settings and seeds.

Usage: python benchmarks/gk_parallel.py --campaign RESULTS [--before main] [--cores 2]
       [--runs 4] [--steps 3000] [--target-error none] [--work DIR]

``RESULTS`` is the results directory of a campaign that has its final model (e.g.
``snakemake --configfile config/test.yaml results-test/Cu/model/ensemble.json
results-test/Cu/structure/relaxed.extxyz``); its first material's ``model/`` and
``structure/`` are copied (times kept) into a fresh results directory per variant, and
Snakemake runs only the production rules (``--allowed-rules``) to ``production.json`` with
config/test.yaml's Green-Kubo settings, changed by the options (by default a fixed number of
runs, ``target_error`` none, so both make the same runs). ``--before`` is a git revision,
exported with ``git archive`` into the work directory. Prints the wall time of each, their
ratio, the machine load (``os.getloadavg``) before and after each, and kappa of the runs both
made (from this checkout's analysis) with the largest difference of their heat fluxes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
PER_RUN_RULES = ["gk_equilibrate", "gk_run", "gk_round", "production"]


def export(revision: str, into: Path) -> Path:
    """The tree of ``revision`` of this repository, written to ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", revision], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def prepare(campaign: Path, work: Path, greenkubo: dict) -> tuple[Path, Path, str]:
    """A results directory with the campaign's model and structure, and its config."""
    material = next(d for d in sorted(campaign.iterdir()) if (d / "model").is_dir())
    results = work / "results"
    for part in ("model", "structure"):
        shutil.copytree(material / part, results / material.name / part)
    cfg = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    cfg["results"] = str(results)
    cfg["greenkubo"].update(greenkubo)
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    t = f"{cfg['greenkubo']['temperatures'][0]:g}"
    return results / material.name / "greenkubo" / f"T{t}", config, material.name


def run_stage(tree: Path, target: Path, config: Path, cores: int) -> dict:
    """Snakemake in ``tree`` (its own code) to ``target``; wall time and load."""
    rules = (tree / "workflow/rules/greenkubo.smk").read_text()
    allowed = PER_RUN_RULES if "rule gk_run:" in rules else ["production"]
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": "1"}
    load_before = os.getloadavg()
    start = time.perf_counter()
    command = [SNAKEMAKE, str(target / "production.json"), "--cores", str(cores)]
    proc = subprocess.run(
        [*command, "--allowed-rules", *allowed, "--configfile", str(config)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"snakemake in {tree} failed:\n{proc.stderr[-3000:]}")
    jobs = proc.stderr.count("Finished jobid")
    return {"wall": wall, "load_before": load_before, "load_after": os.getloadavg(), "jobs": jobs}


def compare(before: Path, after: Path, config: Path, material: str) -> dict:
    """kappa of the runs both made (the pipeline's analysis settings), from each directory's
    files, and the largest flux difference."""
    from alkappa.config import load_config, material_settings
    from alkappa.greenkubo import run_green_kubo
    from alkappa.io import read_json
    from alkappa.io.trajectory import read_trajectory
    from alkappa.settings import GreenKuboSettings

    settings = material_settings(load_config(config), material)
    analysis = GreenKuboSettings.from_settings(settings).analysis.to_dict()

    n = min(read_json(d / "production.json")["n_runs"] for d in (before, after))
    out = {"n_common": n}
    for name, d in (("before", before), ("after", after)):
        record = read_json(d / "production.json")
        out[f"{name}_runs"] = record["n_runs"]
        out[f"{name}_stopped_by"] = record["stopped_by"]
        # the runs' own seconds: parallel runs that share a busy core take longer each
        out[f"{name}_run_seconds"] = sum(r["seconds"] for r in record["runs"])
        out[f"{name}_blew_up"] = sum(r["blew_up"] for r in record["runs"])
        paths = [str(d / f"run_{k:02d}.nc") for k in range(n)]
        try:
            ds = run_green_kubo(paths, **analysis)
        except ValueError:  # short runs of a tiny cell may show no VDOS peak for the window
            analysis["window_fs"] = 200.0
            out["window_fs"] = 200.0
            ds = run_green_kubo(paths, **analysis)
        out[f"{name}_kappa"] = float(ds["kappa_scalar"])
    out["max_flux_difference"] = max(
        float(
            np.max(
                np.abs(
                    read_trajectory(before / f"run_{k:02d}.nc")["heat_flux"].values
                    - read_trajectory(after / f"run_{k:02d}.nc")["heat_flux"].values
                )
            )
        )
        for k in range(n)
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--campaign", type=Path, required=True)
    parser.add_argument("--before", default="main", help="git revision of the old code")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--target-error", default="none", help="'none': exactly --runs runs")
    parser.add_argument("--temperature", type=float, default=None, help="K (default: config)")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="gk_parallel_"))
    target_error = None if args.target_error.lower() == "none" else float(args.target_error)
    greenkubo = {
        "runs": args.runs,
        "steps": args.steps,
        "target_error": target_error,
        "max_runs": args.runs if target_error is None else 2 * args.runs,
    }
    if args.temperature is not None:
        greenkubo["temperatures"] = [args.temperature]
    old_tree = export(args.before, work / "before_code")
    print(f"work directory {work}; GK settings {greenkubo}; --cores {args.cores}")
    timings, dirs = {}, {}
    for name, tree in (("before", old_tree), ("after", ROOT)):
        target, config, material = prepare(args.campaign, work / name, greenkubo)
        timings[name] = run_stage(tree, target, config, args.cores)
        dirs[name] = target
        t = timings[name]
        print(
            f"{name:6s}: {t['wall']:7.1f} s wall, {t['jobs']} job(s); load average "
            f"{t['load_before'][0]:.2f} before, {t['load_after'][0]:.2f} after",
            flush=True,
        )
    result = compare(dirs["before"], dirs["after"], config, material)
    ratio = timings["after"]["wall"] / timings["before"]["wall"]
    print(f"ratio after/before: {ratio:.2f} (goal <= 0.6)")
    print(
        f"runs: before {result['before_runs']} ({result['before_stopped_by']}), after "
        f"{result['after_runs']} ({result['after_stopped_by']}); kappa of the "
        f"{result['n_common']} common runs: before {result['before_kappa']:.6g}, after "
        f"{result['after_kappa']:.6g} W/(m K); largest heat-flux difference "
        f"{result['max_flux_difference']:.3g} eV/Å²/fs"
        + (f" (smoothing window {result['window_fs']:g} fs)" if "window_fs" in result else "")
    )
    print(
        f"NVE seconds of the runs summed: before {result['before_run_seconds']:.0f}, after "
        f"{result['after_run_seconds']:.0f} (after/before "
        f"{result['after_run_seconds'] / result['before_run_seconds']:.2f}: above 1 when the "
        f"parallel runs found no free core); runs that blew up: {result['after_blew_up']}"
    )


if __name__ == "__main__":
    main()
