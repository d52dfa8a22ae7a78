"""Bayesian lattice-dynamics force field with dynamic training (design section 1.3).

Energy expanded in displacements with force constants of order 2..n in hiphive's
symmetry-reduced cluster space (:class:`FCBasis`), fitted by evidence-maximising Bayesian
ridge regression (:func:`fit_bayesian_ridge`), with the predictive force standard deviation
as the Bayesian error (:class:`BayesianFCCalculator`), trained dynamically during MD
(:func:`run_dynamic_training`) and declared converged without new reference data
(:func:`check_convergence`).
"""

from __future__ import annotations

from alkappa.bayesfc._basis import FCBasis
from alkappa.bayesfc._calculator import BayesianFCCalculator
from alkappa.bayesfc._dynamic import (
    ConvergenceCheck,
    DynamicTrainingResult,
    MDSettings,
    TriggerRule,
    TriggerTracker,
    check_convergence,
    rolling_means,
    run_dynamic_training,
    run_periodic_training,
    scan_errors,
)
from alkappa.bayesfc._export import export_force_constants
from alkappa.bayesfc._model import BayesianFCModelFit, Prediction, fit_model
from alkappa.bayesfc._regression import BayesianRidge, fit_bayesian_ridge, log_evidence

__all__ = [
    "BayesianFCCalculator",
    "BayesianFCModelFit",
    "BayesianRidge",
    "ConvergenceCheck",
    "DynamicTrainingResult",
    "FCBasis",
    "MDSettings",
    "Prediction",
    "TriggerRule",
    "TriggerTracker",
    "check_convergence",
    "export_force_constants",
    "fit_bayesian_ridge",
    "fit_model",
    "log_evidence",
    "rolling_means",
    "run_dynamic_training",
    "run_periodic_training",
    "scan_errors",
]
