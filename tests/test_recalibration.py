"""Recalibration of the ensemble force sigma: known scales and shapes are recovered."""

from __future__ import annotations

import numpy as np
import pytest

from alkappa.al.recalibration import (
    CalibrationMap,
    fit_isotonic,
    fit_scale,
    isotonic_fit,
    recalibrate_forces,
)


def _errors(sigma_true: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Force errors (N, 3) whose per-atom RMS norm is ``sigma_true`` (per component /sqrt 3)."""
    return rng.normal(size=(sigma_true.size, 3)) * (sigma_true / np.sqrt(3.0))[:, None]


def test_scale_factor_of_gaussian_errors_is_recovered():
    rng = np.random.default_rng(1)
    sigma = rng.lognormal(np.log(0.02), 0.5, size=20_000)
    for s in (0.5, 3.0):
        fitted = fit_scale(sigma, _errors(s * sigma, rng))
        # the ML estimate of s from 60000 components: relative std 1/sqrt(2 * 60000)
        assert fitted.scale == pytest.approx(s, rel=0.01)


def test_pool_adjacent_violators_by_hand():
    knots, values = isotonic_fit([1, 2, 3, 4], [1, 3, 2, 4])
    np.testing.assert_allclose(knots, [1, 2.5, 4])
    np.testing.assert_allclose(values, [1, 2.5, 4])
    knots, values = isotonic_fit([3, 1, 2], [0, 5, 4])  # decreasing data: one block
    np.testing.assert_allclose(knots, [2.0])
    np.testing.assert_allclose(values, [3.0])


def test_isotonic_map_follows_a_non_proportional_error_curve():
    """True RMS error 0.03 + 2 sigma: no single factor fits, the isotonic map does."""
    rng = np.random.default_rng(2)
    sigma = rng.uniform(0.005, 0.05, size=40_000)
    truth = 0.03 + 2.0 * sigma
    delta = _errors(truth, rng)
    iso = fit_isotonic(sigma, delta)
    grid = np.linspace(0.01, 0.045, 8)
    np.testing.assert_allclose(iso(grid), 0.03 + 2.0 * grid, rtol=0.05)
    scale = fit_scale(sigma, delta)
    assert np.max(np.abs(scale(grid) / (0.03 + 2.0 * grid) - 1)) > 0.3
    # monotone, and proportional beyond the knots: the ranking of outliers survives
    assert np.all(np.diff(iso(np.linspace(0.0, 0.2, 50))) >= 0)
    assert iso(0.2) > iso(0.1) > iso(0.05)


def test_map_round_trips_through_json():
    iso = CalibrationMap("isotonic", knots=(0.01, 0.02), values=(1e-4, 9e-4))
    again = CalibrationMap.from_dict(iso.to_dict())
    np.testing.assert_allclose(again([0.005, 0.015, 0.04]), iso([0.005, 0.015, 0.04]))
    assert CalibrationMap("identity")(0.3) == 0.3
    assert CalibrationMap("scale", scale=2.0)(0.3) == pytest.approx(0.6)


def _ensemble(n_frames: int, n_atoms: int, s: float, rng: np.random.Generator):
    """Two members at Fbar +- d with |d_i| = sigma_i, and Fbar - F_ref ~ s sigma_i."""
    refs, members = [], []
    for _ in range(n_frames):
        sigma = rng.lognormal(np.log(0.03), 0.4, size=n_atoms)
        ref = rng.normal(size=(n_atoms, 3))
        mean = ref + _errors(s * sigma, rng)
        d = rng.normal(size=(n_atoms, 3))
        d *= (sigma / np.linalg.norm(d, axis=1))[:, None]
        refs.append(ref)
        members.append(np.stack([mean + d, mean - d]))
    return refs, members


def test_over_confident_ensemble_is_recalibrated_out_of_sample():
    rng = np.random.default_rng(3)
    refs, members = _ensemble(40, 32, 3.0, rng)
    out = recalibrate_forces(refs, members)
    assert out["folds"] == 2
    assert out["scale"]["map"]["scale"] == pytest.approx(3.0, rel=0.05)
    before, after = out["before"], out["scale"]["after"]
    assert before["rms_error_atom"] == pytest.approx(3.0 * before["rms_sigma_atom"], rel=0.05)
    assert before["miscalibration_area_atom"] > 0.25  # errors 3x sigma: far below the diagonal
    assert after["miscalibration_area_atom"] < 0.03
    assert out["isotonic"]["after"]["miscalibration_area_atom"] < 0.05
    # a monotone map cannot re-rank: rho barely moves (folds fit slightly different maps)
    assert after["spearman_atom"] == pytest.approx(before["spearman_atom"], abs=0.02)


def test_calibrated_ensemble_keeps_a_unit_scale():
    rng = np.random.default_rng(4)
    refs, members = _ensemble(40, 32, 1.0, rng)
    out = recalibrate_forces(refs, members)
    assert out["scale"]["map"]["scale"] == pytest.approx(1.0, rel=0.05)
    assert out["before"]["miscalibration_area_atom"] < 0.03


def test_no_spread_is_an_error_not_a_nan():
    ref = [np.zeros((4, 3))]
    members = [np.ones((2, 4, 3))]
    with pytest.raises(ValueError, match="positive, finite sigma"):
        recalibrate_forces(ref, members, methods=("scale",))
