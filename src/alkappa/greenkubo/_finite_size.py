"""Harmonic-model kappa from MD lifetimes and the finite-size correction of Green-Kubo kappa.

Method: the harmonic interpolation of Carbogno, Ramprasad, Scheffler, Phys. Rev. Lett. 118,
175901 (2017) in the form of Knoop, Purcell, Scheffler, Carbogno, Phys. Rev. B 107, 224304
(2023), Sec. II C, as outlined in FHI-vibes' ``vibes/green_kubo/README.md``:

1. **Harmonic-model kappa at the commensurate q-points** of the MD supercell (route (ii) of the
   validation: the Boltzmann-like sum with MD lifetimes)::

       kappa_ha^{ab} = (1 / V_sc) sum_s c_s v_s^a v_s^b tau_s

   with the classical mode heat capacity c_s = k_B (the MD is classical), V_sc the supercell
   volume, group velocities v_s from the force constants (phonopy) and tau_s the MD lifetimes
   of :func:`~alkappa.greenkubo.run_mode_lifetimes` (energy-autocorrelation decay time, the
   relaxation time of the Boltzmann equation). The acoustic modes at Gamma (omega = 0, v = 0)
   contribute nothing.
2. **Interpolation.** lambda_s = omega_s^2 tau_s (lifetimes scale as omega^-2 at small omega,
   Herring) is interpolated per band linearly (barycentric, on a Delaunay triangulation in
   reduced q) from the commensurate points, repeated periodically so that the whole cell
   [0, 1]^3 lies inside their hull, onto Gamma-centred n x n x n meshes of the primitive
   reciprocal cell. Bands whose lifetime at Gamma is undefined (the acoustic ones) get
   lambda(Gamma) from the neighbouring points alone. On the mesh tau = lambda / omega^2 with
   phonopy's frequencies and group velocities, and kappa_ha(n) is the same sum with
   V = n^3 V_primitive.
3. **Extrapolation.** kappa_ha(n) -> kappa_ha(inf) linearly in 1/n (the omitted Gamma cell of a
   1/q^2 integrand, Riemann sum), per tensor element, by least squares weighted with n^2
   (sigma ~ 1/n: the dense meshes are in the asymptotic regime), as FHI-vibes does. The
   correction is kappa_ha(inf) - kappa_ha(commensurate); ``kappa_corrected = kappa_GK +
   correction`` with the error sqrt(err_GK^2 + stderr_fit^2 + err_jk^2), err_jk the
   jackknife error of the correction over the MD runs (each run left out of the lifetimes
   once; the correction's dominant noise for short runs, which the fit's stderr misses).

Variables carry FHI-vibes' names (``kappa_ha``, ``interpolation_*``). One difference:
``interpolation_fit_stderr`` here is the standard error of the fit's *intercept* (the
extrapolated kappa, which is what enters the error of the corrected value), FHI-vibes stores
the slope's.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from scipy import constants

from alkappa.greenkubo._modes import _load_phonopy, mode_velocities

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from ase import Atoms
    from phonopy import Phonopy

#: k_B (Å/ps)^2 ps / Å^3 -> W/(m K)
_KAPPA_UNIT = constants.k * 1e22
#: FHI-vibes' default meshes (nq = 4, 6, ..., 20)
DEFAULT_MESHES: tuple[int, ...] = tuple(range(4, 21, 2))
_CART = ("x", "y", "z")


def harmonic_kappa(
    velocities: np.ndarray,
    tau: np.ndarray,
    volume: float,
    *,
    heat_capacity: float = constants.k,
) -> np.ndarray:
    """kappa^{ab} = (c / V) sum_s v_s^a v_s^b tau_s in W/(m K).

    Parameters
    ----------
    velocities
        (..., 3) group velocities in Å/ps.
    tau
        (...) lifetimes in ps; modes with tau = 0 do not contribute. Non-finite values are an
        error (mask the modes to leave out with 0).
    volume
        Volume of the crystal the modes belong to (Å^3): the supercell for its commensurate
        q-points, n^3 primitive cells for an n x n x n mesh.
    heat_capacity
        Mode heat capacity in J/K; classical k_B by default.
    """
    v = np.asarray(velocities, dtype=float).reshape(-1, 3)
    t = np.asarray(tau, dtype=float).ravel()
    if len(t) != len(v):
        raise ValueError(f"{len(t)} lifetimes for {len(v)} group velocities")
    if not np.isfinite(t).all():
        raise ValueError(f"{int((~np.isfinite(t)).sum())} lifetimes are not finite")
    if not volume > 0:
        raise ValueError(f"volume {volume} Å^3 is not positive")
    factor = heat_capacity / constants.k * _KAPPA_UNIT / volume
    return factor * np.einsum("s,sa,sb->ab", t, v, v)


def mesh_modes(
    phonon: Phonopy | str | os.PathLike[str], n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """q-points, frequencies (THz) and group velocities (Å/ps) on the full n x n x n mesh.

    Gamma-centred mesh of the primitive reciprocal cell, q in [0, 1). phonopy solves the
    irreducible points only (with time reversal); each other point is R q_ir, and its
    velocity the Cartesian image of v(q_ir) under the same operation.
    """
    ph = _load_phonopy(phonon)
    ph.run_mesh([n, n, n], is_gamma_center=True, with_group_velocities=True, is_mesh_symmetry=True)
    mesh = ph.mesh
    address = np.asarray(mesh.grid_address, dtype=float)
    mapping = np.asarray(mesh.grid_mapping_table)
    ir_points = np.asarray(mesh.ir_grid_points)
    position = np.full(len(address), -1)
    position[ir_points] = np.arange(len(ir_points))
    irreducible = position[mapping]
    q_full = np.mod(address / n, 1.0)
    q_ir = address[mapping] / n
    freq = np.asarray(mesh.frequencies, dtype=float)[irreducible]
    v_ir = np.asarray(mesh.group_velocities, dtype=float)[irreducible]

    rot = np.array([np.asarray(r).T for r in ph.primitive_symmetry.pointgroup_operations])
    ops = np.concatenate([rot, -rot]).astype(float)  # q' = R q; -R: time reversal
    images = np.einsum("rij,qj->qri", ops, q_ir)
    diff = images - q_full[:, None, :]
    hits = np.all(np.abs(diff - np.rint(diff)) < 1e-8, axis=2)
    if not hits.any(axis=1).all():
        raise RuntimeError("a mesh point is not the image of its irreducible point")
    op = ops[np.argmax(hits, axis=1)]
    lattice = np.asarray(ph.primitive.cell, dtype=float)
    # k_cart = A^-1 q for rows a_i of A; the Cartesian operation is A^-1 R A
    cartesian = np.einsum("ij,qjk,kl->qil", np.linalg.inv(lattice), op, lattice)
    velocities = np.einsum("qab,qsb->qsa", cartesian, v_ir)
    return q_full, freq, velocities


def periodic_images(qpoints: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Copies of the points shifted by integer vectors that lie in [0, 1]^3, with their values.

    Gamma's images are the corners of the cube, so the hull of the result is [0, 1]^3.
    """
    shifts = np.array(np.meshgrid(*[[-1, 0, 1]] * 3, indexing="ij")).reshape(3, -1).T
    q = np.mod(np.asarray(qpoints, dtype=float), 1.0)
    moved = q[None, :, :] + shifts[:, None, :]
    inside = np.all((moved > -1e-9) & (moved < 1 + 1e-9), axis=2)
    index = np.broadcast_to(np.arange(len(q)), inside.shape)[inside]
    return moved[inside], np.asarray(values)[index]


def interpolate_lambda(qpoints: np.ndarray, lam: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """lambda (n_target, n_band) at ``targets`` by linear interpolation from ``qpoints``.

    ``qpoints`` (n_q, 3) must include Gamma (all commensurate points of a supercell do); the
    data (n_q, n_band) are repeated periodically (:func:`periodic_images`).
    """
    from scipy.interpolate import LinearNDInterpolator

    points, values = periodic_images(qpoints, lam)
    interpolator = LinearNDInterpolator(points, values)
    out = interpolator(np.mod(np.asarray(targets, dtype=float), 1.0))
    if not np.isfinite(out).all():
        raise ValueError("interpolation failed: target q-points outside the commensurate grid")
    return np.asarray(out)


def lambda_at_gamma(qpoints: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """lambda (n_band) at Gamma interpolated from the other commensurate points."""
    from scipy.interpolate import LinearNDInterpolator

    points, values = _gamma_neighbourhood(qpoints, lam)
    value = LinearNDInterpolator(points, values)(np.zeros((1, 3)))[0]
    if not np.isfinite(value).all():
        raise ValueError("interpolation to Gamma failed")
    return np.asarray(value)


def check_interpolation_grid(qpoints: np.ndarray) -> None:
    """Raise ValueError if the commensurate points cannot be interpolated to Gamma (a cell
    that is a single primitive cell in some direction: the neighbours of Gamma are flat)."""
    from scipy.spatial import Delaunay, QhullError

    q = np.asarray(qpoints, dtype=float)
    if len(q) < 2:
        raise ValueError("the supercell holds only Gamma: nothing to interpolate from")
    centred = q - np.rint(q)
    inside = np.linalg.matrix_rank(centred, tol=1e-8) == 3  # else flat along a direction
    if inside:
        points, _ = _gamma_neighbourhood(q, np.zeros(len(q)))
        try:
            inside = Delaunay(points).find_simplex(np.zeros((1, 3)))[0] >= 0
        except QhullError:
            inside = False
    if not inside:
        raise ValueError(
            f"the supercell's {len(q)} commensurate q-points do not surround Gamma in 3D "
            "(a supercell of one primitive cell in some direction): no interpolation"
        )


def extrapolate(ns: Sequence[int], values: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted linear fit values = slope / n + intercept along the first axis.

    Weights n^2 (sigma ~ 1/n). Returns ``slope``, ``intercept`` and their standard errors
    ``slope_stderr``, ``intercept_stderr`` (residual-scaled), each of ``values.shape[1:]``.
    """
    n = np.asarray(ns, dtype=float)
    y = np.asarray(values, dtype=float).reshape(len(n), -1)
    if len(n) < 3:
        raise ValueError(f"{len(n)} meshes: need at least 3 for a fit with an error")
    design = np.stack([1.0 / n, np.ones_like(n)], axis=1)
    w = n**2
    normal = design.T @ (w[:, None] * design)
    cov_unit = np.linalg.inv(normal)
    coef = cov_unit @ design.T @ (w[:, None] * y)
    resid = y - design @ coef
    s2 = (w[:, None] * resid**2).sum(axis=0) / (len(n) - 2)
    err = np.sqrt(np.outer(np.diag(cov_unit), s2))
    shape = np.shape(values)[1:]
    return {
        "slope": coef[0].reshape(shape),
        "intercept": coef[1].reshape(shape),
        "slope_stderr": err[0].reshape(shape),
        "intercept_stderr": err[1].reshape(shape),
    }


def run_harmonic_interpolation(
    lifetimes: xr.Dataset,
    phonon: Phonopy | str | os.PathLike[str],
    *,
    meshes: Sequence[int] = DEFAULT_MESHES,
    frequency_tolerance: float = 0.05,
) -> xr.Dataset:
    """Harmonic-model kappa from MD lifetimes, interpolated and extrapolated in 1/n.

    Parameters
    ----------
    lifetimes
        The result of :func:`~alkappa.greenkubo.run_mode_lifetimes` (``qpoints``,
        ``frequency``, ``tau`` in ps on all commensurate q-points of the MD supercell).
    phonon
        The force constants the lifetimes were computed with (a :class:`phonopy.Phonopy` or
        ``phonopy_params.yaml``); its primitive cell defines the meshes.
    meshes
        Linear sizes n of the Gamma-centred n x n x n meshes (at least 3).
    frequency_tolerance
        Largest allowed difference (THz) between the lifetimes' and phonopy's frequencies at
        the commensurate points (a check that both belong to the same crystal).

    Returns
    -------
    xarray.Dataset
        ``kappa_ha`` (a, b) and ``kappa_ha_scalar`` at the commensurate points;
        ``interpolation_kappa_array`` (nq, a, b) on the meshes (coordinate ``nq``);
        ``interpolation_fit_slope``, ``interpolation_fit_intercept`` (mean of the diagonal),
        ``interpolation_fit_stderr`` (stderr of that intercept);
        ``interpolation_correction`` (scalar), ``interpolation_correction_ab`` and
        ``interpolation_correction_ab_stderr`` (a, b), ``interpolation_correction_factor``
        and ``_err``, ``kappa_ha_extrapolated`` (a, b); per commensurate mode (qpoint, band):
        ``q_points``, ``mode_frequency`` (THz), ``mode_lifetime`` (ps; 0 for the acoustic
        modes at Gamma, which carry no heat), ``mode_lambda`` (omega^2 tau, 1/ps),
        ``mode_group_velocity`` (Å/ps). All kappa in W/(m K).
    """
    ph = _load_phonopy(phonon)
    meshes = sorted({int(n) for n in meshes})
    if len(meshes) < 3 or meshes[0] < 2:
        raise ValueError(f"meshes {meshes}: need at least 3 sizes, each 2 or more")
    qpoints = np.asarray(lifetimes["qpoints"].values, dtype=float)
    tau = np.asarray(lifetimes["tau"].values, dtype=float)
    check_interpolation_grid(qpoints)
    _check_commensurate(qpoints, ph)
    freq, velocity = mode_velocities(ph, qpoints)
    if freq.shape != tau.shape:
        raise ValueError(
            f"the lifetimes have {tau.shape[1]} bands, the force constants {freq.shape[1]}: "
            "different primitive cells"
        )
    diff = np.abs(freq - lifetimes["frequency"].values)
    if np.nanmax(diff) > frequency_tolerance:
        raise ValueError(
            f"the force constants' frequencies differ from the lifetimes' by up to "
            f"{np.nanmax(diff):.3f} THz at the commensurate q-points: not the same crystal"
        )
    gamma = np.nonzero(np.all(np.abs(qpoints) < 1e-8, axis=1))[0]
    if len(gamma) != 1:
        raise ValueError("the lifetimes' q-points do not include Gamma once")
    g = int(gamma[0])
    missing = ~np.isfinite(tau)
    missing[g] = False
    if missing.any():
        raise ValueError(
            f"{int(missing.sum())} modes away from Gamma have no finite lifetime (inf: the "
            "mode exchanges no energy, e.g. a harmonic run; NaN: imaginary frequency)"
        )
    omega = 2.0 * np.pi * freq  # 1/ps
    volume_sc = abs(np.linalg.det(np.asarray(ph.supercell.cell, dtype=float)))
    volume_prim = abs(np.linalg.det(np.asarray(ph.primitive.cell, dtype=float)))
    mesh_data = [mesh_modes(ph, n) for n in meshes]
    n_imaginary = max(int((f_mesh[1:] < -1e-3).sum()) for _, f_mesh, _ in mesh_data)
    if n_imaginary:
        warnings.warn(
            f"{n_imaginary} modes with imaginary frequencies on the interpolation meshes "
            "were left out",
            RuntimeWarning,
            stacklevel=2,
        )

    def harmonic_model(tau_modes: np.ndarray) -> dict[str, Any]:
        """kappa_ha at the commensurate points and on the meshes for one set of lifetimes."""
        lam = omega**2 * tau_modes
        undefined = ~np.isfinite(lam[g])
        if undefined.any():
            lam[g, undefined] = lambda_at_gamma(qpoints, lam)[undefined]
        tau_used = _tau_from_lambda(lam, omega, qpoints)
        kappas = np.empty((len(meshes), 3, 3))
        for k, (n, (q_mesh, f_mesh, v_mesh)) in enumerate(zip(meshes, mesh_data, strict=True)):
            lam_mesh = interpolate_lambda(qpoints, lam, q_mesh)
            tau_mesh = _tau_from_lambda(lam_mesh, 2.0 * np.pi * f_mesh, q_mesh)
            kappas[k] = harmonic_kappa(v_mesh, tau_mesh, n**3 * volume_prim)
        kappa_ha = harmonic_kappa(velocity, tau_used, volume_sc)
        scalar_fit = extrapolate(meshes, np.trace(kappas, axis1=1, axis2=2) / 3.0)
        return {
            "lam": lam,
            "tau": tau_used,
            "kappa_ha": kappa_ha,
            "kappas": kappas,
            "scalar_fit": scalar_fit,
            "correction": float(scalar_fit["intercept"]) - float(np.trace(kappa_ha) / 3.0),
        }

    model = harmonic_model(tau.copy())
    lam, tau_used, kappa_ha, kappas = (model[k] for k in ("lam", "tau", "kappa_ha", "kappas"))
    scalar_fit = model["scalar_fit"]
    fit = extrapolate(meshes, kappas)
    k_ha = float(np.trace(kappa_ha) / 3.0)
    correction_ab = fit["intercept"] - kappa_ha
    correction = model["correction"]
    stderr = float(scalar_fit["intercept_stderr"])
    # the lifetimes' statistical error carried into the correction: jackknife over runs
    jk_error = float("nan")
    samples = _jackknife_taus(lifetimes, g)
    if len(samples) > 1:
        values = np.array([harmonic_model(t)["correction"] for t in samples])
        jk_error = float(np.sqrt((len(values) - 1) * np.mean((values - values.mean()) ** 2)))
    factor = 1.0 + correction / k_ha if k_ha != 0 else float("nan")
    dims = ("qpoint", "band")
    tensor = ("a", "b")
    ds = xr.Dataset(
        {
            "kappa_ha": (tensor, kappa_ha),
            "kappa_ha_scalar": ((), k_ha),
            "kappa_ha_extrapolated": (tensor, fit["intercept"]),
            "interpolation_kappa_array": (("nq", *tensor), kappas),
            "interpolation_fit_slope": ((), float(scalar_fit["slope"])),
            "interpolation_fit_intercept": ((), float(scalar_fit["intercept"])),
            "interpolation_fit_stderr": ((), stderr),
            "interpolation_correction": ((), correction),
            "interpolation_correction_jackknife_error": ((), jk_error),
            "interpolation_correction_ab": (tensor, correction_ab),
            "interpolation_correction_ab_stderr": (tensor, fit["intercept_stderr"]),
            "interpolation_correction_factor": ((), factor),
            "interpolation_correction_factor_err": ((), stderr / abs(k_ha) if k_ha else np.nan),
            "q_points": (("qpoint", "reciprocal"), qpoints),
            "mode_frequency": (dims, freq),
            "mode_lifetime": (dims, tau_used),
            "mode_lambda": (dims, lam),
            "mode_group_velocity": ((*dims, "cartesian"), velocity),
        },
        coords={
            "nq": np.asarray(meshes),
            "a": list(_CART),
            "b": list(_CART),
            "qpoint": np.arange(len(qpoints)),
            "band": np.arange(freq.shape[1]),
        },
        attrs={
            "interpolation_method": (
                "lambda = omega^2 tau interpolated linearly in reduced q from the commensurate "
                "points onto Gamma-centred n^3 meshes, kappa_ha(n) extrapolated linearly in 1/n "
                "(weights n^2); Carbogno et al., PRL 118, 175901 (2017); Knoop et al., PRB 107, "
                "224304 (2023)"
            ),
            "heat_capacity": "classical, k_B per mode",
            "interpolation_fit_stderr_definition": (
                "standard error of the fit's intercept (FHI-vibes stores the slope's)"
            ),
            "volume_supercell": float(volume_sc),
            "n_commensurate_qpoints": len(qpoints),
            "kappa_unit": "W/(m K)",
        },
    )
    for name in ("mode_lifetime",):
        ds[name].attrs["units"] = "ps"
    ds["mode_frequency"].attrs["units"] = "THz"
    ds["mode_group_velocity"].attrs["units"] = "Angstrom/ps"
    ds["mode_lambda"].attrs["units"] = "1/ps"
    return ds


def _jackknife_taus(lifetimes: xr.Dataset, gamma: int) -> list[np.ndarray]:
    """The leave-one-run-out lifetime sets of ``lifetimes`` usable for the interpolation
    (every mode away from Gamma finite); none for a single run or old files."""
    if "tau_jackknife" not in lifetimes or lifetimes.sizes.get("run", 0) < 2:
        return []
    samples = []
    for tau in np.asarray(lifetimes["tau_jackknife"].values, dtype=float):
        finite = np.isfinite(tau)
        finite[gamma] = True
        if finite.all():
            samples.append(tau.copy())
    if len(samples) < lifetimes.sizes["run"]:
        warnings.warn(
            f"{lifetimes.sizes['run'] - len(samples)} of {lifetimes.sizes['run']} jackknife "
            "lifetime sets have modes without a finite lifetime: left out of the error",
            RuntimeWarning,
            stacklevel=3,
        )
    return samples


def run_finite_size_correction(
    green_kubo: xr.Dataset,
    lifetimes: xr.Dataset,
    phonon: Phonopy | str | os.PathLike[str],
    *,
    meshes: Sequence[int] = DEFAULT_MESHES,
) -> xr.Dataset:
    """Green-Kubo kappa corrected for the finite supercell by harmonic interpolation.

    Parameters
    ----------
    green_kubo
        The result of :func:`~alkappa.greenkubo.run_green_kubo` (``kappa``, ``kappa_error``,
        ``kappa_scalar``, ``kappa_scalar_error``) of the same MD runs as ``lifetimes``.
    lifetimes, phonon, meshes
        See :func:`run_harmonic_interpolation`.

    Returns
    -------
    xarray.Dataset
        The variables of :func:`run_harmonic_interpolation` plus ``kappa_corrected`` and
        ``kappa_corrected_error`` (scalars: ``kappa_scalar + interpolation_correction``, the
        errors added in quadrature) and ``kappa_corrected_ab``, ``kappa_corrected_ab_error``
        (a, b), all in W/(m K).
    """
    ds = run_harmonic_interpolation(lifetimes, phonon, meshes=meshes)
    k_gk = float(green_kubo["kappa_scalar"])
    err_gk = float(green_kubo["kappa_scalar_error"])
    corrected = k_gk + float(ds["interpolation_correction"])
    jk = float(ds["interpolation_correction_jackknife_error"])
    jk = jk if np.isfinite(jk) else 0.0
    error = float(np.sqrt(err_gk**2 + float(ds["interpolation_fit_stderr"]) ** 2 + jk**2))
    tensor = np.asarray(green_kubo["kappa"].values) + ds["interpolation_correction_ab"].values
    tensor_err = np.sqrt(
        np.asarray(green_kubo["kappa_error"].values) ** 2
        + ds["interpolation_correction_ab_stderr"].values ** 2
        + np.eye(3) * jk**2  # the jackknife is of the scalar (diagonal) correction
    )
    ds["kappa_corrected"] = ((), corrected)
    ds["kappa_corrected_error"] = ((), error)
    ds["kappa_corrected_ab"] = (("a", "b"), tensor)
    ds["kappa_corrected_ab_error"] = (("a", "b"), tensor_err)
    ds.attrs["kappa_corrected_definition"] = (
        "kappa_scalar (Green-Kubo) + interpolation_correction; error: GK error, "
        "interpolation_fit_stderr and interpolation_correction_jackknife_error (the MD "
        "lifetimes' statistical error, jackknife over runs) in quadrature"
    )
    return ds


def phonopy_from_trajectory(
    trajectory: xr.Dataset | str | os.PathLike[str],
    force_constants: np.ndarray | str | os.PathLike[str] | None = None,
) -> Phonopy:
    """A :class:`phonopy.Phonopy` whose supercell is the trajectory's reference structure.

    Force constants: ``force_constants`` (a ``phonopy_params.yaml`` or directory with one,
    matched by position; or a full (N, N, 3, 3) / (3N, 3N) array or file in the trajectory's
    atom order), else the trajectory's ``force_constants_remapped`` (FHI-vibes, (3N, 3N),
    trajectory atom order). The primitive cell is the lattice of the ``atoms_primitive``
    attribute (FHI-vibes' JSON) if present, else found by symmetry. A phonopy yaml is
    returned as it is (after checking that its supercell matches).
    """
    from alkappa.io.reference import atoms_from_vibes_dict, vibes_reference_atoms
    from alkappa.io.trajectory import read_trajectory
    from alkappa.phonons import make_phonopy, read_force_constants

    ds = trajectory if isinstance(trajectory, xr.Dataset) else read_trajectory(trajectory)
    source = str(
        ds.attrs.get("source", trajectory if not isinstance(trajectory, xr.Dataset) else "dataset")
    )
    reference = vibes_reference_atoms(ds)
    n = len(reference)
    if isinstance(force_constants, (str, Path)) or hasattr(force_constants, "__fspath__"):
        path = Path(force_constants)  # type: ignore[arg-type]
        yaml = (path / "phonopy_params.yaml") if path.is_dir() else path
        if yaml.suffix in (".yaml", ".yml", ".xz"):
            from alkappa.greenkubo._modes import commensurate_modes

            try:
                ph = _load_phonopy(yaml)
            except Exception as exc:  # any parse error of a foreign file: one clear line
                raise ValueError(
                    f"{yaml}: not a phonopy file with force constants ({exc})"
                ) from exc
            if ph.force_constants is None:
                raise ValueError(f"{yaml}: no force constants in the phonopy file")
            try:
                commensurate_modes(ph, reference)
            except ValueError as exc:
                raise ValueError(f"{yaml} does not fit {source}: {exc}") from exc
            return ph
        try:
            fc = read_force_constants(path, reference)
        except Exception as exc:  # any parse error of a foreign file: one clear line
            raise ValueError(f"{path}: unusable force constants ({exc})") from exc
        origin = str(path)
    elif force_constants is not None:
        fc = np.asarray(force_constants, dtype=float)
        origin = "the given array"
    elif "force_constants_remapped" in ds:
        fc = np.asarray(ds["force_constants_remapped"].values, dtype=float)
        origin = f"{source}: force_constants_remapped"
    else:
        raise ValueError(f"{source}: no force constants (no 'force_constants_remapped')")
    if fc.shape == (3 * n, 3 * n):
        fc = fc.reshape(n, 3, n, 3).transpose(0, 2, 1, 3)
    if fc.shape != (n, n, 3, 3) or not np.isfinite(fc).all():
        raise ValueError(f"{origin}: force constants of shape {fc.shape} do not fit {n} atoms")
    primitive_matrix: Any = "auto"
    if "atoms_primitive" in ds.attrs:
        primitive = atoms_from_vibes_dict(json.loads(ds.attrs["atoms_primitive"]))
        # phonopy: primitive lattice (columns) = unit cell lattice (columns) @ P
        primitive_matrix = (
            np.asarray(primitive.cell, dtype=float) @ np.linalg.inv(np.asarray(reference.cell))
        ).T
    ph = make_phonopy(_plain(reference), supercell_matrix=None, primitive_matrix=primitive_matrix)
    ph.force_constants = fc
    return ph


def _plain(atoms: Atoms) -> Atoms:
    """A copy without constraints or calculator (phonopy takes symbols, masses, cell)."""
    out = atoms.copy()
    out.set_constraint()
    out.calc = None
    return out


def _check_commensurate(qpoints: np.ndarray, phonon: Phonopy) -> None:
    """The q-points must be exactly the commensurate points of the phonopy supercell."""
    from alkappa.greenkubo._modes import _qkey, commensurate_qpoints

    matrix = np.asarray(phonon.supercell.cell, dtype=float) @ np.linalg.inv(
        np.asarray(phonon.primitive.cell, dtype=float)
    )
    expected = {_qkey(p) for p in commensurate_qpoints(np.rint(matrix))}
    given = {_qkey(p) for p in np.mod(qpoints, 1.0)}
    if given != expected or len(given) != len(qpoints):
        raise ValueError(
            f"the lifetimes' {len(qpoints)} q-points are not the {len(expected)} commensurate "
            "q-points of the force constants' supercell: different MD cell"
        )


def _gamma_neighbourhood(qpoints: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-Gamma commensurate points and their images around Gamma (in [-1/2, 1/2]-ish)."""
    q = np.asarray(qpoints, dtype=float)
    keep = ~np.all(np.abs(q - np.rint(q)) < 1e-8, axis=1)
    centred = q[keep] - np.rint(q[keep])  # in [-1/2, 1/2]
    shifts = np.array(np.meshgrid(*[[-1, 0, 1]] * 3, indexing="ij")).reshape(3, -1).T
    moved = (centred[None] + shifts[:, None]).reshape(-1, 3)
    vals = np.broadcast_to(np.asarray(values)[keep], (len(shifts), *np.shape(values[keep])))
    vals = vals.reshape(len(moved), *np.shape(values)[1:])
    near = np.all(np.abs(moved) <= 1.0 + 1e-9, axis=1)
    return moved[near], vals[near]


def _tau_from_lambda(lam: np.ndarray, omega: np.ndarray, qpoints: np.ndarray) -> np.ndarray:
    """tau = lambda / omega^2 (ps); 0 for the acoustic modes at Gamma and imaginary modes."""
    zone_centre = np.all(np.abs(qpoints - np.rint(qpoints)) < 1e-8, axis=1)
    skip = (omega <= 0) | (zone_centre[:, None] & (np.arange(lam.shape[1]) < 3)[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(skip, 0.0, lam / np.where(skip, 1.0, omega**2))
    return tau
