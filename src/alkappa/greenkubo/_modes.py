"""Phonon lifetimes from molecular dynamics: mode-energy autocorrelation at commensurate q.

Method (the lifetimes step of the harmonic interpolation of Knoop et al., Phys. Rev. B 107,
224304 (2023), as outlined in FHI-vibes' ``vibes/green_kubo/README.md``: "compute lifetimes
tau_s = c_s^-1 int dt <n_s(t) n_s> ... by fitting g_s(t) = exp(-t / tau_s)"; here with the
mode energy instead of the occupation n_s = E_s / omega_s, which has the same normalised
autocorrelation):

* **Modes.** The harmonic force constants of the MD supercell (a :class:`phonopy.Phonopy`
  whose supercell is the trajectory's cell, e.g. ``phonopy_params.yaml`` of
  :func:`~alkappa.phonons.write_harmonic`) are Bloch-projected onto each q-point commensurate
  with the supercell (q with exp(2 pi i q . L) = 1 for every supercell lattice vector L):
  D(q)_{ka,k'b} = (1/N_c) sum_{I in k, J in k'} Phi_{Ia,Jb} / sqrt(m_I m_J)
  exp(2 pi i q . (r_J - r_I)), with N_c primitive cells, the *trajectory's* masses and the
  reference positions r. At commensurate q this is exactly phonopy's dynamical matrix (same
  frequencies); diagonalising it gives omega_s(q)^2 and the supercell mode vectors
  W_{Ia,s}(q) = exp(2 pi i q . r_I) e_{k(I)a,s}(q) / sqrt(N_c), which together form a unitary
  3N x 3N matrix. q-points are in reduced coordinates of the primitive reciprocal lattice
  (phonopy's and phono3py's ``qpoints``).
* **Projection.** Mass-weighted displacements (``positions - positions_reference`` under the
  minimum image) and velocities (ASE units, as FHI-vibes stores them; alkappa's Å/fs files are
  recognised by their kinetic temperature, see :mod:`alkappa.io.reference`) give the complex
  mode amplitudes u_s = W_s^dagger sqrt(m) u and v_s = W_s^dagger sqrt(m) v and the mode
  energies E_s(t) = |v_s|^2 / 2 + omega_s^2 |u_s|^2 / 2 (eV). E_s(q) = E_s(-q): q and -q are
  the same pair of real modes (for q != -q, E_s is the mean energy of the two).
* **Lifetime.** The fluctuations dE_s = E_s - <E_s> (mean over all frames of all runs) are
  autocorrelated (unbiased FFT estimate, pooled over runs), normalised to 1 at t = 0, and
  A exp(-t / tau) is fitted (least squares on log C, weights C) from t = 0 to the first time
  C drops below ``fit_threshold``; ``tau_integral`` is the integral of C up to its first zero.

Convention: tau is the decay time of the **energy** (occupation) autocorrelation. For a mode
with linewidth (half width at half maximum) Gamma (angular frequency) the amplitude
autocorrelation decays as exp(-Gamma t) and the energy autocorrelation as exp(-2 Gamma t),
so tau = 1 / (2 Gamma) = 1 / (4 pi gamma) with gamma = Gamma / (2 pi) in THz: exactly
phono3py's lifetime ``tau = 1 / (2 * 2 pi * gamma)`` (see
:mod:`alkappa.phonons._conductivity`) and the relaxation time of the Boltzmann equation. No
factor is needed in the comparison. Check: under ASE's Langevin thermostat (dv/dt = F/m -
friction v + noise) a harmonic mode's amplitude decays at friction / 2 and its energy
autocorrelation as exp(-friction t): tau = 1 / friction.

Caveats: MD is classical (phono3py uses Bose-Einstein occupations in the scattering rates)
and contains all orders of anharmonicity; within a degenerate set the split into bands is
arbitrary (phono3py averages linewidths over degenerate bands: :func:`compare_mode_lifetimes`
does the same with the MD rates). The acoustic modes at Gamma (omega = 0) get ``tau = NaN``.
A mode whose energy barely fluctuates (relative variance below ``min_fluctuation`` of the
canonical value, e.g. any mode of a harmonic NVE run) exchanges no energy: ``tau = inf``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from ase import units

from alkappa.greenkubo._analysis import autocorrelation

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from ase import Atoms
    from phonopy import Phonopy

    TrajectoryLike = str | os.PathLike[str] | xr.Dataset
    from alkappa.io import AttrValue

#: angular frequency in 1/(ASE time unit) -> THz
_OMEGA_TO_THZ = units.fs * 1000.0 / (2.0 * np.pi)


@dataclass(frozen=True)
class CommensurateModes:
    """Harmonic normal modes of a supercell at its commensurate q-points.

    Attributes
    ----------
    qpoints
        (n_q, 3) reduced coordinates in the primitive reciprocal basis, in [0, 1).
    frequencies
        (n_q, n_band) THz; imaginary modes negative (phonopy's convention).
    omega2
        (n_q, n_band) squared angular frequencies in eV/(Å² amu), i.e. 1/(ASE time)².
    vectors
        (3N, n_q, n_band) complex mode vectors in the supercell, trajectory atom order; over
        all q and bands a unitary matrix.
    masses
        (N,) the masses used (amu).
    self_conjugate
        (n_q,) whether q and -q are the same point (Gamma, zone-boundary points).
    rotations
        (n_rot, 3, 3) point-group operations acting on reduced q (``q' = R @ q``).
    primitive_cell
        (3, 3) lattice vectors (rows, Å) of the primitive cell of the q coordinates.
    """

    qpoints: np.ndarray
    frequencies: np.ndarray
    omega2: np.ndarray
    vectors: np.ndarray = field(repr=False)
    masses: np.ndarray = field(repr=False)
    self_conjugate: np.ndarray = field(repr=False)
    rotations: np.ndarray = field(repr=False)
    primitive_cell: np.ndarray = field(repr=False)

    @property
    def n_atoms(self) -> int:
        return len(self.masses)

    def amplitudes(self, values: np.ndarray) -> np.ndarray:
        """Complex mode amplitudes (time, n_q, n_band) of (time, N, 3) displacements or
        velocities: W^dagger sqrt(m) x."""
        x = np.asarray(values, dtype=float)
        n_t = x.shape[0]
        weighted = (x * np.sqrt(self.masses)[None, :, None]).reshape(n_t, -1)
        flat = self.vectors.reshape(self.vectors.shape[0], -1)
        return (weighted @ flat.conj()).reshape(n_t, *self.frequencies.shape)

    def energies(self, displacements: np.ndarray, velocities: np.ndarray) -> np.ndarray:
        """Harmonic mode energies (time, n_q, n_band) in eV for displacements in Å and
        velocities in ASE units."""
        u = self.amplitudes(displacements)
        v = self.amplitudes(velocities)
        return 0.5 * (np.abs(v) ** 2 + self.omega2[None] * np.abs(u) ** 2)


def commensurate_modes(
    phonon: Phonopy | str | os.PathLike[str], reference: Atoms
) -> CommensurateModes:
    """The harmonic modes of the supercell ``reference`` at its commensurate q-points.

    Parameters
    ----------
    phonon
        A :class:`phonopy.Phonopy` with force constants, or the path of a
        ``phonopy_params.yaml`` (or a directory holding one). Its supercell must be the
        lattice of ``reference``; atoms are matched by position (any order).
    reference
        The trajectory's reference structure (positions, cell, masses).
    """
    from phonopy.harmonic.force_constants import compact_fc_to_full_fc

    from alkappa.phonons import match_atoms

    ph = _load_phonopy(phonon)
    if ph.force_constants is None:
        raise ValueError("the phonopy object has no force constants")
    order = match_atoms(reference, ph.supercell)
    fc = np.asarray(ph.force_constants, dtype=float)
    if fc.shape[0] != fc.shape[1]:
        fc = compact_fc_to_full_fc(ph.primitive, fc)
    fc = fc[np.ix_(order, order)]
    n = len(reference)
    masses = reference.get_masses()
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(masses), 3)
    dyn = fc.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n) * np.outer(inv_sqrt_m, inv_sqrt_m)
    dyn = 0.5 * (dyn + dyn.T)

    primitive = ph.primitive
    p2p = {int(k): int(v) for k, v in primitive.p2p_map.items()}
    kappa_of = np.array([p2p[int(primitive.s2p_map[j])] for j in order])
    n_prim = len(primitive)
    prim_cell = np.asarray(primitive.cell, dtype=float)
    # positions as exact lattice translations of the primitive atoms (unitary Bloch sums even
    # if the supercell's positions carry numerical noise)
    basis = np.asarray(primitive.positions, dtype=float)[kappa_of]
    offset = (np.asarray(ph.supercell.positions, dtype=float)[order] - basis) @ np.linalg.inv(
        prim_cell
    )
    if np.abs(offset - np.rint(offset)).max() > 1e-3:
        raise ValueError("the supercell's atoms are not lattice translations of the primitive's")
    positions = np.rint(offset) @ prim_cell + basis
    matrix = np.asarray(ph.supercell.cell, dtype=float) @ np.linalg.inv(prim_cell)
    integer = np.rint(matrix)
    if not np.allclose(matrix, integer, atol=1e-4):
        raise ValueError("the supercell is not an integer multiple of the primitive cell")
    n_cells = round(abs(np.linalg.det(integer)))
    if n_cells * n_prim != n:
        raise ValueError(f"{n} atoms are not {n_cells} primitive cells of {n_prim} atoms")
    qpoints = commensurate_qpoints(integer)
    reciprocal = np.linalg.inv(prim_cell).T  # rows b_j with a_i . b_j = delta_ij

    n_band = 3 * n_prim
    omega2 = np.empty((len(qpoints), n_band))
    vectors = np.empty((3 * n, len(qpoints), n_band), dtype=complex)
    for iq, q in enumerate(qpoints):
        phase = np.exp(2j * np.pi * positions @ (q @ reciprocal)) / np.sqrt(n_cells)
        bloch = np.zeros((n, 3, n_prim, 3), dtype=complex)
        for alpha in range(3):
            bloch[np.arange(n), alpha, kappa_of, alpha] = phase
        bloch = bloch.reshape(3 * n, n_band)
        dq = bloch.conj().T @ dyn @ bloch
        values, eigvecs = np.linalg.eigh(0.5 * (dq + dq.conj().T))
        omega2[iq] = values
        vectors[:, iq, :] = bloch @ eigvecs
    frequencies = np.sign(omega2) * np.sqrt(np.abs(omega2)) * _OMEGA_TO_THZ
    self_conjugate = np.all(np.abs(2 * qpoints - np.rint(2 * qpoints)) < 1e-8, axis=1)
    rotations = np.array(
        [np.asarray(r).T for r in ph.primitive_symmetry.pointgroup_operations], dtype=int
    )
    return CommensurateModes(
        qpoints=qpoints,
        frequencies=frequencies,
        omega2=omega2,
        vectors=vectors,
        masses=masses,
        self_conjugate=self_conjugate,
        rotations=rotations,
        primitive_cell=prim_cell,
    )


def mode_velocities(
    phonon: Phonopy | str | os.PathLike[str], qpoints: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (n_q, n_band; THz) and group velocities (n_q, n_band, 3; Å/ps) at ``qpoints``.

    ``qpoints`` are reduced (primitive reciprocal basis). phonopy's group velocity
    d nu / d k (nu in THz, k = q / a without 2 pi) is d omega / d k in Å/ps; within
    degenerate sets phonopy diagonalises the derivative of the dynamical matrix.
    """
    ph = _load_phonopy(phonon)
    if ph.force_constants is None:
        raise ValueError("the phonopy object has no force constants")
    ph.run_qpoints(np.atleast_2d(np.asarray(qpoints, dtype=float)), with_group_velocities=True)
    result = ph.qpoints
    return (
        np.asarray(result.frequencies, dtype=float),
        np.asarray(result.group_velocities, dtype=float),
    )


def commensurate_qpoints(supercell_matrix: np.ndarray) -> np.ndarray:
    """q-points (reduced, primitive reciprocal basis, in [0, 1)) commensurate with a supercell.

    ``supercell_matrix`` M is integer with supercell rows = M @ primitive rows; q is
    commensurate if M @ q is integer, i.e. q = M^-1 n. Returns |det M| points, sorted.
    """
    m = np.asarray(supercell_matrix, dtype=float)
    inverse = np.linalg.inv(m)
    points = np.zeros((1, 3))
    for generator in inverse.T:  # the images of the unit vectors generate the group
        known = {_qkey(p) for p in points}
        current = [points]
        shift = generator.copy()
        while _qkey(np.mod(points[0] + shift, 1.0)) not in known:
            moved = np.mod(points + shift, 1.0)
            current.append(moved)
            shift = shift + generator
        points = np.concatenate(current)
        points = np.array(list({_qkey(p): p for p in points}.values()))
    expected = round(abs(np.linalg.det(m)))
    points = np.mod(np.rint(points * expected), expected) / expected  # exact: D q is integer
    if len(points) != expected:
        raise RuntimeError(f"found {len(points)} commensurate points, expected {expected}")
    order = np.lexsort(points.T[::-1])
    return points[order]


def mode_energies(
    trajectory: TrajectoryLike, modes: CommensurateModes, *, discard_fs: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Times (fs) and harmonic mode energies (time, n_q, n_band; eV) of one trajectory."""
    run = _read_run(trajectory, discard_fs)
    if len(run["masses"]) != modes.n_atoms:
        raise ValueError(
            f"{run['source']}: {len(run['masses'])} atoms, the modes have {modes.n_atoms}"
        )
    return run["time"], modes.energies(run["displacements"], run["velocities"])


def run_mode_lifetimes(
    trajectories: Sequence[TrajectoryLike] | TrajectoryLike,
    phonon: Phonopy | str | os.PathLike[str],
    *,
    max_lag_fs: float | None = None,
    fit_threshold: float = 0.2,
    min_fluctuation: float = 0.1,
    discard_fs: float = 0.0,
    bias_correction: bool = True,
    jackknife: bool = True,
) -> xr.Dataset:
    """Per-mode lifetimes from the mode-energy autocorrelation of one or several MD runs.

    Parameters
    ----------
    trajectories
        ``trajectory.nc`` paths or datasets (alkappa or FHI-vibes) of the same supercell, with
        ``positions``, ``velocities`` and the reference structure; runs are pooled.
    phonon
        Harmonic force constants of that supercell (see :func:`commensurate_modes`).
    max_lag_fs
        Longest correlation time; default half of the shortest run.
    fit_threshold
        The exponential is fitted from t = 0 to the first time the normalised
        autocorrelation drops below this.
    min_fluctuation
        Modes whose energy variance is below this fraction of the canonical one
        (<E>^2 for q = -q, <E>^2 / 2 otherwise) get ``tau = inf`` (no energy exchange).
    discard_fs
        Time dropped from the start of every run.
    bias_correction
        Undo the offset that subtracting the sample mean puts on the estimated
        autocorrelation (see :func:`_lifetime`); without it tau comes out low by a few
        2 tau / T_total.
    jackknife
        Also fit every mode once per left-out run (``tau_jackknife``), from which the
        statistical error of anything computed from the lifetimes follows (the
        finite-size correction's).

    Returns
    -------
    xarray.Dataset
        Dimensions ``qpoint``, ``band``, ``time`` (lag, fs), ``reciprocal``, ``symmetry``.
        ``qpoints`` (qpoint, reciprocal; reduced, primitive reciprocal basis),
        ``frequency`` (qpoint, band; THz), ``tau`` (ps; energy-autocorrelation decay time,
        comparable to phono3py's tau; NaN for omega <= 0, inf without energy exchange),
        ``tau_integral`` (ps), ``tau_jackknife`` (run, qpoint, band; ps; tau without run
        r, equal to ``tau`` for a single run or ``jackknife=False``), ``fit_amplitude``,
        ``decay_observed`` (1 if the autocorrelation fell below ``fit_threshold``),
        ``relative_fluctuation``,
        ``mean_energy`` (eV), ``energy_acf`` (qpoint, band, time; normalised),
        ``self_conjugate`` (qpoint), ``rotations`` (symmetry, reciprocal, reciprocal_; the
        point group acting on reduced q, for matching q-points), ``primitive_cell``
        (cell_vector, cartesian; Å). Attributes: ``temperature`` (mean
        kinetic temperature, K), ``dt_fs``, ``n_runs``, ``sources``, conventions.
    """
    from alkappa.io.reference import vibes_reference_atoms

    items = (
        [trajectories]
        if isinstance(trajectories, (str, Path, xr.Dataset)) or hasattr(trajectories, "__fspath__")
        else list(trajectories)
    )
    if not items:
        raise ValueError("no trajectories given")
    runs = [_read_run(item, discard_fs) for item in items]
    first = runs[0]
    modes = commensurate_modes(phonon, vibes_reference_atoms(first["dataset"]))
    dts = [r["dt_fs"] for r in runs]
    if not np.allclose(dts, dts[0], rtol=1e-6, atol=1e-9):
        listing = ", ".join(f"{r['source']}: {r['dt_fs']:g} fs" for r in runs)
        raise ValueError(f"the runs have different time steps ({listing})")
    for r in runs:
        if len(r["masses"]) != modes.n_atoms:
            raise ValueError(f"{r['source']}: {len(r['masses'])} atoms, expected {modes.n_atoms}")
    dt = dts[0]
    energies = [modes.energies(r["displacements"], r["velocities"]) for r in runs]
    shortest = min(len(e) for e in energies)
    n_lags = max(shortest // 2, 2) if max_lag_fs is None else round(max_lag_fs / dt) + 1
    n_lags = min(n_lags, shortest)
    if n_lags < 4:
        raise ValueError(f"runs of {shortest} frames are too short for lifetimes")

    shape = modes.frequencies.shape
    n_modes = int(np.prod(shape))
    total = sum(e.reshape(len(e), -1).sum(axis=0) for e in energies)
    mean = total / sum(len(e) for e in energies)
    # per-run sums of lagged products (about the pooled mean), kept for the jackknife
    run_sums = np.zeros((len(energies), n_lags, n_modes))
    run_counts = np.zeros((len(energies), n_lags))
    for r, e in enumerate(energies):
        flat = e.reshape(len(e), -1) - mean
        for start in range(0, n_modes, 32):
            block = slice(start, start + 32)
            run_sums[r, :, block] = len(e) * autocorrelation(
                flat[:, block], max_lag=n_lags - 1, unbiased=False
            )
        run_counts[r] = len(e) - np.arange(n_lags)
    sums, counts = run_sums.sum(axis=0), run_counts.sum(axis=0)
    acf = sums / counts[:, None]
    time = np.arange(n_lags) * dt
    total_time = dt * sum(len(e) for e in energies)

    variance = acf[0]
    canonical = mean**2 * np.repeat(np.where(modes.self_conjugate, 1.0, 0.5), shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = variance / canonical
        normalised = acf / variance
    tau = np.full(n_modes, np.nan)
    tau_int = np.full(n_modes, np.nan)
    amplitude = np.full(n_modes, np.nan)
    observed = np.zeros(n_modes, dtype=int)
    positive = modes.omega2.ravel() > 0
    # the three lowest bands at Gamma are the acoustic (translation) modes
    zone_centre = np.all(np.abs(modes.qpoints) < 1e-8, axis=1)
    acoustic = (zone_centre[:, None] & (np.arange(shape[1]) < 3)[None, :]).ravel()
    fitted = np.zeros(n_modes, dtype=bool)
    for s in range(n_modes):
        if not positive[s] or acoustic[s] or not variance[s] > 0:
            continue
        if relative[s] < min_fluctuation:
            tau[s] = tau_int[s] = np.inf
            continue
        fitted[s] = True
        tau[s], tau_int[s], amplitude[s], observed[s] = _lifetime(
            time, normalised[:, s], fit_threshold, total_time if bias_correction else None
        )
    # leave-one-run-out lifetimes (jackknife samples; the same modes fitted, the rest as tau)
    tau_jk = np.repeat(tau[None, :], len(runs), axis=0)
    if jackknife and len(runs) > 1:
        for r in range(len(runs)):
            acf_r = (sums - run_sums[r]) / (counts - run_counts[r])[:, None]
            time_r = total_time - dt * len(energies[r])
            for s in np.nonzero(fitted)[0]:
                if not acf_r[0, s] > 0:
                    continue
                tau_jk[r, s] = _lifetime(
                    time,
                    acf_r[:, s] / acf_r[0, s],
                    fit_threshold,
                    time_r if bias_correction else None,
                )[0]

    dims = ("qpoint", "band")
    ds = xr.Dataset(
        {
            "qpoints": (("qpoint", "reciprocal"), modes.qpoints),
            "frequency": (dims, modes.frequencies),
            "tau": (dims, tau.reshape(shape) / 1000.0),
            "tau_integral": (dims, tau_int.reshape(shape) / 1000.0),
            "tau_jackknife": (("run", *dims), tau_jk.reshape(len(runs), *shape) / 1000.0),
            "fit_amplitude": (dims, amplitude.reshape(shape)),
            "decay_observed": (dims, observed.reshape(shape)),
            "relative_fluctuation": (dims, relative.reshape(shape)),
            "mean_energy": (dims, mean.reshape(shape)),
            "energy_acf": ((*dims, "time"), normalised.T.reshape(*shape, n_lags)),
            "self_conjugate": (("qpoint",), modes.self_conjugate.astype(int)),
            "rotations": (("symmetry", "reciprocal", "reciprocal_"), modes.rotations),
            "primitive_cell": (("cell_vector", "cartesian"), modes.primitive_cell),
        },
        coords={
            "qpoint": np.arange(len(modes.qpoints)),
            "band": np.arange(shape[1]),
            "time": time,
            "run": np.arange(len(runs)),
        },
        attrs={
            "temperature": float(np.mean([r["temperature"] for r in runs])),
            "dt_fs": float(dt),
            "n_runs": len(runs),
            "sources": [r["source"] for r in runs],
            "fit_threshold": float(fit_threshold),
            "min_fluctuation": float(min_fluctuation),
            "tau_definition": (
                "decay time of the normalised mode-energy autocorrelation, A exp(-t/tau); "
                "= phono3py's tau = 1/(4 pi gamma), gamma the half width in THz; amplitude "
                "correlations decay with 2 tau"
            ),
            "method": "Knoop et al., Phys. Rev. B 107, 224304 (2023); FHI-vibes green_kubo",
        },
    )
    for name, unit in {
        "frequency": "THz",
        "tau": "ps",
        "tau_integral": "ps",
        "tau_jackknife": "ps",
        "mean_energy": "eV",
        "time": "fs",
        "primitive_cell": "Angstrom",
    }.items():
        ds[name].attrs["units"] = unit
    return ds


def compare_mode_lifetimes(
    md: xr.Dataset | str | os.PathLike[str],
    kappa: xr.Dataset | str | os.PathLike[str],
    *,
    temperature: float | None = None,
    degenerate_tolerance: float = 1e-3,
    symprec: float = 1e-6,
) -> xr.Dataset:
    """MD lifetimes (:func:`run_mode_lifetimes`) next to phono3py's at the same q-points.

    phono3py's ``kappa.nc`` (:func:`~alkappa.phonons.run_phono3py`) holds the *irreducible*
    q-points of its mesh. Each commensurate q of the MD is matched to an irreducible point
    that equals one of its images R q or -R q (R in the point group stored with the MD
    result; -: time reversal) modulo reciprocal lattice vectors. Points of the MD that are not
    on phono3py's mesh (e.g. a mesh that is not a multiple of the supercell) stay unmatched
    (NaN): nothing is interpolated. Bands are matched by index (both sorted by frequency at
    the same q; the frequencies of both are returned to check). As phono3py averages
    linewidths over degenerate bands, ``tau_md`` averages the MD decay *rates* over bands
    whose frequencies agree within ``degenerate_tolerance`` (THz); the per-band values are in
    ``tau_md_band``. The same primitive cell is assumed for both (alkappa builds both from
    the same relaxed supercell).

    Parameters
    ----------
    md, kappa
        Datasets or netCDF paths.
    temperature
        Temperature (K) of phono3py's lifetimes; default the MD's mean temperature. The
        nearest temperature of ``kappa`` is used (``temperature_phono3py`` attribute).

    Returns
    -------
    xarray.Dataset
        On the MD's (qpoint, band): ``tau_md``, ``tau_md_band``, ``tau_phono3py`` (ps),
        ``frequency_md``, ``frequency_phono3py`` (THz), ``qpoints``, ``matched`` (qpoint),
        ``kappa_qpoint`` (index into ``kappa``'s qpoint, -1 if none). Attributes: the
        temperatures, ``n_matched_qpoints``, ``n_qpoints``, and over modes with finite
        positive lifetimes in both: ``n_modes_compared``, ``median_ratio`` (MD / phono3py),
        ``log10_ratio_mean``, ``log10_ratio_rms``, ``max_frequency_difference`` (THz).
    """
    from alkappa.io import read_netcdf

    md_ds = read_netcdf(md) if not isinstance(md, xr.Dataset) else md
    k_ds = read_netcdf(kappa) if not isinstance(kappa, xr.Dataset) else kappa
    if md_ds.sizes["band"] != k_ds.sizes["band"]:
        raise ValueError(
            f"the MD modes have {md_ds.sizes['band']} bands, phono3py's {k_ds.sizes['band']}: "
            "different primitive cells"
        )
    t_md = float(md_ds.attrs.get("temperature", np.nan))
    wanted = t_md if temperature is None else float(temperature)
    if not np.isfinite(wanted):
        raise ValueError("no temperature given and the MD result has none")
    at = k_ds.sel(temperature=wanted, method="nearest")
    t_used = float(at["temperature"])
    rotations = md_ds["rotations"].values if "rotations" in md_ds else np.eye(3, dtype=int)[None]
    ops = np.concatenate([rotations, -rotations])
    k_q = k_ds["qpoints"].values
    md_q = md_ds["qpoints"].values
    index = np.full(len(md_q), -1)
    for iq, q in enumerate(md_q):
        images = np.einsum("rij,j->ri", ops, q)
        diff = images[:, None, :] - k_q[None, :, :]
        close = np.all(np.abs(diff - np.rint(diff)) < 1e-5 + symprec, axis=2)
        hits = np.nonzero(close.any(axis=0))[0]
        if hits.size:
            index[iq] = hits[0]
    matched = index >= 0

    freq_md = md_ds["frequency"].values
    tau_band = md_ds["tau"].values
    tau_md = _degenerate_average(tau_band, freq_md, degenerate_tolerance)
    n_band = freq_md.shape[1]
    tau_ph3 = np.full_like(tau_md, np.nan)
    freq_ph3 = np.full_like(freq_md, np.nan)
    tau_ph3[matched] = at["tau"].values[index[matched]]
    freq_ph3[matched] = k_ds["frequency"].values[index[matched]]

    ok = np.isfinite(tau_md) & np.isfinite(tau_ph3) & (tau_md > 0) & (tau_ph3 > 0)
    attrs: dict[str, AttrValue] = {
        "temperature_md": t_md,
        "temperature_phono3py": t_used,
        "n_qpoints": len(md_q),
        "n_matched_qpoints": int(matched.sum()),
        "n_modes_compared": int(ok.sum()),
        "matching": "q-points equal up to point group, time reversal and reciprocal lattice "
        "vectors; unmatched points are NaN (no interpolation)",
        "tau_convention": "both: energy (occupation) relaxation time, phono3py tau = "
        "1/(4 pi gamma); no factor between them",
    }
    if ok.any():
        log_ratio = np.log10(tau_md[ok] / tau_ph3[ok])
        attrs.update(
            {
                "median_ratio": float(10 ** np.median(log_ratio)),
                "log10_ratio_mean": float(log_ratio.mean()),
                "log10_ratio_rms": float(np.sqrt(np.mean(log_ratio**2))),
            }
        )
    if matched.any():
        attrs["max_frequency_difference"] = float(
            np.nanmax(np.abs(freq_md[matched] - freq_ph3[matched]))
        )
    dims = ("qpoint", "band")
    out = xr.Dataset(
        {
            "qpoints": (("qpoint", "reciprocal"), md_q),
            "matched": (("qpoint",), matched.astype(int)),
            "kappa_qpoint": (("qpoint",), index),
            "frequency_md": (dims, freq_md),
            "frequency_phono3py": (dims, freq_ph3),
            "tau_md": (dims, tau_md),
            "tau_md_band": (dims, tau_band),
            "tau_phono3py": (dims, tau_ph3),
        },
        coords={"qpoint": np.arange(len(md_q)), "band": np.arange(n_band)},
        attrs=attrs,
    )
    for name in ("tau_md", "tau_md_band", "tau_phono3py"):
        out[name].attrs["units"] = "ps"
    for name in ("frequency_md", "frequency_phono3py"):
        out[name].attrs["units"] = "THz"
    return out


# --------------------------------------------------------------------------------------------


def _load_phonopy(phonon: Phonopy | str | os.PathLike[str]) -> Phonopy:
    if isinstance(phonon, (str, Path)) or hasattr(phonon, "__fspath__"):
        from alkappa.phonons import load_phonopy

        path = Path(phonon)  # type: ignore[arg-type]
        if path.is_dir():
            path = path / "phonopy_params.yaml"
        if not path.is_file():
            raise ValueError(f"{path}: no phonopy file with force constants")
        return load_phonopy(path)
    return phonon  # type: ignore[return-value]


def _qkey(q: np.ndarray) -> tuple[int, int, int]:
    r = np.mod(np.round(np.asarray(q) * 1e8).astype(np.int64), 100_000_000)
    return (int(r[0]), int(r[1]), int(r[2]))


def _read_run(trajectory: TrajectoryLike, discard_fs: float) -> dict[str, Any]:
    """Displacements (Å), ASE-unit velocities, times, temperature of one trajectory."""
    # a production run is read with its extension segments
    from alkappa.greenkubo._production import read_run
    from alkappa.io.reference import velocities_to_ase, vibes_reference_atoms

    if isinstance(trajectory, xr.Dataset):
        ds, source = trajectory, str(trajectory.attrs.get("source", "dataset"))
    else:
        source = str(trajectory)
        try:
            ds = read_run(trajectory)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{source}: cannot read as netCDF ({exc})") from exc
    for name in ("positions", "velocities"):
        if name not in ds:
            raise ValueError(f"{source}: no {name!r} variable")
    reference = vibes_reference_atoms(ds)
    if not reference.pbc.all():
        raise ValueError(f"{source}: the reference structure is not periodic")
    masses = reference.get_masses()
    positions = np.asarray(ds["positions"].values, dtype=float)
    velocities = np.asarray(ds["velocities"].values, dtype=float)
    time = np.asarray(ds["time"].values, dtype=float)
    keep = np.isfinite(positions).all(axis=(1, 2)) & np.isfinite(velocities).all(axis=(1, 2))
    keep &= time >= time[0] + discard_fs - 1e-9
    positions, velocities, time = positions[keep], velocities[keep], time[keep]
    if len(time) < 8:
        raise ValueError(f"{source}: only {len(time)} frames with positions and velocities")
    steps = np.diff(time)
    dt = float(np.median(steps))
    if not dt > 0 or not np.allclose(steps, dt, rtol=1e-4, atol=1e-6):
        raise ValueError(f"{source}: frames are not evenly spaced in time (missing frames?)")
    velocities = velocities * velocities_to_ase(ds, masses)
    ref_pos = (
        np.asarray(ds["positions_reference"].values, dtype=float)
        if "positions_reference" in ds
        else reference.positions
    )
    cell = np.asarray(reference.cell, dtype=float)
    frac = (positions - ref_pos[None]) @ np.linalg.inv(cell)
    displacements = (frac - np.rint(frac)) @ cell  # minimum image for small displacements
    if "temperature" in ds:
        temps = np.asarray(ds["temperature"].values, dtype=float)[keep]
        temperature = float(np.nanmean(temps))
    else:
        ekin = 0.5 * np.einsum("i,tia->t", masses, velocities**2)
        temperature = float(np.mean(2.0 * ekin / (3 * len(masses) * units.kB)))
    return {
        "dataset": ds,
        "source": source,
        "time": time,
        "dt_fs": dt,
        "displacements": displacements,
        "velocities": velocities,
        "masses": masses,
        "temperature": temperature,
    }


def _lifetime(
    time: np.ndarray, acf: np.ndarray, threshold: float, total_time: float | None
) -> tuple[float, float, float, int]:
    """Fitted and integral decay times (fs), amplitude and whether the decay was observed.

    With ``total_time`` (the pooled length T of all runs), the first-order bias of the
    autocorrelation estimate from subtracting the sample mean is removed: for a process
    with integral correlation time tau, E[(x_i - xbar)(x_j - xbar)] = c(|i - j|) - b c(0)
    with b = 2 tau / T (Var(xbar) ~ Cov(x_i, xbar) ~ 2 tau c(0) / T; pooled independent runs
    have the same form with T their total length). The normalised estimate is therefore
    (c / c(0) - b) / (1 - b); it is mapped back by y -> (1 - b) y + b with b from the fitted
    tau, iterated a few times. Skipped when the decay is not observed or b > 0.25.
    """
    y = acf
    tau, amplitude, observed = _fit_decay(time, y, threshold)
    if total_time is not None and observed:
        for _ in range(5):
            b = 2.0 * tau / total_time
            if not 0 < b < 0.25:
                break
            y = (1.0 - b) * acf + b
            tau, amplitude, observed = _fit_decay(time, y, threshold)
    return tau, _integral_time(time, y), amplitude, observed


def _fit_decay(time: np.ndarray, acf: np.ndarray, threshold: float) -> tuple[float, float, int]:
    """Fit A exp(-t / tau) to the start of a normalised autocorrelation.

    Least squares on log(acf) weighted by acf, from t = 0 to the first value below
    ``threshold`` (at least 3 points). Returns tau (fs; inf if it does not decay), A and
    whether the threshold was reached.
    """
    below = np.nonzero(acf < threshold)[0]
    observed = int(below.size > 0)
    end = max(int(below[0]) if below.size else len(acf), 3)
    t, y = time[:end], acf[:end]
    good = y > 0
    if good.sum() < 2:
        return float("nan"), float("nan"), observed
    slope, intercept = np.polyfit(t[good], np.log(y[good]), 1, w=y[good])
    tau = float("inf") if slope >= 0 else -1.0 / float(slope)
    return tau, float(np.exp(intercept)), observed


def _integral_time(time: np.ndarray, acf: np.ndarray) -> float:
    """Integral of the normalised autocorrelation up to its first zero (fs)."""
    negative = np.nonzero(acf <= 0)[0]
    end = int(negative[0]) if negative.size else len(acf)
    if end < 2:
        return 0.0
    return float(np.trapezoid(acf[:end], time[:end]))


def _degenerate_average(tau: np.ndarray, freq: np.ndarray, tolerance: float) -> np.ndarray:
    """tau with the decay rates averaged over bands of equal frequency at each q."""
    out = np.array(tau, dtype=float)
    for iq in range(freq.shape[0]):
        band = 0
        while band < freq.shape[1]:
            end = band + 1
            while end < freq.shape[1] and abs(freq[iq, end] - freq[iq, band]) < tolerance:
                end += 1
            group = tau[iq, band:end]
            if end - band > 1 and np.all(np.isfinite(group) | np.isinf(group)):
                with np.errstate(divide="ignore"):
                    rate = np.mean(1.0 / group)
                out[iq, band:end] = np.inf if rate == 0 else 1.0 / rate
            band = end
    return out
