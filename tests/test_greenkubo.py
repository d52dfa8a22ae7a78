"""Green-Kubo analysis: FFT autocorrelation, units, a synthetic flux with a known integral,
the reader and the ``alkappa gk`` command on FHI-vibes-format files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from ase import units
from scipy import constants
from scipy.signal import lfilter

from alkappa.cli import main
from alkappa.greenkubo import (
    autocorrelation,
    gk_prefactor,
    green_kubo,
    lowest_vibrational_frequency,
    plot_green_kubo,
    plot_kappa_temperature,
    read_heat_flux,
    run_green_kubo,
)
from alkappa.phonons import read_netcdf

VOLUME, TEMPERATURE = 1000.0, 300.0  # Å^3, K
SIGMA, TC, DT = 1e-4, 10.0, 1.0  # flux std (eV/Å^2/fs), correlation time (fs), step (fs)


def _ou(rng: np.random.Generator, n: int, sigma: float = SIGMA, tc: float = TC) -> np.ndarray:
    """Stationary Ornstein-Uhlenbeck series (n, 3): acf sigma^2 exp(-t / tc), exactly (AR(1))."""
    phi = np.exp(-DT / tc)
    x0 = sigma * rng.standard_normal(3)
    out, _ = lfilter(
        [sigma * np.sqrt(1 - phi**2)],
        [1, -phi],
        rng.standard_normal((n, 3)),
        axis=0,
        zi=(phi * x0)[None, :],
    )
    return out


def test_fft_autocorrelation_matches_the_direct_sum():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((57, 3))
    n = len(x)
    direct = np.zeros((n, 3, 3))
    for k in range(n):
        direct[k] = x[k:].T @ x[: n - k] / (n - k)  # sum_i x_a(i + k) x_b(i) / (N - k)
    np.testing.assert_allclose(autocorrelation(x, tensor=True), direct, atol=1e-12)
    np.testing.assert_allclose(
        autocorrelation(x, max_lag=10), np.einsum("kaa->ka", direct[:11]), atol=1e-12
    )
    biased = autocorrelation(x[:, 0], unbiased=False)
    np.testing.assert_allclose(biased, direct[:, 0, 0] * (n - np.arange(n)) / n, atol=1e-12)


def test_prefactor_unit_conversion_by_hand():
    # kappa = V / (k_B T^2) * sigma^2 * tc in SI units, for sigma = 1e-4 eV/Å^2/fs, tc = 10 fs
    e, k_b = constants.e, constants.k
    sigma_si = 1e-4 * e / (1e-20 * 1e-15)  # W/m^2
    by_hand = (VOLUME * 1e-30) / (k_b * TEMPERATURE**2) * sigma_si**2 * (TC * 1e-15)
    assert by_hand == pytest.approx(20.6583, rel=1e-4)
    ours = gk_prefactor(VOLUME, TEMPERATURE) * SIGMA**2 * TC
    assert ours == pytest.approx(by_hand, rel=1e-6)


def test_ornstein_uhlenbeck_flux_gives_the_analytic_kappa():
    rng = np.random.default_rng(1)
    fluxes = [_ou(rng, 20000) for _ in range(8)]
    ds = green_kubo(fluxes, dt_fs=DT, volume=VOLUME, temperature=TEMPERATURE, window_fs=TC)
    exact = gk_prefactor(VOLUME, TEMPERATURE) * SIGMA**2 * TC  # integral of s^2 exp(-t/tc)
    kappa, err = float(ds["kappa_scalar"]), float(ds["kappa_scalar_error"])
    assert 0 < err < 0.06 * exact  # the test is sharp enough to mean something
    assert abs(kappa - exact) < 3 * err
    # independent components: the off-diagonal elements vanish within their errors
    off = ~np.eye(3, dtype=bool)
    assert np.all(np.abs(ds["kappa"].values[off]) < 3 * ds["kappa_error"].values[off] + 1e-3)
    assert ds["cutoff_found"].values.diagonal(axis1=1, axis2=2).all()
    assert (ds["cutoff_time"].values.diagonal(axis1=1, axis2=2) > TC).all()
    # kappa(t) integrates the stored acf; the mean curve is the mean of the smoothed ones
    np.testing.assert_allclose(
        ds["kappa_cumulative"].values[0, -1, 0, 0],
        np.trapezoid(ds["heat_flux_acf"].values[0, :, 0, 0], dx=DT),
        rtol=1e-10,
    )
    assert ds["kappa_cumulative_mean"].shape == (ds.sizes["time"], 3, 3)
    assert ds.attrs["n_runs"] == 8 and ds["kappa"].attrs["units"] == "W/(m K)"


def test_lowest_vibrational_frequency_is_the_lowest_peak():
    rng = np.random.default_rng(2)
    t = np.arange(4000) * 2.0  # fs
    v = 0.02 * rng.standard_normal((len(t), 4, 3))
    for atom, f_thz in enumerate((2.0, 5.0, 5.0, 7.0)):
        phase = rng.uniform(0, 2 * np.pi, 3)
        v[:, atom, :] += np.sin(2 * np.pi * f_thz * 1e-3 * t[:, None] + phase)
    assert lowest_vibrational_frequency(v, 2.0) == pytest.approx(2.0, abs=0.05)


# --------------------------------------------------------------------------------------------
# FHI-vibes-format trajectory.nc files


def _vibes_file(path, rng, n=6000, dt=DT, flux=None, with_flux=True, flux_units=None):
    """A minimal FHI-vibes trajectory.nc: 2 atoms, heat_flux, temperature, velocities."""
    time = np.arange(n) * dt
    masses = [63.546, 126.904]
    v = np.zeros((n, 2, 3))  # ASE units; a 1.5 THz and a 4 THz vibration
    for atom, f_thz in enumerate((1.5, 4.0)):
        v[:, atom, :] = 0.05 * np.sin(2 * np.pi * f_thz * 1e-3 * time[:, None] + [0, 1, 2])
    cell = np.eye(3) * 6.0
    ref = {
        "pbc": [True] * 3,
        "cell": cell.tolist(),
        "positions": [[0, 0, 0], [1.5, 1.5, 1.5]],
        "symbols": ["Cu", "I"],
        "masses": masses,
    }
    data = {
        "positions": (("time", "I", "a"), np.broadcast_to(ref["positions"], (n, 2, 3)).copy()),
        "velocities": (("time", "I", "a"), v),
        "temperature": (("time",), TEMPERATURE + rng.normal(0, 5, n)),
        "positions_reference": (("I", "a"), np.array(ref["positions"], dtype=float)),
        "lattice_reference": (("a", "b"), cell),
    }
    if with_flux:
        data["heat_flux"] = (("time", "a"), _ou(rng, n) if flux is None else flux)
    ds = xr.Dataset(
        data,
        coords={"time": time},
        attrs={
            "name": "trajectory",
            "natoms": 2,
            "time_unit": "fs",
            "timestep": dt,
            "volume": VOLUME,
            "symbols": ["Cu", "I"],
            "masses": masses,
            "atoms_reference": json.dumps(ref),
        },
    )
    if with_flux and flux_units:
        ds["heat_flux"].attrs["units"] = flux_units
    ds.to_netcdf(path, engine="h5netcdf")
    return ds


def test_reader_takes_fhi_vibes_files_and_units(tmp_path):
    rng = np.random.default_rng(3)
    ds = _vibes_file(tmp_path / "a.nc", rng, n=500)
    run = read_heat_flux(tmp_path / "a.nc")
    np.testing.assert_allclose(run["heat_flux"], ds["heat_flux"].values)
    assert run["dt_fs"] == DT and run["volume"] == VOLUME
    assert run["temperature"] == pytest.approx(float(ds["temperature"].mean()))
    assert run["velocities"].shape == (500, 2, 3) and len(run["masses"]) == 2
    # the pre-1.1 FHI-vibes unit eV/Å^2/ps is recognised
    _vibes_file(
        tmp_path / "ps.nc", rng, n=500, flux=ds["heat_flux"].values, flux_units="eV/AA^2/ps"
    )
    np.testing.assert_allclose(
        read_heat_flux(tmp_path / "ps.nc")["heat_flux"], run["heat_flux"] / 1e3
    )
    assert read_heat_flux(tmp_path / "a.nc", discard_fs=100.0)["heat_flux"].shape == (400, 3)
    # a flux written every second frame (NaN in between): the series of every second frame
    sparse = ds["heat_flux"].values.copy()
    sparse[1::2] = np.nan
    _vibes_file(tmp_path / "every2.nc", rng, n=500, flux=sparse)
    every2 = read_heat_flux(tmp_path / "every2.nc")
    assert every2["dt_fs"] == 2 * DT and every2["velocities"].shape == (250, 2, 3)
    np.testing.assert_allclose(every2["heat_flux"], ds["heat_flux"].values[::2])
    sparse[100] = np.nan  # an irregular gap
    _vibes_file(tmp_path / "gap.nc", rng, n=500, flux=sparse)
    with pytest.raises(ValueError, match="not evenly spaced"):
        read_heat_flux(tmp_path / "gap.nc")


def test_gk_command_on_fhi_vibes_trajectories(tmp_path, capsys):
    rng = np.random.default_rng(4)
    paths = [tmp_path / f"run{k}" / "trajectory.nc" for k in range(3)]
    for p in paths:
        p.parent.mkdir()
        _vibes_file(p, rng)
    out = tmp_path / "greenkubo.nc"
    plot = tmp_path / "greenkubo.png"
    assert main(["gk", *map(str, paths), "-o", str(out), "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("W/(m K)") == 4 and "kappa = " in printed.splitlines()[-1]
    ds = read_netcdf(out)
    assert plot.stat().st_size > 0
    # no window given: one period of the lowest VDOS peak (1.5 THz) of the velocities
    np.testing.assert_allclose(ds["lowest_frequency"].values, 1.5, atol=0.05)
    np.testing.assert_allclose(ds["window_fs"].values, 1000 / ds["lowest_frequency"].values)
    assert ds.attrs["sources"] == [str(p) for p in paths]
    same = run_green_kubo(paths, lowest_frequency=ds["lowest_frequency"].values.mean())
    assert float(ds["kappa_scalar"]) == pytest.approx(float(same["kappa_scalar"]), rel=0.05)
    exact = gk_prefactor(VOLUME, TEMPERATURE) * SIGMA**2 * TC
    # the window (667 fs) is 67 correlation times: a late cutoff, a large but honest error
    assert abs(float(ds["kappa_scalar"]) - exact) < 3 * float(ds["kappa_scalar_error"])
    assert f"{float(ds['kappa_scalar']):.3f} ± {float(ds['kappa_scalar_error']):.3f}" in printed

    # kappa(T) against a phono3py-like dataset
    ph3 = xr.Dataset(
        {"kappa_rta_average": (("temperature",), [40.0, 20.0, 13.0])},
        coords={"temperature": [150.0, 300.0, 450.0]},
    )
    plot_kappa_temperature([out], tmp_path / "kappa_T.png", phono3py={"MLIP": ph3})
    assert (tmp_path / "kappa_T.png").stat().st_size > 0


def test_gk_command_reports_bad_input_in_one_line(tmp_path, capsys):
    rng = np.random.default_rng(5)
    _vibes_file(tmp_path / "noflux.nc", rng, n=200, with_flux=False)
    _vibes_file(tmp_path / "dt1.nc", rng, n=200)
    _vibes_file(tmp_path / "dt2.nc", rng, n=200, dt=2.0)
    cases = {
        "noflux.nc": "no 'heat_flux' variable",
        "missing.nc": "does not exist",
    }
    for name, message in cases.items():
        assert main(["gk", str(tmp_path / name), "-o", str(tmp_path / "x.nc")]) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert (
        main(["gk", str(tmp_path / "dt1.nc"), str(tmp_path / "dt2.nc"), "--window-fs", "10"]) == 1
    )
    err = capsys.readouterr().err.strip()
    assert "different time steps" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.nc").exists()


def test_plot_green_kubo(tmp_path):
    rng = np.random.default_rng(6)
    ds = green_kubo(
        [_ou(rng, 3000) for _ in range(2)],
        dt_fs=DT,
        volume=VOLUME,
        temperature=TEMPERATURE,
        lowest_frequency=100.0,  # THz: a 10 fs window
    )
    assert float(ds["window_fs"][0]) == pytest.approx(10.0)
    plot_green_kubo(ds, tmp_path / "gk.pdf")
    assert (tmp_path / "gk.pdf").stat().st_size > 0


def test_velocity_units_do_not_matter_for_the_window():
    # ASE units or Å/fs: the same peak
    t = np.arange(2000) * 4.0
    v = np.sin(2 * np.pi * 3.0e-3 * t)[:, None, None] * np.ones((1, 2, 3))
    assert lowest_vibrational_frequency(v, 4.0) == pytest.approx(
        lowest_vibrational_frequency(v * units.fs, 4.0)
    )
