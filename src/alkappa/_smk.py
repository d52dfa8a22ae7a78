"""Support for the Snakemake ``script:`` wrappers: logging and thread placement."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator


def set_threads(threads: int) -> None:
    """Use exactly ``threads`` cores in this process (OpenMP, BLAS and torch).

    Snakemake gives each job its ``threads``; without this every library would start one
    thread per core of the node and many parallel jobs would oversubscribe it.
    """
    threads = max(1, int(threads))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    # torch reads OMP_NUM_THREADS when it is imported; only an already imported torch needs
    # telling (importing it here would cost seconds in jobs that never use it)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _finished_line(snakemake: Any, seconds: float) -> str:
    """The last line of every job's log: so no log is empty, and each says what it made."""
    outputs = [str(p) for p in snakemake.output]
    shown = ", ".join(outputs[:3]) + (f" and {len(outputs) - 3} more" if len(outputs) > 3 else "")
    rule = getattr(snakemake, "rule", "job")
    return f"{rule}: finished in {seconds:.1f} s; wrote {shown or 'nothing'}"


@contextlib.contextmanager
def script_context(snakemake: Any) -> Iterator[dict[str, Any]]:
    """Redirect output to the rule's log, set threads, and yield the rule's ``settings``;
    the log ends with a line saying the job finished, in how long, and what it wrote."""
    log = snakemake.log[0] if len(snakemake.log) else None
    set_threads(snakemake.threads)
    start = time.perf_counter()
    if log is None:
        yield snakemake.params.get("settings", {})
        return
    with (
        open(log, "a", buffering=1) as fh,
        contextlib.redirect_stdout(fh),
        contextlib.redirect_stderr(fh),
    ):
        try:
            yield snakemake.params.get("settings", {})
        except BaseException:
            # the traceback in the log too, where the user is told to look (Snakemake
            # prints the job's stderr, which gets it once more when the error propagates)
            traceback.print_exc()
            raise
        print(_finished_line(snakemake, time.perf_counter() - start))
