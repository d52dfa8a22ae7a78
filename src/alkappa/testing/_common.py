"""What both contract mixins share: the author's values, run-time registration, derivatives."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from alkappa import _plugins

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ase import Atoms

#: Voigt order of ASE's stress: xx, yy, zz, yz, xz, xy
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def provided(cls: type, name: str) -> Any:
    """The value the contract's author gave as ``name``: a class attribute or a method.

    A method is called on a fresh instance (the mixins have no constructor arguments). The
    result is a deep copy, so a test cannot change what the next test sees.
    """
    value = getattr(cls, name, None)
    if value is None:
        raise NotImplementedError(
            f"{cls.__name__} must provide '{name}' (a class attribute or a method)"
        )
    if callable(value):
        value = getattr(cls(), name)()
    return copy.deepcopy(value)


@contextmanager
def registered(group: str, name: str, plugin: Any | None) -> Iterator[None]:
    """Register ``plugin`` as ``name`` in ``group`` for the block (nothing if ``None``)."""
    if plugin is None:
        yield
        return
    runtime = _plugins._runtime[group]
    previous = runtime.get(name)
    _plugins.register(group, name, plugin)
    try:
        yield
    finally:
        if previous is None:
            runtime.pop(name, None)
        else:
            runtime[name] = previous


def entry_point_names(group: str) -> set[str]:
    """Names of the installed entry points of ``group`` (not the run-time registrations)."""
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group=group)}


def pick_components(n_atoms: int, count: int | None, seed: int = 0) -> list[tuple[int, int]]:
    """``count`` (atom, axis) pairs drawn without replacement (``None``: all of them)."""
    every = [(i, axis) for i in range(n_atoms) for axis in range(3)]
    if count is None or count >= len(every):
        return every
    chosen = np.random.default_rng(seed).choice(len(every), size=count, replace=False)
    return [every[k] for k in sorted(chosen)]


def numerical_forces(
    energy: Callable[[Atoms], float],
    atoms: Atoms,
    components: list[tuple[int, int]],
    step: float,
) -> np.ndarray:
    """Minus the central-difference gradient of ``energy`` for each (atom, axis)."""
    out = []
    for i, axis in components:
        values = []
        for sign in (1.0, -1.0):
            moved = atoms.copy()
            moved.positions[i, axis] += sign * step
            values.append(energy(moved))
        out.append(-(values[0] - values[1]) / (2.0 * step))
    return np.array(out)


def numerical_stress(energy: Callable[[Atoms], float], atoms: Atoms, step: float) -> np.ndarray:
    """Voigt stress ``(1/V) dE/d(eps)`` by central differences of a symmetric strain.

    The cell and the atoms are strained together (ASE's convention: positive stress means
    the cell wants to shrink).
    """
    cell = atoms.cell.array
    out = np.zeros(6)
    for k, (a, b) in enumerate(VOIGT):
        values = []
        for sign in (1.0, -1.0):
            strain = np.eye(3)
            strain[a, b] += 0.5 * sign * step
            strain[b, a] += 0.5 * sign * step
            moved = atoms.copy()
            moved.set_cell(cell @ strain, scale_atoms=True)
            values.append(energy(moved))
        out[k] = (values[0] - values[1]) / (2.0 * step)
    return out / atoms.get_volume()


def voigt(stress: np.ndarray) -> np.ndarray:
    """A stress as the 6 Voigt components (from 6 or 3x3)."""
    stress = np.asarray(stress, dtype=float)
    if stress.shape == (3, 3):
        return np.array([stress[a, b] for a, b in VOIGT])
    return stress.reshape(6)
