"""Typed settings: the validated configuration's sections as frozen objects.

:func:`alkappa.config.material_settings` gives one material's settings as the validated,
defaults-filled dictionary that Snakemake hands every job (``params.settings``). A stage's
step function turns the sections it reads into the objects here once, at its top, and passes
those down; below the step functions no code indexes a settings dictionary.

Every section object is a frozen dataclass with one typed field per key of the schema's
section (``workflow/schemas/config.schema.yaml``; ``tests/test_settings.py`` checks that they
agree). :meth:`~_Section.from_settings` and :meth:`~_Section.from_dict` build one and fail
with one line naming the key if a key is missing or unknown; lists become tuples, so that a
section is immutable through and through. Values are kept as the config gives them (an
integer ``timestep`` stays an integer), so fingerprints and records written from them do not
change.

=========================  ===================================================
:class:`GreenKuboSettings`  ``greenkubo``: production, analysis, heat flux
:class:`PhononSettings`     ``phonons``: harmonic phonons (phonopy)
:class:`ConductivitySettings`  ``conductivity``: fc3 and phono3py's kappa
:class:`RelaxSettings`      ``relax``: relaxation of the structure
:class:`~alkappa.oracles.OracleSpec`  ``oracle``: the reference method
=========================  ===================================================

:class:`ProductionSettings` and :class:`AnalysisSettings` are the parts of ``greenkubo`` that
the Green-Kubo library (:mod:`alkappa.greenkubo`) takes; they have defaults, so that the
library is usable without a config.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias, TypeVar

from alkappa.config import ConfigError
from alkappa.oracles.spec import OracleSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "AnalysisSettings",
    "ConductivitySettings",
    "ConfigError",
    "GreenKuboSettings",
    "OracleSpec",
    "PhononSettings",
    "ProductionSettings",
    "RelaxSettings",
    "SettingsDict",
    "section_defaults",
]

_S = TypeVar("_S", bound="_Section")

#: one material's validated, defaults-filled settings as
#: :func:`alkappa.config.material_settings` gives them and Snakemake's ``params.settings``
#: hands every job: what a step function receives and turns into the objects here at its top
#: (a section may already be one of them: :meth:`~_Section.from_settings` takes it as it is)
SettingsDict: TypeAlias = "Mapping[str, Any]"

Mesh = tuple[int, int, int]


@functools.cache
def _schema_defaults(section: str) -> dict[str, Any]:
    from alkappa.config import schema

    properties = schema()["$defs"][section]["properties"]
    return {key: spec["default"] for key, spec in properties.items() if "default" in spec}


def section_defaults(section: str) -> dict[str, Any]:
    """The schema's defaults of a config section (a fresh copy), e.g. ``greenkubo``."""
    return copy.deepcopy(_schema_defaults(section))


def _frozen(value: Any) -> Any:
    """Lists (also nested) as tuples: a section's values cannot be changed in place."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    """Tuples as lists again (the config's and JSON's form)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


class _Section:
    """What every section object can do (a mixin of frozen dataclasses)."""

    #: the section's key in the config
    SECTION: ClassVar[str]

    @classmethod
    def from_dict(cls: type[_S], section: Mapping[str, Any], *, where: str | None = None) -> _S:
        """The section object of a validated config section (all keys present).

        Raises
        ------
        ConfigError
            In one line naming the first missing or unknown key (``where.<key>``).
        """
        where = where or cls.SECTION
        if isinstance(section, cls):
            return section
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        missing = [name for name in names if name not in section]
        if missing:
            raise ConfigError(
                f"{where}.{missing[0]}: missing from the settings (were they validated with "
                f"alkappa.config.load_config?)"
            )
        unknown = sorted(set(section) - set(names))
        if unknown:
            raise ConfigError(
                f"unknown key '{unknown[0]}' in {where}; allowed keys: {', '.join(sorted(names))}"
            )
        return cls(**{name: _frozen(section[name]) for name in names})

    @classmethod
    def from_settings(cls: type[_S], settings: SettingsDict) -> _S:
        """The section object of a material's settings
        (:func:`alkappa.config.material_settings`)."""
        if cls.SECTION not in settings:
            raise ConfigError(f"{cls.SECTION}: the settings have no such section")
        return cls.from_dict(settings[cls.SECTION])

    @classmethod
    def with_defaults(cls: type[_S], **changes: Any) -> _S:
        """The schema's defaults with ``changes`` (for code and tests without a config)."""
        return cls.from_dict({**section_defaults(cls.SECTION), **changes})

    def to_dict(self) -> dict[str, Any]:
        """The config section again (tuples as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


# --- Green-Kubo ----------------------------------------------------------------------------------


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
        Stop (``runs_too_short``) when the flux autocorrelation has no zero within half a run.
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

    def to_dict(self) -> dict[str, Any]:
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

    def to_dict(self) -> dict[str, Any]:
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
    target_error, max_runs, max_simulated_ps, max_wall_hours, require_decay
        When production ends.
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


# --- phonons and conductivity --------------------------------------------------------------------


@dataclass(frozen=True)
class PhononSettings(_Section):
    """The ``phonons`` section: harmonic phonons (phonopy) with the final MLIP and the oracle.

    Parameters
    ----------
    enabled
        Whether the stage runs.
    oracle
        Also with the oracle.
    displacement
        Å.
    mesh
        q-point mesh of the DOS and the comparisons.
    band_npoints
        Points per segment of the band structure.
    imaginary_threshold
        THz; modes below it are reported as imaginary.
    """

    SECTION: ClassVar[str] = "phonons"

    enabled: bool
    oracle: bool
    displacement: float
    mesh: Mesh
    band_npoints: int
    imaginary_threshold: float


@dataclass(frozen=True)
class ConductivitySettings(_Section):
    """The ``conductivity`` section: fc3 and lattice thermal conductivity with phono3py.

    The keys are those of the schema (``$defs/conductivity``, which describes each at length).

    Parameters
    ----------
    enabled
        Whether the stage runs.
    temperatures
        K.
    mesh
        q-point mesh of kappa.
    lbte
        Also solve the linearised BTE exactly.
    isotopes
        Isotope scattering (natural abundances).
    sigma
        Gaussian smearing (THz); None: the tetrahedron method.
    displacement
        Å, of the fc3 supercells.
    cutoff_pair_distance
        Å; pairs farther apart get no displacements (None: all pairs).
    random_snapshots
        Random displacements and symfc: a number of supercells or ``"auto"`` (None:
        systematic pairs).
    seed
        Of the random displacements.
    mesh_convergence
        Extra meshes for a convergence table.
    oracle
        The oracle's own fc3: True, False or ``"auto"`` (when at most
        ``oracle_max_supercells`` are needed).
    oracle_max_supercells
        See ``oracle``.
    statistics
        Phonon occupations: ``quantum`` (always) and ``classical``.
    classical_temperature
        K; the classical limit comes from one phono3py run at this temperature.
    commensurate
        Also kappa on exactly the q-points of the MD supercell.
    commensurate_sigma
        Gaussian smearing (THz) on that grid; None: the tetrahedron method.
    """

    SECTION: ClassVar[str] = "conductivity"

    enabled: bool
    temperatures: tuple[float, ...]
    mesh: Mesh
    lbte: bool
    isotopes: bool
    sigma: float | None
    displacement: float
    cutoff_pair_distance: float | None
    random_snapshots: int | Literal["auto"] | None
    seed: int
    mesh_convergence: tuple[Mesh, ...]
    oracle: bool | Literal["auto"]
    oracle_max_supercells: int
    statistics: tuple[Literal["quantum", "classical"], ...]
    classical_temperature: float
    commensurate: bool
    commensurate_sigma: float | None

    def fc3_options(self) -> Fc3Options:
        """The keywords of :func:`alkappa.phonons.run_fc3` and
        :func:`~alkappa.phonons.count_fc3_supercells`."""
        return Fc3Options(
            displacement=self.displacement,
            cutoff_pair_distance=self.cutoff_pair_distance,
            random_snapshots=self.random_snapshots,
            random_seed=self.seed,
        )


@dataclass(frozen=True)
class Fc3Options:
    """How fc3 is computed (:func:`alkappa.phonons.run_fc3`'s keywords).

    Parameters
    ----------
    displacement
        Å.
    cutoff_pair_distance
        Å; pairs farther apart get no displacements (None: all pairs).
    random_snapshots
        Random displacements and symfc instead of systematic pairs: a number of supercells
        or ``"auto"`` (None: systematic).
    random_seed
        Of the random displacements.
    """

    displacement: float
    cutoff_pair_distance: float | None
    random_snapshots: int | Literal["auto"] | None
    random_seed: int

    def to_dict(self) -> dict[str, Any]:
        """The keywords."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RelaxSettings(_Section):
    """The ``relax`` section: relaxation of the structure.

    Parameters
    ----------
    enabled
        Whether the structure is relaxed with the oracle.
    cell
        Relax the cell as well as the positions.
    keep_symmetry
        Keep the space group.
    fmax
        eV/Å.
    max_steps
        Optimiser steps.
    """

    SECTION: ClassVar[str] = "relax"

    enabled: bool
    cell: bool
    keep_symmetry: bool
    fmax: float
    max_steps: int
