"""A new user's first run, measured: a fresh clone, ``make run``, and ``alkappa status`` at
regular moments, then how far each time-left estimate was from the real finish.

    python benchmarks/first_run.py /tmp/first-run            # the default campaign
    python benchmarks/first_run.py /tmp/first-run --every 900 --config config/test.yaml

Clones this repository's HEAD into DIRECTORY (unless it is a clone already), runs ``make run
CONFIG=...`` there (set-up of .venv included, as a new user does), and every ``--every``
seconds appends ``alkappa status results --configfile CONFIG`` to DIRECTORY/status_log.txt.
At the end it prints the set-up and total wall times, each moment's estimate against the time
that was really left, and the measured mean duration of every rule (the format of
``src/alkappa/campaign/typical_job_seconds.yaml``). Hours on 2 cores for the default
campaign: start it first and leave the machine to it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _seconds(text: str) -> float | None:
    """Seconds of "1 h 05 min" or "12 min 30 s" (the format of ``alkappa status``)."""
    if m := re.fullmatch(r"(\d+) h (\d+) min", text.strip()):
        return 3600.0 * int(m[1]) + 60.0 * int(m[2])
    if m := re.fullmatch(r"(\d+) min (\d+) s", text.strip()):
        return 60.0 * int(m[1]) + int(m[2])
    return None


def estimate_of(status: str) -> tuple[float | None, float | None]:
    """The (low, high) wall-time estimate of an ``alkappa status`` text."""
    m = re.search(r"time left: (?:about|at least) (.+?)(?: to (.+?))? on \d+ core", status)
    if not m:
        return None, None
    low = _seconds(m[1])
    return low, _seconds(m[2]) if m[2] else low


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--every", type=float, default=600.0, help="seconds between statuses")
    args = parser.parse_args()
    clone = args.directory.resolve()
    if not (clone / ".git").is_dir():
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    log = clone / "status_log.txt"
    start = time.time()
    setup = subprocess.run(["make", "setup"], cwd=clone, capture_output=True, text=True)
    if setup.returncode != 0:
        print(setup.stderr[-3000:], file=sys.stderr)
        return 1
    setup_seconds = time.time() - start
    alkappa = clone / ".venv" / "bin" / "alkappa"
    with open(clone / "make_run.log", "w") as out:
        run = subprocess.Popen(
            ["make", "run", f"CONFIG={args.config}"], cwd=clone, stdout=out, stderr=out
        )
        moments: list[tuple[float, float | None, float | None]] = []
        while run.poll() is None:
            try:
                run.wait(timeout=args.every)
                break
            except subprocess.TimeoutExpired:
                pass
            status = subprocess.run(
                [str(alkappa), "status", "results", "--configfile", args.config],
                cwd=clone,
                capture_output=True,
                text=True,
            )
            now = time.time()
            with open(log, "a") as fh:
                fh.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} ({now - start:.0f} s)\n")
                fh.write(status.stdout + status.stderr + "\n")
            moments.append((now, *estimate_of(status.stdout)))
    end = time.time()
    print(f"make run exit status {run.returncode}")
    print(f"set-up {setup_seconds / 60:.1f} min; total {(end - start) / 60:.1f} min")
    print("moment (min)  estimate (min)  really left (min)")
    for at, low, high in moments:
        guess = "-" if low is None else f"{low / 60:.0f}" + (f"-{high / 60:.0f}" if high else "")
        print(f"{(at - start) / 60:12.0f}  {guess:>14}  {(end - at) / 60:17.0f}")
    durations = subprocess.run(
        [str(alkappa), "status", "results", "--durations"],
        cwd=clone,
        capture_output=True,
        text=True,
    )
    print("mean seconds per rule:\n" + durations.stdout)
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
