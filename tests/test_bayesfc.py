"""Bayesian force-constant model: regression, calibration, calculator, trigger rule, export."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from ase.build import bulk
from scipy.stats import multivariate_normal

from alkappa.bayesfc import (
    BayesianFCCalculator,
    FCBasis,
    MDSettings,
    TriggerRule,
    check_convergence,
    export_force_constants,
    fit_bayesian_ridge,
    fit_model,
    rolling_means,
    scan_errors,
)
from alkappa.io import read_dataset, with_labels, write_dataset
from alkappa.testing import ModelContract, emt_frames


@pytest.fixture(scope="module")
def si64():
    return bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)


@pytest.fixture(scope="module")
def basis(si64):
    # orders 2, 3, 4 (the fourth-order clusters: nearest neighbours only)
    return FCBasis(si64, [5.0, 3.9, 2.6])


def _true_parameters(basis, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.0, basis.n_params) * np.where(basis.orders == 2, 1.0, 0.3)


def _synthetic(basis, theta, n, rng, noise, amplitude=0.06):
    """Design rows and noiseless forces of n random displacement patterns."""
    rows = [
        basis.design_from_displacements(rng.normal(0, amplitude, (basis.n_atoms, 3)))[0]
        for _ in range(n)
    ]
    a = np.vstack(rows)
    f = a @ theta
    return a, f, f + rng.normal(0.0, noise, f.size)


# --- the regression ------------------------------------------------------------------------


def test_evidence_maximum_matches_brute_force_grid():
    rng = np.random.default_rng(3)
    phi = rng.normal(size=(40, 5))
    y = phi @ rng.normal(size=5) + rng.normal(0, 0.3, 40)
    fit = fit_bayesian_ridge(phi, y)
    assert fit.converged

    def direct(alpha, beta):  # marginal likelihood y ~ N(0, I/beta + Phi Phi^T/alpha)
        cov = np.eye(40) / beta + phi @ phi.T / alpha
        return multivariate_normal(np.zeros(40), cov).logpdf(y)

    assert fit.log_evidence == pytest.approx(direct(fit.alpha, fit.beta), abs=1e-8)
    alphas = fit.alpha * np.exp(np.linspace(-2, 2, 41))
    betas = fit.beta * np.exp(np.linspace(-2, 2, 41))
    grid = np.array([[direct(a, b) for b in betas] for a in alphas])
    i, j = np.unravel_index(grid.argmax(), grid.shape)
    assert grid.max() <= fit.log_evidence + 1e-9
    assert (i, j) == (20, 20)  # the grid's best point is the fitted one (grid step 10 %)


@pytest.mark.parametrize("shape", [(30, 6), (8, 12)])
def test_posterior_matches_direct_solution(shape):
    rng = np.random.default_rng(4)
    n, p = shape
    phi = rng.normal(size=shape)
    y = rng.normal(size=n)
    fit = fit_bayesian_ridge(phi, y, max_iter=3)
    precision = fit.alpha * np.eye(p) + fit.beta * phi.T @ phi
    mean = fit.beta * np.linalg.solve(precision, phi.T @ y)
    np.testing.assert_allclose(fit.mean, mean, rtol=1e-8, atol=1e-10)
    rows = rng.normal(size=(5, p))
    direct = np.einsum("ij,ij->i", rows, np.linalg.solve(precision, rows.T).T)
    np.testing.assert_allclose(fit.predictive_variance(rows), direct, rtol=1e-8)
    draws = fit.sample(20000, np.random.default_rng(0))
    np.testing.assert_allclose(
        np.cov(draws.T),
        np.linalg.inv(precision),
        atol=0.05 * np.abs(np.linalg.inv(precision)).max(),
    )


def test_bad_regression_input_is_named():
    with pytest.raises(ValueError, match="targets"):
        fit_bayesian_ridge(np.ones((5, 2)), np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        fit_bayesian_ridge(np.full((5, 2), np.nan), np.ones(5))


def test_calibration_on_known_force_constant_model(basis):
    """1-sigma/2-sigma predictive intervals cover 68/95 % of the errors; noise recovered."""
    theta = _true_parameters(basis)
    rng = np.random.default_rng(5)
    noise = 0.05
    inside1 = inside2 = inside1_epi = inside2_epi = total = 0
    noise_fit = []
    for _ in range(8):
        a, _, y = _synthetic(basis, theta, 1, rng, noise)  # 192 forces, few enough that the
        scale = np.sqrt((a**2).mean(axis=0))  # epistemic part matters
        fit = fit_bayesian_ridge(a / scale, y)
        noise_fit.append(fit.noise_std)
        at, ft, yt = _synthetic(basis, theta, 2, rng, noise)
        pred = (at / scale) @ fit.mean
        var_epi = fit.predictive_variance(at / scale)
        sigma = np.sqrt(var_epi + 1.0 / fit.beta)
        inside1 += int((np.abs(pred - yt) < sigma).sum())
        inside2 += int((np.abs(pred - yt) < 2 * sigma).sum())
        # the posterior alone against the noiseless truth
        inside1_epi += int((np.abs(pred - ft) < np.sqrt(var_epi)).sum())
        inside2_epi += int((np.abs(pred - ft) < 2 * np.sqrt(var_epi)).sum())
        total += yt.size
    assert abs(inside1 / total - 0.6827) < 0.05
    assert abs(inside2 / total - 0.9545) < 0.05
    assert abs(inside1_epi / total - 0.6827) < 0.05
    assert abs(inside2_epi / total - 0.9545) < 0.05
    assert np.mean(noise_fit) == pytest.approx(noise, rel=0.10)


# --- the model and its calculator ----------------------------------------------------------


@pytest.fixture(scope="module")
def fitted(basis, si64):
    theta = _true_parameters(basis, seed=2)
    rng = np.random.default_rng(6)
    frames = []
    for _ in range(2):
        atoms = si64.copy()
        u = rng.normal(0, 0.05, (len(atoms), 3))
        atoms.positions += u
        a, erow = basis.design_from_displacements(u)
        frames.append(
            with_labels(atoms, float(erow @ theta) - 7.0, (a @ theta).reshape(-1, 3), None)
        )
    return fit_model(basis, frames), theta


def test_fit_recovers_noiseless_model_and_energy_offset(fitted, si64):
    model, theta = fitted
    np.testing.assert_allclose(model.parameters, theta, atol=1e-6)
    assert model.e0 == pytest.approx(-7.0, abs=1e-6)
    assert model.predict(si64).energy == pytest.approx(-7.0, abs=1e-6)


def test_calculator_forces_are_minus_energy_gradient(fitted, si64):
    model, _ = fitted
    calc = BayesianFCCalculator([model], samples=0)
    atoms = si64.copy()
    atoms.positions += np.random.default_rng(7).normal(0, 0.08, atoms.positions.shape)
    atoms.calc = calc
    forces = atoms.get_forces().copy()
    h = 1e-4
    for i, c in [(0, 0), (5, 1), (17, 2), (40, 0)]:
        energies = []
        for sign in (1, -1):
            displaced = atoms.copy()
            displaced.positions[i, c] += sign * h
            displaced.calc = calc
            energies.append(displaced.get_potential_energy())
        assert -(energies[0] - energies[1]) / (2 * h) == pytest.approx(forces[i, c], abs=1e-6)


def test_calculator_results_work_with_the_al_loop(fitted, si64):
    from alkappa.al.explore import frame_uncertainty

    model, _ = fitted
    # an under-determined refit of one structure, so the epistemic error is not tiny
    one = fit_model(model.basis, [_labelled_copy(model, si64, 8)])
    calc = BayesianFCCalculator([one], samples=400, seed=1)
    atoms = si64.copy()
    atoms.positions += np.random.default_rng(9).normal(0, 0.05, atoms.positions.shape)
    atoms.calc = calc
    atoms.get_forces()
    res = calc.results
    assert res["forces_members"].shape == (400, 64, 3)
    assert res["energy_members"].shape == (400,)
    assert res["stress"].shape == (6,)
    assert res["stress_members"].shape == (400, 6)
    unc = frame_uncertainty(calc)
    per_atom = np.sqrt((res["force_std"] ** 2).sum(axis=1))
    assert unc["force_max"] == pytest.approx(per_atom.max())
    assert unc["force_noise"] == pytest.approx(one.posterior.noise_std * np.sqrt(3))
    # the draws' spread is the analytic epistemic error
    spread = res["forces_members"].std(axis=0)
    assert np.median(spread / res["force_std"]) == pytest.approx(1.0, abs=0.1)


def _labelled_copy(model, reference, seed):
    atoms = reference.copy()
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
    pred = model.predict(atoms)
    return with_labels(atoms, pred.energy, pred.forces + rng.normal(0, 0.02, (64, 3)), None)


def test_bad_structures_and_cutoffs_are_named(basis, si64):
    with pytest.raises(ValueError, match="half the supercell"):
        FCBasis(bulk("Si", "diamond", a=5.43, cubic=True), [4.0])
    with pytest.raises(ValueError, match="does not match the reference"):
        basis.displacements(si64[:-1])


def test_model_save_load_round_trip(fitted, si64, tmp_path):
    from alkappa.bayesfc import BayesianFCModelFit

    model, _ = fitted
    model.save(tmp_path / "m.npz")
    back = BayesianFCModelFit.load(tmp_path / "m.npz", basis=model.basis)
    atoms = _labelled_copy(model, si64, 3)
    np.testing.assert_allclose(back.predict(atoms).forces, model.predict(atoms).forces)
    np.testing.assert_allclose(back.predict(atoms).force_std, model.predict(atoms).force_std)


# --- the trigger rule and the convergence check --------------------------------------------


def test_trigger_rule_on_constructed_series():
    errors = np.ones(100)
    errors[5] = 10.0  # before the window holds `warmup` values: ignored
    errors[30] = 3.5  # 3.5 > 3 x 1: ratio trigger
    errors[35] = 5.0  # within min_gap of 30: no trigger
    errors[60] = 2.9  # below 3 x rolling mean
    errors[80] = 50.0  # ratio and absolute: absolute is reported
    rule = TriggerRule(window=20, factor=3.0, absolute=20.0, min_gap=10, warmup=10)
    fired = scan_errors(errors, rule)
    assert [(t["step"], t["reason"]) for t in fired] == [(30, "ratio"), (80, "absolute")]
    # the rolling mean is that of the 20 steps before the trigger step
    assert fired[0]["rolling_mean"] == pytest.approx(errors[10:30].mean())
    assert fired[1]["rolling_mean"] == pytest.approx(errors[60:80].mean())
    np.testing.assert_allclose(rolling_means(errors, 20)[29], errors[10:30].mean())
    with pytest.raises(ValueError, match="factor"):
        TriggerRule(factor=0.5)


def test_convergence_check_uses_frozen_model_only(fitted):
    model, _ = fitted
    rule = TriggerRule(window=5, factor=3.0, min_gap=2, warmup=3)
    check = check_convergence(
        model, rule, MDSettings(temperature=100, timestep=1.0), steps=14, seed=0, equilibration=3
    )
    assert check.summary()["oracle_calls"] == 0
    assert check.errors.shape == (14,)
    assert check.would_fire == scan_errors(check.errors, rule)
    rolling = rolling_means(check.errors, 5)[5:]
    first, second = rolling[:4].mean(), rolling[4:].mean()
    assert check.relative_change == pytest.approx(abs(second - first) / first)
    assert check.converged == (not check.would_fire and check.relative_change <= 0.1)
    with pytest.raises(ValueError, match="2 \\* window"):
        check_convergence(model, rule, MDSettings(), steps=5, seed=0)


# --- export --------------------------------------------------------------------------------


def _spring_fc2(atoms, k=3.0, r_nn=2.5):
    """Nearest-neighbour central-spring force constants (eV/Å^2), built independently."""
    from ase.geometry import get_distances

    vec, dist = get_distances(atoms.positions, cell=atoms.cell, pbc=True)
    n = len(atoms)
    fc = np.zeros((n, n, 3, 3))
    for i in range(n):
        for j in range(n):
            if i != j and dist[i, j] < r_nn:
                e = vec[i, j] / dist[i, j]
                fc[i, j] = -k * np.outer(e, e)
        fc[i, i] = -fc[i].sum(axis=0)
    return fc


def test_export_reproduces_known_harmonic_force_constants(si64, tmp_path):
    import phonopy
    from phonopy.file_IO import parse_FORCE_CONSTANTS, read_force_constants_hdf5

    fc = _spring_fc2(si64)
    rng = np.random.default_rng(11)
    frames = []
    for _ in range(2):
        atoms = si64.copy()
        u = rng.normal(0, 0.03, (64, 3))
        atoms.positions += u
        frames.append(with_labels(atoms, 0.0, -np.einsum("ijab,jb->ia", fc, u), None))
    basis = FCBasis(si64, [2.6])
    model = fit_model(basis, frames)
    result = export_force_constants(model, tmp_path)
    assert result.orders == [2]
    ph = phonopy.load(tmp_path / "phono3py_params.yaml", produce_fc=False, log_level=0)
    from alkappa.phonons._common import to_ase_atoms

    expected = _spring_fc2(to_ase_atoms(ph.supercell))  # in phono3py's atom order
    np.testing.assert_allclose(
        read_force_constants_hdf5(tmp_path / "fc2.hdf5"), expected, atol=1e-6
    )
    np.testing.assert_allclose(
        parse_FORCE_CONSTANTS(tmp_path / "FORCE_CONSTANTS_2ND"), expected, atol=1e-6
    )


# --- the model plugin ----------------------------------------------------------------------


def test_plugin_trains_and_loads_as_ensemble(fitted, si64, tmp_path):
    from alkappa.models import get_model
    from alkappa.models.ensemble import load_ensemble

    model, _ = fitted
    shifted = si64.copy()
    shifted.positions += 0.01  # the reference must be inferred despite a rigid shift
    frames = [_labelled_copy(model, shifted, s) for s in range(4)]
    write_dataset(tmp_path / "train.extxyz", frames[:3])
    write_dataset(tmp_path / "val.extxyz", frames[3:])
    spec = {"name": "bayesian-fc", "cutoffs": [5.0, 3.9, 2.6], "samples": 3}
    plugin = get_model(spec)
    result = plugin.train(
        tmp_path / "train.extxyz",
        tmp_path / "val.extxyz",
        tmp_path / "work",
        species=["Si"],
        seed=0,
    )
    # labels carry noise of 0.02 eV/Å: the validation RMSE must be of that size
    assert result.info["val_forces_rmse"] == pytest.approx(0.02, rel=0.25)
    calc = load_ensemble([result.model_path, result.model_path], model=spec)
    atoms = read_dataset(tmp_path / "val.extxyz")[0]
    atoms.calc = calc
    atoms.get_forces()
    assert calc.results["forces_members"].shape == (6, 64, 3)
    assert set(calc.results["uncertainty"]) >= {"force_max", "force_mean", "energy_std_per_atom"}
    with pytest.raises(ValueError, match="unknown bayesian-fc"):
        get_model({"name": "bayesian-fc", "cutof": [4.0]})


class TestBayesianFCContract(ModelContract):
    """The plugin meets the model contract, fitted to EMT-labelled rattled Cu (2x2x2 cubic)."""

    model_spec: ClassVar[dict] = {"name": "bayesian-fc", "cutoffs": [3.0, 2.6], "samples": 2}
    force_tolerance = 1e-6
    # a model of one fixed supercell: its stress is the displacement virial, and a strained
    # cell is another supercell it cannot evaluate
    check_stress = False
    # members are the fits' means (samples: 0); the uncertainty is the analytic posterior error
    ensemble_options: ClassVar[dict] = {"samples": 0}
    uncertainty_is_spread = False

    def model_frames(self) -> list:
        return emt_frames(6, repeat=2, strain=0.0, seed=3)


def test_config_section_defaults_and_errors():
    from alkappa.config import ConfigError, load_config, material_settings

    base = {
        "oracle": {"name": "emt"},
        "materials": {"Cu": {"structure": {"build": {"name": "Cu"}}}},
    }
    config = load_config({**base, "bayesian": {"cutoffs": [4.0, 3.0]}})
    assert config["bayesian"]["factor"] == 3.0 and config["bayesian"]["window"] == 50
    override = {
        "oracle": {"name": "emt"},
        "materials": {
            "Cu": {"structure": {"build": {"name": "Cu"}}, "bayesian": {"temperature": 600}}
        },
    }
    assert material_settings(load_config(override), "Cu")["bayesian"]["temperature"] == 600
    with pytest.raises(ConfigError, match="factor"):
        load_config({**base, "bayesian": {"factor": 0.5}})


# --- validation against the oracle's own force constants ------------------------------------


def test_validation_compares_model_and_oracle_kappa_on_one_mesh(tmp_path):
    from ase.calculators.emt import EMT

    from alkappa.bayesfc.steps import run_bayes_validation_step
    from alkappa.io import write_json, write_netcdf
    from alkappa.phonons import run_fc3, run_phono3py

    # "oracle" and "model": Cu (EMT) at two lattice constants, so their kappas differ
    kappas = {}
    for name, a in (("oracle", 3.61), ("model", 3.58)):
        fc = run_fc3(bulk("Cu", "fcc", a=a), EMT(), supercell_matrix=[3, 3, 3])
        ds = run_phono3py(fc.phono3py, mesh=5, temperatures=[200, 400])
        (tmp_path / name).mkdir()
        write_netcdf(ds, tmp_path / name / "kappa.nc")
        kappas[name] = ds["kappa_rta_average"].values
    write_json(tmp_path / "oracle" / "mesh_convergence.json", {"meshes": [[5, 5, 5]]})
    write_json(tmp_path / "decision.json", {"converged": True, "training_oracle_calls": 7})
    from alkappa.settings import section_defaults

    conductivity = {**section_defaults("conductivity"), "isotopes": False}
    settings = {"name": "Cu", "conductivity": conductivity}
    record = run_bayes_validation_step(
        settings,
        tmp_path / "model" / "kappa.nc",
        tmp_path / "oracle" / "kappa.nc",
        tmp_path / "decision.json",
        tmp_path / "validation.json",
        tmp_path / "validation.png",
    )
    np.testing.assert_allclose(record["ratio"], kappas["model"] / kappas["oracle"], rtol=1e-10)
    assert abs(record["ratio"][0] - 1.0) > 0.02  # the two crystals do differ
    assert record["mesh"] == [5, 5, 5] and record["same_qpoints"]
    assert record["oracle_calls"] == 7 and record["converged"] is True
    assert "mesh_convergence_oracle" in record and "mesh_convergence_model" not in record
    assert (tmp_path / "validation.png").stat().st_size > 1000


def test_the_bayesian_target_plans_the_validation_with_the_oracles_fc3():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    snakemake = str(Path(sys.executable).parent / "snakemake")
    proc = subprocess.run(
        [snakemake, "bayesian", "-n", "--quiet", "rules", "--configfile", "config/Si.yaml"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for rule in ("bayes_validation", "fc3", "kappa", "bayes_kappa"):
        assert rule in proc.stdout.split(), proc.stdout


def test_noise_factor_sets_the_absolute_limit_from_the_fit(fitted):
    model, _ = fitted
    rule = TriggerRule(window=5, warmup=3, noise_factor=0.5)
    limit = rule.for_model(model).absolute
    assert limit == pytest.approx(0.5 * np.sqrt(3.0) * model.posterior.noise_std)
    assert TriggerRule(absolute=0.1).for_model(model).absolute == 0.1
    with pytest.raises(ValueError, match="not both"):
        TriggerRule(absolute=0.1, noise_factor=0.5)


def test_a_limit_below_the_misfit_labels_until_the_budget_a_noise_limit_does_not():
    # labels: EMT copper plus Gaussian noise of 0.05 eV/Å per component, which no force
    # constants can fit; a fixed limit below the noise keeps asking (SnSe with 0.03 eV/Å),
    # the limit that follows the fitted noise stops asking
    from ase.calculators.emt import EMT

    from alkappa.bayesfc import run_dynamic_training

    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    rng = np.random.default_rng(3)

    def label(structures):
        out = []
        for atoms in structures:
            work = atoms.copy()
            work.calc = EMT()
            forces = work.get_forces() + rng.normal(0.0, 0.05, (len(work), 3))
            out.append(with_labels(atoms, float(work.get_potential_energy()), forces, None))
        return out

    common = {
        "cutoffs": [3.6, 2.8],
        "md": MDSettings(temperature=300, timestep=5.0),
        "steps_per_round": 80,
        "max_rounds": 1,
        "check_steps": 24,
        "max_calls": 12,
        "seed": 1,
    }
    fixed = run_dynamic_training(
        cu, label, rule=TriggerRule(window=10, absolute=1e-3, min_gap=5), **common
    )
    auto = run_dynamic_training(
        cu, label, rule=TriggerRule(window=10, noise_factor=0.5, min_gap=5), **common
    )
    assert fixed.oracle_calls == 12  # the budget
    assert {t["reason"] for t in fixed.triggers} == {"absolute"}
    assert auto.oracle_calls < 12
    noise = np.sqrt(3.0) * auto.model.posterior.noise_std
    assert noise > 0.8 * 0.05 * np.sqrt(3.0)  # the fit sees the added noise (and EMT misfit)
    # every MD step records the limit of the fit in force
    assert auto.errors[-1]["limit"] == pytest.approx(0.5 * noise)
