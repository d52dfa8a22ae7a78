"""Selecting uncertain MD frames for labelling (design section 1.2, step 4).

A frame with uncertainty ``U`` is compared with the same statistic on the held-out test set
(mean ``U_test``, standard deviation ``sigma_test``) through ``z = (U - U_test) / sigma_test``,
and accepted with probability

    P_U = 1/2 [1 + erf((z - a) / (b sqrt 2))]

(a = 2, b = 1 by default: a frame two test-set standard deviations above the test mean is
accepted with probability 1/2), or, in threshold mode, P_U = 1 if z > threshold else 0.
With an absolute threshold ``U_0`` (eV/Å, ``calibration.absolute_threshold``: meant for a
calibrated U, whose value is an expected error) the test set drops out:
``z = (U - U_0) / w`` and ``P_U = 1/2 [1 + erf(z / sqrt 2)]`` with the width
``w = calibration.absolute_width``.
This is multiplied by an *energetic viability* factor

    P_E = 1/2 erfc((dE - c sigma_E) / (sigma_E sqrt 2)),   dE = E - <E>_T,

with ``<E>_T`` and ``sigma_E`` the mean and standard deviation of the MLIP potential energy over
the same trajectory and c = ``energy_shift``: frames whose energy lies far above the thermal
range (unphysical configurations the MLIP wandered into) are rarely labelled. For frames of
uncertainty-biased MD, whose own energy statistics the bias shifts, P_E is the bias's viability
factor against the harmonic thermal range instead (:mod:`alkappa.al.bias`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NotRequired, TypedDict

import numpy as np
from scipy.special import erf, erfc

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from alkappa.settings import CalibrationSettings, SelectSettings


def acceptance_probability(
    z: np.ndarray | float,
    *,
    a: float = 2.0,
    b: float = 1.0,
    mode: str = "probability",
    threshold: float = 2.0,
) -> np.ndarray:
    """P_U for normalised uncertainties ``z``."""
    z = np.asarray(z, dtype=float)
    if mode == "threshold":
        return (z > threshold).astype(float)
    if mode != "probability":
        raise ValueError(f"unknown selection mode {mode!r}")
    return 0.5 * (1.0 + erf((z - a) / (b * math.sqrt(2.0))))


def energy_viability(energy: np.ndarray, *, shift: float = 3.0) -> np.ndarray:
    """P_E of each frame of one trajectory from its potential energies."""
    energy = np.asarray(energy, dtype=float)
    finite = energy[np.isfinite(energy)]
    if finite.size < 2:
        return np.ones_like(energy)
    mean, std = finite.mean(), finite.std()
    if std <= 0:
        return np.ones_like(energy)
    p = 0.5 * erfc((energy - mean - shift * std) / (std * math.sqrt(2.0)))
    return np.where(np.isfinite(energy), p, 0.0)


@dataclass(frozen=True)
class Candidate:
    """One explored frame as the selection sees it."""

    trajectory: str
    frame: int
    time: float
    temperature: float
    uncertainty: float
    energy: float
    #: P_E known from elsewhere: the viability factor of uncertainty-biased MD, against the
    #: harmonic thermal range (a biased trajectory's own energy statistics are shifted by the
    #: bias); ``None``: estimated from the trajectory
    viability: float | None = None


class SelectionRecord(TypedDict):
    """One candidate's row of ``selection.csv`` (:func:`select_frames`)."""

    trajectory: str
    frame: int
    time: float
    temperature: float
    U: float
    z: float
    P_U: float
    P_E: float
    P: float
    draw: float
    accepted: bool
    reason: str
    #: with ``select.diversity: farthest_point``: a chosen frame's distance to the nearest
    #: frame chosen before it (empty for the others)
    descriptor_distance: NotRequired[float | str]


def select_frames(
    candidates: Sequence[Candidate],
    *,
    test_mean: float,
    test_std: float,
    settings: SelectSettings,
    calibration: CalibrationSettings | None = None,
    features: Callable[[Candidate], np.ndarray] | None = None,
) -> list[SelectionRecord]:
    """Decide for every candidate whether it is labelled; return one record per candidate.

    Each record holds ``U``, ``z``, ``P_U``, ``P_E``, ``P`` (= P_U P_E), the random draw, whether
    it was accepted and why (``accepted``, ``below acceptance``, ``too close in time``,
    ``budget exhausted``, ``non-finite``). With ``calibration.absolute_threshold`` (and
    ``absolute_width``) P_U compares U with that absolute value instead of the test set's
    distribution (module docstring). Candidates are considered in order of decreasing P,
    so the budget goes to the most uncertain frames; the random draws come from a generator
    seeded by ``settings.seed``, so the selection is reproducible.

    With ``settings.diversity == 'farthest_point'`` the frames that pass their draw form a
    pool, and the batch is built from it by farthest-point sampling in the space of
    ``features(candidate)`` (a structural descriptor; see :mod:`alkappa.al.diversity`): first
    the frame of highest P, then always the frame farthest from all chosen so far, its distance
    multiplied by ``(U / U_first) ** settings.diversity_weight``. The minimum time separation
    still holds. Each record then also holds ``descriptor_distance``: for a chosen frame, its
    distance to the nearest frame chosen before it (empty for the others).
    """
    rng = np.random.default_rng(settings.seed)
    n = len(candidates)
    u = np.array([c.uncertainty for c in candidates], dtype=float)
    if calibration is not None and calibration.absolute_threshold is not None:
        threshold = float(calibration.absolute_threshold)
        z = (u - threshold) / float(calibration.absolute_width)
        p_u = acceptance_probability(z, a=0.0, b=1.0)
    else:
        z = (u - test_mean) / max(test_std, 1e-12)
        p_u = acceptance_probability(
            z,
            a=settings.a,
            b=settings.b,
            mode=settings.mode,
            threshold=settings.threshold,
        )
    p_e = np.ones(n)
    if settings.energy_viability:
        for traj in {c.trajectory for c in candidates}:
            idx = [i for i, c in enumerate(candidates) if c.trajectory == traj]
            p_e[idx] = energy_viability(
                np.array([candidates[i].energy for i in idx]), shift=settings.energy_shift
            )
        known = [i for i, c in enumerate(candidates) if c.viability is not None]
        p_e[known] = [candidates[i].viability for i in known]
    p = np.where(np.isfinite(u), p_u * p_e, 0.0)
    draws = rng.random(n)
    records: list[SelectionRecord] = []
    for i, c in enumerate(candidates):
        records.append(
            {
                "trajectory": c.trajectory,
                "frame": c.frame,
                "time": c.time,
                "temperature": c.temperature,
                "U": u[i],
                "z": z[i],
                "P_U": p_u[i],
                "P_E": p_e[i],
                "P": p[i],
                "draw": draws[i],
                "accepted": False,
                "reason": "",
            }
        )
    if settings.diversity == "farthest_point":
        if features is None:
            raise ValueError("select.diversity farthest_point needs the frames' descriptors")
        _select_diverse(candidates, records, u, p, draws, settings, features)
        return records
    chosen_times: dict[str, list[float]] = {}
    n_accepted = 0
    for i in np.argsort(-p, kind="stable"):
        rec = records[i]
        if not np.isfinite(u[i]):
            rec["reason"] = "non-finite"
        elif draws[i] >= p[i]:
            rec["reason"] = "below acceptance"
        elif any(
            abs(rec["time"] - t) < settings.min_separation
            for t in chosen_times.get(rec["trajectory"], [])
        ):
            rec["reason"] = "too close in time"
        elif n_accepted >= settings.max_frames:
            rec["reason"] = "budget exhausted"
        else:
            rec["accepted"] = True
            rec["reason"] = "accepted"
            chosen_times.setdefault(rec["trajectory"], []).append(rec["time"])
            n_accepted += 1
    return records


def _select_diverse(
    candidates: Sequence[Candidate],
    records: list[SelectionRecord],
    u: np.ndarray,
    p: np.ndarray,
    draws: np.ndarray,
    settings: SelectSettings,
    features: Callable[[Candidate], np.ndarray],
) -> None:
    """Fill ``records`` by farthest-point sampling among the frames that pass their draw."""
    from alkappa.al.diversity import farthest_point_sampling

    pool = []
    for i in np.argsort(-p, kind="stable"):
        rec = records[i]
        rec["descriptor_distance"] = ""
        if not np.isfinite(u[i]):
            rec["reason"] = "non-finite"
        elif draws[i] >= p[i]:
            rec["reason"] = "below acceptance"
        else:
            pool.append(int(i))
    if not pool:
        return
    first = pool[0]  # the highest P: the most uncertain viable frame
    power = float(settings.diversity_weight)
    weights = None
    if power > 0:
        weights = np.clip(u / u[first], 0.0, None) ** power if u[first] > 0 else None
    separation = settings.min_separation

    def compatible(i: int, chosen: list[int]) -> bool:
        return all(
            candidates[j].trajectory != candidates[i].trajectory
            or abs(candidates[j].time - candidates[i].time) >= separation
            for j in chosen
        )

    chosen, refused, distance = farthest_point_sampling(
        lambda i: features(candidates[i]),
        pool,
        settings.max_frames,
        first=first,
        weights=weights,
        compatible=compatible,
    )
    for i in pool:
        records[i]["reason"] = "budget exhausted"
    for i in refused:
        records[i]["reason"] = "too close in time"
    for i in chosen:
        records[i].update(accepted=True, reason="accepted", descriptor_distance=distance[i])


def uncertain_fraction(records: Sequence[SelectionRecord]) -> float:
    """Fraction of candidates with P_U > 1/2 (the exploration's 'uncertain' frames)."""
    if not records:
        return 0.0
    return float(np.mean([r["P_U"] > 0.5 for r in records]))
