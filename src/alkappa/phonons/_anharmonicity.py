"""The anharmonicity score sigma^A of Knoop, Purcell, Scheffler, Carbogno.

Reference: F. Knoop, T. A. R. Purcell, M. Scheffler, C. Carbogno, "Anharmonicity measure for
materials", Phys. Rev. Materials 4, 083809 (2020), Eqs. (7)-(9)::

    F^A = F - F^(2),        F^(2)_I = - sum_J Phi_IJ u_J,

    sigma^A = sqrt( sum_{I,alpha} <(F^A_{I,alpha})^2> / sum_{I,alpha} <(F_{I,alpha})^2> ),

with ``u`` the displacements from the reference (equilibrium) structure and ``Phi`` the
harmonic force constants of the supercell. The sums run over all atoms and Cartesian
components and the average over the frames of a trajectory (the thermodynamic average);
restricting the atom sums to one species gives sigma^A per species, and dropping the frame
average gives sigma^A per frame (``sigma_per_sample`` in FHI-vibes). FHI-vibes divides by
the *standard deviation* of the forces (``anharmonicity_score.get_sigma``: RMSE / STD); the
two agree when the mean force vanishes, as it does in a crystal at equilibrium. Here the
ratio of the root sums of squares is used, exactly as written above.

Harmonic forces come, in this order of preference, from the force constants the caller gives
(a ``phonopy_params.yaml`` written by :func:`~alkappa.phonons.write_harmonic`, or a full
force-constant array in the trajectory's atom order), from the variable ``forces_harmonic``
of the trajectory (FHI-vibes writes it when given force constants), or from its
``force_constants_remapped`` variable (FHI-vibes, dimensions (Ia, Jb), i.e. (3N, 3N)).
Displacements are ``positions - positions_reference`` under the minimum-image convention of
the reference lattice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.geometry import find_mic

from alkappa.phonons._common import jsonable

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    import xarray as xr
    from ase import Atoms
    from numpy.typing import ArrayLike


@dataclass(frozen=True)
class AnharmonicityScore:
    """sigma^A of a set of frames.

    Attributes
    ----------
    total
        Over all atoms, components and frames.
    per_species
        The same restricted to the atoms of each species (in order of first appearance).
    per_frame
        One value per frame (all atoms).
    n_frames
        Frames used (frames with non-finite forces are dropped).
    harmonic_source
        Where the harmonic forces came from.
    """

    total: float
    per_species: dict[str, float]
    per_frame: np.ndarray = field(repr=False)
    n_frames: int
    harmonic_source: str = "arrays"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (per-frame values as a list)."""
        return jsonable(
            {
                "sigma_A": self.total,
                "sigma_A_per_species": self.per_species,
                "sigma_A_per_frame": self.per_frame,
                "n_frames": self.n_frames,
                "harmonic_source": self.harmonic_source,
            }
        )


def sigma_a(
    forces: ArrayLike,
    forces_harmonic: ArrayLike,
    symbols: Sequence[str] | None = None,
    *,
    harmonic_source: str = "arrays",
) -> AnharmonicityScore:
    """sigma^A from forces and harmonic forces of shape (n_frames, n_atoms, 3) or (n_atoms, 3).

    Frames with non-finite values in either array are dropped. ``symbols`` (one per atom)
    enables the per-species values.
    """
    f = np.asarray(forces, dtype=float)
    fh = np.asarray(forces_harmonic, dtype=float)
    if f.ndim == 2:
        f, fh = f[None], fh[None]
    if f.shape != fh.shape or f.ndim != 3 or f.shape[-1] != 3:
        raise ValueError(
            f"forces {f.shape} and harmonic forces {fh.shape} must both be (frames, atoms, 3)"
        )
    ok = np.isfinite(f).all(axis=(1, 2)) & np.isfinite(fh).all(axis=(1, 2))
    f, fh = f[ok], fh[ok]
    if len(f) == 0:
        raise ValueError("no frame with finite forces and harmonic forces")
    anharmonic_sq = (f - fh) ** 2
    force_sq = f**2
    per_species: dict[str, float] = {}
    if symbols is not None:
        sym = np.asarray(list(symbols))
        if len(sym) != f.shape[1]:
            raise ValueError(f"{len(sym)} symbols for {f.shape[1]} atoms")
        for species in dict.fromkeys(sym.tolist()):
            mask = sym == species
            per_species[species] = _ratio(anharmonic_sq[:, mask].sum(), force_sq[:, mask].sum())
    frame_a, frame_f = anharmonic_sq.sum(axis=(1, 2)), force_sq.sum(axis=(1, 2))
    per_frame = np.array([_ratio(a, b) for a, b in zip(frame_a, frame_f, strict=True)])
    return AnharmonicityScore(
        total=_ratio(anharmonic_sq.sum(), force_sq.sum()),
        per_species=per_species,
        per_frame=per_frame,
        n_frames=len(f),
        harmonic_source=harmonic_source,
    )


def harmonic_forces(displacements: ArrayLike, force_constants: ArrayLike) -> np.ndarray:
    """``F = -Phi u`` for displacements (n_frames, N, 3) or (N, 3).

    ``force_constants`` is the full supercell matrix, shape (N, N, 3, 3) (phonopy's layout,
    ``Phi[i, j, a, b] = d^2 E / du_ia du_jb``) or (3N, 3N) (FHI-vibes' ``Ia, Jb`` layout), in
    eV/Å^2 with displacements in Å.
    """
    u = np.asarray(displacements, dtype=float)
    single = u.ndim == 2
    if single:
        u = u[None]
    n = u.shape[1]
    fc = np.asarray(force_constants, dtype=float)
    if fc.shape == (n, n, 3, 3):
        fc = fc.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
    if fc.shape != (3 * n, 3 * n):
        raise ValueError(f"force constants of shape {fc.shape} do not fit {n} atoms")
    f = -np.einsum("ij,tj->ti", fc, u.reshape(len(u), 3 * n)).reshape(u.shape)
    return f[0] if single else f


def read_force_constants(path: str | os.PathLike[str], reference: Atoms) -> np.ndarray:
    """Full force constants (N, N, 3, 3) for the atoms of ``reference``, in its atom order.

    ``path`` is a phonopy yaml file with force constants (``phonopy_params.yaml`` of
    :func:`~alkappa.phonons.write_harmonic`, or a directory holding one): its supercell is
    matched atom by atom to ``reference`` (same lattice, positions equal up to lattice
    vectors), so the atom order of either may be anything. Any other file (``.npy``, phonopy's
    ``FORCE_CONSTANTS`` or ``force_constants.hdf5``/``fc2.hdf5`` in full (N, N) form) is taken
    to be in ``reference``'s atom order already.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "phonopy_params.yaml"
    n = len(reference)
    if p.suffix in (".yaml", ".yml", ".xz"):
        from phonopy.harmonic.force_constants import compact_fc_to_full_fc

        from alkappa.phonons._harmonic import load_phonopy

        phonon = load_phonopy(p)
        fc = np.asarray(phonon.force_constants)
        if fc.shape[0] != fc.shape[1]:
            fc = compact_fc_to_full_fc(phonon.primitive, fc)
        order = match_atoms(reference, phonon.supercell)
        return fc[np.ix_(order, order)]
    if p.suffix == ".npy":
        fc = np.load(p)
    elif p.suffix in (".hdf5", ".h5"):
        from phonopy.file_IO import read_force_constants_hdf5

        fc = read_force_constants_hdf5(str(p))
    else:
        from phonopy.file_IO import parse_FORCE_CONSTANTS

        fc = parse_FORCE_CONSTANTS(str(p))
    fc = np.asarray(fc, dtype=float)
    if fc.shape == (3 * n, 3 * n):
        fc = fc.reshape(n, 3, n, 3).transpose(0, 2, 1, 3)
    if fc.shape != (n, n, 3, 3):
        raise ValueError(
            f"{p}: force constants of shape {fc.shape}; need the full ({n}, {n}, 3, 3) "
            "matrix of the trajectory's supercell (compact force constants need a phonopy "
            "yaml file with the structure)"
        )
    return fc


def match_atoms(reference: Atoms, cell: Any, tolerance: float = 0.1) -> np.ndarray:
    """Index into ``cell`` (phonopy or ASE) of each atom of ``reference``.

    The lattices must agree; atoms match if they have the same symbol and their positions
    differ by a lattice vector to within ``tolerance`` (Å).
    """
    lattice = np.asarray(cell.cell, dtype=float)
    ref_lattice = np.asarray(reference.cell, dtype=float)
    if not np.allclose(lattice, ref_lattice, atol=1e-3 * max(1.0, np.abs(lattice).max())):
        raise ValueError(
            "the force constants belong to a different supercell (lattice "
            f"{lattice.round(4).tolist()}, trajectory {ref_lattice.round(4).tolist()})"
        )
    symbols = list(cell.symbols) if hasattr(cell, "symbols") else cell.get_chemical_symbols()
    positions = np.asarray(cell.positions, dtype=float)
    if len(positions) != len(reference):
        raise ValueError(
            f"the force constants are for {len(positions)} atoms, the trajectory has "
            f"{len(reference)}"
        )
    ref_symbols = reference.get_chemical_symbols()
    order = np.empty(len(reference), dtype=int)
    for i, r in enumerate(reference.positions):
        _, dist = find_mic(positions - r, ref_lattice, pbc=True)
        j = int(np.argmin(dist))
        if dist[j] > tolerance or symbols[j] != ref_symbols[i]:
            raise ValueError(
                f"atom {i} ({ref_symbols[i]}) of the trajectory has no counterpart in the "
                f"force constants' supercell (nearest: {dist[j]:.3f} Å away)"
            )
        order[i] = j
    if len(set(order.tolist())) != len(order):
        raise ValueError("atoms of the trajectory map onto the same atom of the force constants")
    return order


def anharmonicity_from_trajectory(
    path: str | os.PathLike[str],
    force_constants: str | os.PathLike[str] | None = None,
) -> AnharmonicityScore:
    """sigma^A of a trajectory file (alkappa's netCDF or FHI-vibes' ``trajectory.nc``).

    See the module docstring for where the harmonic forces come from.
    """
    from alkappa.io.trajectory import read_trajectory

    ds = read_trajectory(path)
    try:
        return anharmonicity_from_dataset(ds, force_constants)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def anharmonicity_from_dataset(
    ds: xr.Dataset, force_constants: str | os.PathLike[str] | None = None
) -> AnharmonicityScore:
    """sigma^A of a trajectory dataset (see :func:`anharmonicity_from_trajectory`)."""
    from alkappa.io.reference import vibes_reference_atoms

    if "forces" not in ds:
        raise ValueError("the trajectory has no 'forces' variable")
    reference = vibes_reference_atoms(ds)
    forces = ds["forces"].values
    symbols = reference.get_chemical_symbols()
    if force_constants is not None:
        fc = read_force_constants(force_constants, reference)
        fh = harmonic_forces(_displacements(ds, reference), fc)
        source = f"force constants {force_constants}"
    elif "forces_harmonic" in ds:
        fh = ds["forces_harmonic"].values
        source = "forces_harmonic in the trajectory"
    elif "force_constants_remapped" in ds:
        fh = harmonic_forces(_displacements(ds, reference), ds["force_constants_remapped"].values)
        source = "force_constants_remapped in the trajectory"
    else:
        raise ValueError(
            "no harmonic forces: the trajectory has neither 'forces_harmonic' nor "
            "'force_constants_remapped'; give force constants"
        )
    return sigma_a(forces, fh, symbols, harmonic_source=source)


def _displacements(ds: xr.Dataset, reference: Atoms) -> np.ndarray:
    """Displacements (frames, N, 3) from the reference under the minimum-image convention."""
    if "positions" not in ds:
        if "displacements" in ds:
            return ds["displacements"].values
        raise ValueError("the trajectory has neither positions nor displacements")
    if "positions_reference" in ds:
        ref_pos = ds["positions_reference"].values
    else:
        ref_pos = reference.positions
    positions = ds["positions"].values
    out = np.empty_like(positions)
    for k, pos in enumerate(positions):
        if np.isfinite(pos).all():
            out[k] = find_mic(pos - ref_pos, reference.cell, pbc=reference.pbc)[0]
        else:
            out[k] = np.nan
    return out


def _ratio(numerator: float, denominator: float) -> float:
    return float(np.sqrt(numerator / denominator)) if denominator > 0 else float("nan")
