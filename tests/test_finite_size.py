"""Harmonic-model kappa from MD lifetimes and the finite-size correction by harmonic
interpolation: against analytic sums of the spring model, phonopy's own velocities, and the
``alkappa gk`` command on an FHI-vibes-style file with force_constants_remapped."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from ase import units
from ase.build import bulk
from ase.calculators.lj import LennardJones
from helpers import SpringCalculator, simple_cubic, spring_frequencies
from scipy import constants
from scipy.signal import lfilter

from alkappa.cli import main
from alkappa.greenkubo import (
    commensurate_qpoints,
    harmonic_kappa,
    mesh_modes,
    mode_velocities,
    phonopy_from_trajectory,
    run_finite_size_correction,
    run_harmonic_interpolation,
)
from alkappa.greenkubo._finite_size import (
    check_interpolation_grid,
    extrapolate,
    interpolate_lambda,
    lambda_at_gamma,
)
from alkappa.phonons import read_netcdf, run_harmonic, write_harmonic

A, K, MASS = 2.5, 0.25, 50.0  # simple cubic springs (Å, eV/Å^2, amu)
LAMBDA = 2.0  # omega^2 tau (1/ps)
OMEGA2 = 2 * K / MASS * (units.fs * 1000) ** 2  # 2k/m in 1/ps^2


def _spring_phonon(n: int):
    return run_harmonic(
        simple_cubic(A, mass=MASS).repeat(n), SpringCalculator(A, K), mesh=(n, n, n), band_npoints=3
    ).phonon


def _spring_modes(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Analytic omega^2 (1/ps^2) and group velocity (Å/ps) of the spring model at reduced q:
    omega^2 = C sum_a (1 - cos 2 pi q_a), v_a = C A sin(2 pi q_a) / (2 omega), all 3 branches."""
    w2 = OMEGA2 * (1 - np.cos(2 * np.pi * q)).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = OMEGA2 * A * np.sin(2 * np.pi * q) / (2 * np.sqrt(w2))[..., None]
    return w2, np.nan_to_num(v)


def _analytic_kappa(n: int) -> float:
    """kappa_xx of the constant-lambda law on the n^3 Gamma-centred mesh, summed directly."""
    g = np.arange(n) / n
    q = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)[1:]
    w2, v = _spring_modes(q)
    return constants.k * 1e22 / (n**3 * A**3) * 3 * float(np.sum(v[:, 0] ** 2 * LAMBDA / w2))


def _lifetimes(qpoints: np.ndarray, tau: np.ndarray) -> xr.Dataset:
    freq = spring_frequencies(qpoints, K, MASS)[:, None] * np.ones(3)
    return xr.Dataset(
        {
            "qpoints": (("qpoint", "reciprocal"), qpoints),
            "frequency": (("qpoint", "band"), freq),
            "tau": (("qpoint", "band"), tau),
        }
    )


@pytest.fixture(scope="module")
def spring4():
    return _spring_phonon(4)


def test_extrapolated_kappa_is_the_dense_mesh_integral(spring4):
    """tau = LAMBDA / omega^2: interpolation is exact, each mesh equals the analytic sum, and
    the extrapolation from a 4x4x4 cell matches the Richardson limit of direct sums."""
    q = commensurate_qpoints(np.diag([4, 4, 4]))
    w2, _ = _spring_modes(q)
    with np.errstate(divide="ignore"):
        tau = np.where(w2 > 0, LAMBDA / w2, np.nan)[:, None] * np.ones(3)
    meshes = (8, 12, 16, 20, 24)
    ds = run_harmonic_interpolation(_lifetimes(q, tau), spring4, meshes=meshes)
    np.testing.assert_allclose(float(ds["kappa_ha_scalar"]), _analytic_kappa(4), rtol=1e-6)
    for n, kappa in zip(meshes, ds["interpolation_kappa_array"].values, strict=True):
        np.testing.assert_allclose(np.diagonal(kappa), _analytic_kappa(n), rtol=1e-6)
        assert abs(kappa[0, 1]) < 1e-9 * kappa[0, 0]
    k60, k120 = _analytic_kappa(60), _analytic_kappa(120)
    reference = 2 * k120 - k60  # error c / n removed
    extrapolated = float(ds["interpolation_fit_intercept"])
    assert extrapolated == pytest.approx(reference, rel=0.01)
    assert extrapolated == pytest.approx(k120, rel=0.03)
    assert float(ds["interpolation_fit_stderr"]) < 0.01 * extrapolated
    correction = extrapolated - _analytic_kappa(4)
    assert float(ds["interpolation_correction"]) == pytest.approx(correction, rel=1e-6)
    assert float(ds["interpolation_correction_factor"]) == pytest.approx(
        extrapolated / _analytic_kappa(4), rel=1e-6
    )
    np.testing.assert_allclose(
        np.diagonal(ds["interpolation_correction_ab"].values), correction, rtol=0.01
    )

    gk = xr.Dataset(
        {
            "kappa": (("a", "b"), np.eye(3) * 0.01),
            "kappa_error": (("a", "b"), np.full((3, 3), 0.003)),
            "kappa_scalar": ((), 0.01),
            "kappa_scalar_error": ((), 0.002),
        }
    )
    corrected = run_finite_size_correction(gk, _lifetimes(q, tau), spring4, meshes=meshes)
    assert float(corrected["kappa_corrected"]) == pytest.approx(0.01 + correction, rel=1e-6)
    err = np.hypot(0.002, float(corrected["interpolation_fit_stderr"]))
    assert float(corrected["kappa_corrected_error"]) == pytest.approx(err)
    assert corrected["kappa_corrected_ab"].shape == (3, 3)
    assert np.isnan(float(corrected["interpolation_correction_jackknife_error"]))  # one run

    # leave-one-run-out lifetimes tau (1 + eps_r): kappa_ha and the correction are linear in
    # tau here, so the jackknife error is correction * sqrt((n - 1)/n sum (eps_r - mean)^2)
    eps = np.array([0.1, -0.05, 0.02, -0.07])
    with_runs = _lifetimes(q, tau)
    with_runs["tau_jackknife"] = (("run", "qpoint", "band"), tau[None] * (1 + eps)[:, None, None])
    corrected = run_finite_size_correction(gk, with_runs, spring4, meshes=meshes)
    jk = abs(correction) * np.sqrt((len(eps) - 1) * np.mean((eps - eps.mean()) ** 2))
    assert float(corrected["interpolation_correction_jackknife_error"]) == pytest.approx(
        jk, rel=1e-6
    )
    err = np.sqrt(0.002**2 + float(corrected["interpolation_fit_stderr"]) ** 2 + jk**2)
    assert float(corrected["kappa_corrected_error"]) == pytest.approx(err, rel=1e-6)


def test_commensurate_kappa_is_the_hand_sum():
    """Random per-mode lifetimes on a 3x3x3 cell: kappa_ha = k_B / V sum v v tau by hand."""
    phonon = _spring_phonon(3)
    q = commensurate_qpoints(np.diag([3, 3, 3]))
    rng = np.random.default_rng(0)
    tau = rng.uniform(0.5, 5.0, size=(len(q), 3))
    tau[0] = np.nan  # acoustic at Gamma: undefined, no contribution
    ds = run_harmonic_interpolation(_lifetimes(q, tau), phonon, meshes=(4, 6, 8))
    _, v = _spring_modes(q)
    hand = np.zeros((3, 3))
    for iq in range(1, len(q)):
        for band in range(3):
            hand += constants.k * np.outer(v[iq], v[iq]) * tau[iq, band]  # J/K Å^2/ps
    hand *= 1e-20 / 1e-12 / (27 * A**3 * 1e-30)  # -> W/(m K)
    np.testing.assert_allclose(ds["kappa_ha"].values, hand, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ds["mode_lifetime"].values[1:], tau[1:], rtol=1e-9)
    # the same through the pure function
    k = harmonic_kappa(ds["mode_group_velocity"].values, ds["mode_lifetime"].values, 27 * A**3)
    np.testing.assert_allclose(k, hand, rtol=1e-6, atol=1e-12)
    with pytest.raises(ValueError, match="not finite"):
        harmonic_kappa(ds["mode_group_velocity"].values, tau, 27 * A**3)


def test_mesh_velocities_match_phonopy_and_finite_differences():
    """fcc LJ argon: symmetry-mapped mesh velocities equal phonopy's at each point, and
    phonopy's velocity is d omega / d k (finite differences of the frequencies)."""
    calc = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5, smooth=True)
    supercell = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
    phonon = run_harmonic(supercell, calc, mesh=(4, 4, 4), band_npoints=3).phonon
    q, freq, vel = mesh_modes(phonon, 6)
    f_direct, v_direct = mode_velocities(phonon, q)
    np.testing.assert_allclose(freq, f_direct, atol=1e-8)
    gaps = np.diff(f_direct, axis=1)
    single = np.ones_like(f_direct, dtype=bool)
    single[:, 1:] &= gaps > 1e-4
    single[:, :-1] &= gaps > 1e-4
    single[0] = False
    assert single.sum() > 100
    np.testing.assert_allclose(vel[single], v_direct[single], atol=1e-6)

    point = np.array([0.13, 0.27, 0.05])
    _, v0 = mode_velocities(phonon, point)
    lattice = np.asarray(phonon.primitive.cell)
    h = 1e-5
    for a in range(3):
        dq = lattice @ (h * np.eye(3)[a])  # reduced q of a Cartesian step (1/Å, no 2 pi)
        f_plus, _ = mode_velocities(phonon, point + dq)
        f_minus, _ = mode_velocities(phonon, point - dq)
        np.testing.assert_allclose(v0[0, :, a], (f_plus - f_minus)[0] / (2 * h), atol=1e-4)


def test_interpolation_pieces():
    q = commensurate_qpoints(np.diag([4, 4, 4]))
    rng = np.random.default_rng(1)
    values = rng.uniform(1, 2, size=(len(q), 2))
    # the data points are reproduced, the middle of a grid edge is the mean of its ends
    np.testing.assert_allclose(interpolate_lambda(q, values, q), values, rtol=1e-12)

    def index(point):
        return int(np.all(np.isclose(q, point), axis=1).nonzero()[0][0])

    mid = interpolate_lambda(q, values, np.array([[0.375, 0.5, 0.0], [0.875, 0.5, 0.0]]))
    first = 0.5 * (values[index([0.25, 0.5, 0])] + values[index([0.5, 0.5, 0])])
    wrapped = 0.5 * (values[index([0.75, 0.5, 0])] + values[index([0.0, 0.5, 0])])  # periodic
    np.testing.assert_allclose(mid, [first, wrapped], rtol=1e-12)
    # Gamma from its neighbours: a linear function of the centred q gives its constant
    centred = q - np.rint(q)
    linear = 3.0 + centred @ np.array([1.0, -2.0, 0.5])
    assert lambda_at_gamma(q, linear[:, None])[0] == pytest.approx(3.0)

    # extrapolation recovers an exact line, with zero error
    ns = np.array([4, 6, 8, 10])
    fit = extrapolate(ns, 2.0 - 3.0 / ns)
    assert float(fit["intercept"]) == pytest.approx(2.0)
    assert float(fit["slope"]) == pytest.approx(-3.0)
    assert float(fit["intercept_stderr"]) < 1e-12
    with pytest.raises(ValueError, match="at least 3"):
        extrapolate([4, 8], [1.0, 2.0])
    # a cell one primitive cell thick cannot be interpolated
    with pytest.raises(ValueError, match="do not surround Gamma"):
        check_interpolation_grid(commensurate_qpoints(np.diag([3, 3, 1])))


def test_mismatched_lifetimes_are_refused(spring4):
    q = commensurate_qpoints(np.diag([3, 3, 3]))  # lifetimes of another cell
    tau = np.ones((len(q), 3))
    with pytest.raises(ValueError, match="not the 64 commensurate"):
        run_harmonic_interpolation(_lifetimes(q, tau), spring4, meshes=(4, 6, 8))
    q4 = commensurate_qpoints(np.diag([4, 4, 4]))
    shifted = _lifetimes(q4, np.ones((len(q4), 3)))
    shifted["frequency"] = shifted["frequency"] * 1.1  # other force constants
    with pytest.raises(ValueError, match="not the same crystal"):
        run_harmonic_interpolation(shifted, spring4, meshes=(4, 6, 8))
    tau = np.ones((len(q4), 3))
    tau[5, 1] = np.inf
    with pytest.raises(ValueError, match="no finite lifetime"):
        run_harmonic_interpolation(_lifetimes(q4, tau), spring4, meshes=(4, 6, 8))


# --------------------------------------------------------------------------------------------
# alkappa gk on an FHI-vibes-style trajectory with force_constants_remapped

TEMPERATURE, TAU_FS, DT = 300.0, 400.0, 10.0


def _vibes_md(path, phonon, seed, n_steps):
    """Langevin MD of the exactly harmonic 3x3x3 spring model (every mode decays with
    1 / friction), written as FHI-vibes does: ASE-unit velocities, atoms_* JSON attributes,
    force_constants_remapped (3N, 3N); an OU heat flux stands in for the real one."""
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin

    reference = simple_cubic(A, mass=MASS).repeat(3)
    n = len(reference)
    fc = np.asarray(phonon.force_constants).transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
    rng = np.random.default_rng(seed)
    atoms = reference.copy()
    atoms.calc = _Linear(reference, fc)
    atoms.set_constraint(FixCom())
    atoms.set_momenta(rng.normal(size=(n, 3)) * np.sqrt(MASS * units.kB * TEMPERATURE))
    dyn = Langevin(
        atoms,
        DT * units.fs,
        temperature_K=TEMPERATURE,
        friction=1.0 / (TAU_FS * units.fs),
        fixcm=False,
        rng=rng,
    )
    pos, vel, temp = [], [], []
    for _ in range(n_steps):
        dyn.run(1)
        pos.append(atoms.positions.copy())
        vel.append(atoms.get_velocities())
        temp.append(atoms.get_temperature())
    phi = np.exp(-DT / 50.0)
    flux = lfilter(
        [1e-4 * np.sqrt(1 - phi**2)], [1, -phi], rng.standard_normal((n_steps, 3)), axis=0
    )

    def as_json(atoms_):
        return json.dumps(
            {
                "pbc": [True] * 3,
                "cell": np.asarray(atoms_.cell).tolist(),
                "positions": atoms_.positions.tolist(),
                "symbols": atoms_.get_chemical_symbols(),
                "masses": atoms_.get_masses().tolist(),
            }
        )

    data = {
        "positions": (("time", "I", "a"), np.array(pos)),
        "velocities": (("time", "I", "a"), np.array(vel)),
        "temperature": (("time",), np.array(temp)),
        "heat_flux": (("time", "a"), flux),
        "force_constants_remapped": (("Ia", "Jb"), fc),
    }
    attrs = {
        "volume": reference.get_volume(),
        "atoms_reference": as_json(reference),
        "atoms_primitive": as_json(simple_cubic(A, mass=MASS)),
    }
    ds = xr.Dataset(data, coords={"time": np.arange(n_steps) * DT}, attrs=attrs)
    ds.to_netcdf(path, engine="h5netcdf")
    return ds


class _Linear(SpringCalculator):
    """F = -Phi u from a (3N, 3N) matrix, u the minimum-image displacement."""

    def __init__(self, reference, fc) -> None:
        super().__init__(A, K)
        self.ref = reference.get_positions()
        self.lattice = np.asarray(reference.cell)
        self.fc = fc

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):  # type: ignore[no-untyped-def]
        from ase.calculators.calculator import Calculator, all_changes

        Calculator.calculate(self, atoms, properties, system_changes or all_changes)
        frac = (self.atoms.positions - self.ref) @ np.linalg.inv(self.lattice)
        u = ((frac - np.rint(frac)) @ self.lattice).ravel()
        force = -self.fc @ u
        self.results = {"energy": -0.5 * float(force @ u), "forces": force.reshape(-1, 3)}


@pytest.fixture(scope="module")
def vibes_runs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("vibes")
    phonon = _spring_phonon(3)
    paths = [directory / f"run{k}.nc" for k in range(2)]
    for k, p in enumerate(paths):
        _vibes_md(p, phonon, seed=k, n_steps=2500)
    return directory, paths, phonon


def test_phonopy_from_vibes_trajectory(vibes_runs):
    _, paths, phonon = vibes_runs
    built = phonopy_from_trajectory(paths[0])
    assert len(built.primitive) == 1 and len(built.supercell) == 27
    q = commensurate_qpoints(np.diag([3, 3, 3]))
    f_built, _ = mode_velocities(built, q)
    f_ref, _ = mode_velocities(phonon, q)
    np.testing.assert_allclose(f_built, f_ref, atol=1e-6)
    # without atoms_primitive the primitive cell is found by symmetry
    ds = xr.open_dataset(paths[0]).load()
    del ds.attrs["atoms_primitive"]
    assert len(phonopy_from_trajectory(ds).primitive) == 1


def test_gk_command_writes_kappa_corrected(vibes_runs, tmp_path, capsys):
    _, paths, _ = vibes_runs
    out = tmp_path / "greenkubo.nc"
    args = ["gk", *map(str, paths), "-o", str(out), "--window-fs", "100"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "kappa_corrected = " in printed.splitlines()[-1]
    ds = read_netcdf(out)
    for name in (
        "kappa_ha",
        "interpolation_kappa_array",
        "interpolation_fit_slope",
        "interpolation_fit_intercept",
        "interpolation_fit_stderr",
        "interpolation_correction",
        "interpolation_correction_ab",
        "interpolation_correction_ab_stderr",
        "interpolation_correction_factor",
        "kappa_corrected_error",
    ):
        assert name in ds
    expected = float(ds["kappa_scalar"]) + float(ds["interpolation_correction"])
    assert float(ds["kappa_corrected"]) == pytest.approx(expected)
    assert f"{float(ds['kappa_corrected']):.3f}" in printed
    # every mode of the Langevin MD relaxes with 1 / friction: route (ii) by hand
    lifetimes = ds["mode_lifetime"].values[1:]
    assert np.median(lifetimes) == pytest.approx(TAU_FS / 1000, rel=0.2)
    q = commensurate_qpoints(np.diag([3, 3, 3]))
    _, v = _spring_modes(q)
    hand = harmonic_kappa(np.repeat(v, 3, axis=0), np.full(3 * len(q), TAU_FS / 1000), 27 * A**3)
    assert float(ds["kappa_ha_scalar"]) == pytest.approx(np.trace(hand) / 3, rel=0.2)
    # --no-correction: the plain Green-Kubo result
    assert main([*args, "--no-correction", "-o", str(tmp_path / "plain.nc")]) == 0
    assert "kappa_corrected" not in read_netcdf(tmp_path / "plain.nc")


def test_gk_command_bad_force_constants_in_one_line(vibes_runs, tmp_path, capsys):
    _, paths, _ = vibes_runs
    no_fc = tmp_path / "no_fc.nc"
    ds = xr.open_dataset(paths[0]).load()
    ds.drop_vars("force_constants_remapped").to_netcdf(no_fc, engine="h5netcdf")
    garbage = tmp_path / "fc.npy"
    np.save(garbage, np.ones((5, 5)))
    small = run_harmonic(
        simple_cubic(A, mass=MASS).repeat(2), SpringCalculator(A, K), mesh=(2, 2, 2), band_npoints=3
    )
    other = write_harmonic(small, tmp_path / "other")["phonopy"]
    out = tmp_path / "x.nc"
    cases = [
        ([str(no_fc), "--correction"], f"{no_fc}: no force constants"),
        ([str(paths[0]), "--force-constants", str(tmp_path / "nothing.yaml")], "does not exist"),
        ([str(paths[0]), "--force-constants", str(garbage)], f"{garbage}: unusable"),
        ([str(paths[0]), "--force-constants", str(other)], f"{other} does not fit"),
    ]
    for extra, message in cases:
        assert main(["gk", *extra, "-o", str(out), "--window-fs", "100"]) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()
    # a file without force constants and no request: plain Green-Kubo
    assert main(["gk", str(no_fc), "-o", str(out), "--window-fs", "100"]) == 0
    assert "kappa_corrected" not in capsys.readouterr().out
