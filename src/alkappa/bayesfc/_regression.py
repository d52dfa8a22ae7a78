"""Bayesian ridge regression with evidence maximisation (MacKay 1992; Bishop, PRML sec. 3.5).

Model: ``y = Phi @ theta + noise`` with Gaussian noise of precision ``beta`` and an isotropic
Gaussian prior of precision ``alpha`` on the parameters. For given (alpha, beta) the posterior
is Gaussian with covariance ``S = (alpha I + beta Phi^T Phi)^-1`` and mean
``m = beta S Phi^T y``; alpha and beta are re-estimated by the fixed-point equations of the
evidence approximation (PRML eqs. 3.91-3.95)::

    gamma = sum_k beta lambda_k / (alpha + beta lambda_k)
    alpha = gamma / |m|^2,    beta = (N - gamma) / |y - Phi m|^2

All of it runs on one thin SVD ``Phi = U diag(s) V^T`` (eigenvalues ``lambda_k = s_k^2`` of
``Phi^T Phi``), so no matrix is ever inverted: ``S = V diag(1 / (alpha + beta s^2)) V^T`` plus
``1/alpha`` on the null space of ``Phi`` (when there are fewer data than parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


@dataclass(frozen=True)
class BayesianRidge:
    """A fitted Bayesian ridge regression: posterior of theta and the evidence-optimal
    hyperparameters.

    Attributes
    ----------
    mean
        Posterior mean of the parameters, shape ``(P,)``.
    alpha
        Prior precision of the parameters.
    beta
        Noise precision (``1/sqrt(beta)`` is the noise standard deviation of one target).
    vt
        Right singular vectors of the design matrix, shape ``(r, P)``, ``r = min(N, P)``.
    s
        Singular values, shape ``(r,)``.
    n_data
        Number of targets N used in the fit.
    gamma
        Effective number of well-determined parameters.
    log_evidence
        ``ln p(y | alpha, beta)`` at the returned hyperparameters.
    iterations
        Fixed-point iterations made.
    converged
        Whether alpha and beta changed by less than the tolerance in the last iteration.
    """

    mean: np.ndarray
    alpha: float
    beta: float
    vt: np.ndarray
    s: np.ndarray
    n_data: int
    gamma: float
    log_evidence: float
    iterations: int
    converged: bool

    @property
    def n_params(self) -> int:
        """Number of parameters P."""
        return int(self.mean.size)

    @property
    def noise_std(self) -> float:
        """Standard deviation of the noise of one target, ``beta^-1/2``."""
        return float(1.0 / np.sqrt(self.beta))

    def _shrink(self) -> np.ndarray:
        return 1.0 / (self.alpha + self.beta * self.s**2)

    def predictive_variance(self, phi: ArrayLike) -> np.ndarray:
        """Epistemic variance ``phi_j^T S phi_j`` of each row of ``phi`` (no noise part)."""
        x = np.atleast_2d(np.asarray(phi, dtype=float))
        proj = x @ self.vt.T  # (n, r)
        in_span = (proj**2 * self._shrink()).sum(axis=1)
        # the null space of Phi keeps the prior covariance 1/alpha
        rest = np.maximum((x**2).sum(axis=1) - (proj**2).sum(axis=1), 0.0)
        return in_span + rest / self.alpha

    def parameter_std(self) -> np.ndarray:
        """Posterior standard deviation of each parameter, ``sqrt(diag S)``."""
        return np.sqrt(self.predictive_variance(np.eye(self.n_params)))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws of theta from the posterior, shape ``(n, P)``."""
        z = rng.standard_normal((n, self.s.size))
        draws = self.mean + (z * np.sqrt(self._shrink())) @ self.vt
        if self.s.size < self.n_params:  # null-space part, prior width
            w = rng.standard_normal((n, self.n_params)) / np.sqrt(self.alpha)
            draws += w - (w @ self.vt.T) @ self.vt
        return draws


def log_evidence(
    alpha: float, beta: float, s: np.ndarray, uty: np.ndarray, yy: float, n: int, p: int
) -> float:
    """``ln p(y | alpha, beta)`` (PRML eq. 3.86) from the SVD of the design matrix.

    ``uty = U^T y`` and ``yy = |y|^2``; the posterior mean and residual are evaluated in the
    singular basis, so the cost is O(r).
    """
    lam = s**2
    shrink = 1.0 / (alpha + beta * lam)
    m_coef = beta * s * uty * shrink  # m in the V basis
    resid2 = yy - np.dot(uty, uty) + np.sum((uty - s * m_coef) ** 2)
    e_m = 0.5 * beta * max(resid2, 0.0) + 0.5 * alpha * np.dot(m_coef, m_coef)
    log_det_a = np.sum(np.log(alpha + beta * lam)) + (p - lam.size) * np.log(alpha)
    return float(
        0.5 * p * np.log(alpha)
        + 0.5 * n * np.log(beta)
        - e_m
        - 0.5 * log_det_a
        - 0.5 * n * np.log(2.0 * np.pi)
    )


def fit_bayesian_ridge(
    phi: ArrayLike,
    y: ArrayLike,
    *,
    alpha: float | None = None,
    beta: float | None = None,
    tol: float = 1e-8,
    max_iter: int = 1000,
) -> BayesianRidge:
    """Fit ``y ~ phi @ theta`` by Bayesian ridge regression, maximising the evidence.

    Parameters
    ----------
    phi
        Design matrix, shape ``(N, P)``.
    y
        Targets, shape ``(N,)``.
    alpha, beta
        Starting values of the prior and noise precisions (default: from the data scale).
    tol
        Relative change of alpha and beta below which the iteration stops.
    max_iter
        Maximum number of fixed-point iterations.

    Returns
    -------
    BayesianRidge
    """
    a = np.asarray(phi, dtype=float)
    t = np.asarray(y, dtype=float).ravel()
    if a.ndim != 2:
        raise ValueError(f"the design matrix must be 2D, got shape {a.shape}")
    n, p = a.shape
    if t.size != n:
        raise ValueError(f"{t.size} targets for a design matrix with {n} rows")
    if n < 2 or p < 1:
        raise ValueError(f"need at least 2 targets and 1 parameter, got N={n}, P={p}")
    if not (np.isfinite(a).all() and np.isfinite(t).all()):
        raise ValueError("the design matrix or the targets contain NaN or inf")
    _, s, vt = np.linalg.svd(a, full_matrices=False)
    # U^T y without forming U; numerically null directions carry no data
    keep = s > s[0] * max(n, p) * np.finfo(float).eps
    s, vt = s[keep], vt[keep]
    uty = (vt @ (a.T @ t)) / s
    yy = float(t @ t)
    lam = s**2
    var_y = float(np.var(t)) or 1.0
    b = float(beta) if beta is not None else 10.0 / var_y
    al = float(alpha) if alpha is not None else max(float(lam.mean()) / var_y * 1e-3, 1e-12)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        shrink = 1.0 / (al + b * lam)
        m_coef = b * s * uty * shrink
        gamma = float(np.sum(b * lam * shrink))
        mm = float(m_coef @ m_coef)
        resid2 = max(yy - float(uty @ uty) + float(np.sum((uty - s * m_coef) ** 2)), 1e-300)
        new_al = gamma / max(mm, 1e-300)
        new_b = max(n - gamma, 1e-12) / resid2
        change = max(abs(new_al - al) / al, abs(new_b - b) / b)
        al, b = new_al, new_b
        if change < tol:
            converged = True
            break
    shrink = 1.0 / (al + b * lam)
    m_coef = b * s * uty * shrink
    return BayesianRidge(
        mean=vt.T @ m_coef,
        alpha=al,
        beta=b,
        vt=vt,
        s=s,
        n_data=n,
        gamma=float(np.sum(b * lam * shrink)),
        log_evidence=log_evidence(al, b, s, uty, yy, n, p),
        iterations=it,
        converged=converged,
    )
