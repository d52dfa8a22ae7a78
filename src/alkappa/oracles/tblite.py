"""GFN1-xTB / GFN2-xTB through tblite: the default, embedded quantum-mechanical oracle.

Facts this module relies on:

- ``tblite.ase.TBLite`` gives energy, forces and, for periodic cells, stress
  (https://tblite.readthedocs.io/en/latest/users/ase.html). An SCF that does not converge in
  ``max_iterations`` raises ``ase.calculators.calculator.CalculationFailed`` ("SCF not converged
  in N cycles"), which :meth:`Oracle.label` turns into :class:`OracleError`.
- GFN1-xTB (Grimme, Bannwarth, Shushkov, JCTC 13, 1989 (2017)) and GFN2-xTB (Bannwarth, Ehlert,
  Grimme, JCTC 15, 1652 (2019)) are parametrised for Z = 1..86 (H..Rn). tblite 0.8 rejects
  anything heavier with "No support for elements with Z >86"; a single point for every
  element 1..86 was checked to run.
- tblite samples the Brillouin zone at the Γ point only (its API takes no k-points). A cell
  must therefore be a supercell: e.g. the 2-atom primitive cell of CuI does not even reach SCF
  convergence, while the 8-atom cubic cell does. :meth:`TBLiteOracle.check` warns when the
  narrowest cell width is below ``min_cell_width``.
- tblite parallelises with OpenMP. By default the OpenMP runtime decides the thread count
  (``OMP_NUM_THREADS``, else the CPUs this process may use). The ``threads`` option limits
  the threads for the duration of each calculation only, through the OpenMP runtime's
  ``omp_set_num_threads``; no environment variable is changed.
"""

from __future__ import annotations

import ctypes
import os
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.data import chemical_symbols
from tblite.ase import TBLite

from alkappa.oracles._base import Oracle, OracleInputError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ase import Atoms

#: method name -> default fidelity label
METHODS = {"GFN1-xTB": "gfn1", "GFN2-xTB": "gfn2", "IPEA1-xTB": "ipea1"}

#: heaviest element with GFN1/GFN2-xTB parameters in tblite (Rn)
MAX_Z = 86

# OpenMP runtimes that tblite may be linked against (GNU, LLVM, Intel; Linux and macOS names).
_OPENMP_LIBRARIES = (
    "libgomp.so.1",
    "libomp.so",
    "libomp.so.5",
    "libiomp5.so",
    "libgomp.1.dylib",
    "libomp.dylib",
)


def _loaded_openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime already loaded into this process (by tblite), or None."""
    noload = getattr(os, "RTLD_NOLOAD", None)
    if noload is None:  # e.g. Windows: no way to ask for an already-loaded library
        return None
    for name in _OPENMP_LIBRARIES:
        try:
            # NOLOAD: only a runtime that is already mapped, i.e. the one tblite uses
            lib = ctypes.CDLL(name, mode=noload | os.RTLD_LAZY)
        except OSError:
            continue
        if hasattr(lib, "omp_set_num_threads") and hasattr(lib, "omp_get_max_threads"):
            return lib
    return None


@contextmanager
def openmp_threads(n: int | None) -> Iterator[None]:
    """Limit OpenMP parallel regions started from this thread to ``n`` threads, then restore.

    ``None`` leaves the runtime alone. If no OpenMP runtime can be found, a warning is issued
    and nothing changes (``OMP_NUM_THREADS`` then still applies).
    """
    if n is None:
        yield
        return
    lib = _loaded_openmp_runtime()
    if lib is None:
        warnings.warn(
            "tblite: could not find the OpenMP runtime to set the thread count; "
            "set OMP_NUM_THREADS before starting Python instead",
            RuntimeWarning,
            stacklevel=3,
        )
        yield
        return
    previous = int(lib.omp_get_max_threads())
    lib.omp_set_num_threads(int(n))
    try:
        yield
    finally:
        lib.omp_set_num_threads(previous)


class _ThreadLimitedTBLite(TBLite):
    """TBLite whose calculations run with a fixed OpenMP thread count."""

    def __init__(self, *, threads: int | None = None, **kwargs: Any) -> None:
        self._threads = threads
        super().__init__(**kwargs)

    def calculate(self, *args: Any, **kwargs: Any) -> None:
        with openmp_threads(self._threads):
            super().calculate(*args, **kwargs)


def _min_cell_width(atoms: Atoms) -> float:
    """Smallest distance between opposite faces of the cell, over the periodic directions."""
    cell = atoms.cell.array
    volume = abs(np.linalg.det(cell))
    widths = [
        volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
        for k in range(3)
        if atoms.pbc[k]
    ]
    return min(widths) if widths else np.inf


class TBLiteOracle(Oracle):
    """Extended tight binding (GFN1-xTB by default) through tblite.

    Parameters
    ----------
    fidelity
        Fidelity label; default ``gfn1``/``gfn2``/``ipea1`` after ``method``.
    method
        ``"GFN1-xTB"`` (default), ``"GFN2-xTB"`` or ``"IPEA1-xTB"``.
    accuracy
        tblite's numerical accuracy (smaller is tighter; tblite default 1.0).
    electronic_temperature
        Fermi smearing temperature in K (tblite default 300 K).
    max_iterations
        SCF iteration limit; not converging within it is an :class:`OracleError`.
    verbosity
        tblite print level; 0 is silent.
    threads
        OpenMP threads per calculation; ``None`` leaves the OpenMP default.
    min_cell_width
        Warn (Γ-point-only sampling) when a periodic cell is narrower than this, in Å;
        0 disables the warning.
    """

    def __init__(
        self,
        fidelity: str | None = None,
        method: str = "GFN1-xTB",
        accuracy: float = 1.0,
        electronic_temperature: float = 300.0,
        max_iterations: int = 250,
        verbosity: int = 0,
        threads: int | None = None,
        min_cell_width: float = 10.0,
    ) -> None:
        if method not in METHODS:
            raise OracleInputError(
                f"tblite: unknown method '{method}'; choose one of {', '.join(METHODS)}"
            )
        if threads is not None and int(threads) < 1:
            raise OracleInputError(f"tblite: threads must be >= 1 (got {threads})")
        if max_iterations < 1:
            raise OracleInputError(f"tblite: max_iterations must be >= 1 (got {max_iterations})")
        self.default_fidelity = METHODS[method]
        super().__init__(
            fidelity,
            method=method,
            accuracy=accuracy,
            electronic_temperature=electronic_temperature,
            max_iterations=max_iterations,
            verbosity=verbosity,
            threads=threads,
            min_cell_width=min_cell_width,
        )

    @property
    def supported_elements(self) -> set[str]:
        return set(chemical_symbols[1 : MAX_Z + 1])

    def check(self, atoms: Atoms) -> None:
        super().check(atoms)
        width = _min_cell_width(atoms)
        if width < self.options["min_cell_width"]:
            warnings.warn(
                f"tblite samples only the Γ point, but this cell is only {width:.2f} Å wide; "
                "use a larger supercell (or lower min_cell_width to silence this)",
                UserWarning,
                stacklevel=2,
            )

    def make_calculator(self) -> TBLite:
        opts = self.options
        return _ThreadLimitedTBLite(
            threads=opts["threads"],
            method=opts["method"],
            accuracy=opts["accuracy"],
            electronic_temperature=opts["electronic_temperature"],
            max_iterations=opts["max_iterations"],
            verbosity=opts["verbosity"],
        )

    def describe(self) -> str:
        return f"tblite {self.options['method']}"
