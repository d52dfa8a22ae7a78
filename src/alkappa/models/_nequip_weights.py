"""Per-frame energy/stress weights in nequip 0.19 training (the physical gate's down-weighting).

nequip 0.19 has no per-frame loss weights: its ``MetricsManager`` can only mask NaN targets
(``ignore_nan``), and a batch whose targets are all masked gives a NaN loss. So the weight
travels as a graph field of its own, :data:`WEIGHT_FIELD` (the frame info key
``label_weight``, read by :func:`weighted_ase_dataset`), and the energy and stress terms of
the loss are the weighted means

    L_E = sum_f w_f (dE_f / N_f)^2 / sum_f w_f,
    L_S = sum_f w_f |dS_f|^2 / (9 sum_f w_f),

which equal nequip's per-atom energy and stress MSEs when every ``w_f = 1`` and are zero (not
NaN) for a batch of weight-zero frames. Forces keep nequip's own MSE. The energy shift of the
model (``per_atom_energy_mean`` of the training data) is taken over full-weight frames only.

This module is imported by hydra inside the ``nequip-train`` process only (see
:func:`alkappa.models._nequip_config.build_config` with ``label_weights=True``).
"""

from __future__ import annotations

from typing import Any

import torch
from nequip.data import AtomicDataDict, BaseModifier, register_fields
from torchmetrics import Metric

from alkappa.models._base import LABEL_WEIGHT_KEY

#: the graph field (and extxyz info key) with each frame's energy/stress weight
WEIGHT_FIELD = LABEL_WEIGHT_KEY


def _register() -> None:
    register_fields(graph_fields=[WEIGHT_FIELD])


def _default_weight(data: dict) -> dict:
    """Give a frame without a weight weight 1 (nequip batches only frames with equal keys)."""
    energy = data[AtomicDataDict.TOTAL_ENERGY_KEY]
    w = data.get(WEIGHT_FIELD)
    w = torch.ones_like(energy) if w is None else w.reshape(energy.shape).to(energy.dtype)
    data[WEIGHT_FIELD] = w
    return data


def weighted_ase_dataset(**kwargs: Any) -> Any:
    """``nequip.data.dataset.ASEDataset`` that also reads :data:`WEIGHT_FIELD` (registered
    here, before any frame is read, as a per-frame field; 1 where a frame has none)."""
    from nequip.data.dataset import ASEDataset

    _register()
    keys = list(kwargs.pop("include_keys", None) or [])
    transforms = [_default_weight, *list(kwargs.pop("transforms", None) or [])]
    return ASEDataset(include_keys=[*keys, WEIGHT_FIELD], transforms=transforms, **kwargs)


def _weights(target: dict[str, torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    w = target.get(WEIGHT_FIELD)
    if w is None:  # a frame set without weights: every frame counts fully
        return torch.ones(like.shape[0], dtype=torch.float64, device=like.device)
    return w.reshape(-1).to(torch.float64)


class _WeightedMSE(Metric):
    """Running ``sum_f w_f e_f / sum_f w_f`` of a per-frame squared error ``e_f``."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("num", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("den", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def frame_errors(self, preds: dict, target: dict) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def update(self, preds: dict, target: dict) -> None:
        e = self.frame_errors(preds, target).to(torch.float64)
        w = _weights(target, e)
        self.num = self.num + (w * e).sum()
        self.den = self.den + w.sum()

    def compute(self) -> torch.Tensor:
        # a batch of weight-zero frames contributes 0, not 0/0
        return self.num / self.den.clamp_min(torch.finfo(torch.float64).tiny)


class WeightedPerAtomEnergyMSE(_WeightedMSE):
    """Weighted mean over frames of the squared per-atom energy error."""

    def frame_errors(self, preds: dict, target: dict) -> torch.Tensor:
        n = target[AtomicDataDict.NUM_NODES_KEY].reshape(-1)
        key = AtomicDataDict.TOTAL_ENERGY_KEY
        return ((preds[key].reshape(-1) - target[key].reshape(-1)) / n) ** 2

    def __str__(self) -> str:
        return "weighted_per_atom_energy_mse"


class WeightedStressMSE(_WeightedMSE):
    """Weighted mean over frames of the squared stress error, per tensor component."""

    def frame_errors(self, preds: dict, target: dict) -> torch.Tensor:
        key = AtomicDataDict.STRESS_KEY
        diff = preds[key].reshape(-1, 9) - target[key].reshape(-1, 9)
        return (diff**2).mean(dim=1)

    def __str__(self) -> str:
        return "weighted_stress_mse"


class FullWeightPerAtomEnergy(BaseModifier):
    """Per-atom energy of full-weight frames, NaN for down-weighted ones (for the statistics
    with ``ignore_nan``: the energy shift comes from ungated frames only)."""

    def __init__(self) -> None:
        super().__init__(AtomicDataDict.TOTAL_ENERGY_KEY)

    def _func(self, data: dict) -> torch.Tensor:
        energy = data[self.field].reshape(-1) / data[AtomicDataDict.NUM_NODES_KEY].reshape(-1)
        w = data.get(WEIGHT_FIELD)
        if w is None:
            return energy
        return torch.where(w.reshape(-1) >= 1.0, energy, torch.full_like(energy, float("nan")))

    def __str__(self) -> str:
        return "full_weight_per_atom_energy"
