"""The multi-fidelity labelling policy of active learning.

Every selected frame is labelled at the cheap level; only the most informative ones, those
with the highest uncertainty, also get the expensive level. How many is set by a fraction of
the selected frames and/or an absolute budget per iteration (the smaller wins). The oracle
calls go through the same content-addressed store as every other label, so they are counted per
level, with their seconds, by ``alkappa oracle-calls``.

In the Snakemake AL loop through :func:`alkappa.multifidelity.steps.mf_label_step`
(``multifidelity.al`` in the config).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from ase import Atoms

    from alkappa.labelling import FailureRecord
    from alkappa.settings import FidelityLevel


def choose_high_fidelity(
    uncertainty: Sequence[float], *, fraction: float = 1.0, budget: int | None = None
) -> list[int]:
    """Indices of the frames that also get the high level, most uncertain first.

    Parameters
    ----------
    uncertainty
        One uncertainty per selected frame (larger: more informative); NaN counts as lowest.
    fraction
        At most ``ceil(fraction * len(uncertainty))`` frames (0..1).
    budget
        At most this many frames (``None``: no absolute limit).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    if budget is not None and budget < 0:
        raise ValueError(f"budget must be non-negative, got {budget}")
    u = np.asarray(uncertainty, dtype=float)
    n = math.ceil(fraction * len(u) - 1e-12)
    if budget is not None:
        n = min(n, int(budget))
    key = np.where(np.isnan(u), -np.inf, u)
    order = np.argsort(-key, kind="stable")
    return [int(i) for i in order[:n]]


@dataclass
class MultiFidelityLabels:
    """Frames labelled by :func:`label_multifidelity` and what each level cost.

    Attributes
    ----------
    frames
        Every successfully labelled frame: all at the low level, the chosen ones also at the
        high level (``info["fidelity"]`` says which).
    high_indices
        Positions (in the input) of the frames that also got the high level.
    calls, seconds
        Oracle calls made now and oracle seconds of the returned frames, per level name.
    failures
        Failed oracle calls (recorded in the store, skipped here).
    """

    frames: list[Atoms] = field(default_factory=list)
    high_indices: list[int] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    failures: list[FailureRecord] = field(default_factory=list)


def label_multifidelity(
    frames: Sequence[Atoms],
    uncertainty: Sequence[float],
    levels: Sequence[FidelityLevel | Mapping[str, Any]],
    store: str | Path,
    *,
    fraction: float = 1.0,
    budget: int | None = None,
    purpose: str = "al",
) -> MultiFidelityLabels:
    """Label selected frames at the cheapest level and the most uncertain also at the highest.

    Parameters
    ----------
    frames, uncertainty
        Selected structures and their uncertainty at the high level (e.g. the ensemble spread
        of a multi-fidelity model predicting at that level).
    levels
        The ``multifidelity`` section's levels (:class:`~alkappa.settings.FidelityLevel`, or
        the config's ``{name, oracle}``), cheapest first.
    store
        The oracle-call store (reruns reuse it; counted by ``alkappa oracle-calls``).
    fraction, budget
        How many frames get the high level (:func:`choose_high_fidelity`).
    """
    from alkappa.labelling import label_frames
    from alkappa.oracles import get_oracle
    from alkappa.settings import FidelityLevel

    if len(frames) != len(uncertainty):
        raise ValueError(f"{len(frames)} frames but {len(uncertainty)} uncertainties")
    if len(levels) < 2:
        raise ValueError("multi-fidelity labelling needs at least two levels")
    low, high = (
        FidelityLevel.from_dict(levels[k], where=f"multifidelity.levels.{k % len(levels)}")
        for k in (0, -1)
    )
    chosen = choose_high_fidelity(uncertainty, fraction=fraction, budget=budget)
    out = MultiFidelityLabels(high_indices=sorted(chosen))
    for level, subset in ((low, list(frames)), (high, [frames[i] for i in out.high_indices])):
        spec = level.oracle.with_fidelity(level.name)
        outcome = label_frames(
            subset, get_oracle(spec), spec, store, purpose=purpose, progress=False
        )
        out.frames.extend(outcome.frames)
        out.failures.extend(outcome.failures)
        out.calls[level.name] = outcome.oracle_calls
        out.seconds[level.name] = outcome.oracle_seconds
    return out
