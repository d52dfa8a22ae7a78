"""Green-Kubo thermal conductivity from heat-flux time series, after FHI-vibes.

Method (Knoop, Purcell, Scheffler, Carbogno, "Ab initio Green-Kubo simulations of heat
transport in solids: method and implementation", Phys. Rev. B 107, 224304 (2023); FHI-vibes
``vibes/green_kubo/__init__.py`` (``gk_prefactor``, ``get_hf_data``,
``get_lowest_vibrational_frequency``, ``get_gk_dataset``), ``vibes/helpers/filter.py``
(``get_filtered``), ``vibes/konstanten`` (``to_W_mK``) and ``vibes/green_kubo/README.md``, as
mirrored on GitHub in ``AtomicTessellator/fhi-vibes``; FHI-vibes itself lives on GitLab):

1. **Flux.** ``heat_flux`` (time, a) is the heat-flux *density* J = (1/V) sum_I sigma_I v_I
   (sigma_I the atomic virials, v_I the velocities), i.e. already divided by the volume, in
   **eV/Å²/fs** (FHI-vibes >= 1.1: "Heatflux unit updated from eV/AA^2/ps to eV/AA^2/fs"; its
   ``compute_heat_fluxes_from_stresses`` divides the atomic stresses by ``a.get_volume()``). A
   ``units`` attribute on ``heat_flux`` saying ``.../ps`` selects the old unit. The time mean
   of each run is subtracted (FHI-vibes' default, ``total=False``).
2. **Autocorrelation** per Cartesian pair, C_ab(t) = <J_a(t) J_b(0)>, by FFT with zero padding
   to at least 2N - 1 points (no circular wrap-around), O(N log N), normalised *unbiased*:
   lag k is divided by the N - k pairs it has. (FHI-vibes' ``correlate`` divides by N and
   multiplies a one-sided Hann window by default; both damp the noisy tail. Here the tail is
   left as it is and handled by the cutoff below; only the first half of each run, by
   default, is kept.)
3. **Prefactor and units.** kappa_ab(t) = V / (k_B T^2) int_0^t C_ab(t') dt' (trapezoid rule),
   V the supercell volume (Å³), T the mean of the trajectory's ``temperature`` (the kinetic
   temperature, as FHI-vibes' ``get_gk_prefactor_from_dataset``). With J in eV/Å²/fs and t in
   fs, V C t / (k_B T^2) comes out in eV/(Å fs K) = e * 1e25 W/(m K) ≈ 1.602e6 W/(m K)
   (FHI-vibes' ``to_W_mK``: its prefactor docstring reads "V / (k_B * T^2) * 1.602e6"). No
   factor 1/3: this is the tensor; the scalar kappa is the mean of its diagonal.
4. **Smoothing window** from the lowest significant peak f_low of the vibrational density of
   states (the Fourier transform of the velocity autocorrelation; peaks found with
   ``scipy.signal.find_peaks`` at relative prominence 0.2 above 0.1 THz, FHI-vibes'
   defaults): window = ``window_factor`` / f_low, one period of the slowest vibration
   (FHI-vibes: ``window_fs = window_factor / freq * 1000``, ``window_factor = 1``). It can be
   given directly (``window_fs``) or via ``lowest_frequency``.
5. **Smoothing** as FHI-vibes' ``get_gk_dataset``: kappa(t) is smoothed by a Savitzky-Golay
   filter of polynomial order 1 (a running mean) over the window, extended antisymmetrically
   to t < 0 so that t = 0 is treated correctly; its time derivative, smoothed once more (even
   extension), is the smoothed autocorrelation. kappa and C are symmetrised in (a, b)
   (Onsager; FHI-vibes did so too in its ``cross_offdiag`` version).
6. **Cutoff** at the *first dip* of the smoothed C averaged over all runs and, by default
   (``pool_directions``), the three diagonal directions: one common cutoff time for every
   run and diagonal element; each run's smoothed kappa is read there. (FHI-vibes cuts each
   run at its own first dip; on runs of a few correlation times one run's curve crosses zero
   on noise early, at a local maximum of its kappa(t). Averaging n curves divides the noise
   by sqrt(n), and the runs stay independent samples at a common time.) Off-diagonal
   elements are cut where their run-averaged C first changes sign. Without a zero crossing
   the last lag is used and flagged (``cutoff_found = 0``). On Ornstein-Uhlenbeck fluxes of
   3 runs x 8 correlation times the mean over realisations is within ~3 % of the exact
   kappa (measured 0.97 +- 0.04); truncation makes it ~10 % low at 5 correlation times
   (the lags end at half a run), noise ~5 % high at 10 (tests/test_greenkubo_estimators.py).
7. **Several runs** (independent trajectories) are analysed one by one (each with its own T,
   V and prefactor) and averaged: the tensor over runs, with the standard error over runs; the
   scalar kappa over runs *and* the three diagonal directions, with the standard error of
   those 3 n_runs values (sample standard deviation, ddof = 1, over sqrt(3 n_runs)). FHI-vibes
   quotes std(diag) / sqrt(3) (ddof = 0) for one run; with one run this gives the same up to
   the factor sqrt(3/2) of ddof = 1. The same estimate from the first k runs (k = 1..n)
   against their simulated time is the convergence curve (``kappa_vs_runs``).
8. **Cepstral estimate** (:mod:`alkappa.greenkubo._cepstral`, Ercole et al., Sci. Rep. 7,
   15835 (2017)): kappa = S(0) / 2 from the runs' averaged periodogram, an independent
   second number (``kappa_cepstral``); it needs runs much longer than the correlation time
   (it resolves the heat peak of width 1 / (2 pi tau) only with T >~ 30 tau; ~25 % low at
   T = 8 tau).

Units of the dataset: time in fs, C (``heat_flux_acf``) multiplied by the prefactor, i.e. in
W/(m K fs) like FHI-vibes' ``heat_flux_autocorrelation``, kappa in W/(m K), frequencies in
THz, volume in Å³, temperature in K.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from ase import units

from alkappa.greenkubo._cepstral import CepstralResult, cepstral_kappa
from alkappa.io import write_netcdf

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from numpy.typing import ArrayLike

    from alkappa.io import DataVariable

    TrajectoryLike = str | os.PathLike[str] | xr.Dataset

#: e * 1e25: eV/(Å fs K) in W/(m K) (FHI-vibes' ``to_W_mK``)
TO_W_MK = units._e * 1e25

#: heat-flux units understood (normalised spelling) and their factor to eV/Å²/fs
_FLUX_UNITS = {"ev/a^2/fs": 1.0, "ev/a^2/ps": 1e-3}

#: FHI-vibes' defaults for the peak search in the VDOS
DEFAULT_PROMINENCE = 0.2
DEFAULT_THRESHOLD_THZ = 0.1

#: default cepstral low-pass frequency f* times the heat-flux correlation time
DEFAULT_CEPSTRAL_FACTOR = 0.25

_CART = ("x", "y", "z")


def autocorrelation(
    x: ArrayLike,
    *,
    max_lag: int | None = None,
    tensor: bool = False,
    unbiased: bool = True,
) -> np.ndarray:
    """Time autocorrelation of the columns of ``x`` by FFT.

    Parameters
    ----------
    x
        Samples, time first: shape (N,) or (N, m).
    max_lag
        Largest lag returned (samples); default N - 1.
    tensor
        Also the cross-correlations: ``C[k, a, b] = <x_a(t + k) x_b(t)>``, shape (L, m, m);
        otherwise only ``C[k, a] = <x_a(t + k) x_a(t)>``, shape (L, m) (or (L,) for 1-d x).
    unbiased
        Divide lag k by the N - k products it sums (default), else by N.

    Notes
    -----
    The series is zero-padded to at least 2N - 1 points, so the FFT's circular correlation
    equals the linear one; nothing (mean, window) is subtracted or applied here.
    """
    from scipy import fft

    arr = np.asarray(x, dtype=float)
    one_d = arr.ndim == 1
    if one_d:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"autocorrelation needs a (time,) or (time, m) array, got {arr.shape}")
    n = arr.shape[0]
    if n == 0:
        raise ValueError("autocorrelation of an empty series")
    lags = n if max_lag is None else min(int(max_lag) + 1, n)
    nfft = fft.next_fast_len(2 * n - 1, real=True)
    spectrum = fft.rfft(arr, n=nfft, axis=0)
    norm = (n - np.arange(lags)) if unbiased else np.full(lags, n)
    if tensor:
        product = spectrum[:, :, None] * np.conj(spectrum[:, None, :])
        corr = fft.irfft(product, n=nfft, axis=0)[:lags] / norm[:, None, None]
        return corr
    corr = fft.irfft(spectrum * np.conj(spectrum), n=nfft, axis=0)[:lags] / norm[:, None]
    return corr[:, 0] if one_d else corr


def gk_prefactor(volume: float, temperature: float) -> float:
    """V / (k_B T^2) with the conversion of eV/Å²/fs fluxes and fs times to W/(m K).

    ``prefactor * integral of <J(t) J(0)> dt`` is kappa in W/(m K) for J in eV/Å²/fs (the
    heat-flux density, already divided by V) and t in fs; ``volume`` in Å³, ``temperature``
    in K. Same number as FHI-vibes' ``gk_prefactor``.
    """
    if not volume > 0 or not temperature > 0:
        raise ValueError(f"need a positive volume and temperature, got {volume}, {temperature}")
    return float(volume) / (units.kB * float(temperature) ** 2) * TO_W_MK


def lowest_vibrational_frequency(
    velocities: ArrayLike,
    dt_fs: float,
    *,
    masses: ArrayLike | None = None,
    prominence: float = DEFAULT_PROMINENCE,
    threshold_thz: float = DEFAULT_THRESHOLD_THZ,
) -> float:
    """The lowest significant peak (THz) of the vibrational density of states.

    The VDOS is the cosine transform of the (mass-weighted, if ``masses`` are given) velocity
    autocorrelation summed over atoms and directions, tapered by a one-sided Hann window and
    zero-padded (as FHI-vibes' ``get_lowest_vibrational_frequency``). After subtracting its
    minimum it is normalised to its maximum above ``threshold_thz``; the lowest peak above
    that threshold with at least ``prominence`` is returned.

    Parameters
    ----------
    velocities
        (time, atoms, 3) or (time, m) samples at spacing ``dt_fs``; any velocity unit.
    masses
        Optional (atoms,) weights.
    """
    from scipy import fft, signal

    v = np.asarray(velocities, dtype=float)
    v = v[np.isfinite(v.reshape(len(v), -1)).all(axis=1)]
    n = len(v)
    if n < 8:
        raise ValueError("too few frames with finite velocities for a VDOS")
    if masses is not None and v.ndim == 3:
        v = v * np.sqrt(np.asarray(masses, dtype=float))[None, :, None]
    cols = v.reshape(n, -1)
    nfft = fft.next_fast_len(2 * n - 1, real=True)
    power = np.zeros(nfft // 2 + 1)
    for start in range(0, cols.shape[1], 32):  # chunks: memory of (nfft, 32) only
        spec = fft.rfft(cols[:, start : start + 32], n=nfft, axis=0)
        power += (spec.real**2 + spec.imag**2).sum(axis=1)
    acf = fft.irfft(power, n=nfft)[:n] / n  # biased: a non-negative spectrum
    acf *= signal.windows.hann(2 * n)[n:]  # one-sided Hann taper
    npad = fft.next_fast_len(max(4 * n, 20000), real=True)
    vdos = 2.0 * fft.rfft(acf, n=npad).real - acf[0]
    freqs = fft.rfftfreq(npad, d=dt_fs) * 1000.0  # THz
    vdos -= vdos.min()
    above = freqs > threshold_thz
    top = vdos[above].max() if above.any() else 0.0
    if not top > 0:
        raise ValueError("the velocities have no vibrational spectrum above the threshold")
    vdos /= top
    peaks, _ = signal.find_peaks(vdos, prominence=prominence)
    peaks = peaks[freqs[peaks] > threshold_thz]
    if len(peaks) == 0:
        raise ValueError("no significant peak in the vibrational density of states")
    return float(freqs[peaks[0]])


def green_kubo(
    fluxes: Sequence[ArrayLike],
    *,
    dt_fs: float,
    volume: float | Sequence[float],
    temperature: float | Sequence[float],
    window_fs: float | Sequence[float] | None = None,
    lowest_frequency: float | Sequence[float] | None = None,
    window_factor: float = 1.0,
    max_lag_fs: float | None = None,
    sources: Sequence[str] | None = None,
    subtract_mean: bool = False,
    pool_directions: bool = True,
    cepstral_cutoff_thz: float | None = None,
) -> xr.Dataset:
    """Green-Kubo kappa from heat-flux series of one or several independent runs.

    Parameters
    ----------
    fluxes
        One (time, 3) array per run: the heat-flux density in eV/Å²/fs at spacing ``dt_fs``
        (finite values only). The runs may differ in length.
    dt_fs
        Time between samples (fs), the same for all runs.
    volume, temperature
        Supercell volume (Å³) and mean temperature (K), one value or one per run.
    window_fs, lowest_frequency
        Smoothing window (fs), or the lowest vibrational frequency (THz) that sets it
        (``window_factor / lowest_frequency``); one value or one per run. One is required.
    window_factor
        Multiplies the period of the lowest frequency (FHI-vibes' ``window_factor``).
    max_lag_fs
        Longest correlation time kept; default half of the shortest run.
    sources
        Names of the runs (e.g. file names), stored as an attribute.
    subtract_mean
        Subtract each run's time mean from its flux first (FHI-vibes' convention). Off by
        default: the equilibrium mean of J is zero, and the sample mean is the signal's own
        zero-frequency part, so subtracting it lowers kappa(t) by about 2 kappa t / T for runs
        of length T. Only for comparing with FHI-vibes' numbers.
    pool_directions
        Find the diagonal elements' common cutoff on the autocorrelation averaged over runs
        *and* the three diagonal directions (default; right for cubic crystals, a fair
        compromise otherwise); else each diagonal element on its own run average.
    cepstral_cutoff_thz
        Low-pass frequency f* of the cepstral estimate (THz); default 0.25 / tau with tau the
        correlation time of the smoothed flux, kappa / C(0) (see ``_default_cepstral_cutoff``).

    Returns
    -------
    xarray.Dataset
        See :func:`run_green_kubo`.
    """
    runs = [_flux_array(f, k) for k, f in enumerate(fluxes)]
    n_runs = len(runs)
    if n_runs == 0:
        raise ValueError("no heat-flux runs given")
    if not dt_fs > 0:
        raise ValueError(f"time step {dt_fs} fs is not positive")
    volumes = _per_run(volume, n_runs, "volume")
    temps = _per_run(temperature, n_runs, "temperature")
    windows = _windows(window_fs, lowest_frequency, window_factor, n_runs)
    shortest = min(len(r) for r in runs)
    if max_lag_fs is None:
        n_lags = max(shortest // 2, 2)
    else:
        n_lags = min(round(max_lag_fs / dt_fs) + 1, shortest)
    if n_lags < 3:
        raise ValueError(f"runs of {shortest} samples are too short for a Green-Kubo analysis")
    time = np.arange(n_lags) * dt_fs

    shape = (n_runs, n_lags, 3, 3)
    acf = np.empty(shape)
    kappa_t = np.empty(shape)
    kappa_s = np.empty(shape)
    acf_s = np.empty(shape)
    prefactors = np.empty(n_runs)
    window_samples = np.empty(n_runs, dtype=int)
    for r, flux in enumerate(runs):
        prefactors[r] = gk_prefactor(volumes[r], temps[r])
        # the equilibrium mean of J is zero: subtracting the sample mean biases kappa low
        series = flux - flux.mean(axis=0) if subtract_mean else flux
        acf[r] = prefactors[r] * autocorrelation(series, max_lag=n_lags - 1, tensor=True)
        kappa_t[r] = _cumulative_trapezoid(acf[r], dt_fs)
        width = _window_samples(windows[r], time)
        window_samples[r] = width
        kappa_s[r], acf_s[r] = _smooth(kappa_t[r], width, dt_fs)
    estimate = _estimate(kappa_s, acf_s, pool_directions)
    index, found_ab = estimate.index, estimate.found
    kappa_run = estimate.kappa_run
    cutoff = np.broadcast_to(time[index], (n_runs, 3, 3)).copy()
    found = np.broadcast_to(found_ab, (n_runs, 3, 3)).copy()
    if not found_ab.diagonal().all():
        missing = [f"{_CART[a]}{_CART[a]}" for a in range(3) if not found_ab[a, a]]
        warnings.warn(
            "no zero crossing of the run-averaged smoothed heat-flux autocorrelation within "
            f"{time[-1]:.0f} fs for {', '.join(missing)}: kappa read at the last lag; "
            "the runs are too short or the window too wide",
            RuntimeWarning,
            stacklevel=2,
        )
    kappa_scalar_run = np.diagonal(kappa_run, axis1=1, axis2=2).mean(axis=1)
    scalar, scalar_err = estimate.scalar, estimate.scalar_error
    tensor = kappa_run.mean(axis=0)
    tensor_err = (
        kappa_run.std(axis=0, ddof=1) / np.sqrt(n_runs) if n_runs > 1 else np.full((3, 3), np.nan)
    )
    # convergence: the same estimator on the first k runs, k = 1..n
    partial = [_estimate(kappa_s[:k], acf_s[:k], pool_directions) for k in range(1, n_runs + 1)]
    simulated_ps = np.cumsum([len(r) for r in runs]) * dt_fs / 1000.0
    f_star = (
        _default_cepstral_cutoff(scalar, acf_s, windows, shortest * dt_fs)
        if cepstral_cutoff_thz is None
        else float(cepstral_cutoff_thz)
    )
    cepstral = _cepstral_or_nan(runs, dt_fs, prefactors, f_star)

    tensor_dims = ("a", "b")
    data_vars: dict[str, DataVariable] = {
        "heat_flux_acf": (("run", "time", *tensor_dims), acf),
        "heat_flux_acf_smoothed": (("run", "time", *tensor_dims), acf_s),
        "kappa_cumulative": (("run", "time", *tensor_dims), kappa_t),
        "kappa_cumulative_smoothed": (("run", "time", *tensor_dims), kappa_s),
        "cutoff_time": (("run", *tensor_dims), cutoff),
        "cutoff_found": (("run", *tensor_dims), found),
        "kappa_run": (("run", *tensor_dims), kappa_run),
        "kappa_run_scalar": (("run",), kappa_scalar_run),
        "temperature": (("run",), temps),
        "volume": (("run",), volumes),
        "gk_prefactor": (("run",), prefactors),
        "window_fs": (("run",), np.asarray(windows, dtype=float)),
        "window_samples": (("run",), window_samples),
        "n_samples": (("run",), np.array([len(r) for r in runs])),
        "heat_flux_acf_mean": (("time", *tensor_dims), acf.mean(axis=0)),
        "kappa_cumulative_mean": (("time", *tensor_dims), kappa_s.mean(axis=0)),
        "kappa": (tensor_dims, tensor),
        "kappa_error": (tensor_dims, tensor_err),
        "kappa_scalar": ((), scalar),
        "kappa_scalar_error": ((), scalar_err),
        "kappa_vs_runs": (("simulated_time",), [e.scalar for e in partial]),
        "kappa_vs_runs_error": (("simulated_time",), [e.scalar_error for e in partial]),
        "kappa_cepstral": ((), cepstral.kappa),
        "kappa_cepstral_error": ((), cepstral.kappa_error),
        "cepstral_coefficients": ((), cepstral.n_coefficients),
        "cepstral_cutoff_frequency": ((), cepstral.cutoff_frequency_thz),
    }
    if lowest_frequency is not None:
        data_vars["lowest_frequency"] = (
            ("run",),
            _per_run(lowest_frequency, n_runs, "lowest_frequency"),
        )
    ds = xr.Dataset(
        data_vars,
        coords={
            "run": np.arange(n_runs),
            "time": time,
            "a": list(_CART),
            "b": list(_CART),
            "simulated_time": simulated_ps,
            "runs_used": ("simulated_time", np.arange(1, n_runs + 1)),
        },
        attrs={
            "temperature": float(np.mean(temps)),
            "volume": float(np.mean(volumes)),
            "dt_fs": float(dt_fs),
            "n_runs": n_runs,
            "window_factor": float(window_factor),
            "max_lag_fs": float(time[-1]),
            "kappa_unit": "W/(m K)",
            "heat_flux_unit": "eV/Angstrom^2/fs (heat-flux density, divided by V)",
            "acf_definition": "C_ab(t) = <J_a(t) J_b(0)> * V / (k_B T^2), unbiased FFT estimate",
            "subtract_mean": int(subtract_mean),
            "mean_subtraction": (
                "per-run time mean subtracted from the flux (FHI-vibes convention, biased low)"
                if subtract_mean
                else "none (the equilibrium mean of J is zero; unbiased)"
            ),
            "pool_directions": int(pool_directions),
            "cutoff_rule": (
                "first zero crossing of the smoothed autocorrelation averaged over runs"
                + (" and the three diagonal directions" if pool_directions else "")
                + "; every run read at that common cutoff"
            ),
            "relative_error": scalar_err / scalar if scalar != 0 else float("nan"),
            "cepstral_n_components": cepstral.n_components,
            "cepstral_n_frequencies": cepstral.n_frequencies,
            "error_definition": (
                "kappa_scalar_error: standard error over runs x diagonal directions (ddof=1); "
                "kappa_error: standard error over runs"
            ),
            "sources": [str(s) for s in (sources or [f"run {k}" for k in range(n_runs)])],
            "method": "Green-Kubo, Knoop et al., Phys. Rev. B 107, 224304 (2023); FHI-vibes",
        },
    )
    units_of = {
        "heat_flux_acf": "W/(m K fs)",
        "heat_flux_acf_smoothed": "W/(m K fs)",
        "heat_flux_acf_mean": "W/(m K fs)",
        "kappa_cumulative": "W/(m K)",
        "kappa_cumulative_smoothed": "W/(m K)",
        "kappa_cumulative_mean": "W/(m K)",
        "kappa_run": "W/(m K)",
        "kappa_run_scalar": "W/(m K)",
        "kappa": "W/(m K)",
        "kappa_error": "W/(m K)",
        "kappa_scalar": "W/(m K)",
        "kappa_scalar_error": "W/(m K)",
        "cutoff_time": "fs",
        "window_fs": "fs",
        "time": "fs",
        "temperature": "K",
        "volume": "Angstrom^3",
        "gk_prefactor": "W/(m K) per (eV/Angstrom^2/fs)^2 fs",
        "lowest_frequency": "THz",
        "kappa_vs_runs": "W/(m K)",
        "kappa_vs_runs_error": "W/(m K)",
        "simulated_time": "ps",
        "kappa_cepstral": "W/(m K)",
        "kappa_cepstral_error": "W/(m K)",
        "cepstral_cutoff_frequency": "THz",
    }
    for name, unit in units_of.items():
        if name in ds.variables:
            ds[name].attrs["units"] = unit
    return ds


def run_green_kubo(
    trajectories: Sequence[TrajectoryLike] | TrajectoryLike,
    *,
    window_fs: float | None = None,
    lowest_frequency: float | None = None,
    window_factor: float = 1.0,
    max_lag_fs: float | None = None,
    discard_fs: float = 0.0,
    temperature: float | None = None,
    volume: float | None = None,
    subtract_mean: bool = False,
    pool_directions: bool = True,
    cepstral_cutoff_thz: float | None = None,
) -> xr.Dataset:
    """Green-Kubo thermal conductivity of one or several MD runs (alkappa or FHI-vibes files).

    Parameters
    ----------
    trajectories
        ``trajectory.nc`` paths or loaded datasets, each one independent (NVE) run with the
        variables ``heat_flux`` (time, a) in eV/Å²/fs and ``temperature`` (time), the
        attribute ``volume`` (Å³; else a ``volume`` variable or ``lattice_reference``) and a
        uniform ``time`` coordinate in fs, the same spacing in all runs.
    window_fs, lowest_frequency
        Smoothing window (fs) or the lowest vibrational frequency (THz) that sets it. If
        neither is given, the lowest peak of each run's VDOS (from ``velocities``) is used.
    window_factor
        Window = ``window_factor`` periods of the lowest frequency.
    max_lag_fs
        Longest correlation time analysed; default half of the shortest run.
    discard_fs
        Drop this much time from the start of every run (equilibration).
    temperature, volume
        Override the file's mean temperature (K) / volume (Å³) for all runs.
    subtract_mean, pool_directions, cepstral_cutoff_thz
        As in :func:`green_kubo` (``subtract_mean=True`` only to compare with FHI-vibes).

    Returns
    -------
    xarray.Dataset
        Coordinates ``run``, ``time`` (fs, the correlation time), ``a``, ``b`` (x, y, z).
        Per run: ``heat_flux_acf`` and ``heat_flux_acf_smoothed`` (run, time, a, b; times the
        prefactor, W/(m K fs)), ``kappa_cumulative`` and ``kappa_cumulative_smoothed`` (run,
        time, a, b; W/(m K)), ``cutoff_time`` (run, a, b; fs), ``cutoff_found`` (1 where the
        smoothed autocorrelation crossed zero), ``kappa_run`` (run, a, b) and
        ``kappa_run_scalar`` (run), ``temperature``, ``volume``, ``gk_prefactor``,
        ``window_fs``, ``lowest_frequency`` (THz), ``n_samples``. Averages:
        ``heat_flux_acf_mean`` and ``kappa_cumulative_mean`` (time, a, b; smoothed),
        ``kappa`` and ``kappa_error`` (a, b), ``kappa_scalar`` and ``kappa_scalar_error``
        (scalars; mean of the diagonal and its standard error over runs and directions).
        Convergence: ``kappa_vs_runs`` and ``kappa_vs_runs_error`` (simulated_time, ps; the
        first k runs; coordinate ``runs_used``). Cepstral: ``kappa_cepstral``,
        ``kappa_cepstral_error``, ``cepstral_coefficients`` (P*),
        ``cepstral_cutoff_frequency`` (f*, THz). Attributes: mean ``temperature`` and
        ``volume``, ``dt_fs``, ``sources``, ``subtract_mean``, ``pool_directions``,
        ``relative_error`` (kappa_scalar_error / kappa_scalar), units.
    """
    items = (
        [trajectories]
        if isinstance(trajectories, (str, Path, xr.Dataset)) or hasattr(trajectories, "__fspath__")
        else list(trajectories)
    )
    if not items:
        raise ValueError("no trajectories given")
    runs = [read_heat_flux(item, discard_fs=discard_fs) for item in items]
    dts = [r["dt_fs"] for r in runs]
    if not np.allclose(dts, dts[0], rtol=1e-6, atol=1e-9):
        listing = ", ".join(f"{r['source']}: {r['dt_fs']:g} fs" for r in runs)
        raise ValueError(f"the runs have different time steps ({listing})")
    freqs: list[float] | None = None
    if window_fs is None and lowest_frequency is None:
        freqs = []
        for r in runs:
            if r["velocities"] is None:
                raise ValueError(
                    f"{r['source']}: no velocities to find the lowest vibrational frequency; "
                    "give the smoothing window or the lowest frequency"
                )
            freqs.append(
                lowest_vibrational_frequency(r["velocities"], r["dt_fs"], masses=r["masses"])
            )
    return green_kubo(
        [r["heat_flux"] for r in runs],
        dt_fs=dts[0],
        volume=[volume if volume is not None else r["volume"] for r in runs],
        temperature=[temperature if temperature is not None else r["temperature"] for r in runs],
        window_fs=window_fs,
        lowest_frequency=lowest_frequency if freqs is None else freqs,
        window_factor=window_factor,
        max_lag_fs=max_lag_fs,
        sources=[r["source"] for r in runs],
        subtract_mean=subtract_mean,
        pool_directions=pool_directions,
        cepstral_cutoff_thz=cepstral_cutoff_thz,
    )


def read_heat_flux(trajectory: TrajectoryLike, *, discard_fs: float = 0.0) -> dict[str, Any]:
    """Heat flux and what the Green-Kubo prefactor needs from one trajectory.

    Returns a dict with ``heat_flux`` (time, 3) in eV/Å²/fs (frames without a flux, NaN,
    are dropped, as FHI-vibes' ``dropna``; the rest must be evenly spaced), ``dt_fs``,
    ``temperature`` (mean, K), ``volume`` (Å³), ``velocities`` (time, atoms, 3, or None),
    ``masses`` (or None) and ``source``. Raises ``ValueError`` with a one-line reason when
    something is missing or inconsistent.
    """
    # a production run is read with its extension segments
    from alkappa.greenkubo._production import read_run

    if isinstance(trajectory, xr.Dataset):
        ds, source = trajectory, str(trajectory.attrs.get("source", "dataset"))
    else:
        source = str(trajectory)
        try:
            ds = read_run(trajectory)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{source}: cannot read as netCDF ({exc})") from exc
    if "heat_flux" not in ds:
        raise ValueError(f"{source}: no 'heat_flux' variable (not a Green-Kubo trajectory)")
    flux = np.asarray(ds["heat_flux"].values, dtype=float)
    if flux.ndim != 2 or flux.shape[1] != 3:
        raise ValueError(f"{source}: heat_flux has shape {flux.shape}, expected (time, 3)")
    flux = flux * _flux_factor(ds["heat_flux"].attrs.get("units"), source)
    if "time" not in ds.coords and "time" not in ds:
        raise ValueError(f"{source}: no 'time' coordinate")
    time = np.asarray(ds["time"].values, dtype=float)
    keep = np.isfinite(flux).all(axis=1)  # frames without a flux (NaN) are dropped
    if not keep.any():
        raise ValueError(f"{source}: heat_flux has no finite values")
    keep &= time >= time[keep][0] + discard_fs - 1e-9
    window = np.nonzero(keep)[0]
    flux, time = flux[window], time[window]
    if len(time) < 4:
        raise ValueError(f"{source}: only {len(time)} frames with a heat flux")
    steps = np.diff(time)
    dt = float(np.median(steps))
    if not dt > 0 or not np.allclose(steps, dt, rtol=1e-4, atol=1e-6):
        raise ValueError(
            f"{source}: the frames with a heat flux are not evenly spaced in time (missing frames?)"
        )
    if "temperature" not in ds:
        raise ValueError(f"{source}: no 'temperature' variable for the Green-Kubo prefactor")
    temps = np.asarray(ds["temperature"].values, dtype=float)[window]
    temps = temps[np.isfinite(temps)]
    if temps.size == 0 or not temps.mean() > 0:
        raise ValueError(f"{source}: no positive temperature values")
    velocities, masses = None, None
    if "velocities" in ds:
        v = np.asarray(ds["velocities"].values, dtype=float)[window]
        if v.ndim == 3 and np.isfinite(v).any():
            velocities = v
            masses = _masses(ds, v.shape[1])
    return {
        "heat_flux": flux,
        "dt_fs": dt,
        "temperature": float(temps.mean()),
        "volume": _volume(ds, source),
        "velocities": velocities,
        "masses": masses,
        "source": source,
    }


def write_green_kubo(dataset: xr.Dataset, path: str | os.PathLike[str]) -> None:
    """Write a dataset of :func:`run_green_kubo` atomically (``greenkubo.nc``)."""
    write_netcdf(dataset, path)


# --------------------------------------------------------------------------------------------


def _flux_array(flux: ArrayLike, k: int) -> np.ndarray:
    arr = np.asarray(flux, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"heat flux of run {k} has shape {arr.shape}, expected (time, 3)")
    if not np.isfinite(arr).all():
        raise ValueError(f"heat flux of run {k} has non-finite values")
    return arr


def _per_run(value: Any, n_runs: int, name: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    if arr.size == 1:
        arr = np.repeat(arr, n_runs)
    if arr.shape != (n_runs,):
        raise ValueError(f"{name}: need one value or one per run ({n_runs}), got {arr.size}")
    return arr


def _windows(
    window_fs: Any, lowest_frequency: Any, window_factor: float, n_runs: int
) -> np.ndarray:
    if window_fs is not None:
        windows = _per_run(window_fs, n_runs, "window_fs")
    elif lowest_frequency is not None:
        freqs = _per_run(lowest_frequency, n_runs, "lowest_frequency")
        if not (freqs > 0).all():
            raise ValueError(f"lowest vibrational frequency must be positive, got {freqs}")
        windows = window_factor * 1000.0 / freqs
    else:
        raise ValueError("give the smoothing window (window_fs) or the lowest frequency")
    if not (windows > 0).all():
        raise ValueError(f"smoothing window must be positive, got {windows}")
    return windows


def _window_samples(window: float, time: np.ndarray) -> int:
    """Samples in the window (FHI-vibes: the times below ``window_fs``), made odd, >= 3."""
    width = int(np.count_nonzero(time < window))
    width = width // 2 * 2 + 1
    return max(width, 3)


def _cumulative_trapezoid(y: np.ndarray, dx: float) -> np.ndarray:
    out = np.zeros_like(y)
    out[1:] = np.cumsum(0.5 * (y[1:] + y[:-1]) * dx, axis=0)
    return out


def _smooth(kappa: np.ndarray, width: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed kappa(t) (odd extension to t < 0) and its smoothed derivative (even one)."""
    from scipy.signal import savgol_filter

    n = len(kappa)
    width = min(width, 2 * n - 1)  # the extended series has 2n - 1 points
    odd = np.concatenate((-kappa[:0:-1], kappa), axis=0)  # kappa(-t) = -kappa(t)
    k_smooth = savgol_filter(odd, width, 1, axis=0, mode="interp")[n - 1 :]
    k_smooth = 0.5 * (k_smooth + np.swapaxes(k_smooth, 1, 2))
    derivative = np.gradient(k_smooth, dt, axis=0)
    even = np.concatenate((derivative[:0:-1], derivative), axis=0)  # C(-t) = C(t)
    c_smooth = savgol_filter(even, width, 1, axis=0, mode="interp")[n - 1 :]
    return k_smooth, c_smooth


@dataclass(frozen=True)
class _Estimate:
    """kappa read at the common cutoffs of a set of runs."""

    index: np.ndarray  # (3, 3) cutoff lag index
    found: np.ndarray  # (3, 3) 1 where the averaged autocorrelation crossed zero
    kappa_run: np.ndarray  # (run, 3, 3)
    scalar: float
    scalar_error: float


def _estimate(kappa_s: np.ndarray, acf_s: np.ndarray, pool_directions: bool) -> _Estimate:
    """Common cutoffs from the run-averaged smoothed autocorrelation; every run read there.

    One cutoff for all runs: the first dip of one run's noisy curve stops on noise (at a
    local maximum of its kappa(t)), the average of n runs has sqrt(n) less noise, and
    reading each run at the same time keeps the runs as independent samples of the same
    quantity. The scalar's error is the standard error of the runs x diagonal values.
    """
    index, found = _cutoffs(acf_s.mean(axis=0))
    if pool_directions:
        pooled = np.diagonal(acf_s, axis1=2, axis2=3).mean(axis=(0, 2))
        below = np.nonzero(pooled[1:] < 0)[0]
        for a in range(3):
            index[a, a] = below[0] + 1 if below.size else len(pooled) - 1
            found[a, a] = int(below.size > 0)
    n_runs = kappa_s.shape[0]
    rows = np.arange(3)[:, None]
    cols = np.arange(3)[None, :]
    kappa_run = kappa_s[:, index, rows, cols]  # (run, 3, 3)
    samples = np.diagonal(kappa_run, axis1=1, axis2=2).ravel()
    error = float(samples.std(ddof=1) / np.sqrt(samples.size)) if n_runs * 3 > 1 else np.nan
    return _Estimate(index, found, kappa_run, float(samples.mean()), error)


def _default_cepstral_cutoff(
    kappa: float, acf_s: np.ndarray, windows: np.ndarray, run_fs: float
) -> float:
    """f* (THz) = 0.25 / tau, tau = kappa / C(0) the correlation time of the smoothed flux.

    The central (heat) peak of the spectrum has the half width 1 / (2 pi tau); f* a little
    above it keeps a log-spectrum smooth enough for a few cepstral coefficients (on
    Ornstein-Uhlenbeck fluxes f* tau = 0.2-0.3 is unbiased, f* tau >= 0.75 biased low by
    >10 %). The smoothed C(0) leaves out the vibrations. Without a positive tau, half of
    1 / window; never fewer than the cepstral minimum of frequencies, nor above Nyquist.
    """
    from alkappa.greenkubo._cepstral import MIN_FREQUENCIES

    c0 = float(np.diagonal(acf_s[:, 0], axis1=1, axis2=2).mean())
    tau = kappa / c0 if c0 > 0 else np.nan
    if np.isfinite(tau) and tau > 0:
        f_star = DEFAULT_CEPSTRAL_FACTOR * 1000.0 / tau
    else:
        f_star = 0.5 * 1000.0 / float(np.mean(windows))
    return max(f_star, (MIN_FREQUENCIES - 0.5) * 1000.0 / run_fs)


def _cepstral_or_nan(
    runs: list[np.ndarray], dt_fs: float, prefactors: np.ndarray, f_star: float
) -> CepstralResult:
    """The cepstral estimate, or NaNs with a warning where the runs are too short for it."""
    try:
        return cepstral_kappa(runs, dt_fs=dt_fs, prefactors=prefactors, cutoff_frequency_thz=f_star)
    except ValueError as exc:
        warnings.warn(f"no cepstral estimate: {exc}", RuntimeWarning, stacklevel=3)
        return CepstralResult.empty(f_star)


def _cutoffs(acf_smooth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first dip per (a, b) of one (time, 3, 3) curve and whether one was found."""
    n = len(acf_smooth)
    index = np.full((3, 3), n - 1, dtype=int)
    found = np.zeros((3, 3), dtype=int)
    for a in range(3):
        for b in range(3):
            c = acf_smooth[:, a, b]
            if a == b:
                below = np.nonzero(c[1:] < 0)[0]
            else:
                sign = np.sign(c[0]) or 1.0
                below = np.nonzero(sign * c[1:] < 0)[0]
            if below.size:
                index[a, b] = below[0] + 1
                found[a, b] = 1
    return index, found


def _flux_factor(unit: Any, source: str) -> float:
    if unit is None:
        return 1.0
    key = str(unit).lower().replace(" ", "").replace("**", "^").replace("²", "^2")
    for name in ("angstrom", "aa", "å"):
        key = key.replace(name, "a")
    key = key.replace("a2", "a^2").replace("^^", "^")
    if key not in _FLUX_UNITS:
        raise ValueError(
            f"{source}: heat_flux unit {unit!r} not understood (expected eV/Å^2/fs or eV/Å^2/ps)"
        )
    return _FLUX_UNITS[key]


def _volume(ds: xr.Dataset, source: str) -> float:
    if "volume" in ds.attrs:
        volume = float(np.ravel(ds.attrs["volume"])[0])
    elif "volume" in ds:
        volume = float(np.nanmean(ds["volume"].values))
    elif "lattice_reference" in ds:
        volume = abs(float(np.linalg.det(ds["lattice_reference"].values)))
    else:
        raise ValueError(f"{source}: no volume (attribute, variable or lattice_reference)")
    if not volume > 0:
        raise ValueError(f"{source}: volume {volume} is not positive")
    return volume


def _masses(ds: xr.Dataset, n_atoms: int) -> np.ndarray | None:
    if "masses" in ds.attrs:
        masses = np.ravel(np.asarray(ds.attrs["masses"], dtype=float))
        if masses.size == n_atoms:
            return masses
    if "masses" in ds:
        masses = np.ravel(np.asarray(ds["masses"].values, dtype=float))
        if masses.size == n_atoms:
            return masses
    return None
