"""Start and stop a campaign so that a stop is quick and leaves no lock (``alkappa run``,
``alkappa stop``).

Snakemake stops cleanly (jobs killed, their outputs marked incomplete, the lock released) when
SIGINT reaches it *and* its jobs, as a Ctrl-C in a terminal does to the whole foreground
process group. Other ways leave a mess: SIGTERM makes it wait for the running jobs (half an
hour for an oracle MD), a run started in the background ignores SIGINT, and SIGKILL leaves
the lock. So :func:`run_snakemake` starts Snakemake in a process group of its own with SIGINT
restored, and turns any SIGINT, SIGTERM or SIGHUP it receives into SIGINT for that whole
group; :func:`stop_snakemake` does the same from outside. Whatever still runs after a grace
period is killed, and the lock it leaves is removed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from alkappa.campaign._status import remove_stale_lock, snakemake_processes

if TYPE_CHECKING:
    from collections.abc import Callable

#: seconds Snakemake gets to stop its jobs (and cancel cluster jobs) before it is killed
GRACE_SECONDS = 60.0


def _restore_sigint() -> None:  # in the child, before exec: a background start ignores it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to Snakemake and its jobs: its process group where it leads one, else
    (started inside someone else's group, e.g. a script's) to it and its descendants."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
            return
    except ProcessLookupError:
        return
    for p in _descendants(pid):
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def _unlock_quietly(workdir: Path) -> list[Path]:
    try:
        return remove_stale_lock(workdir)
    except RuntimeError as err:  # another Snakemake runs here: its lock is not ours to remove
        print(f"alkappa: lock kept: {err}", file=sys.stderr)
        return []


def run_snakemake(
    args: list[str],
    workdir: str | Path = ".",
    grace: float = GRACE_SECONDS,
    report: Callable[[], str] | None = None,
    report_every: float = 600.0,
) -> int:
    """Run ``snakemake ARGS`` in ``workdir`` so that Ctrl-C, SIGTERM or SIGHUP stop it within
    seconds and leave no lock; a stale lock of a killed run is removed first. Every
    ``report_every`` seconds the line ``report()`` returns is printed (where the campaign
    stands: Snakemake's own "N of M steps" cannot say, as every AL iteration adds steps).

    Returns
    -------
    int
        Snakemake's exit status (130 after a stop that had to kill it).
    """
    workdir = Path(workdir)
    removed = _unlock_quietly(workdir) if not snakemake_processes(workdir) else []
    if removed:
        print(f"alkappa: removed the lock of a killed run ({len(removed)} file(s))")
    snakemake = Path(sys.executable).parent / "snakemake"
    proc = subprocess.Popen(
        [str(snakemake), *args],
        cwd=workdir,
        start_new_session=True,
        preexec_fn=_restore_sigint,
    )
    stopping: list[float] = []  # when the first stop signal came

    def stop(signum: int, _frame: object) -> None:
        if not stopping:
            stopping.append(time.monotonic())
            print(
                f"\nalkappa: stopping (signal {signal.Signals(signum).name}): Snakemake and "
                f"its jobs get SIGINT; killed after {grace:g} s (again to kill now)",
                file=sys.stderr,
                flush=True,
            )
            _signal_group(proc.pid, signal.SIGINT)
        else:
            _signal_group(proc.pid, signal.SIGKILL)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    next_report = time.monotonic() + report_every
    try:
        while True:
            try:
                rc = proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if stopping and time.monotonic() - stopping[0] > grace:
                    _signal_group(proc.pid, signal.SIGKILL)
                if report is not None and not stopping and time.monotonic() > next_report:
                    next_report = time.monotonic() + report_every
                    try:
                        line = report()
                    except Exception as err:
                        line = f"(no status: {err})"
                    print(f"alkappa status: {line}", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopping:
        _signal_group(proc.pid, signal.SIGKILL)  # jobs that outlived Snakemake
        _unlock_quietly(workdir)
        print("alkappa: stopped; `make run` (or the same command) resumes", file=sys.stderr)
        return rc if rc > 0 else 130
    return rc


def stop_snakemake(workdir: str | Path = ".", grace: float = GRACE_SECONDS) -> list[int]:
    """Stop every Snakemake run in ``workdir`` as Ctrl-C would (SIGINT to its process group),
    kill what still runs after ``grace`` seconds, and remove the lock left behind.

    Returns
    -------
    list of int
        The PIDs of the Snakemake processes that were stopped.
    """
    workdir = Path(workdir)
    pids = snakemake_processes(workdir)
    for pid in pids:
        _signal_group(pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in pids:
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
    while any(_alive(p) for p in pids) and time.monotonic() < deadline + 10:
        time.sleep(0.2)
    _unlock_quietly(workdir)
    return pids
