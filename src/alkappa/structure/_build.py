"""Unit cells from files or specs, supercells, and geometry sanity checks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import ase.build
import ase.io
import numpy as np
from ase.geometry import get_distances

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ase import Atoms

#: two atoms closer than this (Å) are treated as overlapping input
MIN_ALLOWED_DISTANCE = 0.5


class StructureSpec(TypedDict, total=False):
    """The config's ``structure`` block: exactly one of ``file``, ``build`` and ``crystal``."""

    file: str
    format: str | None
    #: keyword arguments of :func:`ase.build.bulk`
    build: Mapping[str, object]
    #: keyword arguments of :func:`ase.spacegroup.crystal`
    crystal: Mapping[str, object]


def read_unit_cell(spec: StructureSpec) -> Atoms:
    """The unit cell described by the config's ``structure`` block.

    ``{file: path, format: optional}`` reads any ASE-readable file (the last image if it has
    several); ``{build: {name: ..., crystalstructure: ..., a: ...}}`` calls :func:`ase.build.bulk`;
    ``{crystal: {symbols: [...], basis: [[x, y, z], ...], spacegroup: 62, cellpar: [a, b, c,
    alpha, beta, gamma]}}`` builds the cell from the space group and the Wyckoff positions of the
    asymmetric unit (:func:`ase.spacegroup.crystal`; e.g. chalcopyrite or Pnma SnSe).
    """
    if "file" in spec:
        path = Path(spec["file"])
        if not path.is_file():
            raise FileNotFoundError(f"structure file {path} does not exist")
        try:
            atoms = ase.io.read(path, index=-1, format=spec.get("format"))
        except Exception as exc:  # any parser error of a foreign file: one line naming it
            reason = str(exc) or type(exc).__name__
            raise ValueError(f"structure file {path} cannot be read: {reason}") from exc
        if isinstance(atoms, list) or len(atoms) == 0:
            raise ValueError(f"structure file {path} holds no atoms")
    elif "build" in spec:
        kwargs = dict(spec["build"])
        try:
            atoms = ase.build.bulk(**kwargs)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise ValueError(f"ase.build.bulk({_kwargs(kwargs)}) failed: {exc}") from exc
    elif "crystal" in spec:
        from ase.spacegroup import crystal
        from ase.spacegroup.spacegroup import SpacegroupError

        kwargs = dict(spec["crystal"])
        try:
            atoms = crystal(**kwargs)
        except (ValueError, KeyError, TypeError, RuntimeError, SpacegroupError) as exc:
            raise ValueError(f"ase.spacegroup.crystal({_kwargs(kwargs)}) failed: {exc}") from exc
    else:
        raise ValueError("give one of 'file', 'build' or 'crystal'")
    atoms.calc = None
    if not atoms.pbc.all():
        raise ValueError("the structure must be periodic in all three directions")
    return atoms


def supercell_matrix(supercell: list[int] | list[list[int]]) -> np.ndarray:
    """The 3x3 integer matrix of three repetitions or of a matrix; ``ValueError`` if it is
    not a non-singular 3x3 matrix."""
    matrix = np.asarray(supercell, dtype=int)
    if matrix.shape == (3,):
        matrix = np.diag(matrix)
    if matrix.shape != (3, 3) or round(abs(np.linalg.det(matrix))) < 1:
        raise ValueError(f"supercell {supercell} is not a valid (non-singular) 3x3 matrix")
    return matrix


def build_supercell(unit_cell: Atoms, supercell: list[int] | list[list[int]]) -> Atoms:
    """The supercell given as three repetitions or a 3x3 integer matrix."""
    matrix = supercell_matrix(supercell)
    atoms = ase.build.make_supercell(unit_cell, matrix)
    atoms.calc = None
    return atoms


def resize_supercell(
    unit_cell: Atoms,
    relaxed: Atoms,
    supercell: list[int] | list[list[int]],
    new_supercell: list[int] | list[list[int]],
) -> Atoms:
    """The ``new_supercell`` of ``unit_cell`` with the lattice of ``relaxed``.

    ``relaxed`` is the ``supercell`` of ``unit_cell`` after relaxation; its lattice divided by
    the supercell matrix is the relaxed unit lattice, which the new cell repeats with the unit
    cell's fractional positions (relax them afterwards if the structure has free internal
    coordinates).
    """
    matrix = supercell_matrix(supercell).astype(float)
    lattice = np.linalg.solve(matrix, np.asarray(relaxed.cell, dtype=float))
    unit = unit_cell.copy()
    unit.set_cell(lattice, scale_atoms=True)
    return build_supercell(unit, new_supercell)


def nearest_neighbour_distance(atoms: Atoms) -> float:
    """Shortest interatomic distance under periodic boundary conditions (Å)."""
    if len(atoms) == 1:
        return float(min(np.linalg.norm(atoms.cell, axis=1)))
    _, dist = get_distances(atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    dist[np.diag_indices_from(dist)] = np.inf
    return float(dist.min())


def check_geometry(atoms: Atoms, min_distance: float = MIN_ALLOWED_DISTANCE) -> None:
    """Raise ``ValueError`` naming the pair if two atoms overlap (a neighbour list within
    ``min_distance``: linear in the number of atoms, so large supercells cost no memory)."""
    from ase.neighborlist import neighbor_list

    if len(atoms) < 2 and not atoms.pbc.any():
        return
    i, j, dist = neighbor_list("ijd", atoms, min_distance)
    if len(dist):
        k = int(np.argmin(dist))
        a, b = int(i[k]), int(j[k])
        sym = atoms.get_chemical_symbols()
        what = (
            f"atom {a} ({sym[a]}) and its periodic image"
            if a == b
            else (f"atoms {a} ({sym[a]}) and {b} ({sym[b]})")
        )
        raise ValueError(
            f"{what} are {dist[k]:.3f} Å apart (overlapping; minimum allowed {min_distance} Å)"
        )


def _kwargs(kwargs: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
