"""The ``bayesian`` section: on-the-fly Bayesian force constants (:mod:`alkappa.bayesfc`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from alkappa.settings._base import _Section


@dataclass(frozen=True)
class BayesianSettings(_Section):
    """The ``bayesian`` section.

    The keys are those of the schema (``$defs/bayesian``, which describes each at length).

    Parameters
    ----------
    enabled
        Whether the stage runs.
    cutoffs
        Å, of the force-constant clusters (second order first).
    symprec
        Symmetry tolerance.
    initial_frames, initial_amplitude
        Random displacements (Å) labelled before the MD starts.
    temperature, timestep, friction
        The Langevin MD driven by the model (K, fs, 1/fs).
    max_displacement
        Å; a larger displacement stops the MD.
    statistic
        The uncertainty that triggers an oracle call.
    window, factor, absolute, absolute_noise_factor, min_gap, warmup
        The trigger: ``factor`` times the running mean over ``window`` steps, or an
        ``absolute`` threshold (``auto``: from the noise, ``absolute_noise_factor``), at most
        one call per ``min_gap`` steps, none in the first ``warmup``.
    steps_per_round, max_rounds, max_calls
        The training's budget.
    check_steps, check_equilibration, flat_tolerance
        The convergence check: MD steps, of which the first are equilibration, and the
        tolerance of a flat uncertainty.
    seed
        Of the displacements and the MD.
    kappa
        Also phono3py's kappa with the fitted force constants.
    """

    SECTION: ClassVar[str] = "bayesian"

    enabled: bool
    cutoffs: tuple[float, ...]
    symprec: float
    initial_frames: int
    initial_amplitude: float
    temperature: float
    timestep: float
    friction: float
    max_displacement: float
    statistic: Literal["force_mean", "force_max"]
    window: int
    factor: float
    absolute: float | Literal["auto"] | None
    absolute_noise_factor: float
    min_gap: int
    warmup: int
    steps_per_round: int
    max_rounds: int
    max_calls: int | None
    check_steps: int
    check_equilibration: int
    flat_tolerance: float
    seed: int
    kappa: bool
