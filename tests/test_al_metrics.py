"""Per-member test-set errors, the reliability figure and the uncertainty calibration."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from ase.calculators.lj import LennardJones
from ase.units import GPa
from helpers import rattled_frames

from alkappa.al.calibration import (
    CalibrationResult,
    binned_calibration,
    calibration,
    coverage_curve,
    energy_calibration,
    force_calibration,
    miscalibration_area,
    per_atom_force_sigma,
    plot_calibration,
    spearman_rank,
)
from alkappa.al.metrics import collect_predictions, ensemble_error_metrics, evaluate_ensemble
from alkappa.models.ensemble import EnsembleCalculator

EV_A3_IN_GPA = 1.0 / GPa  # 160.2 GPa per eV/Å^3

# --- ensemble_error_metrics on two members, two frames of different size ----------------------


def _tiny():
    """M = 2 members, F = 2 frames with N = 1 and N = 2 atoms (see the arithmetic below)."""
    ref_energy = [0.0, 1.0]  # eV/atom
    member_energy = [[0.001, 1.003], [0.003, 0.999]]
    ref_forces = [np.zeros((1, 3)), np.array([[1.0, 0, 0], [0, 0, 0]])]
    member_forces = [
        np.array([[[0.3, 0.4, 0.0]], [[0.0, 0.0, 0.1]]]),  # frame 0: (M, 1, 3)
        np.array([[[1.0, 0, 0], [0, 0, 0.2]], [[1.2, 0, 0], [0, 0, 0]]]),  # frame 1: (M, 2, 3)
    ]
    ref_stress = [np.zeros(6), np.full(6, np.nan)]  # frame 1 has no stress label
    member_stress = [
        [[0.01, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]],
        [[-0.01, 0, 0, 0, 0, 0.02], [0, 0, 0, 0, 0, 0]],
    ]
    return {
        "ref_energy": ref_energy,
        "ref_forces": ref_forces,
        "member_energy": member_energy,
        "member_forces": member_forces,
        "ref_stress": ref_stress,
        "member_stress": member_stress,
        "temperatures": [300.0, 600.0],
    }


def test_member_and_mean_errors_by_hand():
    out = ensemble_error_metrics(**_tiny())
    assert out["n_members"] == 2 and out["n_frames"] == 2
    m0, m1 = out["all"]["members"]
    mean = out["all"]["mean"]

    # energies (meV/atom): member 0 errors 1, 3; member 1: 3, -1; mean (2, 1.001): 2, 1
    assert m0["energy_per_atom_meV"]["rmse"] == pytest.approx(math.sqrt((1 + 9) / 2))
    assert m0["energy_per_atom_meV"]["mae"] == pytest.approx(2.0)
    assert m0["energy_per_atom_meV"]["max"] == pytest.approx(3.0)
    assert m1["energy_per_atom_meV"]["rmse"] == pytest.approx(math.sqrt((9 + 1) / 2))
    assert mean["energy_per_atom_meV"]["rmse"] == pytest.approx(math.sqrt((4 + 1) / 2))
    assert mean["energy_per_atom_meV"]["mae"] == pytest.approx(1.5)

    # forces, 9 components. member 0: errors (.3,.4,0) | (0,0,0), (0,0,.2)
    f0 = m0["forces_eV_per_A"]
    assert f0["rmse"] == pytest.approx(math.sqrt((0.09 + 0.16 + 0.04) / 9))
    assert f0["mae"] == pytest.approx((0.3 + 0.4 + 0.2) / 9)
    assert f0["max_atom"] == pytest.approx(0.5)  # |(.3, .4, 0)|
    # member 1: (0,0,.1) | (.2,0,0), (0,0,0)
    f1 = m1["forces_eV_per_A"]
    assert f1["rmse"] == pytest.approx(math.sqrt((0.01 + 0.04) / 9))
    assert f1["mae"] == pytest.approx(0.3 / 9)
    assert f1["max_atom"] == pytest.approx(0.2)
    # mean forces: (.15,.2,.05) | (1.1,0,0), (0,0,.1) -> errors (.15,.2,.05) | (.1,0,0), (0,0,.1)
    fm = mean["forces_eV_per_A"]
    assert fm["rmse"] == pytest.approx(math.sqrt((0.0225 + 0.04 + 0.0025 + 0.01 + 0.01) / 9))
    assert fm["mae"] == pytest.approx(0.6 / 9)
    assert fm["max_atom"] == pytest.approx(math.sqrt(0.0225 + 0.04 + 0.0025))

    # stress: only frame 0 (frame 1's reference is NaN); eV/Å^3 -> GPa
    assert out["all"]["n_frames_with_stress"] == 1
    s0 = m0["stress_GPa"]
    assert s0["rmse"] == pytest.approx(math.sqrt(0.01**2 / 6) * EV_A3_IN_GPA)
    assert s0["mae"] == pytest.approx(0.01 / 6 * EV_A3_IN_GPA)
    assert s0["max"] == pytest.approx(0.01 * EV_A3_IN_GPA)
    # mean stress (0, 0, 0, 0, 0, 0.01)
    assert mean["stress_GPa"]["rmse"] == pytest.approx(math.sqrt(0.01**2 / 6) * EV_A3_IN_GPA)

    # reliability of member 0: frame RMS errors sqrt(.25/3), sqrt(.04/6); median = their mean
    rel = m0["reliability"]
    median = 0.5 * (math.sqrt(0.25 / 3) + math.sqrt(0.04 / 6))
    assert rel["median_frame_rmse_eV_per_A"] == pytest.approx(median)
    assert rel["threshold_eV_per_A"] == pytest.approx(3 * median)
    assert rel["n_outliers"] == 0 and rel["fraction"] == 0.0

    # spread over members of the force RMSE
    spread = out["all"]["member_spread"]["force_rmse_eV_per_A"]
    assert spread["mean"] == pytest.approx(0.5 * (f0["rmse"] + f1["rmse"]))
    assert spread["min"] == pytest.approx(f1["rmse"])

    json.dumps(out, allow_nan=False)  # plain JSON


def test_grouped_per_temperature():
    out = ensemble_error_metrics(**_tiny())
    assert set(out["by_temperature"]) == {"300", "600"}
    t300 = out["by_temperature"]["300"]
    assert t300["n_frames"] == 1 and t300["n_frames_with_stress"] == 1
    assert t300["mean"]["energy_per_atom_meV"]["rmse"] == pytest.approx(2.0)
    assert t300["mean"]["forces_eV_per_A"]["rmse"] == pytest.approx(math.sqrt(0.065 / 3))
    t600 = out["by_temperature"]["600"]
    assert t600["n_frames_with_stress"] == 0
    assert t600["mean"]["stress_GPa"]["rmse"] is None
    # without temperatures: only "all"
    kw = _tiny()
    kw["temperatures"] = None
    assert ensemble_error_metrics(**kw)["by_temperature"] == {}


def test_array_layout_equals_list_layout():
    rng = np.random.default_rng(0)
    m, f, n = 3, 4, 5
    ref_f = rng.normal(size=(f, n, 3))
    mem_f = ref_f[None] + 0.1 * rng.normal(size=(m, f, n, 3))
    ref_e = rng.normal(size=f)
    mem_e = ref_e[None] + 0.01 * rng.normal(size=(m, f))
    as_arrays = ensemble_error_metrics(ref_e, ref_f, mem_e, mem_f)
    as_lists = ensemble_error_metrics(ref_e, list(ref_f), mem_e, [mem_f[:, k] for k in range(f)])
    assert as_arrays == as_lists
    with pytest.raises(ValueError, match="do not match"):
        ensemble_error_metrics(ref_e, ref_f, mem_e, mem_f[:, :, :4])


def test_reliability_counts_frames_beyond_three_times_the_median():
    # 5 one-atom frames, one member; force errors (e, 0, 0) -> frame RMS e / sqrt(3)
    e = np.array([0.1, 0.1, 0.1, 0.1, 1.0])
    ref_f = np.zeros((5, 1, 3))
    mem_f = np.zeros((1, 5, 1, 3))
    mem_f[0, :, 0, 0] = e
    out = ensemble_error_metrics(np.zeros(5), ref_f, np.zeros((1, 5)), mem_f)
    rel = out["all"]["mean"]["reliability"]
    assert rel["median_frame_rmse_eV_per_A"] == pytest.approx(0.1 / math.sqrt(3))
    assert rel["threshold_eV_per_A"] == pytest.approx(0.3 / math.sqrt(3))
    assert rel["n_outliers"] == 1
    assert rel["fraction"] == pytest.approx(0.2)


def test_evaluate_ensemble_detailed_adds_keys_and_agrees(tmp_path):
    frames = rattled_frames(3, seed=4)
    for k, atoms in enumerate(frames):
        atoms.info["temperature"] = [300.0, 300.0, 600.0][k]
    calc = EnsembleCalculator(
        [LennardJones(sigma=2.30, epsilon=0.40, rc=6.0), LennardJones(sigma=2.33, epsilon=0.38)]
    )
    plain = evaluate_ensemble(frames, calc)
    detailed = evaluate_ensemble(frames, calc, detailed=True)
    for key, value in plain.items():
        assert detailed[key] == value  # existing output unchanged
    mean = detailed["per_member"]["all"]["mean"]
    assert mean["forces_eV_per_A"]["rmse"] == pytest.approx(plain["forces_eV_per_A"]["rmse"])
    assert mean["energy_per_atom_meV"]["rmse"] == pytest.approx(
        plain["energy_per_atom_meV"]["rmse"]
    )
    assert mean["stress_GPa"]["rmse"] == pytest.approx(plain["stress_GPa"]["rmse"])
    assert set(detailed["per_member"]["by_temperature"]) == {"300", "600"}
    assert len(detailed["per_member"]["all"]["members"]) == 2
    assert detailed["calibration"]["atom"]["n_samples"] == 3 * 4
    json.dumps(detailed["per_member"], allow_nan=False)
    json.dumps(detailed["calibration"], allow_nan=False)
    # per temperature: the 600 K group is frame 2 alone, its sigma_i recomputed from the members
    by_t = detailed["calibration_by_temperature"]
    assert set(by_t) == {"300", "600"}
    assert by_t["300"]["atom"]["n_samples"] == 2 * 4
    assert by_t["600"]["atom"]["n_samples"] == 4
    hot = frames[2].copy()
    hot.calc = calc
    hot.get_forces()
    sigma = per_atom_force_sigma(calc.results["forces_members"])
    assert by_t["600"]["frame_max"]["bin_sigma_rms"] == pytest.approx([sigma.max()])
    plot_calibration(
        detailed["calibration"]["atom"],
        tmp_path / "calibration.png",
        groups={f"{t} K": levels["atom"] for t, levels in by_t.items()},
    )
    assert (tmp_path / "calibration.png").stat().st_size > 1000
    # collect_predictions gives the same inputs
    inputs = collect_predictions(frames, calc)
    assert inputs["member_energy"].shape == (2, 3)
    assert ensemble_error_metrics(**inputs) == detailed["per_member"]


# --- calibration -------------------------------------------------------------------------------


def test_per_atom_force_sigma_by_hand():
    # atom 0: (1,0,0), (-1,0,0) -> mean 0, |dev|^2 = 1, 1 -> 1
    # atom 1: (0,0,0), (0,4,0) -> mean (0,2,0), |dev|^2 = 4, 4 -> 2
    forces = np.array([[[1.0, 0, 0], [0, 0, 0]], [[-1.0, 0, 0], [0, 4.0, 0]]])
    np.testing.assert_allclose(per_atom_force_sigma(forces), [1.0, 2.0])


def test_rank_correlation_of_a_monotone_relation_is_one():
    sigma = np.linspace(0.1, 2.0, 50)
    rho, p = spearman_rank(sigma, np.exp(3 * sigma))
    assert rho == pytest.approx(1.0)
    assert p < 1e-10
    assert spearman_rank(sigma, -np.exp(sigma))[0] == pytest.approx(1.0)  # |error| is ranked
    assert spearman_rank([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == (None, None)  # constant sigma


def test_binned_curve_by_hand():
    sigma = [0.4, 0.1, 0.3, 0.2, 0.6, 0.5]
    error = [4.0, 1.0, -3.0, 2.0, 0.0, 5.0]
    bins = binned_calibration(sigma, error, n_bins=3)
    # sorted by sigma: (0.1, 1), (0.2, 2) | (0.3, -3), (0.4, 4) | (0.5, 5), (0.6, 0)
    np.testing.assert_allclose(
        bins["sigma_rms"],
        [
            math.sqrt((0.01 + 0.04) / 2),
            math.sqrt((0.09 + 0.16) / 2),
            math.sqrt((0.25 + 0.36) / 2),
        ],
    )
    np.testing.assert_allclose(
        bins["error_rms"], [math.sqrt((1 + 4) / 2), math.sqrt((9 + 16) / 2), math.sqrt(25 / 2)]
    )
    assert bins["count"] == [2, 2, 2]
    assert bins["sigma_min"] == [0.1, 0.3, 0.5] and bins["sigma_max"] == [0.2, 0.4, 0.6]


def test_coverage_curve_by_hand():
    # |z| = 0.5, 1.5, 2.5, 3.5; the central 68.27 % interval is |z| <= 1: holds one of four
    expected, observed = coverage_curve([0.5, -1.5, 2.5, -3.5], n_levels=4)
    np.testing.assert_allclose(expected, [0, 0.25, 0.5, 0.75, 1.0])
    # bounds Phi^-1((1+p)/2): 0, 0.319, 0.674, 1.150, inf
    np.testing.assert_allclose(observed, [0, 0, 0.25, 0.25, 1.0])
    # all errors zero (every |z| = 0): everything is always inside -> the maximal area 1/2
    assert miscalibration_area(np.zeros(100), n_levels=1000) == pytest.approx(0.5, abs=1e-3)


def _gaussian(n: int, scale: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.uniform(np.log(0.01), np.log(1.0), n))  # spread over two decades
    return sigma, scale * sigma * rng.normal(size=n)


def test_perfectly_calibrated_gaussian_errors():
    sigma, error = _gaussian(20000, 1.0)
    res = calibration(sigma, error, quantity="synthetic")
    assert res.miscalibration_area < 0.03
    assert res.spearman is not None and res.spearman > 0.5
    # binned: observed RMS within a few % of predicted RMS in every bin (2000 samples each)
    np.testing.assert_allclose(res.bin_error_rms, res.bin_sigma_rms, rtol=0.1)
    json.dumps(res.to_dict(), allow_nan=False)


def test_errors_three_times_larger_than_predicted_give_a_large_area():
    sigma, error = _gaussian(20000, 3.0)
    res = calibration(sigma, error)
    # exact: int_0^1 [p - (2 Phi(Phi^-1((1+p)/2) / 3) - 1)] dp ~ 0.29
    assert res.miscalibration_area > 0.25
    assert np.all(np.asarray(res.observed_coverage) <= np.asarray(res.expected_coverage) + 1e-12)


def test_force_calibration_per_component_z_uses_sigma_over_sqrt3():
    # members spread isotropically around a mean; the reference deviates from the mean by
    # a Gaussian with the members' own per-component variance -> calibrated
    rng = np.random.default_rng(1)
    n_frames, n_atoms, n_members = 200, 8, 64
    refs, members = [], []
    for _ in range(n_frames):
        scale = np.exp(rng.uniform(np.log(0.02), np.log(0.5), size=(n_atoms, 1)))
        mem = scale[None] * rng.normal(size=(n_members, n_atoms, 3))
        mem -= mem.mean(axis=0) - rng.normal(size=(n_atoms, 3))  # mean = a random force
        sigma = per_atom_force_sigma(mem)[:, None]
        refs.append(mem.mean(axis=0) - sigma / np.sqrt(3) * rng.normal(size=(n_atoms, 3)))
        members.append(mem)
    res = force_calibration(refs, members)
    assert res.atom.n_samples == n_frames * n_atoms
    assert res.atom.n_z == 3 * n_frames * n_atoms
    assert res.atom.miscalibration_area < 0.03
    assert res.atom.spearman > 0.5
    assert res.frame_max.miscalibration_area is None  # no Gaussian reference per frame
    assert res.frame_rms.spearman > 0.5
    np.testing.assert_allclose(res.atom.bin_error_rms, res.atom.bin_sigma_rms, rtol=0.15)
    json.dumps(res.to_dict(), allow_nan=False)


def test_energy_calibration_runs_on_members():
    rng = np.random.default_rng(2)
    members = rng.normal(size=(4, 30))
    res = energy_calibration(members.mean(axis=0) + 0.1, members)
    assert res.n_samples == 30 and res.quantity == "energy per frame"


def test_plot_calibration_writes_a_figure(tmp_path):
    sigma, error = _gaussian(500, 1.0)
    res = calibration(sigma, error, quantity="force per atom", unit="eV/Å")
    path = tmp_path / "calibration.png"
    plot_calibration(res, path)
    assert path.stat().st_size > 1000
    # from the JSON dict too, and without a coverage curve
    no_cov = calibration(sigma, error, coverage=False)
    plot_calibration(no_cov.to_dict(), tmp_path / "c2.pdf")
    assert (tmp_path / "c2.pdf").stat().st_size > 0
    assert isinstance(no_cov, CalibrationResult) and no_cov.miscalibration_area is None


# --- a one-model uncertainty (LLPR, ensemble.size 1) -------------------------------------------


class _OneModelWithSigma(LennardJones):
    """One model with a per-atom force sigma of its own, with the ``results`` keys of
    :class:`alkappa.models._nequip_llpr.NequIPLLPRCalculator`: members are the one model (no
    spread), ``atom_force_uncertainty`` (N,) and ``uncertainty`` come from the model. The sigma
    here grows with the force, so it ranks the errors of a model with a wrong epsilon."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, ("energy", "forces", "stress"), system_changes)
        res = self.results
        forces = res["forces"]
        u = 0.05 + 0.3 * np.linalg.norm(forces, axis=1)
        res["energy_members"] = np.array([res["energy"]])
        res["forces_members"] = forces[None]
        res["stress_members"] = np.asarray(res["stress"]).reshape(1, 6)
        res["atom_force_uncertainty"] = u
        res["uncertainty"] = {
            "force_max": float(u.max()),
            "force_mean": float(u.mean()),
            "energy_std_per_atom": 0.01,
            "force_max_relative": float(u.max()) / (np.linalg.norm(forces, axis=1).mean() + 1e-3),
        }


def test_evaluation_of_one_model_calibrates_its_own_sigma():
    """With one member the members' spread is zero: the evaluation measures the model's own
    sigma (LLPR's), so the calibration and the recalibration have non-zero, finite sigmas."""
    frames = rattled_frames(4, seed=5)
    for k, atoms in enumerate(frames):
        atoms.info["temperature"] = [300.0, 300.0, 600.0, 600.0][k]
    calc = _OneModelWithSigma(sigma=2.30, epsilon=0.30, rc=6.0)
    out = evaluate_ensemble(frames, calc, detailed=True)
    assert out["calibration_sigma"] == "model"
    assert out["per_member"]["n_members"] == 1
    assert out["uncertainty"]["force_max"]["mean"] > 0
    atom = out["calibration"]["atom"]
    sigma_rms = np.array(atom["bin_sigma_rms"])
    assert np.isfinite(sigma_rms).all() and (sigma_rms > 0).all()
    assert atom["miscalibration_area"] is not None and 0 <= atom["miscalibration_area"] <= 0.5
    assert atom["spearman"] is not None and atom["spearman"] > 0
    energy = out["calibration"]["energy"]
    assert energy["bin_sigma_rms"] == pytest.approx([0.01] * len(energy["bin_sigma_rms"]))
    for levels in out["calibration_by_temperature"].values():
        assert (np.array(levels["atom"]["bin_sigma_rms"]) > 0).all()
    recal = out["recalibration"]
    assert "error" not in recal
    assert recal["before"]["rms_sigma_atom"] > 0
    assert np.isfinite(recal["scale"]["map"]["scale"]) and recal["scale"]["map"]["scale"] > 0
    json.dumps(out, allow_nan=False)
    # the members' spread of the same calculator is zero: the old, useless calibration
    inputs = collect_predictions(frames, calc)
    spread = force_calibration(inputs["ref_forces"], inputs["member_forces"]).atom
    assert max(spread.bin_sigma_rms) == 0


def test_an_ensemble_keeps_calibrating_the_members_spread():
    frames = rattled_frames(2, seed=4)
    calc = EnsembleCalculator(
        [LennardJones(sigma=2.30, epsilon=0.40, rc=6.0), LennardJones(sigma=2.33, epsilon=0.38)]
    )
    assert evaluate_ensemble(frames, calc, detailed=True)["calibration_sigma"] == "members"


class _OnDemandSigma(_OneModelWithSigma):
    """As :class:`_OneModelWithSigma`, with the uncertainty skipped by the calculation (as
    ``uncertainty_every`` > 1 does) and computed by the ``uncertainty`` property."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        self._skipped = (
            self.results.pop("uncertainty"),
            self.results.pop("atom_force_uncertainty"),
        )

    @property
    def uncertainty(self):
        if "uncertainty" not in self.results:
            self.results["uncertainty"], self.results["atom_force_uncertainty"] = self._skipped
        return dict(self.results["uncertainty"])


def test_a_skipped_uncertainty_is_computed_on_demand_not_taken_from_one_member():
    from alkappa.al.explore import frame_uncertainty

    atoms = rattled_frames(1, seed=5)[0]
    atoms.calc = _OnDemandSigma(sigma=2.30, epsilon=0.30, rc=6.0)
    atoms.get_forces()
    assert "uncertainty" not in atoms.calc.results
    stats = frame_uncertainty(atoms.calc)
    assert stats["force_max"] > 0.05  # the model's sigma, not the zero spread of one member
    out = evaluate_ensemble(rattled_frames(2, seed=6), atoms.calc, detailed=True)
    assert out["calibration_sigma"] == "model"
