"""The oracle interface: a reference method that labels structures with energy, forces, stress."""

from __future__ import annotations

import subprocess
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator

from alkappa._timing import cpu_seconds
from alkappa.oracles.spec import (
    DEFAULT_RETRIES,
    DEFAULT_RETRY_DELAY,
    OracleSpec,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ase import Atoms
    from ase.calculators.calculator import Calculator


class OracleError(RuntimeError):
    """An oracle call that failed (SCF not converged, code crashed, ...).

    ``transient`` marks a failure that may not happen again on the same structure (a lost
    node, a file system or network error, a killed process): alkappa retries those
    (``oracle.retries``) and a rerun tries them again; a permanent failure (the method itself
    failed on this structure) is recorded and skipped until ``alkappa oracle-retry``.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


#: exception types of an external code's failure that a retry may cure
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # also TimeoutError, ConnectionError, BrokenPipeError
    MemoryError,
    subprocess.SubprocessError,  # a crashed or timed-out process (e.g. a killed MPI job)
)


def call_policy(spec: OracleSpec | Mapping[str, Any]) -> tuple[int, float]:
    """``(retries, first delay in seconds)`` of an oracle spec or config ``oracle`` block
    (defaults 2, 30)."""
    if isinstance(spec, OracleSpec):
        return spec.call_policy()
    return int(spec.get("retries", DEFAULT_RETRIES)), float(
        spec.get("retry_delay", DEFAULT_RETRY_DELAY)
    )


class OracleInputError(ValueError):
    """A structure or setting the oracle cannot handle (raised before any calculation)."""


class Oracle(ABC):
    """Base class of all oracles.

    Subclasses implement :meth:`make_calculator` and, when the method covers only part of the
    periodic table, :attr:`supported_elements`. Options come from the config's ``oracle`` block
    (everything except ``name`` and ``fidelity``) as keyword arguments.

    Parameters
    ----------
    fidelity
        Label written into every frame this oracle produces (e.g. ``gfn1``, ``pbe``).
    **options
        Plugin-specific settings.
    """

    #: the default fidelity label when the config gives none
    default_fidelity: str = "reference"

    def __init__(self, fidelity: str | None = None, **options: Any) -> None:
        self.fidelity = fidelity or self.default_fidelity
        self.options = options

    @property
    def supported_elements(self) -> set[str] | None:
        """Chemical symbols the method can handle; ``None`` means any."""
        return None

    @abstractmethod
    def make_calculator(self) -> Calculator:
        """A fresh ASE calculator for this oracle."""

    def check(self, atoms: Atoms) -> None:
        """Raise :class:`OracleInputError` if ``atoms`` cannot be labelled by this oracle."""
        supported = self.supported_elements
        if supported is None:
            return
        missing = sorted(set(atoms.get_chemical_symbols()) - supported)
        if missing:
            raise OracleInputError(
                f"oracle '{self.describe()}' does not support element(s) {', '.join(missing)}"
            )

    def describe(self) -> str:
        """Short human-readable name, e.g. ``tblite GFN1-xTB``."""
        return type(self).__name__

    def label(self, atoms: Atoms) -> Atoms:
        """Compute energy, forces and (for periodic cells) stress of ``atoms``.

        Returns a copy with a :class:`~ase.calculators.singlepoint.SinglePointCalculator`
        holding the results and ``info`` entries ``fidelity``, ``oracle``, ``oracle_seconds``
        (wall) and ``oracle_cpu_seconds`` (this process and its finished children). Raises
        :class:`OracleError` if the calculation fails.
        """
        self.check(atoms)
        work = atoms.copy()
        work.calc = self.make_calculator()
        start, cpu_start = time.perf_counter(), cpu_seconds()
        try:
            energy = float(work.get_potential_energy())
            forces = np.array(work.get_forces(), dtype=float)
            # a method without stress (e.g. some legacy models) still labels energy and forces
            want_stress = work.pbc.all() and "stress" in getattr(
                work.calc, "implemented_properties", ()
            )
            stress = np.array(work.get_stress(voigt=True), dtype=float) if want_stress else None
        except OracleInputError:
            raise
        except Exception as exc:  # any failure of the external code is an oracle failure
            raise OracleError(
                f"{self.describe()} failed: {type(exc).__name__}: {exc}",
                transient=isinstance(exc, TRANSIENT_ERRORS),
            ) from exc
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
        if not np.all(np.isfinite(forces)) or not np.isfinite(energy):
            raise OracleError(f"{self.describe()} returned non-finite energy or forces")
        out = atoms.copy()
        results: dict[str, float | np.ndarray] = {"energy": energy, "forces": forces}
        if stress is not None:
            results["stress"] = stress
        out.calc = SinglePointCalculator(out, **results)
        out.info.update(
            {
                "fidelity": self.fidelity,
                "oracle": self.describe(),
                "oracle_seconds": seconds,
                "oracle_cpu_seconds": cpu,
            }
        )
        return out
