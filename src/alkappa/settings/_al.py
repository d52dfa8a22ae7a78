"""The AL loop's sections: ``initial``, ``test``, ``ensemble``, ``explore``, ``select``,
``gate``, ``calibration``, ``convergence`` and ``baselines``.

The keys are those of the schema (``workflow/schemas/config.schema.yaml``, which describes
each at length).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from alkappa.settings._base import _Section

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True)
class InitialSettings(_Section):
    """The ``initial`` section: the initial dataset D_0, thermal samples of the relaxed cell.

    Parameters
    ----------
    method
        ``harmonic`` (samples of the harmonic phonons) or ``rattle`` (random displacements).
    temperature
        K, of the harmonic samples.
    n_frames
        Samples.
    rattle_stdev
        Å, of the rattled displacements.
    displacement
        Å, of the finite displacements of the harmonic force constants.
    seed
        Of the samples.
    """

    SECTION: ClassVar[str] = "initial"

    method: Literal["harmonic", "rattle"]
    temperature: float
    n_frames: int
    rattle_stdev: float
    displacement: float
    seed: int


@dataclass(frozen=True)
class TestSettings(_Section):
    """The ``test`` section: the held-out harmonic test set (never trained on).

    Parameters
    ----------
    n_frames
        Samples per exploration temperature.
    seed
        Of the samples (plus 1000 per temperature).
    """

    __test__: ClassVar[bool] = False  # not a pytest test class
    SECTION: ClassVar[str] = "test"

    n_frames: int
    seed: int


@dataclass(frozen=True)
class EnsembleSettings(_Section):
    """The ``ensemble`` section: the committee of MLIPs trained each iteration.

    Parameters
    ----------
    size
        Members.
    validation_fraction
        Of the dataset held out of each member's training.
    bootstrap
        Each member trains on a bootstrap resample.
    warm_start
        A member starts from its own checkpoint of the iteration before.
    seed
        Of the members' splits and training.
    """

    SECTION: ClassVar[str] = "ensemble"

    size: int
    validation_fraction: float
    bootstrap: bool
    warm_start: bool
    seed: int


@dataclass(frozen=True)
class RampSettings(_Section):
    """``explore.ramp``: a linear ramp of the thermostat target within a run.

    Parameters
    ----------
    start, end
        Factors of the exploration temperature at step 0 and at step ``steps``.
    steps
        Length of the ramp in MD steps (None: the whole run).
    """

    SECTION: ClassVar[str] = "explore.ramp"

    start: float
    end: float
    steps: int | None


@dataclass(frozen=True)
class UncertaintyBiasSettings(_Section):
    """``explore.uncertainty_bias``: uncertainty-driven bias MD (:mod:`alkappa.al.bias`).

    Parameters
    ----------
    strength
        eV, the deepest the bias goes; 0: no bias.
    width
        eV, the width of the bias in the members' energy spread.
    viability
        Fade the bias out above the thermal range of the potential energy.
    energy_shift
        Thermal standard deviations above the thermal mean at which the bias is halved.
    """

    SECTION: ClassVar[str] = "explore.uncertainty_bias"

    strength: float
    width: float
    viability: bool
    energy_shift: float


@dataclass(frozen=True)
class ExploreSettings(_Section):
    """The ``explore`` section: Langevin MD with each iteration's ensemble.

    Parameters
    ----------
    temperatures
        K, one trajectory each.
    steps
        MD steps per trajectory.
    timestep
        fs.
    friction
        Langevin friction, 1/fs.
    log_interval
        MD steps between logged frames (the candidates).
    seed
        Of the thermostat and the velocities (offset per iteration and temperature).
    max_force, min_distance_fraction, max_temperature_factor
        Blow-up checks (eV/Å; of the nearest-neighbour distance; of the target temperature).
    ramp
        The thermostat ramp (:class:`RampSettings`).
    uncertainty_bias
        The bias MD (:class:`UncertaintyBiasSettings`).
    """

    SECTION: ClassVar[str] = "explore"
    INNER: ClassVar = {"ramp": RampSettings, "uncertainty_bias": UncertaintyBiasSettings}

    temperatures: tuple[float, ...]
    steps: int
    timestep: float
    friction: float
    log_interval: int
    seed: int
    max_force: float
    min_distance_fraction: float
    max_temperature_factor: float
    ramp: RampSettings
    uncertainty_bias: UncertaintyBiasSettings


@dataclass(frozen=True)
class SelectSettings(_Section):
    """The ``select`` section: which explored frames are labelled.

    Parameters
    ----------
    statistic
        The ensemble's uncertainty statistic U.
    mode
        ``probability`` (a logistic acceptance in z) or ``threshold``.
    a, b
        Centre and width of the logistic acceptance in z (the test set's standard scores).
    threshold
        z above which a frame is accepted in ``threshold`` mode.
    energy_viability
        Weigh the acceptance by the frame's energetic viability P_E.
    energy_shift
        Thermal standard deviations above the mean energy at which P_E is 1/2.
    max_frames
        Frames labelled per iteration.
    min_separation
        fs between two accepted frames of a trajectory.
    seed
        Of the draws (plus 7919 per iteration).
    thresholds_from
        ``test``: U_test and sigma_test from the held-out test set; ``harmonic``: from the
        harmonic samples, so the loop need not wait for the reference MD.
    diversity
        ``farthest_point``: the accepted frames are picked for diversity.
    diversity_weight
        Power of the uncertainty in the diverse pick.
    descriptor_cutoff, descriptor_bins, descriptor_width
        The pair-distance descriptor of the diverse pick (Å, bins, Å).
    """

    SECTION: ClassVar[str] = "select"

    statistic: Literal["force_max", "force_mean", "energy_std_per_atom", "force_max_relative"]
    mode: Literal["probability", "threshold"]
    a: float
    b: float
    threshold: float
    energy_viability: bool
    energy_shift: float
    max_frames: int
    min_separation: float
    seed: int
    thresholds_from: Literal["test", "harmonic"]
    diversity: Literal["none", "farthest_point"]
    diversity_weight: float
    descriptor_cutoff: float
    descriptor_bins: int
    descriptor_width: float


@dataclass(frozen=True)
class GateSettings(_Section):
    """The ``gate`` section: labels far above the thermal range weigh less
    (:mod:`alkappa.al.gate`).

    Parameters
    ----------
    enabled
        Whether the gate applies.
    multiple
        The limit, in units of (3/2) k_B T above the relaxed energy.
    action
        ``downweight`` (energy and stress weigh ``weight``) or ``drop`` (weigh 0).
    weight
        See ``action``.
    """

    SECTION: ClassVar[str] = "gate"

    enabled: bool
    multiple: float
    action: Literal["downweight", "drop"]
    weight: float

    @property
    def label_weight(self) -> float:
        """The loss weight of a gated frame's energy and stress (0 for ``action: drop``)."""
        return 0.0 if self.action == "drop" else float(self.weight)


@dataclass(frozen=True)
class CalibrationSettings(_Section):
    """The ``calibration`` section: recalibrated uncertainty for the selection.

    Parameters
    ----------
    select_on
        ``raw`` U or the ``calibrated`` one.
    method
        The recalibration map: ``scale`` or ``isotonic``.
    absolute_threshold
        eV/Å; select on the calibrated U against this threshold instead of the test set's
        standard scores (None: the standard scores).
    absolute_width
        eV/Å, the width of the logistic acceptance around ``absolute_threshold``.
    """

    SECTION: ClassVar[str] = "calibration"

    select_on: Literal["raw", "calibrated"]
    method: Literal["scale", "isotonic"]
    absolute_threshold: float | None
    absolute_width: float


@dataclass(frozen=True)
class ConvergenceSettings(_Section):
    """The ``convergence`` section: when the AL loop stops (:func:`alkappa.al.convergence.decide`).

    Parameters
    ----------
    max_iterations
        Ensembles at most.
    min_iterations
        Ensembles at least.
    max_uncertain_fraction
        Of the explored frames uncertain (P_U > 1/2) at which exploration counts as quiet.
    plateau_window
        Iterations over which the mean test uncertainty must have plateaued.
    plateau_tolerance
        Largest relative change between consecutive iterations of a plateau.
    """

    SECTION: ClassVar[str] = "convergence"

    max_iterations: int
    min_iterations: int
    max_uncertain_fraction: float
    plateau_window: int
    plateau_tolerance: float


@dataclass(frozen=True)
class AimdBaselineSettings(_Section):
    """``baselines.aimd``: an MLIP trained on oracle MD at the AL campaign's cost.

    Parameters
    ----------
    enabled
        Whether the baseline runs.
    budget
        ``al`` (the AL campaign's total oracle calls) or a number of oracle calls.
    every
        Train on every k-th MD step.
    temperatures
        K, one oracle MD each (empty: ``explore.temperatures``).
    seed
        MD seed (plus the temperature).
    """

    SECTION: ClassVar[str] = "baselines.aimd"

    enabled: bool
    budget: int | Literal["al"]
    every: int
    temperatures: tuple[float, ...]
    seed: int


@dataclass(frozen=True)
class HarmonicBaselineSettings(_Section):
    """``baselines.harmonic``: an MLIP trained on harmonic samples at the AL campaign's cost.

    Parameters
    ----------
    enabled
        Whether the baseline runs.
    temperatures
        K, the samples taken in turn from each (empty: ``explore.temperatures``).
    seed
        Of the samples.
    """

    SECTION: ClassVar[str] = "baselines.harmonic"

    enabled: bool
    temperatures: tuple[float, ...]
    seed: int


@dataclass(frozen=True)
class BaselinesSettings(_Section):
    """The ``baselines`` section: MLIPs without AL at equal oracle cost.

    Parameters
    ----------
    aimd
        :class:`AimdBaselineSettings`.
    harmonic
        :class:`HarmonicBaselineSettings`.
    """

    SECTION: ClassVar[str] = "baselines"
    INNER: ClassVar = {"aimd": AimdBaselineSettings, "harmonic": HarmonicBaselineSettings}

    aimd: AimdBaselineSettings
    harmonic: HarmonicBaselineSettings


def baseline_temperatures(settings: Mapping[str, Any], baseline: str) -> list[float]:
    """Temperatures (K) of the aiMD-only (``aimd``) or harmonic-only baseline: its own, else
    the exploration temperatures of AL."""
    own = settings["baselines"][baseline]["temperatures"]
    return [float(t) for t in own or settings["explore"]["temperatures"]]
