"""Relaxation of positions and cell with the oracle."""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, TypedDict, cast

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.constraints import FixSymmetry
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

from alkappa._timing import cpu_seconds
from alkappa.io.dataset import with_labels

if TYPE_CHECKING:
    from ase import Atoms


class RelaxRecord(TypedDict):
    """How a structure was relaxed (:meth:`RelaxResult.record`, JSON)."""

    converged: bool
    steps: int
    oracle_calls: int
    seconds: float  # wall
    cpu_seconds: float
    energy: float
    max_force: float
    max_stress: float
    cell_before: list[list[float]]
    cell_after: list[list[float]]


@dataclass(frozen=True)
class RelaxResult:
    """A relaxed structure and how it was obtained."""

    atoms: Atoms
    converged: bool
    steps: int
    oracle_calls: int
    seconds: float  # wall
    cpu_seconds: float
    energy: float
    max_force: float
    max_stress: float
    cell_before: list[list[float]]
    cell_after: list[list[float]]

    def record(self) -> RelaxRecord:
        """Everything but the structure, for a JSON record."""
        out = asdict(self)
        out.pop("atoms")
        return cast("RelaxRecord", out)


class _CountingCalculator(Calculator):
    """Delegates to another calculator and counts the single points it computes."""

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, inner: Calculator) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):  # type: ignore[no-untyped-def]
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = self.inner
        self.calls += 1
        self.results = {
            "energy": work.get_potential_energy(),
            "free_energy": work.get_potential_energy(),
            "forces": work.get_forces(),
        }
        if work.pbc.all() and has_stress(self.inner):
            self.results["stress"] = work.get_stress(voigt=True)


def has_stress(calculator: Calculator) -> bool:
    """Whether ``calculator`` computes the stress (some oracles, e.g. legacy models, do not)."""
    return "stress" in getattr(calculator, "implemented_properties", ("stress",))


def relax_structure(
    atoms: Atoms,
    calculator: Calculator,
    *,
    cell: bool = True,
    keep_symmetry: bool = True,
    fmax: float = 0.01,
    max_steps: int = 100,
    logfile: str | None = None,
) -> RelaxResult:
    """Relax positions (and the cell) of ``atoms`` with BFGS on the Frechet cell filter.

    ``keep_symmetry`` adds :class:`ase.constraints.FixSymmetry`, which keeps the space group of
    the input (a perfect crystal stays perfect: its forces vanish by symmetry).
    """
    if cell and not has_stress(calculator):
        raise ValueError(
            "cell relaxation needs the stress, which this oracle does not compute; "
            "set relax.cell: false"
        )
    work = atoms.copy()
    counting = _CountingCalculator(calculator)
    work.calc = counting
    if keep_symmetry:
        work.set_constraint(FixSymmetry(work))
    target = FrechetCellFilter(work) if cell else work
    start, cpu_start = time.perf_counter(), cpu_seconds()
    opt = BFGS(target, logfile=logfile)
    with warnings.catch_warnings():
        # FrechetCellFilter takes scipy's logm of a deformation close to the identity, whose
        # error estimate is relative to a nearly zero logarithm: harmless, printed every step
        warnings.filterwarnings("ignore", "logm result may be inaccurate", RuntimeWarning)
        converged = bool(opt.run(fmax=fmax, steps=max_steps))
    energy = float(work.get_potential_energy())
    forces = work.get_forces()
    stress = work.get_stress(voigt=True) if work.pbc.all() and has_stress(calculator) else None
    relaxed = with_labels(work, energy, np.asarray(forces), stress)
    relaxed.set_constraint()
    return RelaxResult(
        atoms=relaxed,
        converged=converged,
        steps=int(opt.nsteps),
        oracle_calls=counting.calls,
        seconds=time.perf_counter() - start,
        cpu_seconds=cpu_seconds() - cpu_start,
        energy=energy,
        max_force=float(np.linalg.norm(forces, axis=1).max()),
        max_stress=float(np.abs(stress).max()) if stress is not None else 0.0,
        cell_before=np.asarray(atoms.cell).tolist(),
        cell_after=np.asarray(work.cell).tolist(),
    )
