"""LLPR math (alkappa.models.llpr) against Bayesian linear regression; calibration metrics."""

from __future__ import annotations

import numpy as np
import pytest

from alkappa.models.llpr import LLPR, calibrate, feature_covariance, rigidity_variance
from alkappa.models.uncertainty import STATISTICS, miscalibration_area, spearman


def test_llpr_equals_bayesian_linear_regression_posterior_variance():
    """alpha^2 g^T (X^T X + varsigma^2 I)^-1 g is the BLR predictive variance of the mean
    (noise alpha^2, prior alpha^2 / varsigma^2), here from the independent dual (GP) form
    sigma_p^2 g.g - sigma_p^4 g^T X^T (sigma_p^2 X X^T + sigma_n^2 I)^-1 X g."""
    rng = np.random.default_rng(0)
    n, d = 30, 7
    x = rng.normal(size=(n, d)) * np.array([3, 1, 1, 0.5, 0.1, 0.01, 1])
    queries = rng.normal(size=(5, d))
    sigma_n2, sigma_p2 = 0.04, 2.5
    llpr = sigma_n2 * rigidity_variance(queries, feature_covariance([x]), sigma_n2 / sigma_p2)
    kernel = sigma_p2 * x @ x.T + sigma_n2 * np.eye(n)
    cross = sigma_p2 * x @ queries.T  # (n, q)
    dual = sigma_p2 * np.einsum("qd,qd->q", queries, queries) - np.einsum(
        "nq,nq->q", cross, np.linalg.solve(kernel, cross)
    )
    np.testing.assert_allclose(llpr, dual, rtol=1e-9)


def test_feature_covariance_atoms_and_structures():
    rng = np.random.default_rng(1)
    frames = [rng.normal(size=(n, 4)) for n in (3, 5, 2)]
    atoms = feature_covariance(frames, per="atoms")
    np.testing.assert_allclose(atoms, np.concatenate(frames).T @ np.concatenate(frames))
    sums = np.array([f.sum(axis=0) for f in frames])
    np.testing.assert_allclose(feature_covariance(frames, per="structures"), sums.T @ sums)
    with pytest.raises(ValueError, match="per must be"):
        feature_covariance(frames, per="bonds")


def _synthetic(rng, replicas: int):
    """Errors of the ridge (posterior-mean) prediction over replicas of a BLR world.

    Training features are nearly confined to 3 of 6 directions; queries are isotropic, so the
    true error variance varies by orders of magnitude between queries.
    """
    d, n, sigma_n, sigma_p = 6, 100, 0.1, 1.0
    x = rng.normal(size=(n, d)) * np.array([1, 1, 1, 0.05, 0.05, 0.05])
    reg = sigma_n**2 / sigma_p**2
    precision = x.T @ x + reg * np.eye(d)
    w_true = rng.normal(scale=sigma_p, size=(replicas, d))
    y = w_true @ x.T + rng.normal(scale=sigma_n, size=(replicas, n))
    w_hat = np.linalg.solve(precision, x.T @ y.T).T
    queries = rng.normal(size=(replicas, d))
    errors = np.einsum("rd,rd->r", queries, w_hat - w_true)
    return x, queries, errors, sigma_n**2, reg


def test_calibration_recovers_the_noise_and_ranks_errors():
    rng = np.random.default_rng(2)
    x, queries, errors, sigma_n2, _reg = _synthetic(rng, 4000)
    cov = feature_covariance([x])
    val, test = slice(0, 2000), slice(2000, None)
    fit_reg, alpha2, _ = calibrate(cov, queries[val], errors[val] ** 2, dof=1)
    assert alpha2 == pytest.approx(sigma_n2, rel=0.25)
    sigma = np.sqrt(alpha2 * rigidity_variance(queries[test], cov, fit_reg))
    # calibrated: coverage close to the Gaussian one; and the uncertainty ranks the errors
    assert miscalibration_area(errors[test], sigma) < 0.03
    # (one Gaussian draw per query caps the rank correlation of |e| with sigma well below 1)
    assert spearman(sigma, np.abs(errors[test])) > 0.3
    # a constant uncertainty has no ranking power, whatever its scale
    const = np.full_like(sigma, np.sqrt(np.mean(errors[val] ** 2)))
    assert miscalibration_area(errors[test], const) > 2 * miscalibration_area(errors[test], sigma)


def test_miscalibration_area_limits():
    rng = np.random.default_rng(3)
    sigma = rng.uniform(0.1, 2.0, size=20000)
    errors = rng.normal(size=sigma.size) * sigma
    assert miscalibration_area(errors, sigma) < 0.01
    assert miscalibration_area(errors, 10 * sigma) > 0.3  # far too confident the other way
    assert miscalibration_area(errors, 0.1 * sigma) > 0.3
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)


def test_llpr_file_roundtrip_and_statistics(tmp_path):
    rng = np.random.default_rng(4)
    h = rng.normal(size=(50, 5))
    llpr = LLPR(
        covariance=feature_covariance([h]),
        regulariser=1e-3,
        force_scale2=0.04,
        energy_scale2=0.01,
        neighbours=False,
        type_scale=np.array([2.0, 0.5]),
        weights=rng.normal(size=5),
        info={"n_train_frames": 1},
    )
    path = tmp_path / "model.llpr.npz"
    llpr.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.llpr.npz"]  # no temporary left
    back = LLPR.load(path)
    assert back.info == {"n_train_frames": 1} and back.per == "atoms" and not back.neighbours
    types = np.array([0, 1, 1])
    f = back.features(h[:3], types)
    np.testing.assert_allclose(f, h[:3] * np.array([2.0, 0.5, 0.5])[:, None])
    forces = rng.normal(size=(3, 3))
    stats = back.statistics(f, forces)
    assert set(stats) == set(STATISTICS)
    u = np.sqrt(0.04 * rigidity_variance(f, llpr.covariance, 1e-3))
    assert stats["force_max"] == pytest.approx(u.max())
    assert stats["force_mean"] == pytest.approx(u.mean())
    sigma_e = np.sqrt(0.01 * rigidity_variance(f.sum(axis=0), llpr.covariance, 1e-3)[0])
    assert stats["energy_std_per_atom"] == pytest.approx(sigma_e / 3)
    # a feature direction unseen in training is uncertain
    seen, unseen = np.zeros((1, 5)), np.zeros((1, 5))
    seen[0, 0] = unseen[0, 0] = 1.0
    hh = np.concatenate([h[:, :4], np.zeros((50, 1))], axis=1)
    narrow = LLPR(feature_covariance([hh]), 1e-3, 1.0, 1.0, neighbours=False)
    unseen[0, 4] = 1.0
    assert narrow.atom_force_uncertainty(unseen)[0] > 10 * narrow.atom_force_uncertainty(seen)[0]


def test_neighbour_sum_of_the_force_uncertainty():
    """u_i^2 = alpha^2 (s_i^2 + sum over the edges i -> j of s_j^2)."""
    rng = np.random.default_rng(5)
    h = rng.normal(size=(40, 3))
    llpr = LLPR(feature_covariance([h]), 1e-2, 0.25, 1.0)  # neighbours by default
    f = rng.normal(size=(4, 3))
    edges = np.array([[0, 0, 1, 1, 2, 0], [1, 2, 0, 2, 1, 1]])  # 0 -> 1 twice: two images
    s2 = rigidity_variance(f, llpr.covariance, 1e-2)
    expected = s2 + np.array([2 * s2[1] + s2[2], s2[0] + s2[2], s2[1], 0.0])
    np.testing.assert_allclose(llpr.atom_force_uncertainty(f, edges), np.sqrt(0.25 * expected))
    with pytest.raises(ValueError, match="edge list"):
        llpr.atom_force_uncertainty(f)
    # calibration with edges: alpha^2 is the mean of |e|^2 over the summed rigidities
    e2 = rng.uniform(size=4)
    reg, alpha2, _ = calibrate(llpr.covariance, f, e2, dof=3, edges=edges, grid=[1.0])
    summed = rigidity_variance(f, llpr.covariance, reg)
    summed = summed + np.bincount(edges[0], weights=summed[edges[1]], minlength=4)
    assert alpha2 == pytest.approx(np.mean(e2 / summed))


@pytest.mark.parametrize(("uncertainty", "members"), [("llpr", 1), ("ensemble", 3)])
def test_the_heat_flux_comes_from_the_members_that_drive_the_md(
    monkeypatch, tmp_path, uncertainty, members
):
    from alkappa.models.nequip import NequIPModel, UnfoldedHeatFlux

    seen = []
    monkeypatch.setattr(
        UnfoldedHeatFlux,
        "from_paths",
        classmethod(lambda cls, paths, **kwargs: seen.append(list(paths))),
    )
    paths = [tmp_path / f"member_{k}.nequip.zip" for k in range(3)]
    NequIPModel(uncertainty=uncertainty).heat_flux_method(paths)
    assert seen == [paths[:members]]
