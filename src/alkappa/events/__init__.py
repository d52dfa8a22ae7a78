"""Event diagnostics: atoms leaving their lattice sites in reference and MLIP trajectories.

* :func:`detect_events` / :func:`detect_trajectory_events`: lattice-site assignment against the
  relaxed reference with drift removal and the events table (Frenkel pairs, site exchanges,
  transient excursions).
* :func:`compare_events`, :func:`event_rates`, :func:`poisson_interval`: rates with exact
  Poisson intervals, missing genuine events of an MLIP against the reference;
  :func:`event_frames` and :func:`spot_check`: the oracle's verdict on MLIP event frames
  (false events); :func:`lifetime_ratios`: per-mode lifetime bias against the reference.
* :func:`roc_auc`, :func:`uncertainty_alignment`: how well the ensemble uncertainty flags
  event frames.
* Figures: :func:`plot_event_timeline`, :func:`plot_lifetime_ratios`.
"""

from __future__ import annotations

from alkappa.events._alignment import roc_auc, uncertainty_alignment
from alkappa.events._compare import (
    compare_events,
    event_frames,
    event_rates,
    lifetime_ratios,
    poisson_interval,
    spot_check,
    thermal_energy_range,
)
from alkappa.events._detector import (
    EVENT_COLUMNS,
    KINDS,
    EventDetection,
    detect_events,
    detect_trajectory_events,
    nearest_neighbour_distance,
)
from alkappa.events._plots import plot_event_timeline, plot_lifetime_ratios

__all__ = [
    "EVENT_COLUMNS",
    "KINDS",
    "EventDetection",
    "compare_events",
    "detect_events",
    "detect_trajectory_events",
    "event_frames",
    "event_rates",
    "lifetime_ratios",
    "nearest_neighbour_distance",
    "plot_event_timeline",
    "plot_lifetime_ratios",
    "poisson_interval",
    "roc_auc",
    "spot_check",
    "thermal_energy_range",
    "uncertainty_alignment",
]
