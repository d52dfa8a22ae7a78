"""How long a campaign has left, from what Snakemake plans and what its jobs took.

The estimate adds, per rule, the jobs a dry run still plans times the mean duration of the
rule's finished jobs in this campaign, or, for a rule not timed here yet, its typical duration
in the measured default campaign (``typical_job_seconds.yaml``, 2 cores); plus what the
running jobs have left (their progress bars, else their rule's mean). The wall time divides
that by the cores of the run. The AL loop's further iterations are not in any plan (each
decision checkpoint adds the next one); they are counted from the measured job time of one
finished iteration, up to ``max_iterations``, as a range. Likewise the Green-Kubo production's
further rounds (each ``gk_round`` checkpoint adds the next round's ``gk_run`` jobs): up to
``greenkubo.max_runs`` runs of the mean ``gk_run`` duration, the upper end of the range.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from alkappa.campaign._status import CampaignStatus, RunningJob, snakemake_processes
from alkappa.io import read_json


def typical_job_seconds() -> dict[str, float]:
    """Typical seconds per job of every rule timed in the default campaign (2 cores)."""
    text = resources.files("alkappa.campaign").joinpath("typical_job_seconds.yaml").read_text()
    return {str(k): float(v) for k, v in (yaml.safe_load(text) or {}).items()}


def _clock(text: str) -> float | None:
    """Seconds of a tqdm clock: "01:40" or "1:02:03" (None for "?")."""
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        return None
    seconds = 0
    for part in parts:
        seconds = 60 * seconds + part
    return float(seconds)


def run_cores(workdir: str | Path) -> int:
    """The cores of the Snakemake run in ``workdir`` (``--cores``/``-c``/``--jobs``/``-j`` of
    its command line; ``all`` or none found: the cores of this machine)."""
    machine = os.cpu_count() or 1
    for pid in snakemake_processes(workdir):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        for k, arg in enumerate(argv):
            value = None
            if arg in ("--cores", "-c", "--jobs", "-j") and k + 1 < len(argv):
                value = argv[k + 1]
            elif m := re.fullmatch(r"(?:--cores|--jobs)=(\S+)|-[cj](\d+)", arg):
                value = m[1] or m[2]
            if value == "all":
                return machine
            if value is not None and value.isdigit():
                return max(1, int(value))
    return machine


@dataclass
class TimeLeft:
    """The time-left estimate of a campaign (seconds)."""

    cores: int
    jobs: int  # planned and not running
    job_seconds: float  # expected job time of the planned jobs that have a duration
    prior_seconds: float  # the part of job_seconds from typical durations, not this campaign
    running_seconds: float  # what the running jobs have left, all together
    longest_running: float  # what the running job that ends last has left
    untimed: dict[str, int] = field(default_factory=dict)  # rules with no duration at all
    iteration_seconds: float | None = None  # job time of one finished AL iteration
    iterations_left: int = 0  # AL iterations the loop may still add beyond the plan
    gk_run_seconds: float | None = None  # mean (or typical) job time of one NVE run
    gk_runs_left: int = 0  # NVE runs the Green-Kubo rounds may still add beyond the plan

    @property
    def wall_seconds(self) -> float:
        """The planned work spread over the cores (at least the longest running job)."""
        spread = (self.job_seconds + self.running_seconds) / self.cores
        return max(spread, self.longest_running)

    @property
    def wall_seconds_max(self) -> float:
        """The same if the AL loop runs all its remaining iterations and the Green-Kubo
        productions all the runs their budgets allow."""
        more = (self.iteration_seconds or 0.0) * self.iterations_left
        more += (self.gk_run_seconds or 0.0) * self.gk_runs_left
        return self.wall_seconds + more / self.cores


def _running_left(job: RunningJob, mean: float | None, now: float) -> float:
    if job.progress and (m := re.search(r", ([\d:]+) left$", job.progress)):
        left = _clock(m[1])
        if left is not None:
            return left
    if mean is not None and job.started is not None:
        return max(mean - (now - job.started), 0.0)
    return 0.0


def iteration_seconds(job_seconds: dict[str, float], results: Path) -> float | None:
    """Mean job time of one finished AL iteration (its AL and random-baseline jobs, the
    iteration's merge included); None before one has finished."""
    per_iteration: dict[tuple[str, int], float] = {}
    pattern = re.compile(r"/(?P<m>[^/]+)/(?:al|random)/iter_(?P<i>\d+)/")
    for output, seconds in job_seconds.items():
        if m := pattern.search("/" + output):
            key = (m["m"], int(m["i"]))
            per_iteration[key] = per_iteration.get(key, 0.0) + seconds
    finished = [
        seconds
        for (material, i), seconds in per_iteration.items()
        if (results / material / "al" / f"iter_{i}" / "decision.json").exists()
        and (results / material / "al" / f"iter_{i + 1}" / "dataset.extxyz").exists()
    ]
    return sum(finished) / len(finished) if finished else None


def estimate_time_left(
    status: CampaignStatus,
    planned: dict[str, int],
    *,
    cores: int,
    now: float,
    priors: dict[str, float] | None = None,
    iterations_left: int = 0,
    gk_runs_left: int = 0,
) -> TimeLeft:
    """Expected time left of the campaign in ``status`` given the jobs a dry run plans."""
    priors = typical_job_seconds() if priors is None else priors
    left = dict(planned)
    running = []
    for job in status.running:  # a dry run beside the run plans the running jobs as well
        if job.interrupted:  # planned, not running
            continue
        if left.get(job.rule):
            left[job.rule] -= 1
        mean = status.mean_seconds(job.rule) or priors.get(job.rule)
        running.append(_running_left(job, mean, now))
    estimate = TimeLeft(
        cores=max(1, cores),
        jobs=sum(left.values()),
        job_seconds=0.0,
        prior_seconds=0.0,
        running_seconds=sum(running),
        longest_running=max(running, default=0.0),
        iterations_left=iterations_left,
        gk_runs_left=gk_runs_left,
        gk_run_seconds=status.mean_seconds("gk_run") or priors.get("gk_run"),
    )
    for rule, n in left.items():
        mean = status.mean_seconds(rule)
        if mean is None and rule in priors:
            estimate.prior_seconds += n * priors[rule]
            mean = priors[rule]
        if mean is None:
            if n:
                estimate.untimed[rule] = n
            continue
        estimate.job_seconds += n * mean
    estimate.iteration_seconds = iteration_seconds(status.job_seconds, status.results)
    return estimate


def iterations_beyond_plan(results: str | Path, max_iterations: dict[str, int]) -> int:
    """AL iterations the loops of all materials may still add beyond what a dry run plans now
    (it plans up to the decision of the iteration after the last decided one).

    ``max_iterations``: the cap of each material (its ``convergence.max_iterations``).
    """
    total = 0
    for material, cap in max_iterations.items():
        decided = sorted(
            (int(p.parent.name.split("_")[1]), p)
            for p in Path(results, material, "al").glob("iter_*/decision.json")
            if p.parent.name.split("_")[1].isdigit()
        )
        if not decided:
            total += max(cap - 1, 0)
            continue
        last, path = decided[-1]
        if read_json(path).get("stop"):
            continue
        total += max(cap - last - 2, 0)
    return total


def gk_runs_beyond_plan(results: str | Path, productions: dict[str, dict[str, Any]]) -> int:
    """NVE runs the Green-Kubo productions may still add beyond what a dry run plans now (it
    plans the runs of the rounds decided so far).

    ``productions``: per material, ``runs`` and ``max_runs`` (``greenkubo``), the
    ``temperatures`` (as in the paths, ``"300"``) and the Green-Kubo ``directories``
    (``greenkubo``, ``greenkubo_<n1>x<n2>x<n3>``). A production without ``max_runs`` adds
    nothing here (its other budgets are not counted in runs).
    """
    total = 0
    for material, gk in productions.items():
        if gk.get("max_runs") is None:
            continue
        for name in gk["directories"]:
            for t in gk["temperatures"]:
                directory = Path(results, material, name, f"T{t}")
                if (directory / "production.json").exists():
                    continue
                planned = int(gk["runs"])
                records = sorted(
                    (int(p.stem.split("_")[1]), p)
                    for p in directory.glob("round_*.json")
                    if p.stem.split("_")[1].isdigit()
                )
                if records:
                    last = read_json(records[-1][1])
                    if last.get("stop"):
                        continue
                    planned = len(last["runs"]) + len(last["next_runs"])
                total += max(int(gk["max_runs"]) - planned, 0)
    return total
