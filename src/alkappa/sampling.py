"""Initial structures: harmonic (phonopy) thermal displacements or Gaussian rattling."""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alkappa.io.dataset import read_dataset, write_dataset

if TYPE_CHECKING:
    from collections.abc import Callable

    from ase import Atoms
    from phonopy import Phonopy

    from alkappa.settings import InitialSettings


def phonopy_for_supercell(supercell: Atoms) -> Phonopy:
    """A :class:`phonopy.Phonopy` whose unit cell is ``supercell`` itself (identity matrix)."""
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    unit = PhonopyAtoms(
        symbols=supercell.get_chemical_symbols(),
        cell=np.asarray(supercell.cell),
        scaled_positions=supercell.get_scaled_positions(),
        masses=supercell.get_masses(),
    )
    # 'P': the supercell is treated as its own primitive cell, so phonopy samples exactly the
    # normal modes commensurate with the simulation cell
    return Phonopy(unit, supercell_matrix=np.eye(3, dtype=int), primitive_matrix="P")


def finite_displacements(supercell: Atoms, distance: float) -> tuple[Phonopy, list[Atoms]]:
    """Symmetry-reduced finite displacements for harmonic force constants of ``supercell``."""
    phonon = phonopy_for_supercell(supercell)
    phonon.generate_displacements(distance=distance)
    frames = []
    for i, sc in enumerate(phonon.supercells_with_displacements):
        atoms = supercell.copy()
        atoms.calc = None
        atoms.positions = sc.positions
        atoms.info.update({"source": "fc2", "frame_index": i})
        frames.append(atoms)
    return phonon, frames


def harmonic_samples(
    supercell: Atoms,
    force_sets: np.ndarray,
    phonon: Phonopy,
    *,
    temperature: float,
    n_frames: int,
    seed: int,
) -> list[Atoms]:
    """Thermal displacements of ``supercell`` from its harmonic force constants.

    Uses phonopy's random displacements at finite temperature (normal-mode amplitudes drawn
    from the harmonic canonical distribution; see phonopy's documentation of
    ``generate_displacements(number_of_snapshots=..., temperature=...)``). Imaginary modes,
    if any, are skipped by phonopy.
    """
    phonon.forces = np.asarray(force_sets)
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()
    phonon.generate_displacements(
        number_of_snapshots=n_frames, temperature=temperature, random_seed=seed
    )
    frames = []
    for i, disp in enumerate(np.asarray(phonon.displacements)):
        atoms = supercell.copy()
        atoms.calc = None
        atoms.positions = supercell.positions + disp
        atoms.info.update({"source": "harmonic", "temperature": temperature, "frame_index": i})
        frames.append(atoms)
    return frames


def rattled_samples(supercell: Atoms, *, stdev: float, n_frames: int, seed: int) -> list[Atoms]:
    """Copies of ``supercell`` with Gaussian displacements of standard deviation ``stdev`` (Å)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_frames):
        atoms = supercell.copy()
        atoms.calc = None
        atoms.positions = supercell.positions + rng.normal(0.0, stdev, size=(len(atoms), 3))
        atoms.info.update({"source": "rattle", "frame_index": i})
        frames.append(atoms)
    return frames


def sample_structures(
    supercell: Atoms,
    settings: InitialSettings,
    label: Callable[[list[Atoms], str], list[Atoms]],
    *,
    temperature: float,
    n_frames: int,
    seed: int,
    keep: str | Path | None = None,
) -> list[Atoms]:
    """Unlabelled thermal samples per the config's ``initial`` section (its ``method``,
    ``rattle_stdev`` and ``displacement``; the temperature, number and seed are arguments).

    ``label(frames, purpose)`` labels the finite-displacement frames the harmonic method needs.
    With ``keep`` (a directory), the samples are written there before anything labels them,
    under a hash of everything they are drawn from, and a rerun reads them back instead of
    drawing again: the structures an interrupted labelling paid for are then bit for bit the
    ones the rerun asks for (a fresh draw can differ in the last digits: threaded linear
    algebra, degenerate eigenvectors).
    """
    if settings.method == "rattle":
        inputs: list[Any] = ["rattle", settings.rattle_stdev, n_frames, seed]
        draw = partial(
            rattled_samples, supercell, stdev=settings.rattle_stdev, n_frames=n_frames, seed=seed
        )
    else:
        phonon, displaced = finite_displacements(supercell, settings.displacement)
        labelled = label(displaced, "fc2")
        if len(labelled) != len(displaced):
            raise RuntimeError(
                "the oracle failed on a finite-displacement structure (see the failure record "
                "in the material's oracle/ directory); rerun to retry a transient failure, or "
                "fix the cause and run `alkappa oracle-retry results/<material>`"
            )
        forces = np.array([a.get_forces() for a in labelled])
        inputs = ["harmonic", settings.displacement, temperature, n_frames, seed, forces]
        draw = partial(
            harmonic_samples,
            supercell,
            forces,
            phonon,
            temperature=temperature,
            n_frames=n_frames,
            seed=seed,
        )
    if keep is None:
        return draw()
    path = Path(keep) / f"samples-{_digest(supercell, inputs)}.extxyz"
    if not path.exists():
        write_dataset(path, draw())
    frames = read_dataset(path)
    for atoms in frames:
        atoms.calc = None
    return frames


def _digest(supercell: Atoms, inputs: list[Any]) -> str:
    # rounded: the same draw on another machine (other thread counts, last-bit differences in
    # the relaxed cell or the oracle forces) finds the same file
    h = hashlib.sha256()
    for array in (supercell.numbers, supercell.positions, np.asarray(supercell.cell)):
        h.update(np.ascontiguousarray(np.round(np.asarray(array, float), 5)).tobytes())
    for item in inputs:
        h.update(
            np.ascontiguousarray(np.round(item, 5)).tobytes()
            if isinstance(item, np.ndarray)
            else repr(item).encode()
        )
    return h.hexdigest()[:16]
