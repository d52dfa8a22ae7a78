"""Third-order force constants and lattice thermal conductivity with phono3py.

Method (Togo, Chaput, Tanaka, Phys. Rev. B 91, 094306 (2015); Togo, Chaput, Tadano, Tanaka,
J. Phys.: Condens. Matter 35, 353001 (2023); phono3py documentation, "Phono3py API" and
"Thermal conductivity"):

* **fc3** (and fc2, from the same supercells) by finite pair displacements in the supercell,
  optionally dropping pairs farther apart than ``cutoff_pair_distance`` (their fc3 elements are
  then zero), solved and symmetrised by phono3py's own solver; or, for large cells, by
  supercells with random displacements of all atoms solved by symfc (Seko, Togo, Phys. Rev. B
  110, 214302 (2024)), optionally with a cutoff on fc3.
* **kappa** in the relaxation-time approximation (RTA) and, optionally, from the direct
  solution of the linearised Boltzmann equation (LBTE; Chaput, Phys. Rev. Lett. 110, 265506
  (2013)), on a Gamma-centred q-mesh with the tetrahedron method (or Gaussian smearing
  ``sigma``). The LBTE run also yields the RTA values, so with ``lbte=True`` only one run is
  made. Non-analytical (LO-TO) corrections are not applied: no Born charges are used.
* **Per mode**: the linewidth ``gamma`` is phono3py's imaginary part of the self-energy
  (THz); the lifetime is ``tau = 1 / (2 * 2 pi * gamma)`` in ps for gamma in THz (phono3py
  documentation, "Output files", ``gamma``). Modes with ``gamma = 0`` (acoustic modes at
  Gamma, below phono3py's cutoff frequency) get ``tau = NaN``.

* **Classical statistics** (to compare with classical MD and Green-Kubo): phono3py has no
  switch for classical occupations, so the classical limit is taken from one run at a very
  high reference temperature (:func:`classical_from_high_temperature` has the derivation).
* **Commensurate q-points**: ``mesh="commensurate"`` (or a (3, 3) integer matrix) gives
  phono3py a generalized regular grid (Hart, Jorgensen, Morgan, Forcade, J. Phys. Commun. 3,
  065009 (2019); phono3py documentation, ``--grg``) that holds exactly the q-points of a supercell
  (:func:`commensurate_mesh`), e.g. those an MD cell samples.

Units of the datasets: kappa in W/(m K), frequencies and gamma in THz, tau in ps, group
velocities in THz·Å (= 100 m/s), mode heat capacities in eV/K; Voigt order xx, yy, zz, yz, xz,
xy (phono3py's).
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr

from alkappa.io import atomic_path, write_json
from alkappa.phonons._common import (
    DEFAULT_SYMPREC,
    displaced_frames,
    evaluate_forces,
    jsonable,
    quiet_phonopy,
    supercell_matrix_3x3,
    to_phonopy_atoms,
    working_directory,
)

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from ase import Atoms
    from numpy.typing import ArrayLike
    from phono3py import Phono3py

    from alkappa.io import DataVariable
    from alkappa.phonons._common import ForceSource

    MeshSpec = int | Sequence[int] | Sequence[Sequence[int]] | np.ndarray | str

VOIGT = ("xx", "yy", "zz", "yz", "xz", "xy")
STATISTICS = ("quantum", "classical")
#: reference temperature (K) of the classical limit; see :func:`classical_from_high_temperature`
CLASSICAL_REFERENCE_TEMPERATURE = 1.0e5


@dataclass(frozen=True)
class Fc3Result:
    """Second- and third-order force constants in a :class:`phono3py.Phono3py` object.

    Attributes
    ----------
    phono3py
        Holds the structure, the displacement dataset with forces, ``fc2`` and ``fc3``.
    method
        ``"displacements"`` (systematic pairs, phono3py's solver) or ``"random"`` (symfc).
    n_supercells
        Force calculations made for fc3 (and fc2 unless a separate phonon supercell is used).
    n_phonon_supercells
        Extra force calculations for fc2 in ``phonon_supercell_matrix`` (0 without it).
    cutoff_pair_distance
        The pair cutoff (Å) or None.
    """

    phono3py: Phono3py
    method: str
    n_supercells: int
    n_phonon_supercells: int
    cutoff_pair_distance: float | None

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description of how the force constants were obtained."""
        ph3 = self.phono3py
        return jsonable(
            {
                "method": self.method,
                "n_supercells": self.n_supercells,
                "n_phonon_supercells": self.n_phonon_supercells,
                "cutoff_pair_distance": self.cutoff_pair_distance,
                "n_atoms_supercell": len(ph3.supercell),
                "n_atoms_primitive": len(ph3.primitive),
                "supercell_matrix": np.asarray(ph3.supercell_matrix).tolist(),
                "phonon_supercell_matrix": None
                if ph3.phonon_supercell_matrix is None
                else np.asarray(ph3.phonon_supercell_matrix).tolist(),
                "primitive_matrix": np.asarray(ph3.primitive_matrix).tolist(),
                "phono3py_version": ph3.version,
            }
        )


def make_phono3py(
    structure: Atoms,
    *,
    supercell_matrix: ArrayLike | None = None,
    primitive_matrix: str | ArrayLike | None = "auto",
    phonon_supercell_matrix: ArrayLike | None = None,
    symprec: float = DEFAULT_SYMPREC,
) -> Phono3py:
    """A :class:`phono3py.Phono3py` for ``structure``; see :func:`~alkappa.phonons.make_phonopy`."""
    from phono3py import Phono3py

    with quiet_phonopy():
        return Phono3py(
            to_phonopy_atoms(structure),
            supercell_matrix=supercell_matrix_3x3(supercell_matrix),
            primitive_matrix=primitive_matrix,
            phonon_supercell_matrix=None
            if phonon_supercell_matrix is None
            else supercell_matrix_3x3(phonon_supercell_matrix),
            symprec=symprec,
        )


def fc3_displacements(
    structure: Atoms,
    *,
    supercell_matrix: ArrayLike | None = None,
    primitive_matrix: str | ArrayLike | None = "auto",
    phonon_supercell_matrix: ArrayLike | None = None,
    displacement: float = 0.03,
    cutoff_pair_distance: float | None = None,
    random_snapshots: int | Literal["auto"] | None = None,
    random_seed: int = 0,
    symprec: float = DEFAULT_SYMPREC,
) -> Phono3py:
    """A :class:`phono3py.Phono3py` with its fc3 (and fc2) displacements generated.

    ``random_snapshots=None`` gives phono3py's systematic pair displacements (distance
    ``displacement``, pairs beyond ``cutoff_pair_distance`` dropped); an integer or ``"auto"``
    gives that many supercells with every atom displaced by ``displacement`` in a random
    direction (``"auto"``: symfc's estimate of the minimum number, times 4).
    """
    ph3 = make_phono3py(
        structure,
        supercell_matrix=supercell_matrix,
        primitive_matrix=primitive_matrix,
        phonon_supercell_matrix=phonon_supercell_matrix,
        symprec=symprec,
    )
    if random_snapshots is None:
        ph3.generate_displacements(distance=displacement, cutoff_pair_distance=cutoff_pair_distance)
    else:
        ph3.generate_displacements(
            distance=displacement,
            cutoff_pair_distance=cutoff_pair_distance,
            number_of_snapshots=random_snapshots,
            random_seed=random_seed,
        )
    return ph3


def count_fc3_supercells(structure: Atoms, **options: Any) -> int:
    """Number of supercells whose forces fc3 needs, for the options of :func:`fc3_displacements`.

    Cheap (symmetry only): use it to decide whether the oracle can afford its own fc3. For
    phono3py's systematic pair displacements of a simulation cell (no ``supercell_matrix``, no
    random snapshots) only the supercell's space group is searched (:class:`_SiteSymmetry`),
    not the primitive cell, atomic permutations and point group a full
    :class:`phono3py.Phono3py` sets up: about five times faster, which matters when a
    campaign of 100+ materials is planned.
    """
    systematic = options.get("random_snapshots") is None
    plain = all(options.get(k) is None for k in ("supercell_matrix", "phonon_supercell_matrix"))
    if systematic and plain:
        return _count_pair_displacements(
            structure,
            displacement=options.get("displacement", 0.03),
            cutoff_pair_distance=options.get("cutoff_pair_distance"),
            symprec=options.get("symprec", DEFAULT_SYMPREC),
        )
    ph3 = fc3_displacements(structure, **options)
    return sum(cell is not None for cell in ph3.supercells_with_displacements)


class _SiteSymmetry:
    """The part of :class:`phonopy.structure.symmetry.Symmetry` that phono3py's
    ``get_third_order_displacements`` reads (independent atoms, site symmetries, tolerance),
    from one spglib search of the cell."""

    def __init__(self, cell: Any, symprec: float) -> None:
        import spglib

        found = spglib.get_symmetry(cell.totuple(), symprec=symprec)
        if found is None:
            raise ValueError("spglib found no symmetry operations for the supercell")
        self._cell = cell
        self._rotations = np.asarray(found["rotations"], dtype="int64")
        self._translations = np.asarray(found["translations"], dtype="double")
        self._map_atoms = np.asarray(found["equivalent_atoms"], dtype="int64")
        self._symprec = symprec

    @property
    def tolerance(self) -> float:
        return self._symprec

    def get_independent_atoms(self) -> np.ndarray:
        return np.flatnonzero(self._map_atoms == np.arange(len(self._map_atoms)))

    def get_site_symmetry(self, atom: int) -> np.ndarray:
        """Rotations of the operations that map ``atom`` onto itself (modulo the lattice)."""
        pos = self._cell.scaled_positions[atom]
        diff = pos - (self._rotations @ pos + self._translations)
        diff -= np.rint(diff)
        fixed = np.linalg.norm(diff @ self._cell.cell, axis=1) < self._symprec
        return self._rotations[fixed]


def _count_pair_displacements(
    structure: Atoms, *, displacement: float, cutoff_pair_distance: float | None, symprec: float
) -> int:
    """Supercells of phono3py's systematic fc3 displacements (as ``Phono3py.
    generate_displacements`` makes them): one per first displacement, one per second
    displacement of a pair closer than the cutoff."""
    from phono3py.phonon3.displacement_fc3 import get_third_order_displacements

    cell = to_phonopy_atoms(structure)
    dataset = get_third_order_displacements(
        cell,
        _SiteSymmetry(cell, symprec),
        displacement,
        is_plusminus="auto",
        is_diagonal=True,  # Phono3py.generate_displacements' default
        cutoff_pair_distance=cutoff_pair_distance,
    )
    return sum(
        1 + sum(second.get("included", True) for second in first["second_atoms"])
        for first in dataset["first_atoms"]
    )


def run_fc3(
    structure: Atoms,
    forces: ForceSource,
    *,
    supercell_matrix: ArrayLike | None = None,
    primitive_matrix: str | ArrayLike | None = "auto",
    phonon_supercell_matrix: ArrayLike | None = None,
    displacement: float = 0.03,
    cutoff_pair_distance: float | None = None,
    random_snapshots: int | Literal["auto"] | None = None,
    random_seed: int = 0,
    symprec: float = DEFAULT_SYMPREC,
) -> Fc3Result:
    """fc2 and fc3 of ``structure`` from the forces of displaced supercells.

    Parameters
    ----------
    structure
        Relaxed structure: the simulation supercell (``supercell_matrix=None``) or a unit cell
        with its supercell matrix.
    forces
        An ASE calculator, or a function ``frames -> forces`` (one (n_atoms, 3) array per frame,
        e.g. oracle labelling with its record). Frames carry ``info["source"]`` ``"fc3"`` (or
        ``"fc2"`` for the phonon supercells) and ``info["frame_index"]``.
    phonon_supercell_matrix
        A larger supercell for fc2 (optional; relative to ``structure``).
    displacement, cutoff_pair_distance, random_snapshots, random_seed
        See :func:`fc3_displacements`. With random snapshots the force constants are solved by
        symfc (fc3 restricted to ``cutoff_pair_distance`` if given).
    """
    ph3 = fc3_displacements(
        structure,
        supercell_matrix=supercell_matrix,
        primitive_matrix=primitive_matrix,
        phonon_supercell_matrix=phonon_supercell_matrix,
        displacement=displacement,
        cutoff_pair_distance=cutoff_pair_distance,
        random_snapshots=random_snapshots,
        random_seed=random_seed,
        symprec=symprec,
    )
    cells = ph3.supercells_with_displacements
    frames, indices = displaced_frames(cells, "fc3")
    computed = evaluate_forces(frames, forces)
    all_forces = np.zeros((len(cells), len(ph3.supercell), 3))
    all_forces[indices] = computed  # pairs beyond the cutoff are not used by phono3py
    ph3.forces = all_forces

    n_phonon = 0
    if phonon_supercell_matrix is not None:
        phonon_frames, _ = displaced_frames(ph3.phonon_supercells_with_displacements, "fc2")
        ph3.phonon_forces = evaluate_forces(phonon_frames, forces)
        n_phonon = len(phonon_frames)

    if random_snapshots is None:
        ph3.produce_fc3()
        ph3.symmetrize_fc3()
        if phonon_supercell_matrix is None:
            ph3.symmetrize_fc2()
        method = "displacements"
    else:
        options = None if cutoff_pair_distance is None else f"|cutoff={cutoff_pair_distance}"
        ph3.produce_fc3(fc_calculator="symfc", fc_calculator_options=options)
        check_random_fit(ph3)
        method = "random"
    if phonon_supercell_matrix is not None:
        if random_snapshots is None:
            ph3.produce_fc2()
            ph3.symmetrize_fc2()
        else:
            ph3.produce_fc2(fc_calculator="symfc")
    return Fc3Result(ph3, method, len(frames), n_phonon, cutoff_pair_distance)


#: least share of the random snapshots' force variance the fitted fc2 must explain
MIN_HARMONIC_R2 = 0.8


def harmonic_r2(ph3: Phono3py) -> float:
    """Share of the variance of the displaced supercells' forces that fc2 alone explains,
    ``1 - sum|F + fc2 u|^2 / sum|F - <F>|^2`` (about 1 for small displacements)."""
    from phonopy.harmonic.force_constants import compact_fc_to_full_fc

    fc2 = np.asarray(ph3.fc2)
    if fc2.shape[0] != fc2.shape[1]:
        fc2 = compact_fc_to_full_fc(ph3.phonon_primitive, fc2)
    u = np.asarray(ph3.dataset["displacements"], dtype=float)
    f = np.asarray(ph3.dataset["forces"], dtype=float)
    residual = f + np.einsum("ijab,njb->nia", fc2, u)
    return float(1.0 - np.sum(residual**2) / np.sum((f - f.mean(axis=(0, 1))) ** 2))


def check_random_fit(ph3: Phono3py) -> None:
    """Refuse force constants fitted from too few random snapshots.

    symfc solves an under-determined fit without complaint and returns near-zero force
    constants (a 32-atom fcc cell with one snapshot: fc2 0.002 instead of 7.8 eV/Å^2), which
    would give phonon frequencies and lifetimes off by orders of magnitude. The harmonic part
    must explain most of the forces of the snapshots it was fitted to.
    """
    r2 = harmonic_r2(ph3)
    if r2 < MIN_HARMONIC_R2:
        n = len(ph3.dataset["displacements"])
        raise ValueError(
            f"fc2/fc3 from {n} random snapshots explain only {r2:.0%} of their forces: the fit "
            f"is under-determined; raise conductivity.random_snapshots (or use systematic "
            f"displacements, random_snapshots: null)"
        )


def write_fc3(result: Fc3Result, directory: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``phono3py_params.yaml`` (structure, displacements, forces), ``fc2.hdf5``,
    ``fc3.hdf5`` (phono3py's formats) and ``fc3.json`` (:meth:`Fc3Result.summary`).

    Returns the paths by kind (``phono3py``, ``fc2``, ``fc3``, ``summary``).
    """
    from phono3py.file_IO import write_fc2_to_hdf5, write_fc3_to_hdf5

    ph3 = result.phono3py
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    paths = {
        "phono3py": root / "phono3py_params.yaml",
        "fc2": root / "fc2.hdf5",
        "fc3": root / "fc3.hdf5",
        "summary": root / "fc3.json",
    }
    with atomic_path(paths["phono3py"]) as tmp:
        ph3.save(filename=tmp)
    with atomic_path(paths["fc3"]) as tmp:
        write_fc3_to_hdf5(
            ph3.fc3,
            fc3_nonzero_indices=ph3.fc3_nonzero_indices,
            filename=str(tmp),
            p2s_map=ph3.primitive.p2s_map,
            fc3_cutoff=ph3.fc3_cutoff,
        )
    with atomic_path(paths["fc2"]) as tmp:
        write_fc2_to_hdf5(ph3.fc2, filename=str(tmp), p2s_map=ph3.phonon_primitive.p2s_map)
    write_json(paths["summary"], result.summary())
    return paths


def load_fc3(directory: str | os.PathLike[str], *, symprec: float = DEFAULT_SYMPREC) -> Phono3py:
    """The :class:`phono3py.Phono3py` with fc2 and fc3 that :func:`write_fc3` wrote."""
    import phono3py

    root = Path(directory)
    with quiet_phonopy():
        return phono3py.load(
            root / "phono3py_params.yaml",
            fc2_filename=root / "fc2.hdf5",
            fc3_filename=root / "fc3.hdf5",
            is_nac=False,
            symprec=symprec,
            log_level=0,
        )


def commensurate_mesh(ph3: Phono3py, supercell_matrix: ArrayLike | None = None) -> np.ndarray:
    """Grid-generating matrix of the q-points commensurate with a supercell.

    A supercell of the *unit cell* with matrix S (phonopy's convention: supercell basis
    vectors as columns = unit-cell columns @ S) is, relative to the primitive cell with
    phonopy's primitive matrix P, the supercell N = P^-1 S. A q-point (reduced coordinates of
    the primitive reciprocal basis) is commensurate if exp(2 pi i q . R) = 1 for every
    supercell lattice vector R, i.e. if N^T q is integer: q = (N^T)^-1 n. phono3py's
    generalized regular grid with generating matrix G holds the points q = G^-1 n (its
    ``BZGrid``: q = Q D^-1 address with the Smith normal form D = P_s G Q), so G = N^T =
    (P^-1 S)^T, with |det G| = number of supercell atoms / primitive atoms points.

    For fcc with the conventional 2x2x2 cell this is 2 [[-1, 1, 1], [1, -1, 1], [1, 1, -1]]
    (32 points), not a diagonal mesh of the primitive cell; for S a multiple of P it is
    diagonal, i.e. an ordinary n1 x n2 x n3 mesh. phono3py needs the point set closed under
    the crystal's point group (a supercell with the crystal's symmetry).

    Energy conservation on such a coarse grid: the tetrahedron method works on a generalized
    grid (its tetrahedra follow the grid's basis) and interpolates the frequencies linearly
    between the points, i.e. it samples a continuum of final states the MD cell does not
    have. Gaussian smearing depends strongly on its width here (LJ argon, 32 points, 50 K,
    classical RTA: tetrahedron 4.4 W/mK; sigma 0.1 / 0.2 / 0.3 / 0.5 THz: 320 / 0.87 / 0.37 /
    0.26 W/mK; converged dense mesh 0.51), so neither is "the" in-cell value: report both.

    Parameters
    ----------
    ph3
        The phono3py object (its unit cell and primitive matrix).
    supercell_matrix
        S relative to ph3's unit cell (three integers or 3x3); default: ph3's own supercell.

    Returns
    -------
    numpy.ndarray
        (3, 3) integer grid-generating matrix for ``Phono3py.mesh_numbers`` (or
        ``run_phono3py(mesh=...)``).
    """
    s = (
        np.asarray(ph3.supercell_matrix, dtype=float)
        if supercell_matrix is None
        else np.asarray(supercell_matrix_3x3(supercell_matrix), dtype=float)
    )
    primitive = np.asarray(ph3.primitive_matrix, dtype=float)
    n = np.linalg.solve(primitive, s)
    grid = np.rint(n.T).astype(np.int64)
    if not np.allclose(grid, n.T, atol=1e-6) or round(abs(np.linalg.det(grid))) == 0:
        raise ValueError(
            f"supercell matrix {s.astype(int).tolist()} is not a supercell of the primitive cell "
            f"(primitive matrix {primitive.tolist()}): no commensurate q-grid"
        )
    if np.linalg.det(grid) < 0:  # same lattice of q-points, positive orientation
        grid = -grid
    return grid


def run_phono3py(
    ph3: Phono3py,
    *,
    mesh: MeshSpec,
    temperatures: Sequence[float],
    lbte: bool = False,
    sigma: float | None = None,
    hdf5_directory: str | os.PathLike[str] | None = None,
    statistics: str | Sequence[str] = "quantum",
    classical_temperature: float = CLASSICAL_REFERENCE_TEMPERATURE,
    isotopes: bool = False,
) -> xr.Dataset:
    """Thermal conductivity and per-mode properties on one q-mesh.

    Parameters
    ----------
    ph3
        A :class:`phono3py.Phono3py` with ``fc2`` and ``fc3`` (:attr:`Fc3Result.phono3py` or
        :func:`load_fc3`).
    mesh
        Three mesh numbers, or one for all three directions; a (3, 3) integer
        grid-generating matrix (generalized regular grid); or ``"commensurate"``: the
        q-points commensurate with ph3's own supercell (:func:`commensurate_mesh`).
    temperatures
        Temperatures (K).
    lbte
        Also solve the linearised Boltzmann equation (``kappa_lbte``); the RTA values come
        from the same run. Memory grows with the square of the number of irreducible q-points.
    sigma
        Gaussian smearing width (THz); ``None`` uses the tetrahedron method.
    hdf5_directory
        If given, phono3py's own ``kappa-m*.hdf5`` is written there too (with classical
        statistics its temperatures include ``classical_temperature``).
    statistics
        ``"quantum"`` (Bose-Einstein occupations, phono3py's own), ``"classical"``
        (occupations k_B T / (h nu), as in classical MD), or both (a sequence). Both come from
        one phono3py run.
    classical_temperature
        Reference temperature (K) of the classical limit
        (:func:`classical_from_high_temperature`).
    isotopes
        Add isotope scattering (Tamura, Phys. Rev. B 27, 858 (1983)) with the natural-abundance
        mass variances of phonopy's isotope table: ``gamma_isotope`` (qpoint, band), and
        ``tau`` and kappa from the total linewidth. Quantum statistics only: the classical
        limit scales a linewidth proportional to T, which isotope scattering is not.

    Returns
    -------
    xarray.Dataset
        Dimensions ``temperature``, ``qpoint`` (irreducible grid points), ``band``, ``voigt``,
        ``reciprocal``, ``cartesian``. Variables: ``kappa_rta`` (temperature, voigt), its
        average of the diagonal ``kappa_rta_average`` (temperature), ``mode_kappa_rta``
        (temperature, qpoint, band, voigt; summing over qpoint and band and dividing by the
        number of grid points gives ``kappa_rta``), the same for ``lbte`` if requested;
        ``gamma`` and ``tau`` (temperature, qpoint, band), ``heat_capacity`` (temperature,
        qpoint, band), ``frequency`` (qpoint, band), ``group_velocity`` (qpoint, band,
        cartesian), ``qpoints`` (qpoint, reciprocal; reduced coordinates of the primitive
        cell), ``weight`` (qpoint; multiplicity on the full mesh) and ``grid_point`` (qpoint).
        The temperature-dependent variables are the quantum ones; with classical statistics
        the same names with ``_classical`` (``kappa_rta_classical``,
        ``kappa_rta_classical_average``, ``mode_kappa_rta_classical``, ``gamma_classical``,
        ``tau_classical``, ``kappa_lbte_classical``, ...; heat capacity k_B per mode) are
        added, and without quantum statistics the quantum ones are left out. Attributes
        include ``statistics``, ``mesh`` (phono3py's D of the grid's Smith normal form),
        ``grid_matrix`` (for a generalized grid) and ``n_grid_points``.
    """
    if ph3.fc2 is None or ph3.fc3 is None:
        raise ValueError("the Phono3py object needs fc2 and fc3")
    wanted = _statistics(statistics)
    mesh_numbers = _mesh(mesh, ph3)
    temps = np.asarray(temperatures, dtype=float)
    if "classical" in wanted and not (
        1e4 <= classical_temperature <= 1e7 and classical_temperature > 10 * temps.max(initial=0.0)
    ):
        # above ~1e9 K phono3py's LBTE loses precision (argon: kappa -1e10 at 1e10 K)
        raise ValueError(
            f"classical_temperature {classical_temperature} K: the classical limit needs a "
            f"reference between 1e4 and 1e7 K and 10x the highest temperature ({temps.max()} K)"
        )
    if isotopes and "classical" in wanted:
        raise ValueError(
            "isotope scattering needs quantum statistics alone: the classical limit comes from "
            "a high-temperature run, where the temperature-independent isotope part is lost"
        )
    if "classical" in wanted and (temps <= 0).any():
        raise ValueError(f"classical kappa needs positive temperatures, got {temps.tolist()}")
    run_temps = temps if "quantum" in wanted else np.zeros(0)
    if "classical" in wanted:
        run_temps = np.append(run_temps, classical_temperature)
    try:
        ph3.mesh_numbers = mesh_numbers
    except RuntimeError as exc:  # phono3py: "Grid symmetry is broken."
        raise ValueError(
            f"mesh {np.asarray(mesh_numbers).tolist()}: its q-points are not closed under the "
            f"crystal's point group ({exc}); a commensurate grid needs a supercell with the "
            f"crystal's symmetry"
        ) from exc
    ph3.sigmas = [sigma]
    ph3.init_phph_interaction()
    if hdf5_directory is None:
        ph3.run_thermal_conductivity(
            is_LBTE=lbte, temperatures=run_temps, is_isotope=isotopes, log_level=0
        )
        hdf5_files: list[str] = []
    else:
        hdf5_files = _run_writing_hdf5(ph3, lbte, run_temps, Path(hdf5_directory), isotopes)
    ds = _conductivity_dataset(ph3, lbte, sigma, hdf5_files, isotopes)
    grid = ph3.grid.grid_matrix
    ds.attrs["grid_matrix"] = "none" if grid is None else np.asarray(grid).ravel().tolist()
    ds.attrs["statistics"] = list(wanted)
    if "classical" not in wanted:
        return ds
    hot = ds.isel(temperature=-1)
    _check_classical_limit(hot)
    if "quantum" in wanted:
        ds = ds.isel(temperature=slice(0, len(temps))).assign_coords(temperature=temps)
    else:
        ds = _static(ds)
    classical = classical_from_high_temperature(hot, temps)
    ds = ds.assign(classical.data_vars).assign_coords(temperature=temps)
    ds.attrs.update(classical.attrs)
    ds.attrs["classical_reference_temperature"] = float(classical_temperature)
    return ds


#: largest h nu / (k_B T_ref) accepted for the classical limit (relative error ~ x^2 / 12)
MAX_CLASSICAL_X = 0.05


def _check_classical_limit(hot: xr.Dataset) -> None:
    """Warn if the highest frequency is not far below k_B T_ref / h."""
    from phonopy.physical_units import get_physical_units

    units = get_physical_units()
    x = float(hot["frequency"].max()) * units.THzToEv / (units.KB * float(hot["temperature"]))
    if x > MAX_CLASSICAL_X:
        warnings.warn(
            f"classical limit: h nu_max / k_B T_ref = {x:.3f} > {MAX_CLASSICAL_X}; "
            f"raise classical_temperature",
            RuntimeWarning,
            stacklevel=3,
        )


def classical_from_high_temperature(hot: xr.Dataset, temperatures: ArrayLike) -> xr.Dataset:
    """Classical-statistics kappa and linewidths from one phono3py run at a high temperature.

    phono3py has no switch for classical occupations (checked in phono3py 4.10), but the
    classical limit follows from a run at a reference temperature T_ref >> h nu / k_B:

    * **Linewidths.** The three-phonon linewidth (Togo, Chaput, Tanaka, Phys. Rev. B 91,
      094306 (2015), Eq. 10) is a sum of |Phi_lambda lambda' lambda''|^2 times
      ``(n' + n'' + 1) delta(w - w' - w'') + (n' - n'') [delta(w + w' - w'') -
      delta(w - w' + w'')]``, where only the occupations n depend on T. Classically
      n = k_B T / (h nu), so the linewidth is exactly proportional to T:
      gamma_cl(T) = gamma_cl(T_ref) T / T_ref. The Bose-Einstein occupation expands as
      n = k_B T / (h nu) - 1/2 + h nu / (12 k_B T) + ..., so in the combinations above the
      -1/2 cancels (n' + n'' + 1, n' - n'') and gamma_quantum(T_ref) = gamma_cl(T_ref)
      (1 + O(x^2)), x = h nu / (k_B T_ref). Hence gamma_cl(T) = gamma(T_ref) T / T_ref and
      tau_cl(T) = tau(T_ref) T_ref / T.
    * **RTA.** kappa = sum_lambda c_lambda v_lambda (x) v_lambda tau_lambda / (N V) with the
      classical mode heat capacity c = k_B, so per mode
      kappa_cl(T) = mode_kappa(T_ref) (k_B / c(T_ref)) (T_ref / T); c(T_ref) = k_B
      (1 - x^2 / 12 + ...) is divided out exactly, the rates carry the O(x^2) rest.
    * **LBTE.** phono3py solves Chaput's symmetrised form (Phys. Rev. Lett. 110, 265506
      (2013)): kappa = k_B T^2 X . Omega^-1 X / V with X_lambda = v_lambda h nu_lambda
      sqrt(n (n + 1)) / (2 k_B T^2) = v_lambda sqrt(c_lambda / k_B) / (2 T) and a collision
      matrix Omega built from the same occupation combinations as the linewidths, so
      Omega_cl is proportional to T. Classically X = v / (2 T), hence kappa_LBTE,cl ~ 1/T and
      kappa_LBTE,cl(T) = kappa_LBTE(T_ref) T_ref / T. The heat capacity enters only as
      sqrt(c / k_B) = 1 - x^2 / 24 inside X and cannot be divided out per mode from phono3py's
      output; it is an O(x^2) term like the rest, so no heat-capacity factor is applied.

    With T_ref = 1e5 K and frequencies below 20 THz, x < 0.01: relative errors ~1e-4 or less.
    Numerically (LJ argon, 4x4x4 mesh): T_ref from 1e4 to 1e8 K changes the classical RTA
    kappa by 3e-7 and LBTE by 3e-6; no overflow or warning (phono3py's occupations and its
    sinh factor are well-behaved for small x, its frequency cutoff only drops the acoustic
    modes at Gamma, the same at any T). At 1e10 K the LBTE solution breaks down (kappa
    -1e10), hence T_ref <= 1e7 K in :func:`run_phono3py`.

    Parameters
    ----------
    hot
        A :func:`run_phono3py` dataset selected at the reference temperature (no
        ``temperature`` dimension).
    temperatures
        Temperatures (K) at which the classical values are wanted.

    Returns
    -------
    xarray.Dataset
        ``gamma_classical``, ``tau_classical`` (temperature, qpoint, band),
        ``kappa_rta_classical`` (temperature, voigt), ``kappa_rta_classical_average``
        (temperature), ``mode_kappa_rta_classical`` (temperature, qpoint, band, voigt), and
        the ``lbte`` ones if ``hot`` has LBTE values.
    """
    from phonopy.physical_units import get_physical_units

    kb = get_physical_units().KB  # phono3py's own k_B (eV/K), so that c(T_ref) / k_B -> 1
    t_ref = float(hot["temperature"])
    hot = hot.drop_vars("temperature")  # the scalar coordinate would clash with the new axis
    temps = xr.DataArray(np.asarray(temperatures, dtype=float), dims="temperature")
    ratio = t_ref / temps  # T_ref / T
    n_grid = float(hot.attrs["n_grid_points"])
    capacity = hot["heat_capacity"]
    k_over_c = xr.where(capacity > 0, kb / capacity.where(capacity > 0), 0.0)
    mode_rta = hot["mode_kappa_rta"] * k_over_c * ratio
    out = {
        "gamma_classical": hot["gamma"] / ratio,
        "tau_classical": hot["tau"] * ratio,
        "mode_kappa_rta_classical": mode_rta,
        "kappa_rta_classical": mode_rta.sum(("qpoint", "band")) / n_grid,
    }
    if "kappa_lbte" in hot:
        out["mode_kappa_lbte_classical"] = hot["mode_kappa_lbte"] * ratio
        out["kappa_lbte_classical"] = hot["kappa_lbte"] * ratio
    for method in ("rta", "lbte"):
        key = f"kappa_{method}_classical"
        if key in out:
            out[f"{key}_average"] = out[key].sel(voigt=list(VOIGT[:3])).mean("voigt")
    ds = xr.Dataset(out).assign_coords(temperature=temps.values)
    for name in ds.data_vars:
        ds[name] = ds[name].transpose("temperature", ...)
        ds[name].attrs = {}
    units = {"gamma_classical": "THz", "tau_classical": "ps"}
    for name in ds.data_vars:
        ds[name].attrs["units"] = units.get(str(name), "W/(m K)")
    ds.attrs["classical_heat_capacity_eV_per_K"] = kb
    return ds


def run_mesh_convergence(
    ph3: Phono3py,
    *,
    meshes: Sequence[MeshSpec],
    temperatures: Sequence[float],
    lbte: bool = False,
    sigma: float | None = None,
    isotopes: bool = False,
) -> xr.Dataset:
    """Kappa on each of ``meshes`` (same fc2/fc3), to judge q-mesh convergence (with isotope
    scattering if ``isotopes``, as :func:`run_phono3py`).

    Returns
    -------
    xarray.Dataset
        ``kappa_rta`` (mesh, temperature, voigt), ``kappa_rta_average`` (mesh, temperature),
        the same for ``lbte`` if requested, ``mesh_numbers`` (mesh, reciprocal),
        ``n_qpoints`` (mesh; irreducible points) and ``relative_change_rta`` (mesh,
        temperature): change of ``kappa_rta_average`` from the previous mesh (NaN for the
        first).
    """
    parts = []
    for mesh in meshes:
        ds = run_phono3py(
            ph3, mesh=mesh, temperatures=temperatures, lbte=lbte, sigma=sigma, isotopes=isotopes
        )
        keep = [v for v in ds.data_vars if str(v).startswith("kappa_")]
        part = ds[keep].assign(
            mesh_numbers=(("reciprocal",), np.asarray(ds.attrs["mesh"])),
            n_qpoints=ds.sizes["qpoint"],
        )
        parts.append(part)
    out = xr.concat(parts, dim="mesh", data_vars="all", coords="minimal", compat="override")
    out = out.assign_coords(mesh=np.arange(len(parts)))
    avg = out["kappa_rta_average"].values
    change = np.full_like(avg, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        change[1:] = (avg[1:] - avg[:-1]) / avg[:-1]
    out["relative_change_rta"] = (("mesh", "temperature"), change)
    out.attrs = {
        "meshes": [list(map(int, m)) for m in out["mesh_numbers"].values.tolist()],
        "method": "rta+lbte" if lbte else "rta",
        "sigma": "tetrahedron" if sigma is None else float(sigma),
        "kappa_unit": "W/(m K)",
    }
    return out


def compare_conductivity(reference: xr.Dataset, other: xr.Dataset) -> dict[str, Any]:
    """Kappa and lifetimes of ``other`` (e.g. the MLIP) against ``reference`` (the oracle).

    Kappa (average of the diagonal) is compared at the common temperatures. Per-mode
    quantities are compared only when both datasets are on the same q-points (same mesh and
    primitive cell): the weighted frequency RMSE and, per temperature, statistics of
    ``log10(tau_other / tau_reference)`` over modes with finite lifetimes in both (weighted
    RMS and mean, and the median ratio).
    """
    temps = np.intersect1d(reference["temperature"].values, other["temperature"].values)
    out: dict[str, Any] = {"temperature": temps.tolist()}
    for method in ("rta", "lbte"):
        key = f"kappa_{method}_average"
        if key in reference and key in other:
            k_ref = reference[key].sel(temperature=temps).values
            k_oth = other[key].sel(temperature=temps).values
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = (k_oth - k_ref) / k_ref
            out[f"kappa_{method}"] = {
                "reference": k_ref.tolist(),
                "other": k_oth.tolist(),
                "relative_difference": rel.tolist(),
            }
    same_grid = (
        reference.sizes.get("qpoint") == other.sizes.get("qpoint")
        and reference.sizes.get("band") == other.sizes.get("band")
        and np.allclose(reference["qpoints"].values, other["qpoints"].values, atol=1e-8)
    )
    out["same_qpoints"] = bool(same_grid)
    if not same_grid:
        return jsonable(out)
    from alkappa.phonons._compare import frequency_errors

    w = reference["weight"].values.astype(float)
    out["frequency"] = frequency_errors(reference["frequency"].values, other["frequency"].values, w)
    stats = []
    for t in temps:
        tau_ref = reference["tau"].sel(temperature=t).values
        tau_oth = other["tau"].sel(temperature=t).values
        ok = np.isfinite(tau_ref) & np.isfinite(tau_oth) & (tau_ref > 0) & (tau_oth > 0)
        weights = np.broadcast_to(w[:, None], tau_ref.shape)[ok]
        if not ok.any():
            stats.append({"n_modes": 0})
            continue
        log_ratio = np.log10(tau_oth[ok] / tau_ref[ok])
        stats.append(
            {
                "n_modes": int(ok.sum()),
                "log10_ratio_rms": float(np.sqrt(np.average(log_ratio**2, weights=weights))),
                "log10_ratio_mean": float(np.average(log_ratio, weights=weights)),
                "median_ratio": float(10 ** np.median(log_ratio)),
            }
        )
    out["tau"] = stats
    if all("mode_kappa_rta" in ds and "heat_capacity" in ds for ds in (reference, other)):
        from alkappa.phonons._kappa_modes import kappa_mode_breakdown

        out["modes"] = [kappa_mode_breakdown(reference, other, float(t)) for t in temps]
    return jsonable(out)


# --------------------------------------------------------------------------------------------


def _mesh(mesh: MeshSpec, ph3: Phono3py) -> list[int] | np.ndarray:
    """Mesh numbers (three integers) or a (3, 3) grid-generating matrix for phono3py."""
    if isinstance(mesh, str):
        if mesh != "commensurate":
            raise ValueError(f"mesh {mesh!r}: give mesh numbers, a 3x3 matrix or 'commensurate'")
        return commensurate_mesh(ph3)
    if np.shape(mesh) == (3, 3):
        grid = np.asarray(mesh)
        if not np.allclose(grid, np.rint(grid)) or round(abs(np.linalg.det(grid))) == 0:
            raise ValueError(f"mesh {grid.tolist()} is not a non-singular integer matrix")
        return np.rint(grid).astype(np.int64)
    numbers = [int(mesh)] * 3 if np.ndim(mesh) == 0 else [int(n) for n in mesh]  # type: ignore[arg-type, union-attr]
    if len(numbers) != 3 or min(numbers) < 1:
        raise ValueError(f"mesh {mesh!r} is not three positive integers")
    return numbers


def _statistics(statistics: str | Sequence[str]) -> tuple[str, ...]:
    wanted = (statistics,) if isinstance(statistics, str) else tuple(statistics)
    unknown = set(wanted) - set(STATISTICS)
    if unknown or not wanted:
        raise ValueError(f"statistics {list(wanted)}: choose from {list(STATISTICS)}")
    return tuple(s for s in STATISTICS if s in wanted)


def _static(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` without its temperature-dependent (quantum) variables."""
    keep = [v for v in ds.data_vars if "temperature" not in ds[v].dims]
    return ds[keep]


def _run_writing_hdf5(
    ph3: Phono3py, lbte: bool, temps: np.ndarray, directory: Path, isotopes: bool = False
) -> list[str]:
    """Run with ``write_kappa`` in a scratch directory; move phono3py's files to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".phono3py-", dir=directory))
    try:
        with working_directory(scratch):
            ph3.run_thermal_conductivity(
                is_LBTE=lbte,
                temperatures=temps,
                is_isotope=isotopes,
                write_kappa=True,
                log_level=0,
            )
        names = []
        for produced in sorted(scratch.glob("*.hdf5")):
            produced.replace(directory / produced.name)
            names.append(produced.name)
        return names
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _conductivity_dataset(
    ph3: Phono3py, lbte: bool, sigma: float | None, hdf5_files: list[str], isotopes: bool = False
) -> xr.Dataset:
    tc = ph3.thermal_conductivity
    temps = np.asarray(tc.temperatures, dtype=float)
    gamma = np.asarray(tc.gamma, dtype=float)[0]  # (temperature, qpoint, band): one sigma
    total = gamma
    extra: dict[str, DataVariable] = {}
    if isotopes:  # phono3py keeps it apart from the three-phonon gamma; kappa has both
        gamma_iso = np.asarray(tc.gamma_isotope, dtype=float)[0]  # (qpoint, band)
        total = gamma + gamma_iso[None]
        extra["gamma_isotope"] = (("qpoint", "band"), gamma_iso)
    with np.errstate(divide="ignore"):
        tau = np.where(total > 0, 1.0 / (4.0 * np.pi * np.where(total > 0, total, 1.0)), np.nan)
    data_vars: dict[str, DataVariable] = {
        **extra,
        "gamma": (("temperature", "qpoint", "band"), gamma),
        "tau": (("temperature", "qpoint", "band"), tau),
        "heat_capacity": (
            ("temperature", "qpoint", "band"),
            np.asarray(tc.mode_heat_capacities, dtype=float),
        ),
        "frequency": (("qpoint", "band"), np.asarray(tc.frequencies, dtype=float)),
        "group_velocity": (
            ("qpoint", "band", "cartesian"),
            np.asarray(tc.group_velocities, dtype=float),
        ),
        "qpoints": (("qpoint", "reciprocal"), np.asarray(tc.qpoints, dtype=float)),
        "weight": (("qpoint",), np.asarray(tc.grid_weights, dtype=int)),
        "grid_point": (("qpoint",), np.asarray(tc.grid_points, dtype=int)),
    }
    if lbte:
        kappas = {"rta": (tc.kappa_RTA, tc.mode_kappa_RTA), "lbte": (tc.kappa, tc.mode_kappa)}
    else:
        kappas = {"rta": (tc.kappa, tc.mode_kappa)}
    for method, (kappa, mode_kappa) in kappas.items():
        k = np.asarray(kappa, dtype=float)[0]
        data_vars[f"kappa_{method}"] = (("temperature", "voigt"), k)
        data_vars[f"kappa_{method}_average"] = (("temperature",), k[:, :3].mean(axis=1))
        data_vars[f"mode_kappa_{method}"] = (
            ("temperature", "qpoint", "band", "voigt"),
            np.asarray(mode_kappa, dtype=float)[0],
        )
    n_band = data_vars["frequency"][1].shape[1]
    ds = xr.Dataset(
        data_vars,
        coords={
            "temperature": temps,
            "qpoint": np.arange(len(tc.qpoints)),
            "band": np.arange(n_band),
            "voigt": list(VOIGT),
        },
        attrs={
            "mesh": [int(n) for n in tc.mesh_numbers],
            "n_grid_points": int(np.prod(tc.mesh_numbers)),
            "method": "rta+lbte" if lbte else "rta",
            "sigma": "tetrahedron" if sigma is None else float(sigma),
            "n_atoms_primitive": len(ph3.primitive),
            "primitive_symbols": list(ph3.primitive.symbols),
            "n_atoms_supercell": len(ph3.supercell),
            "phono3py_version": ph3.version,
            "hdf5_files": hdf5_files,
            "kappa_unit": "W/(m K)",
            "tau_definition": "tau = 1 / (4 pi gamma); NaN where gamma = 0"
            + ("; gamma: three-phonon plus gamma_isotope" if isotopes else ""),
            "isotopes": int(isotopes),
        },
    )
    units = {
        "gamma": "THz",
        "gamma_isotope": "THz",
        "tau": "ps",
        "heat_capacity": "eV/K",
        "frequency": "THz",
        "group_velocity": "THz*Angstrom",
        "temperature": "K",
    }
    for name, unit in units.items():
        if name in ds.variables:
            ds[name].attrs["units"] = unit
    for name in ds.data_vars:
        if str(name).startswith(("kappa_", "mode_kappa_")):
            ds[name].attrs["units"] = "W/(m K)"
    return ds
