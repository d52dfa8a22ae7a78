"""Harmonic phonons with phonopy: force constants, band structure, DOS, imaginary modes.

The structure handed to :func:`run_harmonic` is usually the pipeline's relaxed *supercell*
with the identity supercell matrix: phonopy's ``primitive_matrix="auto"`` finds the primitive
cell inside it (Togo, Chaput, Tadano, Tanaka, J. Phys.: Condens. Matter 35, 353001 (2023);
phonopy documentation, "Phonopy API"), so the displaced supercells are exactly the cell the
MLIP was trained on and no unit cell needs to be reconstructed. A unit cell with a supercell
matrix works the same way.

Force constants come from finite displacements (phonopy's symmetry-reduced set, default
0.01 Å) and are symmetrised (translational invariance and index permutation). The band path is
the HPKOT path of the primitive cell (Hinuma et al., Comput. Mater. Sci. 128, 140 (2017)) from
seekpath's ``get_path_orig_cell``, which gives the special points in the reciprocal basis of
phonopy's own primitive cell (no standardisation, so no basis mismatch). The DOS uses the
tetrahedron method; the per-species DOS sums phonopy's atom-projected DOS.

Units: frequencies in THz (imaginary frequencies as negative numbers, phonopy's convention),
force constants in eV/Å^2, path distances in 1/Å (without 2π), DOS in states/THz per
primitive cell.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import xarray as xr

from alkappa.io import atomic_path, write_json, write_netcdf
from alkappa.phonons._common import (
    DEFAULT_SYMPREC,
    displaced_frames,
    evaluate_forces,
    jsonable,
    quiet_phonopy,
    supercell_matrix_3x3,
    to_phonopy_atoms,
)

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from ase import Atoms
    from numpy.typing import ArrayLike
    from phonopy import Phonopy

    from alkappa.io import DataVariable
    from alkappa.phonons._common import ForceSource

#: frequencies below this (THz) count as imaginary, away from the acoustic modes at Gamma
IMAGINARY_THRESHOLD = -0.1

#: largest eigenvector array (bytes) computed for the per-species projected DOS
_MAX_EIGENVECTOR_BYTES = 400e6


class ImaginaryModeWarning(UserWarning):
    """Phonons with imaginary frequencies: the structure is not a minimum of the potential."""


class ImaginaryMode(TypedDict):
    """A mode below the imaginary threshold (:func:`find_imaginary_modes`)."""

    where: str  # "mesh" or "band path"
    qpoint: list[float]  # reduced coordinates
    band: int
    frequency: float  # THz (negative: imaginary)


@dataclass(frozen=True)
class HarmonicResult:
    """Force constants and harmonic phonon properties of one potential.

    Attributes
    ----------
    phonon
        The :class:`phonopy.Phonopy` object holding the (symmetrised) force constants.
    dataset
        Band structure, DOS and mesh frequencies (see :func:`phonon_properties`).
    imaginary_modes
        Modes below the threshold on the mesh and along the path (see
        :func:`find_imaginary_modes`), each a dict with ``where``, ``qpoint``, ``band``,
        ``frequency``.
    n_supercells
        Displaced supercells the force constants needed (force calculations).
    """

    phonon: Phonopy
    dataset: xr.Dataset
    imaginary_modes: list[ImaginaryMode]
    n_supercells: int

    @property
    def warning(self) -> str | None:
        """A one-line warning about imaginary modes, or None."""
        return imaginary_warning(self.imaginary_modes)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (counts, frequency range, imaginary modes, warning)."""
        ds = self.dataset
        freqs = ds["mesh_frequency"].values
        return jsonable(
            {
                "n_supercells": self.n_supercells,
                "n_atoms_supercell": len(self.phonon.supercell),
                "n_atoms_primitive": len(self.phonon.primitive),
                "primitive_symbols": list(self.phonon.primitive.symbols),
                "supercell_matrix": np.asarray(self.phonon.supercell_matrix).tolist(),
                "primitive_matrix": np.asarray(self.phonon.primitive_matrix).tolist(),
                "displacement": ds.attrs.get("displacement"),
                "mesh": ds.attrs["mesh"],
                "frequency_min": float(freqs.min()),
                "frequency_max": float(freqs.max()),
                "imaginary_threshold": ds.attrs.get("imaginary_threshold"),
                "n_imaginary_modes": len(self.imaginary_modes),
                "imaginary_modes": self.imaginary_modes[:50],
                "warning": self.warning,
            }
        )


def make_phonopy(
    structure: Atoms,
    *,
    supercell_matrix: ArrayLike | None = None,
    primitive_matrix: str | ArrayLike | None = "auto",
    symprec: float = DEFAULT_SYMPREC,
) -> Phonopy:
    """A :class:`phonopy.Phonopy` for ``structure`` (a unit cell or an already built supercell).

    ``supercell_matrix=None`` (identity) treats ``structure`` itself as the supercell; the
    primitive cell is found by symmetry (``"auto"``), or give ``"P"`` or a matrix.
    """
    from phonopy import Phonopy

    with quiet_phonopy():
        return Phonopy(
            to_phonopy_atoms(structure),
            supercell_matrix=supercell_matrix_3x3(supercell_matrix),
            primitive_matrix=primitive_matrix,
            symprec=symprec,
        )


def primitive_lattice(structure: Atoms, *, symprec: float = DEFAULT_SYMPREC) -> np.ndarray:
    """The lattice (rows, Å) of the primitive cell :func:`make_phonopy` finds for ``structure``.

    The same ``"auto"`` primitive matrix phonopy uses (from spglib's symmetry dataset), without
    building a :class:`phonopy.Phonopy`, whose atom permutations under every symmetry operation
    of the supercell cost ~0.2 s a structure: cheap enough for validating a config.
    """
    from phonopy.structure.cells import guess_primitive_matrix

    matrix = guess_primitive_matrix(to_phonopy_atoms(structure), symprec=symprec)
    return np.asarray(matrix).T @ np.asarray(structure.cell)


def run_harmonic(
    structure: Atoms,
    forces: ForceSource,
    *,
    supercell_matrix: ArrayLike | None = None,
    primitive_matrix: str | ArrayLike | None = "auto",
    displacement: float = 0.01,
    mesh: float | Sequence[int] = (20, 20, 20),
    band_npoints: int = 51,
    imaginary_threshold: float = IMAGINARY_THRESHOLD,
    symprec: float = DEFAULT_SYMPREC,
) -> HarmonicResult:
    """Harmonic force constants of ``structure`` by finite displacements, and its phonons.

    Parameters
    ----------
    structure
        Relaxed structure: the simulation supercell (with ``supercell_matrix=None``) or a unit
        cell (with its supercell matrix).
    forces
        An ASE calculator, or a function ``frames -> forces`` (one (n_atoms, 3) array per
        frame, e.g. oracle labelling with its record). Frames carry ``info["source"] = "fc2"``.
    supercell_matrix, primitive_matrix, symprec
        See :func:`make_phonopy`.
    displacement
        Finite displacement (Å).
    mesh
        q-mesh for the DOS and mesh frequencies: three numbers, or a length (Å) from which
        phonopy derives them.
    band_npoints
        q-points on the longest path segment (others in proportion).
    imaginary_threshold
        See :func:`find_imaginary_modes`; imaginary modes also raise an
        :class:`ImaginaryModeWarning`.
    """
    phonon = make_phonopy(
        structure,
        supercell_matrix=supercell_matrix,
        primitive_matrix=primitive_matrix,
        symprec=symprec,
    )
    phonon.generate_displacements(distance=displacement, is_plusminus="auto")
    frames, _ = displaced_frames(phonon.supercells_with_displacements, "fc2")
    phonon.forces = evaluate_forces(frames, forces)
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()
    dataset = phonon_properties(
        phonon, mesh=mesh, band_npoints=band_npoints, imaginary_threshold=imaginary_threshold
    )
    dataset.attrs["displacement"] = float(displacement)
    dataset.attrs["n_supercells"] = len(frames)
    imaginary = imaginary_modes_of(dataset, imaginary_threshold)
    message = imaginary_warning(imaginary)
    if message:
        warnings.warn(message, ImaginaryModeWarning, stacklevel=2)
    return HarmonicResult(phonon, dataset, imaginary, len(frames))


def phonon_properties(
    phonon: Phonopy,
    *,
    mesh: float | Sequence[int] = (20, 20, 20),
    band_npoints: int = 51,
    imaginary_threshold: float = IMAGINARY_THRESHOLD,
) -> xr.Dataset:
    """Band structure, DOS and mesh frequencies of a :class:`phonopy.Phonopy` with force constants.

    Returns
    -------
    xarray.Dataset
        ``band_distance`` (path_qpoint), ``band_frequency`` (path_qpoint, band),
        ``band_qpoint`` (path_qpoint, reciprocal; reduced coordinates of the primitive cell),
        ``band_segment`` (path_qpoint); ``dos_total`` (dos_frequency) and, for primitive cells
        small enough, ``dos_species`` (species, dos_frequency); ``mesh_qpoint`` (qpoint,
        reciprocal), ``mesh_weight`` (qpoint) and ``mesh_frequency`` (qpoint, band) on the
        symmetry-reduced Gamma-centred mesh. Attributes: ``band_labels`` (JSON list of
        ``[start, end]`` per segment), ``band_connections`` (1 if a segment continues into the
        next), ``mesh``, ``n_imaginary_modes``, ``imaginary_warning`` and structure info.
    """
    if phonon.force_constants is None:
        raise ValueError("the Phonopy object has no force constants")
    segments, labels, connections = band_path(phonon.primitive, band_npoints)
    phonon.run_band_structure(segments, path_connections=connections)
    bands = phonon.band_structure
    band_q = np.concatenate([np.asarray(q) for q in bands.qpoints])
    band_d = np.concatenate([np.asarray(d) for d in bands.distances])
    band_f = np.concatenate([np.asarray(f) for f in bands.frequencies])
    band_seg = np.concatenate([np.full(len(q), k, dtype=int) for k, q in enumerate(bands.qpoints)])

    # mesh frequencies on the irreducible wedge (weights), Gamma-centred like phono3py's grid
    phonon.run_mesh(mesh, is_mesh_symmetry=True, is_gamma_center=True)
    mesh_numbers = [int(n) for n in phonon.mesh.mesh_numbers]
    mesh_q = np.asarray(phonon.mesh.qpoints, dtype=float)
    mesh_w = np.asarray(phonon.mesh.weights, dtype=int)
    mesh_f = np.asarray(phonon.mesh.frequencies, dtype=float)

    n_band = mesh_f.shape[1]
    symbols = list(phonon.primitive.symbols)
    species = list(dict.fromkeys(symbols))
    data_vars: dict[str, DataVariable] = {
        "band_distance": (("path_qpoint",), band_d),
        "band_frequency": (("path_qpoint", "band"), band_f),
        "band_qpoint": (("path_qpoint", "reciprocal"), band_q),
        "band_segment": (("path_qpoint",), band_seg),
        "mesh_qpoint": (("qpoint", "reciprocal"), mesh_q),
        "mesh_weight": (("qpoint",), mesh_w),
        "mesh_frequency": (("qpoint", "band"), mesh_f),
    }
    n_full = int(np.prod(mesh_numbers))
    if n_full * n_band * n_band * 16 <= _MAX_EIGENVECTOR_BYTES:
        phonon.run_mesh(
            mesh_numbers, is_mesh_symmetry=False, with_eigenvectors=True, is_gamma_center=True
        )
        phonon.run_projected_dos()
        dos_freq = np.asarray(phonon.projected_dos.frequency_points, dtype=float)
        projected = np.asarray(phonon.projected_dos.projected_dos, dtype=float)
        per_species = np.array(
            [projected[[i for i, s in enumerate(symbols) if s == sp]].sum(axis=0) for sp in species]
        )
        data_vars["dos_species"] = (("species", "dos_frequency"), per_species)
        data_vars["dos_total"] = (("dos_frequency",), projected.sum(axis=0))
    else:
        phonon.run_total_dos()
        dos_freq = np.asarray(phonon.total_dos.frequency_points, dtype=float)
        data_vars["dos_total"] = (("dos_frequency",), np.asarray(phonon.total_dos.dos, dtype=float))

    ds = xr.Dataset(
        data_vars,
        coords={"dos_frequency": dos_freq, "species": species, "band": np.arange(n_band)},
        attrs={
            "band_labels": json.dumps(labels),
            "band_connections": [int(c) for c in connections],
            "mesh": mesh_numbers,
            "n_atoms_primitive": len(symbols),
            "n_atoms_supercell": len(phonon.supercell),
            "primitive_symbols": symbols,
            "primitive_cell": np.asarray(phonon.primitive.cell).ravel().tolist(),
            "imaginary_threshold": float(imaginary_threshold),
            "frequency_unit": "THz",
        },
    )
    ds["band_distance"].attrs["units"] = "1/Angstrom"
    for name in ("band_frequency", "mesh_frequency", "dos_frequency"):
        ds[name].attrs["units"] = "THz"
    ds["dos_total"].attrs["units"] = "states/THz per primitive cell"
    imaginary = imaginary_modes_of(ds, imaginary_threshold)
    ds.attrs["n_imaginary_modes"] = len(imaginary)
    ds.attrs["imaginary_warning"] = imaginary_warning(imaginary) or ""
    return ds


def band_path(
    primitive: Any, npoints: int = 51
) -> tuple[list[np.ndarray], list[list[str]], list[bool]]:
    """The HPKOT band path of ``primitive`` (a phonopy cell) in its own reciprocal basis.

    Returns the q-points of each segment (reduced coordinates, end points included), the
    ``[start, end]`` labels of each segment (``GAMMA`` for the zone centre, seekpath's names
    otherwise) and whether each segment continues into the next.
    """
    import seekpath

    cell = np.asarray(primitive.cell, dtype=float)
    structure = (cell, np.asarray(primitive.scaled_positions), np.asarray(primitive.numbers))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seekpath's warnings on edge cases of the lattice
        path = seekpath.get_path_orig_cell(structure)
    coords = {k: np.asarray(v, dtype=float) for k, v in path["point_coords"].items()}
    ends = [(coords[a], coords[b]) for a, b in path["path"]]
    reciprocal = np.linalg.inv(cell).T  # rows: reciprocal vectors without 2π
    lengths = [float(np.linalg.norm((b - a) @ reciprocal)) for a, b in ends]
    longest = max(lengths) or 1.0
    segments = []
    for (a, b), length in zip(ends, lengths, strict=True):
        n = max(2, round(npoints * length / longest))
        segments.append(np.array([a + (b - a) * i / (n - 1) for i in range(n)]))
    labels = [[str(a), str(b)] for a, b in path["path"]]
    connections = [
        k + 1 < len(labels) and labels[k][1] == labels[k + 1][0] for k in range(len(labels))
    ]
    return segments, labels, connections


def find_imaginary_modes(
    qpoints: ArrayLike,
    frequencies: ArrayLike,
    threshold: float = IMAGINARY_THRESHOLD,
    *,
    where: str = "mesh",
) -> list[ImaginaryMode]:
    """Modes with frequency below ``threshold`` (THz; imaginary ones are negative).

    The three acoustic modes at Gamma (and at q-points equivalent to it) are not reported:
    their frequencies are zero up to numerical noise. Returns one dict per mode with
    ``where``, ``qpoint`` (reduced), ``band`` and ``frequency``, lowest frequency first.
    """
    q = np.atleast_2d(np.asarray(qpoints, dtype=float))
    f = np.atleast_2d(np.asarray(frequencies, dtype=float))
    found = []
    for k in range(len(q)):
        order = np.argsort(f[k])
        skip = set(order[:3].tolist()) if np.allclose(q[k], np.round(q[k]), atol=1e-8) else set()
        for band in np.nonzero(f[k] < threshold)[0]:
            if int(band) not in skip:
                found.append(
                    {
                        "where": where,
                        "qpoint": [float(x) for x in q[k]],
                        "band": int(band),
                        "frequency": float(f[k, band]),
                    }
                )
    return sorted(found, key=lambda m: m["frequency"])


def imaginary_modes_of(dataset: xr.Dataset, threshold: float) -> list[ImaginaryMode]:
    """Imaginary modes on the mesh and along the band path of a :func:`phonon_properties` set."""
    modes = find_imaginary_modes(
        dataset["mesh_qpoint"].values, dataset["mesh_frequency"].values, threshold, where="mesh"
    )
    modes += find_imaginary_modes(
        dataset["band_qpoint"].values,
        dataset["band_frequency"].values,
        threshold,
        where="band path",
    )
    return sorted(modes, key=lambda m: m["frequency"])


def imaginary_warning(modes: Sequence[ImaginaryMode]) -> str | None:
    """One line describing ``modes`` (from :func:`find_imaginary_modes`), or None if empty."""
    if not modes:
        return None
    worst = min(modes, key=lambda m: m["frequency"])
    q = ", ".join(f"{x:.3f}" for x in worst["qpoint"])
    return (
        f"WARNING: {len(modes)} imaginary phonon mode(s) on the q-mesh and band path; lowest "
        f"{worst['frequency']:.3f} THz at q = ({q}) ({worst['where']}): the structure is not a "
        "stable minimum of this potential, and thermal conductivity from these force "
        "constants is unreliable"
    )


def write_harmonic(result: HarmonicResult, directory: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``phonopy_params.yaml`` (structure, displacements, forces, force constants),
    ``phonons.nc`` (:attr:`HarmonicResult.dataset`) and ``phonons.json`` (the summary).

    Returns the paths by kind (``phonopy``, ``netcdf``, ``summary``).
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    paths = {
        "phonopy": root / "phonopy_params.yaml",
        "netcdf": root / "phonons.nc",
        "summary": root / "phonons.json",
    }
    save_phonopy(result.phonon, paths["phonopy"])
    write_netcdf(result.dataset, paths["netcdf"])
    write_json(paths["summary"], result.summary())
    return paths


def save_phonopy(phonon: Phonopy, path: str | os.PathLike[str]) -> None:
    """Write ``phonon`` with its force constants as a ``phonopy_params.yaml``-like file."""
    with atomic_path(path) as tmp:
        phonon.save(filename=tmp, settings={"force_constants": True})


def load_phonopy(path: str | os.PathLike[str], *, symprec: float = DEFAULT_SYMPREC) -> Phonopy:
    """A :class:`phonopy.Phonopy` with force constants from a ``phonopy_params.yaml`` file."""
    import phonopy

    with quiet_phonopy():
        return phonopy.load(Path(path), symprec=symprec, log_level=0)
