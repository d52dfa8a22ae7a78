"""The JSON records of the Green-Kubo stage: what ``production.json``, ``lifetimes.json`` and
``summary.json`` hold (written by :mod:`alkappa.greenkubo.steps`, read by the campaign's
summary and the CLI)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypedDict

if TYPE_CHECKING:
    from alkappa.greenkubo._production import RoundRecord


class RunRecord(TypedDict):
    """One NVE run of a production (``RunResult.to_dict``)."""

    index: int
    path: str
    start_step: int
    steps_done: int
    frames: int
    blew_up: bool
    reason: str
    drift: float  # eV/atom/ps
    max_deviation: float  # eV/atom
    drift_flagged: bool
    temperature_mean: float
    seconds: float
    reused: bool


class ProductionResultRecord(TypedDict):
    """A production at one temperature (``ProductionResult.to_dict``)."""

    directory: str
    temperature: float
    equilibration: str
    equilibrated: bool
    reason: str
    drift_flagged: bool
    seconds: float
    stopped_by: str
    converged: bool
    target_error: float | None
    relative_error: float | None
    n_runs: int
    simulated_ps: float
    wall_seconds: float
    history: list[RoundRecord]
    runs: list[RunRecord]


class ProductionRecord(ProductionResultRecord, total=False):
    """``production.json``: the production and how it was made (the pipeline's keys; a record
    of an older version may lack some, which the readers allow for)."""

    material: str
    flux: str
    threads: int
    model_fingerprint: str
    #: ``greenkubo``'s production keys (:class:`alkappa.settings.ProductionSettings`)
    settings: dict[str, float | None]
    #: ``greenkubo``'s analysis keys (:class:`alkappa.settings.AnalysisSettings`)
    analysis: dict[str, float | None]


class ModeLifetime(TypedDict):
    """One mode of ``lifetimes.json``."""

    qpoint: list[float]
    band: int
    frequency_THz: float | None
    tau_md_ps: float | None
    tau_phono3py_ps: float | None


class LifetimeRecord(TypedDict, total=False):
    """``lifetimes.json``: MD against phono3py lifetimes (the comparison's attributes, which
    :func:`alkappa.greenkubo.compare_mode_lifetimes` sets, and the modes)."""

    temperature_K: float
    median_ratio: float | None
    temperature_md: float
    temperature_phono3py: float
    n_qpoints: int
    n_matched_qpoints: int
    n_modes_compared: int
    log10_ratio_rms: float
    modes: list[ModeLifetime]


class LifetimeCheck(TypedDict, total=False):
    """Whether the cutoff and the run length are long against the MD lifetimes
    (:func:`alkappa.greenkubo.steps.gk_convergence`)."""

    checked: bool
    reason: str
    acoustic_lifetime_ps: float
    cutoff_ps: float
    run_length_ps: float
    captured_fraction: float
    under_converged: bool


class ProductionState(TypedDict):
    """Why a production ended and how far kappa's error got
    (:func:`alkappa.greenkubo.steps.production_state`)."""

    converged: bool
    stopped_by: str
    relative_error: float | None
    target_error: float | None
    simulated_ps: float
    wall_hours: float | None


class RunDrift(TypedDict):
    """Energy conservation of one run."""

    run: int
    drift_eV_per_atom_per_ps: float | None
    max_deviation_eV_per_atom: float | None
    flagged: bool
    blew_up: bool
    reason: str


class DriftRecord(TypedDict):
    """Energy conservation of a production (:func:`alkappa.greenkubo.steps.drift_record`)."""

    flagged: bool
    max_abs_drift_eV_per_atom_per_ps: float | None
    drift_threshold: float | None
    deviation_threshold: float | None
    runs: list[RunDrift]


class FiniteSizeRecord(TypedDict, total=False):
    """The finite-size correction at one temperature (``failed``: why there is none)."""

    failed: str
    kappa_corrected_W_per_mK: float
    kappa_corrected_error_W_per_mK: float | None
    interpolation_correction_W_per_mK: float
    correction_jackknife_error_W_per_mK: float | None
    kappa_ha_commensurate_W_per_mK: float
    kappa_ha_bulk_W_per_mK: float


class Phono3pyKappa(TypedDict, total=False):
    """phono3py's kappa at one temperature, for those of its methods that were computed;
    ``how`` it was read (:func:`alkappa.greenkubo.steps.kappa_at_temperature`)."""

    kappa_rta_W_per_mK: float | None
    kappa_lbte_W_per_mK: float | None
    kappa_rta_classical_W_per_mK: float | None
    kappa_lbte_classical_W_per_mK: float | None
    how: Literal["exact", "interpolated", "outside", "none"]
    gk_over_rta: float | None


class LifetimeSummary(TypedDict):
    """The numbers of ``lifetimes.json`` that ``summary.json`` repeats."""

    median_ratio_md_over_phono3py: float | None
    n_modes_compared: int | None
    n_matched_qpoints: int | None
    n_qpoints: int | None
    log10_ratio_rms: float | None
    temperature_phono3py_K: float | None


class TemperatureSummary(ProductionState, total=False):
    """One temperature of ``summary.json``."""

    temperature_K: float
    temperature_md_K: float
    kappa_W_per_mK: float
    kappa_error_W_per_mK: float | None
    kappa_tensor_W_per_mK: list[list[float]]
    kappa_runs_W_per_mK: list[float]
    n_runs: int
    cutoff_found: bool
    cutoff_time_fs: float
    window_fs: float
    kappa_cepstral_W_per_mK: float | None
    kappa_cepstral_error_W_per_mK: float | None
    finite_size: FiniteSizeRecord | None
    #: per phono3py method (``mlip``, ``oracle``)
    phono3py: dict[str, Phono3pyKappa]
    drift: DriftRecord
    lifetimes: LifetimeSummary | None
    lifetime_check: LifetimeCheck


class SizeCheckRow(TypedDict):
    """Another cell's kappa against the main cell's at one temperature."""

    temperature_K: float
    kappa_W_per_mK: float
    kappa_error_W_per_mK: float | None
    kappa_corrected_W_per_mK: float | None
    kappa_corrected_error_W_per_mK: float | None
    main_kappa_W_per_mK: float
    main_kappa_corrected_W_per_mK: float | None
    kappa_minus_main_corrected_sigma: float | None
    corrected_minus_main_corrected_sigma: float | None


class SizeCheck(TypedDict):
    """Another cell of ``greenkubo.size_check``
    (:func:`~alkappa.greenkubo.steps.size_check_record`)."""

    natoms: int | None
    temperatures: list[SizeCheckRow]


class GreenKuboSummary(TypedDict, total=False):
    """``summary.json`` of the Green-Kubo stage (per temperature, keyed as in the paths,
    ``"300"``)."""

    material: str
    flux: str
    converged: bool
    stopped_by: dict[str, str]
    drift_flagged: bool
    lifetime_check_under_converged: bool
    temperatures: dict[str, TemperatureSummary]
    natoms: int
    size_check: list[SizeCheck]
