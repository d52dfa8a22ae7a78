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

Units of the datasets: kappa in W/(m K), frequencies and gamma in THz, tau in ps, group
velocities in THz·Å (= 100 m/s), mode heat capacities in eV/K; Voigt order xx, yy, zz, yz, xz,
xy (phono3py's).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr

from alkappa.io._atomic import atomic_path, write_json
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

    from alkappa.phonons._common import ForceSource

    MeshSpec = int | Sequence[int]

VOIGT = ("xx", "yy", "zz", "yz", "xz", "xy")


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

    Cheap (symmetry only): use it to decide whether the oracle can afford its own fc3.
    """
    ph3 = fc3_displacements(structure, **options)
    return sum(cell is not None for cell in ph3.supercells_with_displacements)


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


def run_phono3py(
    ph3: Phono3py,
    *,
    mesh: MeshSpec,
    temperatures: Sequence[float],
    lbte: bool = False,
    sigma: float | None = None,
    hdf5_directory: str | os.PathLike[str] | None = None,
) -> xr.Dataset:
    """Thermal conductivity and per-mode properties on one q-mesh.

    Parameters
    ----------
    ph3
        A :class:`phono3py.Phono3py` with ``fc2`` and ``fc3`` (:attr:`Fc3Result.phono3py` or
        :func:`load_fc3`).
    mesh
        Three mesh numbers, or one for all three directions.
    temperatures
        Temperatures (K).
    lbte
        Also solve the linearised Boltzmann equation (``kappa_lbte``); the RTA values come
        from the same run. Memory grows with the square of the number of irreducible q-points.
    sigma
        Gaussian smearing width (THz); ``None`` uses the tetrahedron method.
    hdf5_directory
        If given, phono3py's own ``kappa-m*.hdf5`` is written there too.

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
    """
    if ph3.fc2 is None or ph3.fc3 is None:
        raise ValueError("the Phono3py object needs fc2 and fc3")
    mesh_numbers = _mesh(mesh)
    temps = np.asarray(temperatures, dtype=float)
    ph3.mesh_numbers = mesh_numbers
    ph3.sigmas = [sigma]
    ph3.init_phph_interaction()
    if hdf5_directory is None:
        ph3.run_thermal_conductivity(is_LBTE=lbte, temperatures=temps, log_level=0)
        hdf5_files: list[str] = []
    else:
        hdf5_files = _run_writing_hdf5(ph3, lbte, temps, Path(hdf5_directory))
    return _conductivity_dataset(ph3, lbte, sigma, hdf5_files)


def run_mesh_convergence(
    ph3: Phono3py,
    *,
    meshes: Sequence[MeshSpec],
    temperatures: Sequence[float],
    lbte: bool = False,
    sigma: float | None = None,
) -> xr.Dataset:
    """Kappa on each of ``meshes`` (same fc2/fc3), to judge q-mesh convergence.

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
        ds = run_phono3py(ph3, mesh=mesh, temperatures=temperatures, lbte=lbte, sigma=sigma)
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
    return jsonable(out)


# --------------------------------------------------------------------------------------------


def _mesh(mesh: MeshSpec) -> list[int]:
    numbers = [int(mesh)] * 3 if np.ndim(mesh) == 0 else [int(n) for n in mesh]  # type: ignore[arg-type, union-attr]
    if len(numbers) != 3 or min(numbers) < 1:
        raise ValueError(f"mesh {mesh!r} is not three positive integers")
    return numbers


def _run_writing_hdf5(ph3: Phono3py, lbte: bool, temps: np.ndarray, directory: Path) -> list[str]:
    """Run with ``write_kappa`` in a scratch directory; move phono3py's files to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".phono3py-", dir=directory))
    try:
        with working_directory(scratch):
            ph3.run_thermal_conductivity(
                is_LBTE=lbte, temperatures=temps, write_kappa=True, log_level=0
            )
        names = []
        for produced in sorted(scratch.glob("*.hdf5")):
            produced.replace(directory / produced.name)
            names.append(produced.name)
        return names
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _conductivity_dataset(
    ph3: Phono3py, lbte: bool, sigma: float | None, hdf5_files: list[str]
) -> xr.Dataset:
    tc = ph3.thermal_conductivity
    temps = np.asarray(tc.temperatures, dtype=float)
    gamma = np.asarray(tc.gamma, dtype=float)[0]  # (temperature, qpoint, band): one sigma
    with np.errstate(divide="ignore"):
        tau = np.where(gamma > 0, 1.0 / (4.0 * np.pi * np.where(gamma > 0, gamma, 1.0)), np.nan)
    data_vars: dict[str, Any] = {
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
            "tau_definition": "tau = 1 / (4 pi gamma); NaN where gamma = 0",
        },
    )
    units = {
        "gamma": "THz",
        "tau": "ps",
        "heat_capacity": "eV/K",
        "frequency": "THz",
        "group_velocity": "THz*Angstrom",
        "temperature": "K",
    }
    for name, unit in units.items():
        ds[name].attrs["units"] = unit
    for name in ds.data_vars:
        if str(name).startswith(("kappa_", "mode_kappa_")):
            ds[name].attrs["units"] = "W/(m K)"
    return ds
