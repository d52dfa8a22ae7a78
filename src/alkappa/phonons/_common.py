"""Shared plumbing: ASE <-> phonopy structures, force evaluation, working directories."""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from ase.calculators.calculator import BaseCalculator
    from numpy.typing import ArrayLike
    from phonopy.structure.atoms import PhonopyAtoms

    #: forces of a list of structures: an ASE calculator, or a function returning one
    #: (n_atoms, 3) array per structure (e.g. labelling through the oracle's record)
    ForceSource = BaseCalculator | Callable[[list[Atoms]], Sequence[ArrayLike]]

#: phonopy's default tolerance (Å) is tight; relaxed structures carry a little noise
DEFAULT_SYMPREC = 1e-4


def to_phonopy_atoms(atoms: Atoms) -> PhonopyAtoms:
    """``atoms`` as :class:`phonopy.structure.atoms.PhonopyAtoms` (symbols, cell, masses)."""
    from phonopy.structure.atoms import PhonopyAtoms

    if not atoms.pbc.all():
        raise ValueError("phonons need a structure periodic in all three directions")
    return PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=np.asarray(atoms.cell),
        scaled_positions=atoms.get_scaled_positions(wrap=False),
        masses=atoms.get_masses(),
    )


def to_ase_atoms(cell: PhonopyAtoms) -> Atoms:
    """A periodic :class:`ase.Atoms` with the symbols, cell, positions and masses of ``cell``."""
    atoms = Atoms(
        symbols=list(cell.symbols),
        cell=np.asarray(cell.cell),
        positions=np.asarray(cell.positions),
        pbc=True,
    )
    if cell.masses is not None:
        atoms.set_masses(np.asarray(cell.masses))
    return atoms


def supercell_matrix_3x3(matrix: ArrayLike | None) -> np.ndarray:
    """Three repetitions or a 3x3 integer matrix as a 3x3 matrix; ``None`` is the identity."""
    if matrix is None:
        return np.eye(3, dtype=int)
    m = np.asarray(matrix)
    if m.shape == (3,):
        m = np.diag(m)
    if m.shape != (3, 3) or not np.allclose(m, np.round(m)) or round(abs(np.linalg.det(m))) < 1:
        raise ValueError(f"supercell matrix {matrix!r} is not a non-singular 3x3 integer matrix")
    return np.round(m).astype(int)


def displaced_frames(
    supercells: Sequence[PhonopyAtoms | None], source: str
) -> tuple[list[Atoms], list[int]]:
    """ASE copies of phonopy's displaced supercells, skipping ``None`` (not needed) entries.

    Returns the frames and their indices into ``supercells``. Each frame's ``info`` holds
    ``source`` and ``frame_index`` (the index into ``supercells``).
    """
    frames, indices = [], []
    for i, cell in enumerate(supercells):
        if cell is None:
            continue
        atoms = to_ase_atoms(cell)
        atoms.info.update({"source": source, "frame_index": i})
        frames.append(atoms)
        indices.append(i)
    return frames, indices


def evaluate_forces(frames: list[Atoms], forces: ForceSource) -> np.ndarray:
    """Forces (n_frames, n_atoms, 3) in eV/Å of ``frames`` from a calculator or a function.

    A calculator is recognised by its ``get_forces`` method; anything else is called with the
    list of frames and must return one force array per frame, in order.
    """
    if not frames:
        return np.zeros((0, 0, 3))
    if hasattr(forces, "get_forces"):
        out = []
        for frame in frames:
            work = frame.copy()
            work.calc = forces
            out.append(np.array(work.get_forces(), dtype=float))
            work.calc = None
        result = np.array(out)
    else:
        result = np.array([np.asarray(f, dtype=float) for f in forces(frames)])  # type: ignore[operator]
    n_atoms = len(frames[0])
    if result.shape != (len(frames), n_atoms, 3):
        raise RuntimeError(
            f"expected forces of shape {(len(frames), n_atoms, 3)}, got {result.shape} "
            "(did the force calculation fail on some structures?)"
        )
    if not np.isfinite(result).all():
        raise RuntimeError("non-finite forces on a displaced supercell")
    return result


@contextlib.contextmanager
def working_directory(path: str | os.PathLike[str]) -> Iterator[None]:
    """Run the block in ``path`` (phono3py writes its hdf5 files to the working directory)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def quiet_phonopy() -> Iterator[None]:
    """Silence phonopy's notice that ``primitive_matrix="auto"`` found a smaller cell.

    alkappa asks for ``"auto"`` on purpose (the structure may be a supercell).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"primitive_matrix defaulted to 'auto'")
        yield


def jsonable(value: Any) -> Any:
    """Numpy scalars and arrays inside ``value`` as plain Python (for JSON and attributes)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value
