"""Acceptance probabilities and the selection of frames (design 1.2 step 4)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from alkappa.al.selection import (
    Candidate,
    acceptance_probability,
    energy_viability,
    select_frames,
    uncertain_fraction,
)
from alkappa.settings import CalibrationSettings, SelectSettings

SELECT = {
    "mode": "probability",
    "a": 2.0,
    "b": 1.0,
    "threshold": 2.0,
    "energy_viability": True,
    "energy_shift": 3.0,
    "max_frames": 10,
    "min_separation": 0.0,
    "seed": 0,
}
SETTINGS = SelectSettings.with_defaults(**SELECT)


def test_acceptance_limits_and_midpoint():
    p = acceptance_probability(np.array([-50.0, 2.0, 50.0]), a=2.0, b=1.0)
    assert p[0] == pytest.approx(0.0, abs=1e-12)
    assert p[1] == pytest.approx(0.5)
    assert p[2] == pytest.approx(1.0, abs=1e-12)


def test_acceptance_one_sigma_is_normal_cdf():
    # P_U at z = a + b is the standard normal CDF at 1
    p = acceptance_probability(3.0, a=2.0, b=1.0)
    assert p == pytest.approx(0.5 * (1 + math.erf(1 / math.sqrt(2))))
    assert p == pytest.approx(0.841344746, rel=1e-8)


def test_acceptance_monotonic_and_width():
    z = np.linspace(-3, 8, 200)
    narrow = acceptance_probability(z, a=2.0, b=0.5)
    wide = acceptance_probability(z, a=2.0, b=2.0)
    assert np.all(np.diff(narrow) >= 0)
    # a narrower erf is steeper: further from 1/2 on both sides of the midpoint
    assert np.all(np.abs(narrow - 0.5) >= np.abs(wide - 0.5) - 1e-15)


def test_threshold_mode():
    p = acceptance_probability(np.array([1.9, 2.1]), mode="threshold", threshold=2.0)
    assert p.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="unknown selection mode"):
        acceptance_probability(1.0, mode="bogus")


def test_energy_viability_downweights_high_energies():
    rng = np.random.default_rng(0)
    energies = rng.normal(-100.0, 0.1, size=500)
    energies[10] = -100.0 + 5.0  # 50 sigma above the thermal mean
    p = energy_viability(energies, shift=3.0)
    assert p[10] < 1e-6
    typical = np.delete(p, 10)
    assert np.median(typical) > 0.99
    # a frame exactly `shift` standard deviations above the mean gets 1/2
    e = rng.normal(0.0, 1.0, size=20000)
    p = energy_viability(np.append(e, e.mean() + 3 * e.std()), shift=3.0)
    assert p[-1] == pytest.approx(0.5, abs=0.01)  # one extra frame barely moves mean and std


def _candidates(us, times=None, traj="T300"):
    times = times if times is not None else np.arange(len(us)) * 10.0
    return [
        Candidate(traj, i, float(t), 300.0, float(u), 0.0)
        for i, (u, t) in enumerate(zip(us, times, strict=True))
    ]


def test_selection_is_deterministic_and_respects_budget():
    rng = np.random.default_rng(1)
    cands = _candidates(rng.uniform(1.5, 2.5, size=200))  # P between 0.16 and 0.84
    settings = replace(SETTINGS, max_frames=5)
    a = select_frames(cands, test_mean=1.0, test_std=0.5, settings=settings)
    b = select_frames(cands, test_mean=1.0, test_std=0.5, settings=settings)
    assert [r["accepted"] for r in a] == [r["accepted"] for r in b]
    assert sum(r["accepted"] for r in a) == 5
    reasons = {r["reason"] for r in a}
    assert reasons <= {"accepted", "below acceptance", "budget exhausted", "too close in time"}
    # a different seed gives a different selection
    c = select_frames(cands, test_mean=1.0, test_std=0.5, settings=replace(settings, seed=99))
    assert [r["accepted"] for r in a] != [r["accepted"] for r in c]


def test_selection_records_z_and_probabilities():
    cands = _candidates([1.0, 3.0])
    recs = select_frames(cands, test_mean=1.0, test_std=0.5, settings=SETTINGS)
    assert recs[0]["z"] == pytest.approx(0.0)
    assert recs[1]["z"] == pytest.approx(4.0)
    assert recs[1]["P_U"] == pytest.approx(acceptance_probability(4.0))
    assert recs[1]["P"] == pytest.approx(recs[1]["P_U"] * recs[1]["P_E"])


def test_certain_frames_never_selected_and_uncertain_always():
    cands = _candidates([0.0] * 20 + [100.0] * 3, times=np.arange(23) * 1000.0)
    recs = select_frames(
        cands, test_mean=1.0, test_std=0.1, settings=replace(SETTINGS, energy_viability=False)
    )
    accepted = [r["frame"] for r in recs if r["accepted"]]
    assert accepted == [20, 21, 22]
    assert uncertain_fraction(recs) == pytest.approx(3 / 23)


def test_minimum_time_separation():
    # all frames very uncertain, 10 fs apart; with 25 fs separation at most every third frame
    cands = _candidates([100.0] * 10, times=np.arange(10) * 10.0)
    recs = select_frames(
        cands,
        test_mean=0.0,
        test_std=1.0,
        settings=replace(SETTINGS, min_separation=25.0, energy_viability=False),
    )
    times = sorted(r["time"] for r in recs if r["accepted"])
    assert len(times) >= 3
    assert np.all(np.diff(times) >= 25.0)
    assert any(r["reason"] == "too close in time" for r in recs)


def test_nan_uncertainty_is_rejected():
    cands = _candidates([np.nan, 100.0])
    recs = select_frames(cands, test_mean=0.0, test_std=1.0, settings=SETTINGS)
    assert recs[0]["reason"] == "non-finite" and not recs[0]["accepted"]


def test_a_known_viability_replaces_the_trajectory_estimate():
    # 200 thermal frames and two far above them: the trajectory estimate gives those P_E ~ 0,
    # but a viability known from the biased MD (against the thermal range) takes precedence
    energies = [*np.random.default_rng(0).normal(0.0, 0.1, size=200), 3.0, 3.0]
    cands = [
        Candidate("T300", i, 10.0 * i, 300.0, 100.0, e, viability=0.25 if i == 200 else None)
        for i, e in enumerate(energies)
    ]
    recs = select_frames(cands, test_mean=0.0, test_std=1.0, settings=SETTINGS)
    assert recs[200]["P_E"] == 0.25
    assert recs[201]["P_E"] < 0.01


# --- calibrated uncertainty -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["probability", "threshold"])
def test_a_global_sigma_scale_cancels_in_the_test_relative_selection(mode):
    """z = (U - U_test) / sigma_test is invariant under U -> s U: a scale factor alone cannot
    change which frames are selected (alkappa.al.recalibration)."""
    rng = np.random.default_rng(5)
    u = rng.uniform(0.5, 3.0, size=100)
    settings = replace(SETTINGS, mode=mode, max_frames=20)
    raw = select_frames(_candidates(u), test_mean=1.0, test_std=0.5, settings=settings)
    scaled = select_frames(_candidates(3.7 * u), test_mean=3.7, test_std=1.85, settings=settings)
    assert [r["accepted"] for r in raw] == [r["accepted"] for r in scaled]
    np.testing.assert_allclose([r["P_U"] for r in raw], [r["P_U"] for r in scaled])
    # a non-linear monotone map (what an isotonic fit can be) does change it
    squared = select_frames(_candidates(u**2), test_mean=1.0, test_std=0.5, settings=settings)
    assert [r["P_U"] for r in raw] != pytest.approx([r["P_U"] for r in squared])


def test_absolute_threshold_ignores_the_test_set():
    settings = replace(SETTINGS, energy_viability=False)
    absolute = CalibrationSettings.with_defaults(absolute_threshold=0.1, absolute_width=0.01)
    u = [0.05, 0.1, 0.15]
    for mean, std in ((0.0, 1.0), (1.0, 0.01)):
        recs = select_frames(
            _candidates(u), test_mean=mean, test_std=std, settings=settings, calibration=absolute
        )
        p = [r["P_U"] for r in recs]
        assert p[0] == pytest.approx(0.0, abs=1e-6)
        assert p[1] == pytest.approx(0.5)
        assert p[2] == pytest.approx(1.0, abs=1e-6)


def test_selection_uses_the_calibrated_map_of_the_metrics():
    from alkappa.al.recalibration import CalibrationMap
    from alkappa.al.steps import _selection_calibration

    metrics = {"recalibration": {"scale": {"map": CalibrationMap("scale", 2.5).to_dict()}}}
    raw = CalibrationSettings.with_defaults(select_on="raw", method="scale")
    calibrate = _selection_calibration(raw, metrics, "m.json")
    assert calibrate(0.1) == pytest.approx(0.1)
    # no calibration section (the select rule passes it only when the selection uses it)
    assert _selection_calibration(None, metrics, "m.json")(0.1) == pytest.approx(0.1)
    on = CalibrationSettings.with_defaults(
        select_on="calibrated", method="scale", absolute_threshold=0.2, absolute_width=0.02
    )
    calibrate = _selection_calibration(on, metrics, "m.json")
    assert calibrate(0.1) == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"needs the isotonic map of m\.json"):
        _selection_calibration(replace(on, method="isotonic"), metrics, "m.json")
