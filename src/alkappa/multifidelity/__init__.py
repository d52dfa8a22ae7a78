"""Multi-fidelity training: few expensive labels on top of many cheap ones.

* Fidelity as data (:func:`group_by_fidelity`, :func:`fit_reference`,
  :class:`EnergyReference`): every labelled frame carries ``info["fidelity"]``; energies of
  different levels are only ever used after subtracting per-fidelity per-element references.
* The four approaches of the study (:func:`train_approach`, :data:`APPROACHES`): one
  multi-fidelity SevenNet model (fidelity as a one-hot input, Kim et al., arXiv:2409.07947),
  high-only, transfer learning, Delta-learning.
* The budget study (:func:`run_study`, :func:`error_metrics`, :func:`plot_study`).
* The multi-fidelity labelling of active learning (:func:`choose_high_fidelity`,
  :func:`label_multifidelity`).
"""

from __future__ import annotations

from alkappa.multifidelity._al import MultiFidelityLabels, choose_high_fidelity, label_multifidelity
from alkappa.multifidelity._baselines import APPROACHES, train_approach, train_low_model
from alkappa.multifidelity._data import (
    EnergyReference,
    difference_frames,
    fidelity_of,
    fit_element_energies,
    fit_reference,
    group_by_fidelity,
    referenced,
)
from alkappa.multifidelity._plots import plot_study
from alkappa.multifidelity._sevenn import (
    DEFAULT_SEVENN_SETTINGS,
    ReferencedCalculator,
    train_sevenn,
    write_training_file,
)
from alkappa.multifidelity._study import (
    METRICS,
    best_approach,
    error_metrics,
    high_fidelity_indices,
    run_study,
    study_dataset,
)

__all__ = [
    "APPROACHES",
    "DEFAULT_SEVENN_SETTINGS",
    "METRICS",
    "EnergyReference",
    "MultiFidelityLabels",
    "ReferencedCalculator",
    "best_approach",
    "choose_high_fidelity",
    "difference_frames",
    "error_metrics",
    "fidelity_of",
    "fit_element_energies",
    "fit_reference",
    "group_by_fidelity",
    "high_fidelity_indices",
    "label_multifidelity",
    "plot_study",
    "referenced",
    "run_study",
    "study_dataset",
    "train_approach",
    "train_low_model",
    "train_sevenn",
    "write_training_file",
]
