"""CPU time of this process and of the processes it waited for (an external code's run)."""

from __future__ import annotations

import time

try:
    import resource
except ImportError:  # not on Windows: only this process's own CPU time
    resource = None  # type: ignore[assignment]


def cpu_seconds() -> float:
    """CPU seconds (user + system, every thread) of this process and its finished children.

    The difference of two readings is what a piece of work cost in CPU time: a threaded
    library (tblite's OpenMP) counts every core it used; an external code run as a subprocess
    (a DFT code through ASE, also under ``mpirun``) counts once it has ended and been waited
    for, which ASE's calculators do.
    """
    own = time.process_time()
    if resource is None:
        return own
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own + children.ru_utime + children.ru_stime
