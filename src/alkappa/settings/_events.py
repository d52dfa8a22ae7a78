"""The ``events`` section: event diagnostics of MLIP MD against the oracle's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from alkappa.settings._base import _Section


@dataclass(frozen=True)
class EventsSettings(_Section):
    """The ``events`` section (:mod:`alkappa.events`).

    Parameters
    ----------
    enabled
        Whether the stage runs.
    temperatures
        K, of the MLIP and oracle MD (empty: the reference MD's).
    models
        The ensembles compared: ``al``, ``random`` (same label budget), ``initial``.
    threshold_fraction
        Of the nearest-neighbour distance: a displacement beyond it is an event.
    min_duration
        fs an event must last.
    frenkel_duration
        fs after which a displaced atom counts as a Frenkel pair.
    spot_checks
        Events per trajectory labelled by the oracle to tell false ones.
    energy_sigma
        Thermal standard deviations above the mean energy of a false event.
    force_factor
        Times the test force RMSE of a false event.
    statistic
        The uncertainty statistic aligned with the events.
    confidence
        Of the event rates' intervals.
    lifetime_temperature
        K, of the phono3py lifetimes compared.
    """

    SECTION: ClassVar[str] = "events"

    enabled: bool
    temperatures: tuple[float, ...]
    models: tuple[Literal["al", "random", "initial"], ...]
    threshold_fraction: float
    min_duration: float
    frenkel_duration: float
    spot_checks: int
    energy_sigma: float
    force_factor: float
    statistic: Literal["force_max", "force_mean", "energy_std_per_atom", "force_max_relative"]
    confidence: float
    lifetime_temperature: float

    def detection(self) -> dict[str, float]:
        """The keywords of :func:`alkappa.events.detect_trajectory_events`."""
        return {
            "threshold_fraction": self.threshold_fraction,
            "min_duration": self.min_duration,
            "frenkel_duration": self.frenkel_duration,
        }
