"""Last-layer prediction rigidity (LLPR): a one-model uncertainty from the last layer.

Bigi, Chong, Ceriotti, Grasselli, "A prediction rigidity formalism for low-cost uncertainties
in trained neural networks", Mach. Learn.: Sci. Technol. 5, 045018 (2024), arXiv:2403.02251.
A quantity that is linear in the last layer's weights ``w``, ``y = w . g``, gets the variance
(their eq. 24)

    sigma^2 = alpha^2 g^T (F + varsigma^2 I)^-1 g,        F = sum_k g_k g_k^T over training,

which is the posterior variance of Bayesian linear regression on fixed features (noise
variance ``alpha^2``, prior variance ``alpha^2 / varsigma^2``); ``alpha`` and ``varsigma`` are
calibrated on validation data.

Choices made here (NequIP: the per-atom energy is ``E_i = w . f_i + shift``, with ``f_i`` the
node features times the readout's and the type's scale, see :mod:`alkappa.models._nequip_llpr`):

- **Per-atom covariance** (``per="atoms"``, the default): ``F = sum over training atoms of
  f_i f_i^T``. The energy-only covariance ``sum over structures (sum_i f_i)(sum_i f_i)^T``
  (``per="structures"``) is the Gauss-Newton curvature of the energy loss, but NequIP is
  trained mostly on forces, which pin down every atom's local energy, not only the sum: the
  per-atom form says "this environment was seen in training", the question AL asks.
- **Force uncertainty from the local-energy LLPR.** The AL statistic is per atom and about
  forces. The exact LLPR force variance needs the Jacobian of the forces with respect to ``w``,
  i.e. one backward pass per feature (``D`` of them) per MD step, or ``K`` backward passes for
  ``K`` posterior-sampled heads: several times the step, far above the 1.3x budget. Instead,
  with ``s_i^2 = f_i^T (F + varsigma^2 I)^-1 f_i`` the local-energy rigidity of atom ``i`` (no
  extra pass: ``f_i`` comes out of the forward pass), ``u_i^2 = alpha_F^2 (s_i^2 + sum_j
  s_j^2)`` over the neighbours ``j`` of ``i`` within the cutoff (each periodic image once, as in
  the model's edge list), since ``F_i = -sum_j dE_j/dr_i`` collects the local energies of the
  neighbourhood; or ``u_i^2 = alpha_F^2 s_i^2``, the plain local-energy proxy. Neither won
  consistently on the benchmark (``benchmarks/ensemble_md.py --calibration``, two seeds), so
  the fit keeps the one with the smaller validation NLL. ``alpha_F`` and
  ``varsigma`` fitted to the per-atom force errors ``|dF_i|`` on the validation set by
  maximum likelihood (``u_i^2`` is the predicted mean of ``|dF_i|^2``, the three components
  Gaussian with variance ``u_i^2 / 3``), so ``u_i`` has the meaning and units (eV/Å) of the
  ensemble's per-atom force deviation.
- **Energy**: ``sigma_E = alpha_E sqrt(g^T (F + varsigma^2 I)^-1 g)``, ``g = sum_i f_i``,
  ``alpha_E`` fitted to the validation energy errors with the same ``varsigma``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from alkappa.models.uncertainty import RELATIVE_EPS

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from numpy.typing import ArrayLike

#: covariance kinds: per-atom features or their per-structure sums
PER = ("atoms", "structures")

#: regulariser grid, in units of trace(F) / D
REGULARISER_GRID = 10.0 ** np.arange(-10.0, 2.01, 0.25)


def feature_covariance(features: Iterable[ArrayLike], *, per: str = "atoms") -> np.ndarray:
    """``F = sum_k g_k g_k^T`` over the structures' per-atom features ``(N, D)`` arrays.

    ``per="atoms"``: ``g_k`` runs over all atoms' ``f_i``; ``per="structures"``: over each
    structure's ``sum_i f_i``.
    """
    if per not in PER:
        raise ValueError(f"per must be one of {PER}, not {per!r}")
    total: np.ndarray | None = None
    for f in features:
        f = np.asarray(f, dtype=float)
        if f.ndim != 2:
            raise ValueError(f"features must have shape (N, D), got {f.shape}")
        g = f if per == "atoms" else f.sum(axis=0, keepdims=True)
        cov = g.T @ g
        total = cov if total is None else total + cov
    if total is None:
        raise ValueError("no features given")
    return total


def rigidity_variance(queries: ArrayLike, covariance: ArrayLike, regulariser: float) -> np.ndarray:
    """``g^T (F + varsigma^2 I)^-1 g`` for each row ``g`` of ``queries`` (no ``alpha^2``)."""
    g = np.atleast_2d(np.asarray(queries, dtype=float))
    cov = np.asarray(covariance, dtype=float)
    if regulariser <= 0:
        raise ValueError(f"the regulariser must be > 0, not {regulariser}")
    chol = np.linalg.cholesky(cov + regulariser * np.eye(len(cov)))
    z = np.linalg.solve(chol, g.T)  # L^-1 g
    return np.einsum("dn,dn->n", z, z)


def _gaussian_nll(sq_err: np.ndarray, var: np.ndarray, dof: int) -> float:
    """Mean NLL of error vectors with ``dof`` components of variance ``var / dof`` each."""
    comp = var / dof
    return float(np.mean(0.5 * dof * np.log(2 * np.pi * comp) + 0.5 * sq_err / comp))


def neighbour_sum(s2: np.ndarray, edges: ArrayLike | None) -> np.ndarray:
    """``s2_i + sum_j s2_j`` over the edges ``i -> j`` (``edges`` (2, E); ``None``: ``s2``)."""
    if edges is None:
        return s2
    e = np.asarray(edges)
    return s2 + np.bincount(e[0], weights=s2[e[1]], minlength=len(s2))


def calibrate(
    covariance: ArrayLike,
    queries: ArrayLike,
    sq_errors: ArrayLike,
    *,
    dof: int = 1,
    grid: ArrayLike = REGULARISER_GRID,
    edges: ArrayLike | None = None,
) -> tuple[float, float, float]:
    """``(varsigma^2, alpha^2, nll)`` maximising the likelihood of validation errors.

    Each validation error vector (``dof`` components, squared norm ``sq_errors``) is taken as
    Gaussian with mean squared norm ``alpha^2 g^T (F + varsigma^2 I)^-1 g``. For each
    ``varsigma^2`` on ``grid`` (times ``trace(F) / D``) the best ``alpha^2`` is the mean of
    ``|e|^2 / s^2`` (closed form); the ``varsigma^2`` of the smallest mean NLL wins. With
    ``edges`` (2, E) between the queries, ``s^2`` is summed over each query's neighbours
    (:func:`neighbour_sum`).
    """
    cov = np.asarray(covariance, dtype=float)
    g = np.atleast_2d(np.asarray(queries, dtype=float))
    e2 = np.asarray(sq_errors, dtype=float).reshape(-1)
    if len(e2) != len(g) or len(e2) == 0:
        raise ValueError(f"{len(g)} queries but {len(e2)} errors")
    lam, vec = np.linalg.eigh(cov)
    lam = np.clip(lam, 0.0, None)
    proj2 = (g @ vec) ** 2  # (n, D)
    unit = max(float(np.trace(cov)) / len(cov), np.finfo(float).tiny)
    best = (np.nan, np.nan, np.inf)
    for factor in np.asarray(grid, dtype=float):
        reg = float(factor) * unit
        s2 = neighbour_sum(proj2 @ (1.0 / (lam + reg)), edges)
        s2 = np.maximum(s2, np.finfo(float).tiny)
        alpha2 = float(np.mean(e2 / s2))
        if alpha2 <= 0:  # all errors exactly zero
            alpha2 = np.finfo(float).tiny
        nll = _gaussian_nll(e2, alpha2 * s2, dof)
        if nll < best[2]:
            best = (reg, alpha2, nll)
    return best


def fit_scale(
    covariance: ArrayLike,
    regulariser: float,
    queries: ArrayLike,
    sq_errors: ArrayLike,
    edges: ArrayLike | None = None,
) -> float:
    """Maximum-likelihood ``alpha^2`` at a given ``varsigma^2``: ``mean(|e|^2 / s^2)``."""
    s2 = neighbour_sum(rigidity_variance(queries, covariance, regulariser), edges)
    return float(np.mean(np.asarray(sq_errors, dtype=float).reshape(-1) / np.maximum(s2, 1e-300)))


@dataclass
class LLPR:
    """A calibrated LLPR uncertainty model (what ``model.llpr.npz`` holds).

    Attributes
    ----------
    covariance
        ``F`` (D, D).
    regulariser
        ``varsigma^2``.
    force_scale2, energy_scale2
        ``alpha_F^2`` (eV/Å)^2 and ``alpha_E^2`` (eV^2).
    per
        ``"atoms"`` or ``"structures"``: how ``F`` was accumulated.
    neighbours
        The force uncertainty sums the rigidities over each atom's neighbours (module
        docstring); then :meth:`atom_force_uncertainty` needs the edge list.
    type_scale
        Per-type factor turning the model's node features into ``f_i`` (the readout's weight
        scale times the per-type energy scale), in the model's type order, shape (T,).
    weights
        The readout weights ``w`` (D,): ``E_i = w . f_i + shift_type``.
    info
        Calibration record (numbers of frames and atoms, validation NLLs, ...).
    """

    covariance: np.ndarray
    regulariser: float
    force_scale2: float
    energy_scale2: float
    per: str = "atoms"
    neighbours: bool = True
    type_scale: np.ndarray = field(default_factory=lambda: np.ones(1))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    info: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cov = np.asarray(self.covariance, dtype=float)
        self.covariance = cov
        # (F + varsigma^2 I)^-1 = M M^T, so g^T (.)^-1 g = |M^T g|^2: one (N, D) x (D, D) product
        chol = np.linalg.cholesky(cov + self.regulariser * np.eye(len(cov)))
        self._whiten = np.linalg.inv(chol).T  # M = L^-T

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        return len(self.covariance)

    def features(self, node_features: ArrayLike, atom_types: ArrayLike) -> np.ndarray:
        """``f_i`` (N, D) from the model's node features and the atoms' type indices."""
        h = np.asarray(node_features, dtype=float)
        scale = np.asarray(self.type_scale, dtype=float)
        types = np.asarray(atom_types, dtype=int)
        return h * (scale[types] if scale.size > 1 else scale.reshape(()))[..., None]

    def _rigidity(self, g: np.ndarray) -> np.ndarray:
        z = g @ self._whiten
        return np.einsum("nd,nd->n", z, z)

    def atom_force_uncertainty(
        self, features: ArrayLike, edges: ArrayLike | None = None
    ) -> np.ndarray:
        """Per-atom force uncertainty ``u_i`` (eV/Å) from the features ``f_i`` (N, D).

        ``edges`` (2, E): the model's edge list (``i -> j``), needed with :attr:`neighbours`.
        """
        if self.neighbours and edges is None:
            raise ValueError("this LLPR sums over neighbours: give the edge list")
        s2 = self._rigidity(np.asarray(features, dtype=float))
        return np.sqrt(self.force_scale2 * neighbour_sum(s2, edges if self.neighbours else None))

    def energy_uncertainty(self, features: ArrayLike) -> float:
        """Total-energy uncertainty ``sigma_E`` (eV) from the features ``f_i`` (N, D)."""
        g = np.asarray(features, dtype=float).sum(axis=0, keepdims=True)
        return float(np.sqrt(self.energy_scale2 * self._rigidity(g)[0]))

    def statistics(
        self,
        features: ArrayLike,
        forces: ArrayLike,
        edges: ArrayLike | None = None,
        *,
        eps: float = RELATIVE_EPS,
    ) -> dict[str, float]:
        """The statistics of :func:`alkappa.models.uncertainty.uncertainty_statistics`.

        ``force_max``/``force_mean`` are the max/mean of ``u_i``, ``energy_std_per_atom`` is
        ``sigma_E / N``, ``force_max_relative`` divides by the mean force magnitude (+ eps).
        """
        f = np.asarray(features, dtype=float)
        u = self.atom_force_uncertainty(f, edges)
        force_max = float(u.max())
        mean_force = float(np.linalg.norm(np.asarray(forces, dtype=float), axis=1).mean())
        return {
            "force_max": force_max,
            "force_mean": float(u.mean()),
            "energy_std_per_atom": self.energy_uncertainty(f) / len(f),
            "force_max_relative": force_max / (mean_force + eps),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to an ``.npz`` file atomically (a temporary file, then renamed)."""
        import json
        from pathlib import Path

        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as fh:
                np.savez(
                    fh,
                    covariance=self.covariance,
                    regulariser=np.float64(self.regulariser),
                    force_scale2=np.float64(self.force_scale2),
                    energy_scale2=np.float64(self.energy_scale2),
                    per=np.str_(self.per),
                    neighbours=np.bool_(self.neighbours),
                    type_scale=np.asarray(self.type_scale, dtype=float),
                    weights=np.asarray(self.weights, dtype=float),
                    info=np.str_(json.dumps(self.info)),
                )
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | Path) -> LLPR:
        """Read a file written by :meth:`save`."""
        import json

        with np.load(path, allow_pickle=False) as data:
            return cls(
                covariance=data["covariance"],
                regulariser=float(data["regulariser"]),
                force_scale2=float(data["force_scale2"]),
                energy_scale2=float(data["energy_scale2"]),
                per=str(data["per"]),
                neighbours=bool(data["neighbours"]),
                type_scale=data["type_scale"],
                weights=data["weights"],
                info=json.loads(str(data["info"])),
            )
