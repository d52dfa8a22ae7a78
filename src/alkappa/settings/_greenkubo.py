"""The ``greenkubo`` section and the parts of it the Green-Kubo library takes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from alkappa._schema import ConfigError
from alkappa.settings._base import _Section

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True)
class ProductionSettings:
    """How a Green-Kubo production runs and when it ends (times in fs, steps of ``timestep``).

    The defaults are the schema's ``greenkubo`` defaults
    (:data:`alkappa.greenkubo.DEFAULT_PRODUCTION_SETTINGS` is :meth:`to_dict` of them).

    Parameters
    ----------
    timestep
        fs, NVT and NVE.
    friction
        Langevin friction of the NVT part, 1/fs.
    equilibration_steps
        NVT steps before the first snapshot.
    runs
        Independent NVE runs of the first round (with ``target_error`` None: all of them).
    steps
        NVE steps per run.
    snapshot_spacing
        NVT steps between the runs' starting snapshots.
    sample_interval
        NVE steps between logged frames.
    average_virial_frames
        NVT frames for the average atomic virial (0: none).
    log_interval
        NVT steps between frames of ``equilibration.nc``.
    drift_threshold
        eV/atom/ps: a run whose total energy drifts faster is flagged.
    deviation_threshold
        eV/atom: a run whose total energy strays further from its start is flagged.
    seed
        Of the thermostat's and the velocities' random numbers.
    max_force, min_distance_fraction, max_temperature_factor
        Blow-up checks (eV/Å; of the nearest-neighbour distance; of the target temperature).
    flush_every
        Frames between rewrites of a run file.
    target_error
        Relative standard error of the scalar kappa at which production stops; None: exactly
        ``runs`` runs.
    max_runs, max_simulated_ps, max_wall_hours
        Budgets (None: no such limit).
    require_decay
        When the flux autocorrelation has no zero within half a run, make the runs longer
        (up to ``max_run_steps``), then stop (``runs_too_short``).
    max_run_steps
        NVE steps a run may grow to when the autocorrelation has not decayed (each run is
        continued from its last frame, doubling its length per round); None (or ``steps``):
        runs are never extended.
    """

    timestep: float = 2.0
    friction: float = 0.02
    equilibration_steps: int = 5000
    runs: int = 4
    steps: int = 25000
    snapshot_spacing: int = 2500
    sample_interval: int = 4
    average_virial_frames: int = 20
    log_interval: int = 100
    drift_threshold: float = 1e-4
    deviation_threshold: float = 5e-3
    seed: int = 0
    max_force: float = 25.0
    min_distance_fraction: float = 0.6
    max_temperature_factor: float = 3.0
    flush_every: int = 1000
    target_error: float | None = 0.1
    max_runs: int | None = 20
    max_simulated_ps: float | None = None
    max_wall_hours: float | None = None
    require_decay: bool = True
    max_run_steps: int | None = None

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any] | None) -> ProductionSettings:
        """The defaults updated with ``settings`` (a :class:`ProductionSettings` is returned
        as is). Raises ValueError naming unknown keys."""
        if isinstance(settings, ProductionSettings):
            return settings
        settings = dict(settings or {})
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(settings) - set(names))
        if unknown:
            raise ValueError(
                f"unknown production setting(s): {', '.join(unknown)}; known: {', '.join(names)}"
            )
        return cls(**settings)

    def to_dict(self) -> dict[str, float | None]:
        """All settings, in the order of :data:`DEFAULT_PRODUCTION_SETTINGS`."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AnalysisSettings:
    """The Green-Kubo analysis (:func:`alkappa.greenkubo.run_green_kubo`'s keywords): the
    same one decides when production stops and gives the final kappa.

    Parameters
    ----------
    window_fs
        Smoothing window (fs); None: ``window_factor`` periods of the lowest VDOS peak.
    window_factor
        See ``window_fs``.
    max_lag_fs
        Longest correlation time analysed (fs); None: half a run.
    subtract_mean
        Subtract each run's time mean from the flux first (FHI-vibes' convention).
    """

    window_fs: float | None = None
    window_factor: float = 1.0
    max_lag_fs: float | None = None
    subtract_mean: bool = False

    @classmethod
    def from_dict(cls, analysis: Mapping[str, Any] | None) -> AnalysisSettings:
        """An analysis from :func:`~alkappa.greenkubo.run_green_kubo`'s keywords (an
        :class:`AnalysisSettings` is returned as is)."""
        if isinstance(analysis, AnalysisSettings):
            return analysis
        return cls(**dict(analysis or {}))

    def to_dict(self) -> dict[str, float | None]:
        """The keywords of :func:`~alkappa.greenkubo.run_green_kubo`."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class GreenKuboSettings(_Section):
    """The ``greenkubo`` section: Green-Kubo kappa from MD with the final ensemble.

    The keys are those of the schema (``$defs/greenkubo``, which describes each at length);
    the production's are grouped by :attr:`production`, the analysis's by :attr:`analysis`.

    Parameters
    ----------
    enabled
        Whether the stage runs.
    temperatures
        K.
    supercell
        Repetitions of the unit cell for the MD; None: the material's supercell.
    size_check
        Further cells in which the whole stage runs again.
    flux
        ``unfolded`` (the model plugin's own flux), ``virial`` (per-atom stresses) or
        ``harmonic`` (the MLIP's force constants).
    flux_precision
        Floating point of the unfolded flux's network evaluation.
    convective
        Add the convective term.
    timestep, friction, equilibration_steps, runs, steps, snapshot_spacing, sample_interval
        The production MD (:class:`ProductionSettings` describes these and the next ones).
    average_virial_frames, log_interval, drift_threshold, deviation_threshold, seed
        The production's averages, files and energy-drift flags.
    max_force, min_distance_fraction, max_temperature_factor, flush_every
        The production's blow-up checks and file rewrites.
    target_error, max_runs, max_simulated_ps, max_wall_hours, require_decay, max_run_steps
        When production ends (and how long its runs may grow).
    subtract_mean, window_fs, window_factor, max_lag_fs
        The analysis (:class:`AnalysisSettings`).
    lifetimes
        Phonon lifetimes from the runs, against phono3py's.
    """

    SECTION: ClassVar[str] = "greenkubo"

    enabled: bool
    temperatures: tuple[float, ...]
    supercell: tuple[int, ...] | None
    size_check: tuple[tuple[int, ...], ...]
    flux: Literal["unfolded", "virial", "harmonic"]
    flux_precision: Literal["float64", "float32"]
    convective: bool
    timestep: float
    friction: float
    equilibration_steps: int
    runs: int
    target_error: float | None
    max_runs: int | None
    max_simulated_ps: float | None
    max_wall_hours: float | None
    require_decay: bool
    max_run_steps: int | None
    subtract_mean: bool
    steps: int
    snapshot_spacing: int
    sample_interval: int
    average_virial_frames: int
    log_interval: int
    drift_threshold: float
    deviation_threshold: float
    seed: int
    max_force: float
    min_distance_fraction: float
    max_temperature_factor: float
    flush_every: int
    window_fs: float | None
    window_factor: float
    max_lag_fs: float | None
    lifetimes: bool

    @property
    def production(self) -> ProductionSettings:
        """The production MD's settings."""
        return ProductionSettings(
            **{f.name: getattr(self, f.name) for f in fields(ProductionSettings)}
        )

    @property
    def analysis(self) -> AnalysisSettings:
        """The analysis's settings."""
        return AnalysisSettings(
            window_fs=self.window_fs,
            window_factor=self.window_factor,
            max_lag_fs=self.max_lag_fs,
            subtract_mean=bool(self.subtract_mean),
        )

    @property
    def flux_label(self) -> str:
        """The heat flux's name in the production's files and fingerprint: ``flux``, with
        ``-float32`` for the model's flux evaluated in float32 (``flux_precision``), so that
        runs of the two precisions are never mixed."""
        name = str(self.flux)
        if name == "unfolded" and self.flux_precision == "float32":
            return f"{name}-float32"
        return name


def check_greenkubo_budget(gk: Mapping[str, Any], where: str = "greenkubo") -> None:
    """Raise :class:`ConfigError` if a Green-Kubo production's budget contradicts its runs.

    ``gk`` holds (at least) ``runs``, ``steps``, ``timestep``, ``target_error``, ``max_runs``,
    ``max_simulated_ps`` and ``max_wall_hours`` (and may hold ``max_run_steps`` and
    ``sample_interval``); the message starts with ``where.<key>``.
    The wall-time budget cannot be checked here: what a run costs is known only once it ran.
    """
    runs, max_runs = int(gk["runs"]), gk.get("max_runs")
    if max_runs is not None and int(max_runs) < runs:
        raise ConfigError(
            f"{where}.max_runs: {max_runs} is fewer than the {runs} initial runs (runs)"
        )
    initial_ps = runs * int(gk["steps"]) * float(gk["timestep"]) / 1000.0
    max_ps = gk.get("max_simulated_ps")
    if max_ps is not None and float(max_ps) < initial_ps * (1 - 1e-9):
        raise ConfigError(
            f"{where}.max_simulated_ps: {max_ps:g} ps is less than the initial runs take "
            f"(runs x steps x timestep = {initial_ps:g} ps)"
        )
    max_run_steps = gk.get("max_run_steps")
    if max_run_steps is not None and int(max_run_steps) < int(gk["steps"]):
        raise ConfigError(
            f"{where}.max_run_steps: {max_run_steps} is fewer than the steps of a run "
            f"(steps: {gk['steps']})"
        )
    interval = int(gk.get("sample_interval", 1))
    if max_run_steps is not None and int(max_run_steps) > int(gk["steps"]):
        if int(gk["steps"]) % interval:
            raise ConfigError(
                f"{where}.max_run_steps: runs are extended from their last frame, so steps "
                f"({gk['steps']}) must be a multiple of sample_interval ({interval})"
            )
    budgets = ("max_runs", "max_simulated_ps", "max_wall_hours")
    if gk.get("target_error") is not None and all(gk.get(key) is None for key in budgets):
        raise ConfigError(
            f"{where}.target_error: a target needs a budget that ends production if it is "
            f"never reached: set one of {', '.join(budgets)}"
        )
