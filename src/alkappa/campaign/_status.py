"""Where a campaign stands: stages, AL iteration, oracle calls, running jobs, time left.

Read from the results directory and Snakemake's own records in ``.snakemake/`` of the
directory it ran in (``metadata/``: rule, start and end time of every finished job;
``incomplete/``: outputs of jobs that started and have not finished; ``locks/``: a run in
progress, or one that was killed). Nothing here starts work or changes a file, so it is safe
on a running campaign.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alkappa.al.cost import oracle_totals
from alkappa.io import read_json
from alkappa.labelling import OracleCost

if TYPE_CHECKING:
    from alkappa.campaign._eta import TimeLeft

#: a tqdm progress bar's counters: "450/1000 [01:23<01:40" (done/total [elapsed<left)
_BAR = re.compile(r"(\d+)/(\d+) \[([\d:]+)<([\d:?]+)")


@dataclass
class RunningJob:
    """A job Snakemake started and has not finished (or that died with its run)."""

    rule: str
    output: str
    started: float | None  # epoch seconds
    progress: str | None = None  # the last progress bar of its log: "450/1000, 01:40 left"
    interrupted: bool = False  # started by an earlier run that was stopped, not by this one


@dataclass
class MaterialStatus:
    name: str
    stages: dict[str, str] = field(default_factory=dict)  # stage -> what it holds
    oracle_calls: dict[str, int] = field(default_factory=dict)
    oracle_cost: OracleCost = field(default_factory=OracleCost)  # all of them, with their time


@dataclass
class CampaignStatus:
    results: Path
    materials: list[MaterialStatus]
    locked: bool  # Snakemake holds (or a killed run left) a lock on the working directory
    alive: bool  # a Snakemake process runs in the working directory
    running: list[RunningJob]
    rule_seconds: dict[str, list[float]]  # durations of finished jobs, per rule
    job_seconds: dict[str, float] = field(default_factory=dict)  # per finished job's output

    def mean_seconds(self, rule: str) -> float | None:
        times = self.rule_seconds.get(rule)
        return sum(times) / len(times) if times else None


def _decode(name: str) -> str:
    try:
        return base64.urlsafe_b64decode(name.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        try:
            return base64.b64decode(name.encode()).decode()
        except (ValueError, UnicodeDecodeError):
            return name


def _under(output: str, workdir: Path, results: Path) -> bool:
    """Whether Snakemake's ``output`` (relative to ``workdir`` or absolute) is in ``results``."""
    return (workdir / output).resolve().is_relative_to(results.resolve())


def _durations(workdir: Path, results: Path) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Durations (s) of the finished jobs with outputs under ``results``: per rule, and per
    job (by one of its outputs, relative to ``workdir`` as Snakemake records it)."""
    meta = workdir / ".snakemake" / "metadata"
    durations: dict[str, dict[Any, float]] = {}
    outputs: dict[Any, str] = {}
    if not meta.is_dir():
        return {}, {}
    for path in meta.iterdir():
        output = _decode(path.name)
        if not _under(output, workdir, results):
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        start, end = record.get("starttime"), record.get("endtime")
        if not record.get("incomplete") and start is not None and end is not None and end >= start:
            # one record per output file: count a job once, by its first output's record
            key = (record.get("rule", "?"), record.get("job_hash"))
            durations.setdefault(key[0], {})[key] = end - start
            outputs.setdefault(key, output)
    per_job = {outputs[key]: s for jobs in durations.values() for key, s in jobs.items()}
    return {rule: list(jobs.values()) for rule, jobs in durations.items()}, per_job


#: a job block of Snakemake's run log: "[Sat Dec  5 23:10:49 2026]" then "localrule x:" ...
_BLOCK = re.compile(
    r"^\[(?P<date>[^\]]+)\]\n(?:local)?rule (?P<rule>\w+):\n(?P<body>(?:    .*\n)+)", re.M
)


_FLAGS = re.compile(r" \([a-z_, ]+\)$")


def _job_blocks(workdir: Path) -> dict[str, dict[str, Any]]:
    """{output: {rule, log, started}} of the jobs the newest Snakemake run log announced."""
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        return {}
    text = logs[-1].read_text(errors="replace")
    jobs: dict[str, dict[str, Any]] = {}
    for match in _BLOCK.finditer(text):
        fields = dict(
            line.strip().split(": ", 1) for line in match["body"].splitlines() if ": " in line
        )
        try:
            started = time.mktime(time.strptime(match["date"], "%a %b %d %H:%M:%S %Y"))
        except ValueError:
            started = None
        entry = {
            "rule": match["rule"],
            "log": fields.get("log", "").split(", "),
            "started": started,
        }
        for output in fields.get("output", "").split(", "):
            # flags follow the path: "run_02.nc (update)", "x.nc (temp, protected)"
            jobs[_FLAGS.sub("", output)] = entry
    return jobs


def _running_jobs(workdir: Path, results: Path) -> list[RunningJob]:
    incomplete = workdir / ".snakemake" / "incomplete"
    outputs = [_decode(p.name) for p in incomplete.iterdir()] if incomplete.is_dir() else []
    blocks = _job_blocks(workdir)
    jobs: dict[Any, RunningJob] = {}
    for output in sorted(outputs):
        if not _under(output, workdir, results):
            continue
        block = blocks.get(output, {})
        key = id(block) if block else output
        if key in jobs:
            continue
        # not announced by the newest run log: a job of a stopped run, to be redone
        job = RunningJob(
            block.get("rule", "?"), output, block.get("started"), interrupted=not block
        )
        for log in block.get("log", []):
            if log:
                job.progress = last_progress(Path(workdir, log)) or job.progress
        if job.rule == "train_member":  # the trainer logs its epochs in its own directory
            work = Path(workdir, output).parent / "work"
            job.progress = training_progress(work) or job.progress
        jobs[key] = job
    return list(jobs.values())


def training_progress(work: Path, now: float | None = None) -> str | None:
    """ "epoch/max_epochs, left" of a NequIP training in ``work`` (from the epochs its metrics
    file holds; the time left is the smaller of the epochs left at the mean pace so far and
    what the ``max_time`` cap leaves)."""
    import yaml

    now = time.time() if now is None else now
    config, metrics = work / "config.yaml", sorted(work.glob("csv/version_*/metrics.csv"))
    if not config.is_file() or not metrics:
        return None
    try:
        trainer = (yaml.safe_load(config.read_text()) or {}).get("trainer", {})
        lines = metrics[-1].read_text().strip().splitlines()
        done = int(lines[-1].split(",")[0]) + 1 if len(lines) > 1 else 0
    except (OSError, ValueError, yaml.YAMLError, AttributeError):
        return None
    total = int(trainer.get("max_epochs") or 0)
    elapsed = now - config.stat().st_mtime
    left = (total - done) * elapsed / done if done and total else None
    if isinstance(cap := trainer.get("max_time"), str):  # "DD:HH:MM:SS"
        d, h, m, s = (int(x) for x in cap.split(":"))
        capped = max(0.0, ((d * 24 + h) * 60 + m) * 60 + s - elapsed)
        left = capped if left is None else min(left, capped)
    if left is None:
        return None
    return f"epoch {done}/{total or '?'}, {int(left) // 60:02d}:{int(left) % 60:02d} left"


def last_progress(log: Path, tail_bytes: int = 4096) -> str | None:
    """The last progress bar written to ``log``: "done/total, left" (None without one)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - tail_bytes))
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    matches = _BAR.findall(text)
    if not matches:
        return None
    done, total, _, left = matches[-1]
    return f"{done}/{total}, {left} left"


def _material(directory: Path) -> MaterialStatus:
    status = MaterialStatus(directory.name)
    stages = status.stages
    if (directory / "structure" / "relaxed.extxyz").exists():
        stages["structure"] = "relaxed"
    data = []
    for path, count, what in (
        (directory / "data" / "initial.json", "n_initial", "D_0 {} frames"),
        (directory / "data" / "test.json", "n_test", "test set {} (harmonic)"),
        (directory / "reference" / "split.json", "n_test", "test set {} (reference MD)"),
    ):
        if path.exists():
            record = read_json(path)
            failed = len(record.get("failures", []))
            data.append(what.format(record.get(count, "?")))
            data[-1] += f", {failed} failed oracle call(s) listed" if failed else ""
    if data:
        stages["initial data"] = "; ".join(data)
    iterations = sorted(
        (int(p.name.split("_")[1]), p)
        for p in (directory / "al").glob("iter_*")
        if p.name.split("_")[1].isdigit()
    )
    if iterations:
        k, _ = iterations[-1]
        decisions = [
            (i, p / "decision.json") for i, p in iterations if (p / "decision.json").exists()
        ]
        line = f"iteration {k}"
        if decisions:
            i, path = decisions[-1]
            decision = read_json(path)
            cap = decision.get("settings", {}).get("max_iterations")
            if decision.get("stop"):
                line = f"finished after iteration {i}: {decision.get('reason', '?')}"
            else:
                # iterations count from 0: max_iterations=5 allows 0..4
                line = f"iteration {k}" + (f" (the last allowed: {cap - 1})" if cap else "")
                line += f"; decision of iteration {i}: {decision.get('reason', '?')}"
        stages["active learning"] = line
    for method in ("oracle", "mlip"):
        if (directory / "phonons" / method / "phonons.json").exists():
            stages.setdefault("phonons", "")
            stages["phonons"] = ", ".join(filter(None, [stages["phonons"], method]))
        if (directory / "conductivity" / method / "kappa.nc").exists():
            stages.setdefault("conductivity (phono3py)", "")
            stages["conductivity (phono3py)"] = ", ".join(
                filter(None, [stages["conductivity (phono3py)"], method])
            )
    for tdir in sorted((directory / "greenkubo").glob("T*")):
        runs = len(list(tdir.glob("run_*.nc")))
        production = tdir / "production.json"
        line = f"{runs} NVE run(s)"
        rounds = sorted(
            int(p.stem.split("_")[1])
            for p in tdir.glob("round_*.json")
            if p.stem.split("_")[1].isdigit()
        )
        if rounds and not production.exists():
            line += f", {rounds[-1] + 1} round(s) decided"
        if production.exists():
            record = read_json(production)
            error = record.get("relative_error")
            line += f", stopped by {record.get('stopped_by', '?')}" + (
                f" at {error:.0%} relative error" if isinstance(error, (int, float)) else ""
            )
        stages[f"green-kubo {tdir.name}"] = line
    if (directory / "greenkubo" / "summary.json").exists():
        stages["green-kubo"] = "summary written"
    # the oracle store, the relaxation and the finished reference MD runs (not in the store)
    totals = oracle_totals(directory)
    names = {"reference-md": "reference MD"}
    status.oracle_calls = {names.get(k, k): cost.calls for k, cost in totals.items()}
    status.oracle_cost = sum(totals.values(), OracleCost())
    return status


def campaign_status(results: str | Path, workdir: str | Path = ".") -> CampaignStatus:
    """The state of the campaign in ``results``, run by Snakemake from ``workdir``.

    Raises
    ------
    ValueError
        If ``results`` is not a directory.
    """
    results, workdir = Path(results), Path(workdir)
    if not results.is_dir():
        raise ValueError(f"{results} is not a results directory")
    materials = [
        _material(d)
        for d in sorted(results.iterdir())
        if d.is_dir() and ((d / "structure").is_dir() or (d / "oracle").is_dir())
    ]
    locks = workdir / ".snakemake" / "locks"
    per_rule, per_job = _durations(workdir, results)
    return CampaignStatus(
        results=results,
        materials=materials,
        locked=locks.is_dir() and any(locks.iterdir()),
        alive=bool(snakemake_processes(workdir)),
        running=_running_jobs(workdir, results),
        rule_seconds=per_rule,
        job_seconds=per_job,
    )


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def format_status(
    status: CampaignStatus, estimate: TimeLeft | None = None, now: float | None = None
) -> str:
    """``status`` as the text ``alkappa status`` prints, with the time-left ``estimate``
    (:func:`alkappa.campaign.estimate_time_left`) if there is one."""
    now = time.time() if now is None else now
    lines = []
    if status.alive:
        state = "a Snakemake run is in progress"
    elif status.locked:
        state = "no Snakemake runs, but a killed run left its lock (alkappa unlock removes it)"
    else:
        state = "no Snakemake run in progress"
    lines.append(f"{status.results}: {len(status.materials)} material(s); {state}")
    for material in status.materials:
        lines.append(f"{material.name}")
        width = max([len(k) for k in material.stages] + [12])
        for stage, text in material.stages.items():
            lines.append(f"  {stage:<{width}}  {text}")
        if material.oracle_calls:
            calls = ", ".join(f"{k} {v}" for k, v in material.oracle_calls.items())
            total = sum(material.oracle_calls.values())
            lines.append(f"  {'oracle calls':<{width}}  {total} ({calls})")
            lines.append(f"  {'oracle time':<{width}}  {oracle_time(material.oracle_cost)}")
    running = [job for job in status.running if not job.interrupted]
    if running:
        verb = "running" if status.alive else "unfinished (the run that started them ended)"
        lines.append(f"jobs {verb}:")
        for job in running:
            since = f" for {_duration(now - job.started)}" if job.started else ""
            typical = status.mean_seconds(job.rule)
            usual = f" (finished ones took {_duration(typical)})" if typical else ""
            progress = f"; progress {job.progress}" if job.progress else ""
            lines.append(f"  {job.rule}{since}{usual}{progress}: {job.output}")
    interrupted = [job.output for job in status.running if job.interrupted]
    if interrupted:
        lines.append(f"interrupted by an earlier stop, redone when due: {', '.join(interrupted)}")
    if status.rule_seconds:
        total = sum(sum(t) for t in status.rule_seconds.values())
        n = sum(len(t) for t in status.rule_seconds.values())
        lines.append(f"finished: {n} job(s), {_duration(total)} of job time")
    if estimate is not None:
        lines.extend(_format_estimate(estimate))
    return "\n".join(lines)


def oracle_time(cost: OracleCost) -> str:
    """``cost``'s CPU and wall hours, and the calls whose time is not recorded."""
    text = f"{_duration(cost.cpu_seconds)} CPU, {_duration(cost.wall_seconds)} wall"
    if cost.untimed_cpu or cost.untimed_wall:
        untimed = max(cost.untimed_cpu, cost.untimed_wall)
        text += f" ({untimed} call(s) without a recorded time: older records)"
    return text


def status_line(status: CampaignStatus, estimate: TimeLeft | None = None) -> str:
    """``status`` in one line, for the terminal of a running campaign."""
    parts = []
    for material in status.materials:
        # the AL loop while it runs (the oracle's phonons finish beside it), else the stage
        # reached last (stages are listed in the order of the pipeline)
        stage = "starting"
        al = material.stages.get("active learning", "finished")
        if not al.startswith("finished"):
            stage = f"active learning: {al.split(';')[0]}"
        elif material.stages:
            name, what = list(material.stages.items())[-1]
            stage = f"{name}: {what.split(';')[0]}"
        calls = sum(material.oracle_calls.values())
        parts.append(f"{material.name}: {stage}, {calls} oracle calls")
    text = "; ".join(parts) or "no material started"
    if status.alive:
        text += f" | {sum(not j.interrupted for j in status.running)} job(s) running"
    else:
        text += " | no run in progress"
    if estimate is not None:
        bound = "at least" if estimate.untimed else "about"
        text += f" | time left {bound} {_duration(estimate.wall_seconds)}"
        if estimate.wall_seconds_max > estimate.wall_seconds:
            text += f" to {_duration(estimate.wall_seconds_max)}"
        if estimate.untimed:
            text += f" (+{sum(estimate.untimed.values())} untimed jobs)"
    return text


def _format_estimate(e: TimeLeft) -> list[str]:
    wall = _duration(e.wall_seconds)
    if e.wall_seconds_max > e.wall_seconds:
        wall += f" to {_duration(e.wall_seconds_max)}"
    # jobs of rules with no duration known make the sum a lower bound only
    bound = "at least" if e.untimed else "about"
    lines = [f"time left: {bound} {wall} on {e.cores} core(s)"]
    detail = f"  {e.jobs} job(s) planned, {_duration(e.job_seconds)} of job time"
    if e.prior_seconds:
        detail += f" ({_duration(e.prior_seconds)} of it from typical durations in the "
        detail += "default campaign: rules not timed here yet)"
    if e.running_seconds:
        detail += f"; running jobs: {_duration(e.running_seconds)} left"
    lines.append(detail)
    if e.untimed:
        rules = ", ".join(f"{r} x{n}" for r, n in sorted(e.untimed.items()))
        lines.append(f"  not counted (no duration known): {rules}")
    if e.iterations_left:
        if e.iteration_seconds:
            lines.append(
                f"  the AL loop may add up to {e.iterations_left} more iteration(s) of "
                f"{_duration(e.iteration_seconds)} job time each (measured): the upper end"
            )
        else:
            lines.append(
                f"  the AL loop may add up to {e.iterations_left} more iteration(s), not "
                "counted until one has finished"
            )
    if e.gk_runs_left:
        if e.gk_run_seconds:
            lines.append(
                f"  the Green-Kubo rounds may add up to {e.gk_runs_left} more NVE run(s) of "
                f"{_duration(e.gk_run_seconds)} job time each (max_runs): the upper end"
            )
        else:
            lines.append(
                f"  the Green-Kubo rounds may add up to {e.gk_runs_left} more NVE run(s) "
                "(max_runs), not counted until one has finished"
            )
    return lines


def planned_jobs(
    workdir: str | Path, configfile: str | Path, targets: list[str] | None = None
) -> dict[str, int]:
    """Jobs a run would still make, per rule, from a Snakemake dry run (``-n --nolock``: safe
    beside a running campaign; it reads the config and plans, it runs no job).

    Raises
    ------
    ValueError
        If the dry run fails (its last line says why).
    """
    import subprocess
    import sys

    snakemake = Path(sys.executable).parent / "snakemake"
    command = [
        str(snakemake),
        "-n",
        "--quiet",
        "rules",
        "--nolock",
        "--configfile",
        str(configfile),
    ]
    proc = subprocess.run(
        [*command, "--", *(targets or [])],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"the dry run of {configfile} failed: {last}")
    counts: dict[str, int] = {}
    in_table = False
    for line in proc.stdout.splitlines():
        words = line.split()
        if words[:2] == ["job", "count"]:
            in_table = True
        elif in_table and len(words) == 2 and words[1].isdigit():
            if words[0] == "total":
                break
            counts[words[0]] = int(words[1])
    return counts


def snakemake_processes(workdir: str | Path) -> list[int]:
    """PIDs of Snakemake processes running in ``workdir`` (Linux ``/proc``; elsewhere an
    empty list is not proof of none, so :func:`remove_stale_lock` refuses there)."""
    target = Path(workdir).resolve()
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = (proc / "cwd").resolve()
        except OSError:  # gone, or not ours to read
            continue
        if cwd == target and any(
            Path(a.decode(errors="replace")).name == "snakemake" for a in argv
        ):
            pids.append(int(proc.name))
    return pids


def remove_stale_lock(workdir: str | Path = ".") -> list[Path]:
    """Remove the lock a killed Snakemake run left in ``workdir`` (what ``snakemake --unlock``
    does), but only if no Snakemake process runs there; returns the removed lock files.

    Raises
    ------
    RuntimeError
        If a Snakemake process runs in ``workdir`` (its lock is not stale), or if processes
        cannot be listed on this system.
    """
    if not Path("/proc/self").is_dir():
        raise RuntimeError("cannot list processes here (no /proc): use snakemake --unlock")
    running = snakemake_processes(workdir)
    if running:
        raise RuntimeError(
            f"Snakemake is running in {Path(workdir).resolve()} (pid {running[0]}): its lock "
            "is not stale; stop it first (Ctrl-C, or kill -TERM)"
        )
    locks = Path(workdir) / ".snakemake" / "locks"
    removed = sorted(locks.glob("*")) if locks.is_dir() else []
    for path in removed:
        path.unlink()
    return removed
