"""ASE calculator of Bayesian force-constant models, with the Bayesian error in ``results``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from ase.calculators.calculator import all_changes

from alkappa.models.ensemble import EnsembleCalculator

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ase import Atoms

    from alkappa.bayesfc._model import BayesianFCModelFit, Prediction


class BayesianFCCalculator(EnsembleCalculator):
    """Energy, forces and stress of one or more fitted Bayesian FC models, with their errors.

    ``energy``, ``forces`` and ``stress`` are the posterior means (averaged over the models
    if there are several: an ensemble of bootstrapped fits). ``results`` also carries the keys
    of :class:`~alkappa.models.ensemble.EnsembleCalculator`, so exploration MD and the AL
    selection use it unchanged:

    ``energy_members``, ``forces_members``
        ``samples`` posterior draws per model (or the models' means, if ``samples`` is 0 and
        there are several models).
    ``uncertainty``
        The *analytic* Bayesian error, not the spread of the draws: ``force_max`` and
        ``force_mean`` (max and mean over atoms of ``sqrt(sum_a sigma_ia^2)``, the epistemic
        predictive force standard deviation from the posterior covariance; with several models
        the variance of the mixture), ``energy_std_per_atom``, ``force_max_relative`` and
        ``force_noise`` (the evidence-optimal noise level per atom, ``sqrt(3/beta)``, reported
        separately: it is not part of the other numbers).
    ``force_std``
        Epistemic standard deviation of each force component (N, 3).

    The stress is the displacement virial ``sigma_ab = -(1/V) sum_i sym(F_ia u_ib)``: the
    derivative of the model energy under a homogeneous strain of the displacements, with the
    force constants held fixed (the model has no volume dependence beyond that).

    Parameters
    ----------
    models
        Fitted models (all on the same reference supercell).
    samples
        Posterior draws per model for ``forces_members`` (0: none).
    seed
        Seed of the draws.
    uncertainty_every
        As in :class:`EnsembleCalculator` (the analytic error costs one more matrix product).
    """

    def __init__(
        self,
        models: Sequence[BayesianFCModelFit],
        *,
        samples: int = 4,
        seed: int = 0,
        uncertainty_every: int = 1,
        **kwargs: Any,
    ) -> None:
        from ase.calculators.calculator import Calculator

        Calculator.__init__(self, **kwargs)
        self.models = list(models)
        if not self.models:
            raise ValueError("need at least one fitted model")
        if samples < 0:
            raise ValueError(f"samples must be >= 0, not {samples}")
        self.calculators = []
        self.samples = int(samples)
        self.rng = np.random.default_rng(seed)
        self._init_counters(uncertainty_every)
        #: the last prediction of each model
        self.predictions: list[Prediction] = []

    @property
    def size(self) -> int:
        return len(self.models) * max(self.samples, 1)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        from ase.calculators.calculator import Calculator

        Calculator.calculate(self, atoms, properties, system_changes)
        assert self.atoms is not None
        basis = self.models[0].basis
        a, erow, u = basis.design(self.atoms)
        preds = [m._predict(a, erow, u) for m in self.models]
        self.predictions = preds
        forces = np.mean([p.forces for p in preds], axis=0)
        energy = float(np.mean([p.energy for p in preds]))
        # mixture variance: mean of the variances + variance of the means
        var = np.mean([p.force_std**2 for p in preds], axis=0) + np.var(
            [p.forces for p in preds], axis=0
        )
        e_var = float(np.mean([p.energy_std**2 for p in preds]) + np.var([p.energy for p in preds]))
        if self.samples:
            e_members, f_members = [], []
            for m in self.models:
                theta = m.posterior.sample(self.samples, self.rng)
                f_members.append((theta @ (a / m.scale).T).reshape(self.samples, -1, 3))
                e_members.append(m.e0 + theta @ (erow / m.scale))
            energies, member_forces = np.concatenate(e_members), np.concatenate(f_members)
        else:
            energies = np.array([p.energy for p in preds])
            member_forces = np.stack([p.forces for p in preds])
        volume = self.atoms.get_volume()
        stress = _virial_stress(forces[None], u, volume)[0]
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": forces,
            "stress": stress,
            "stress_members": _virial_stress(member_forces, u, volume),
            "energy_members": energies,
            "forces_members": member_forces,
            "force_std": np.sqrt(var),
        }
        self.calls += 1
        k = self.uncertainty_every
        if k and (self.calls - 1) % k == 0:
            self.results["uncertainty"] = _uncertainty(
                forces, np.sqrt(var), float(np.sqrt(e_var)), preds[0].noise_std
            )

    @property
    def uncertainty(self) -> dict[str, float]:
        if "uncertainty" not in self.results and "force_std" in self.results:
            self.results["uncertainty"] = _uncertainty(
                self.results["forces"],
                self.results["force_std"],
                0.0,
                self.predictions[0].noise_std,
            )
        return dict(self.results.get("uncertainty", {}))


def _virial_stress(forces: np.ndarray, u: np.ndarray, volume: float) -> np.ndarray:
    """Voigt stresses (M, 6) ``-(1/V) sum_i sym(F_i u_i)`` of forces (M, N, 3)."""
    virial = -np.einsum("mia,ib->mab", forces, u) / volume
    virial = 0.5 * (virial + virial.transpose(0, 2, 1))
    return virial[:, [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


def _uncertainty(
    forces: np.ndarray, force_std: np.ndarray, energy_std: float, noise_std: float
) -> dict[str, float]:
    atom = np.sqrt((force_std**2).sum(axis=1))
    return {
        "force_max": float(atom.max()),
        "force_mean": float(atom.mean()),
        "energy_std_per_atom": energy_std / len(atom),
        "force_max_relative": float(atom.max() / (np.linalg.norm(forces, axis=1).mean() + 1e-3)),
        "force_noise": float(noise_std * np.sqrt(3.0)),
    }
