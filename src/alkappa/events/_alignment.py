"""How well the ensemble uncertainty flags event frames: ROC AUC of the per-frame uncertainty.

The area under the ROC curve equals the probability that a randomly chosen event frame has a
higher uncertainty than a randomly chosen non-event frame, ties counting one half (the
Mann-Whitney U statistic divided by the number of pairs; Hanley & McNeil, Radiology 143, 29
(1982)). 1 is a perfect flag, 0.5 no better than chance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

import numpy as np

if TYPE_CHECKING:
    import xarray as xr

    from alkappa.events._detector import EventDetection


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC of ``scores`` for the boolean labels ``positive``; NaN if a class is empty."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    if scores.shape != positive.shape:
        raise ValueError(f"scores {scores.shape} and labels {positive.shape} differ in shape")
    keep = np.isfinite(scores)
    scores, positive = scores[keep], positive[keep]
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks of ties
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


class Alignment(TypedDict):
    """How well the uncertainty flags event frames (:func:`uncertainty_alignment`)."""

    statistic: str
    auc: float
    n_frames: int
    n_event_frames: int
    mean_event: float | None
    mean_other: float | None


def uncertainty_alignment(
    trajectory: xr.Dataset, detection: EventDetection, statistic: str = "force_max"
) -> Alignment:
    """ROC AUC of ``uncertainty_<statistic>`` for event vs non-event frames of a trajectory,
    with the mean uncertainty of either class."""
    name = f"uncertainty_{statistic}"
    if name not in trajectory:
        raise ValueError(f"the trajectory has no {name} (not an MLIP ensemble trajectory)")
    values = np.asarray(trajectory[name].values, dtype=float)
    times = np.asarray(trajectory["time"].values, dtype=float)
    index = np.searchsorted(times, detection.times)
    values = values[np.clip(index, 0, len(values) - 1)]
    flags = detection.event_frames
    return {
        "statistic": statistic,
        "auc": roc_auc(values, flags),
        "n_frames": len(flags),
        "n_event_frames": int(flags.sum()),
        "mean_event": float(values[flags].mean()) if flags.any() else None,
        "mean_other": float(values[~flags].mean()) if (~flags).any() else None,
    }
