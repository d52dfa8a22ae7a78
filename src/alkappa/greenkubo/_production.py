"""Green-Kubo production MD: NVT equilibration, then independent NVE runs that log the heat flux.

:func:`run_production` follows the protocol of FHI-vibes' Green-Kubo workflow (Knoop et al.,
Phys. Rev. B 107, 224304 (2023)): the system is thermalised with a Langevin thermostat (as in
:mod:`alkappa.al.explore`), and the Green-Kubo trajectories are microcanonical (velocity
Verlet), since a thermostat perturbs the dynamics the heat-flux autocorrelation measures.
Several NVE runs start from snapshots of the NVT trajectory ``snapshot_spacing`` steps apart,
which makes them (close to) independent samples of the canonical ensemble; their
autocorrelation functions are averaged in the analysis.

Each run is written to its own FHI-vibes-style netCDF file
(:class:`alkappa.io.trajectory.TrajectoryWriter`: ``positions``, ``velocities`` (ASE units, as
FHI-vibes), ``forces``, ``energy_potential``, ``energy_kinetic``, ``temperature``, ``stress``,
``heat_flux`` (time, a) in eV/Å²/fs, attribute ``volume``, reference structure), every
``sample_interval`` steps; see :mod:`alkappa.greenkubo._flux` for the flux conventions. With a
method that has atomic virials, their average over ``average_virial_frames`` NVT frames
(after equilibration) is subtracted from ``heat_flux`` and written as ``heat_flux_aux``, as
FHI-vibes does (it does not change κ, but removes noise). Ensemble fluxes add
``heat_flux_members`` (time, member, a), ensemble calculators ``uncertainty_*``.

Energy conservation is checked per run: the slope of the total energy per atom (least
squares, eV/atom/ps) and its largest deviation from the initial value (eV/atom) are written to
the file's attributes and returned; a run whose ``|slope|`` exceeds ``drift_threshold``, whose
deviation exceeds ``deviation_threshold`` or that blew up (the checks of
:func:`alkappa.al.explore.blow_up_reason`) is ``drift_flagged``.

Convergence by design: after the first ``runs`` runs, the finished (not blown-up) runs are
analysed with :func:`alkappa.greenkubo.run_green_kubo`, and while the relative standard error
of the scalar kappa (``kappa_scalar_error / |kappa_scalar|``) exceeds ``target_error``, one
more independent NVE run is added, from a new snapshot ``snapshot_spacing`` NVT steps further
along the thermostatted chain (the chain in ``equilibration.nc`` is extended from its last
frame). Production ends when the target is reached or when the next run would break a budget:
``max_runs``, ``max_simulated_ps`` (NVE time over all runs) or ``max_wall_hours`` (NVT and
NVE wall time, summed over restarts; the next run is expected to cost the mean of the runs so
far). The error of a mean over n independent runs falls as 1/sqrt(n), so about
n (err/target)^2 runs are needed; a warning says so when that exceeds the budget. If the
run-averaged autocorrelation has no zero within the lags a run allows (half its length), the
integral is truncated whatever the number of runs, and production stops with
``stopped_by = "runs_too_short"`` and a warning to make the runs longer (``require_decay``
False: it goes on as if the cutoff were found). With
``target_error`` None exactly ``runs`` runs are made (``stopped_by = "fixed_runs"``).

Restarts: a completed equilibration (``equilibration.nc``, which stores the snapshots and the
average virials, including the snapshots of chain extensions) and completed runs of the same
settings (same fingerprint; the stopping keys :data:`STOPPING_KEYS` are not part of it) are
reused, so a killed production continues with the first unfinished run, and a production
rerun with a tighter target or a larger budget continues where the last one stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import units
from ase.calculators.calculator import PropertyNotImplementedError
from ase.constraints import FixCom
from ase.md import velocitydistribution
from ase.md.langevin import Langevin
from ase.md.verlet import VelocityVerlet
from tqdm import tqdm

from alkappa.al.explore import blow_up_reason, frame_uncertainty, thermalize
from alkappa.config import check_greenkubo_budget
from alkappa.greenkubo._flux import HEAT_FLUX_UNIT
from alkappa.io.trajectory import TrajectoryWriter, read_trajectory

if TYPE_CHECKING:
    import os

    from ase import Atoms
    from ase.calculators.calculator import Calculator

    from alkappa.greenkubo._flux import HeatFluxMethod

#: production settings and their defaults (times in fs, steps of ``timestep``)
DEFAULT_PRODUCTION_SETTINGS: dict[str, Any] = {
    "timestep": 2.0,  # fs, NVT and NVE
    "friction": 0.02,  # Langevin friction of the NVT part, 1/fs
    "equilibration_steps": 5000,  # NVT steps before the first snapshot
    "runs": 4,  # independent NVE runs
    "steps": 25000,  # NVE steps per run
    "snapshot_spacing": 2500,  # NVT steps between the runs' starting snapshots
    "sample_interval": 4,  # NVE steps between logged frames (k)
    "average_virial_frames": 20,  # NVT frames for the average atomic virial (0: none)
    "log_interval": 100,  # NVT steps between frames of equilibration.nc
    "drift_threshold": 1e-4,  # eV/atom/ps, |slope of the total energy|
    "deviation_threshold": 5e-3,  # eV/atom, max |E_total(t) - E_total(0)|
    "seed": 0,
    "max_force": 25.0,  # eV/Å, blow-up checks as in exploration
    "min_distance_fraction": 0.6,
    "max_temperature_factor": 3.0,
    "flush_every": 1000,  # frames between (atomic) rewrites of a run file
    # when production ends (see the module docstring); None: no such limit
    "target_error": 0.1,  # relative standard error of kappa_scalar; None: exactly `runs` runs
    "max_runs": 20,
    "max_simulated_ps": None,  # NVE time over all runs
    "max_wall_hours": None,  # NVT + NVE wall time, summed over restarts
    "require_decay": True,  # stop (runs_too_short) if the autocorrelation has no zero
}

#: settings that decide when production ends, not what a run is (not in the fingerprint)
STOPPING_KEYS = (
    "target_error",
    "max_runs",
    "max_simulated_ps",
    "max_wall_hours",
    "require_decay",
)

#: why a production ended (``ProductionResult.stopped_by``)
STOPPED_BY = (
    "target_error",
    "max_runs",
    "max_simulated_ps",
    "max_wall_hours",
    "fixed_runs",
    "nvt_blew_up",
    "runs_too_short",
)

EQUILIBRATION_FILE = "equilibration.nc"

#: written to every file (see :mod:`alkappa.greenkubo._flux`)
HEAT_FLUX_CONVENTION = (
    "energy current J = (1/V) [sum_ij (r_i - r_j) (dU_i/dr_j . v_j) + sum_i E_i v_i if "
    "convective] - heat_flux_aux, v in Å/fs; FHI-vibes' heat_flux is -J (same autocorrelation)"
)

#: flux and MD energies further apart than this (eV/atom) mean different models: warn
ENERGY_MISMATCH_WARNING = 1e-6


def resolve_production_settings(settings: dict[str, Any] | None) -> dict[str, Any]:
    """:data:`DEFAULT_PRODUCTION_SETTINGS` updated with ``settings`` (unknown keys raise)."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(DEFAULT_PRODUCTION_SETTINGS))
    if unknown:
        raise ValueError(
            f"unknown production setting(s): {', '.join(unknown)}; "
            f"known: {', '.join(DEFAULT_PRODUCTION_SETTINGS)}"
        )
    out = {**DEFAULT_PRODUCTION_SETTINGS, **settings}
    positive = ("runs", "steps", "sample_interval", "snapshot_spacing", "log_interval")
    for key in (*positive, "equilibration_steps", "flush_every"):
        if int(out[key]) < 1:
            raise ValueError(f"production setting {key} must be >= 1 (got {out[key]})")
    if out["timestep"] <= 0 or out["friction"] <= 0:
        raise ValueError("timestep and friction must be positive")
    for key in ("target_error", "max_runs", "max_simulated_ps", "max_wall_hours"):
        if out[key] is not None and not out[key] > 0:
            raise ValueError(f"production setting {key} must be positive or None (got {out[key]})")
    check_greenkubo_budget(out, "greenkubo")
    return out


def run_files(directory: str | os.PathLike[str], runs: int) -> list[Path]:
    """The NVE trajectory files of a production in ``directory``: ``run_00.nc``, ..."""
    return [Path(directory) / f"run_{k:02d}.nc" for k in range(runs)]


def energy_drift(time_fs: np.ndarray, energy_per_atom: np.ndarray) -> tuple[float, float]:
    """Least-squares slope (eV/atom/ps) and largest deviation from the first value (eV/atom)."""
    t = np.asarray(time_fs, dtype=float) / 1000.0
    e = np.asarray(energy_per_atom, dtype=float)
    if len(e) == 0:
        return 0.0, 0.0
    if not np.isfinite(e).all():
        return float("inf"), float("inf")
    deviation = float(np.abs(e - e[0]).max())
    if len(e) < 2 or np.ptp(t) == 0:
        return 0.0, deviation
    return float(np.polyfit(t, e, 1)[0]), deviation


@dataclass(frozen=True)
class RunResult:
    """One NVE run."""

    index: int
    path: Path
    start_step: int  # NVT step of the starting snapshot
    steps_done: int
    frames: int
    blew_up: bool
    reason: str
    drift: float  # eV/atom/ps
    max_deviation: float  # eV/atom
    drift_flagged: bool
    temperature_mean: float
    seconds: float
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        return out


@dataclass(frozen=True)
class ProductionResult:
    """A whole production at one temperature.

    ``history`` has one entry per analysis of the finished runs (``n_runs``, ``kappa``,
    ``kappa_error``, ``relative_error``, ``projected_runs``, ``simulated_ps``,
    ``wall_seconds``, and ``analysis_error`` if the analysis failed); ``stopped_by`` is one of
    :data:`STOPPED_BY`; ``simulated_ps`` the NVE time of all runs, ``wall_seconds`` the NVT and
    NVE wall time, both summed over restarts.
    """

    directory: Path
    temperature: float
    equilibration: Path
    equilibrated: bool  # False: the NVT part blew up, no runs
    reason: str
    runs: list[RunResult] = field(default_factory=list)
    seconds: float = 0.0
    stopped_by: str = "fixed_runs"
    target_error: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    simulated_ps: float = 0.0
    wall_seconds: float = 0.0

    @property
    def drift_flagged(self) -> bool:
        """Whether any run is flagged (or the equilibration failed)."""
        return not self.equilibrated or any(r.drift_flagged for r in self.runs)

    @property
    def paths(self) -> list[Path]:
        return [r.path for r in self.runs]

    @property
    def relative_error(self) -> float | None:
        """Relative standard error of kappa after the last run (None: not analysed)."""
        return self.history[-1]["relative_error"] if self.history else None

    @property
    def converged(self) -> bool:
        """Whether production ended because the target error was reached."""
        return self.stopped_by == "target_error"

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "temperature": self.temperature,
            "equilibration": str(self.equilibration),
            "equilibrated": self.equilibrated,
            "reason": self.reason,
            "drift_flagged": self.drift_flagged,
            "seconds": self.seconds,
            "stopped_by": self.stopped_by,
            "converged": self.converged,
            "target_error": self.target_error,
            "relative_error": _finite_or_none(self.relative_error),
            "n_runs": len(self.runs),
            "simulated_ps": self.simulated_ps,
            "wall_seconds": self.wall_seconds,
            "history": [
                {k: _finite_or_none(v) for k, v in entry.items()} for entry in self.history
            ],
            "runs": [r.to_dict() for r in self.runs],
        }


@dataclass
class _Equilibration:
    snapshots: list[tuple[int, np.ndarray, np.ndarray]]  # (step, positions, velocities)
    average_virials: np.ndarray | None
    blew_up: bool
    reason: str
    seconds: float = 0.0  # NVT wall time, summed over the chain's extensions


def run_production(
    atoms: Atoms,
    calculator: Calculator,
    flux: HeatFluxMethod,
    path: str | os.PathLike[str],
    *,
    temperature: float,
    settings: dict[str, Any] | None = None,
    attrs: dict[str, Any] | None = None,
    analysis: dict[str, Any] | None = None,
    progress: bool = True,
) -> ProductionResult:
    """NVT equilibration at ``temperature``, then NVE runs logging the heat flux until kappa's
    relative error reaches ``target_error`` or a budget is spent (module docstring).

    Parameters
    ----------
    atoms
        The reference (relaxed) supercell; the MD starts from it.
    calculator
        Forces for the MD (e.g. the ensemble, :func:`alkappa.models.ensemble.load_ensemble`).
    flux
        Heat-flux method (:func:`alkappa.greenkubo._flux.make_heat_flux`); if it has
        ``atomic_virials``, its ``average_virials`` are set here (from the NVT part).
    path
        Output directory: ``equilibration.nc`` and ``run_00.nc``, ... (:func:`run_files`).
    temperature
        Target temperature (K).
    settings
        See :data:`DEFAULT_PRODUCTION_SETTINGS` (missing keys take the defaults).
    attrs
        Extra attributes for every file.
    analysis
        Keywords of :func:`alkappa.greenkubo.run_green_kubo` (``window_fs``, ...) for the
        analyses that decide when to stop. With ``target_error`` None the runs are analysed
        once at the end only if this is given.
    progress
        Show tqdm progress bars.

    Returns
    -------
    ProductionResult
        The runs, the error after each analysis and why production ended.
    """
    start = time.perf_counter()
    settings = resolve_production_settings(settings)
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(settings, temperature, flux, atoms)
    limits = {
        "target_temperature": temperature,
        "max_force": settings["max_force"],
        "min_distance": settings["min_distance_fraction"] * _nearest_neighbour_distance(atoms),
        "max_temperature_factor": settings["max_temperature_factor"],
    }
    common = {
        "temperature_target": temperature,
        "timestep": settings["timestep"],
        "run_fingerprint": fingerprint,
        "heat_flux_method": flux.name,
        "heat_flux_unit": HEAT_FLUX_UNIT,
        "heat_flux_convention": HEAT_FLUX_CONVENTION,
        "velocity_unit": "ASE (Å per ASE time unit; times ase.units.fs gives Å/fs)",
        **(attrs or {}),
    }
    eq_path = directory / EQUILIBRATION_FILE
    equilibration = _load_equilibration(eq_path, atoms, fingerprint)
    if equilibration is None:
        equilibration = _equilibrate(
            atoms, calculator, flux, eq_path, temperature, settings, limits, common, progress
        )
    if equilibration.blew_up:
        return ProductionResult(
            directory=directory,
            temperature=temperature,
            equilibration=eq_path,
            equilibrated=False,
            reason=equilibration.reason,
            seconds=time.perf_counter() - start,
            stopped_by="nvt_blew_up",
            target_error=settings["target_error"],
            wall_seconds=equilibration.seconds,
        )
    if hasattr(flux, "average_virials"):
        flux.average_virials = equilibration.average_virials  # type: ignore[attr-defined]
    run_attrs = {**common, "average_virial_subtracted": equilibration.average_virials is not None}

    def run(k: int) -> RunResult:
        run_path = directory / f"run_{k:02d}.nc"
        done = _load_run(run_path, fingerprint, k)
        if done is None:
            done = _nve_run(
                k,
                run_path,
                equilibration.snapshots[k],
                atoms,
                calculator,
                flux,
                temperature,
                settings,
                limits,
                run_attrs,
                progress,
            )
        return done

    results = [run(k) for k in range(int(settings["runs"]))]
    target = settings["target_error"]
    history: list[dict[str, Any]] = []
    warned = False
    while True:
        totals = _totals(results, equilibration, settings)
        if target is None:
            if analysis is not None:
                history.append({**_analyse(results, analysis), **totals})
            stopped_by = "fixed_runs"
            break
        entry = {**_analyse(results, analysis or {}), **totals}
        entry["projected_runs"] = _projected_runs(len(results), entry["relative_error"], target)
        history.append(entry)
        if not warned and entry["relative_error"] > target:
            warned = _warn_if_out_of_budget(entry, results, settings, temperature)
        stopped_by = _stop_reason(entry, results, settings)
        if stopped_by == "runs_too_short":
            warnings.warn(
                f"{temperature:g} K: the heat-flux autocorrelation does not cross zero within "
                f"{entry['max_lag_fs'] / 1000:g} ps (half a run): kappa is a truncated integral "
                f"and more runs of this length would not fix it; production stops. Make the "
                f"runs longer (greenkubo.steps, now {settings['steps']}: at least double it; "
                f"a rerun with other settings starts afresh)",
                stacklevel=2,
            )
        if stopped_by:
            break
        k = len(results)
        if k >= len(equilibration.snapshots):
            reason = _extend_chain(
                eq_path, atoms, calculator, equilibration, settings, limits, k, progress
            )
            if reason:
                stopped_by = "nvt_blew_up"
                break
        results.append(run(k))
    return ProductionResult(
        directory=directory,
        temperature=temperature,
        equilibration=eq_path,
        equilibrated=True,
        reason="",
        runs=results,
        seconds=time.perf_counter() - start,
        stopped_by=stopped_by,
        target_error=target,
        history=history,
        **_totals(results, equilibration, settings),
    )


# --- when to stop -------------------------------------------------------------------------------


def _analyse(runs: list[RunResult], analysis: dict[str, Any]) -> dict[str, Any]:
    """kappa and its relative standard error from the runs that did not blow up."""
    from alkappa.greenkubo._analysis import run_green_kubo

    entry: dict[str, Any] = {
        "n_runs": len(runs),
        "kappa": float("nan"),
        "kappa_error": float("nan"),
        "relative_error": float("inf"),
    }
    usable = [r.path for r in runs if not r.blew_up]
    if not usable:
        entry["analysis_error"] = "all runs blew up"
        return entry
    try:
        ds = run_green_kubo(usable, **analysis)
    except ValueError as exc:  # e.g. no VDOS peak for the window: more data may help
        entry["analysis_error"] = str(exc)
        return entry
    kappa, error = float(ds["kappa_scalar"]), float(ds["kappa_scalar_error"])
    entry.update(kappa=kappa, kappa_error=error)
    # the cutoff is common to all runs: did the averaged autocorrelation cross zero?
    found = np.asarray(ds["cutoff_found"].values)[0]
    entry["cutoff_found"] = bool(np.diagonal(found).all())
    entry["max_lag_fs"] = float(ds["time"].values[-1])
    if np.isfinite(kappa) and np.isfinite(error) and kappa != 0.0:
        entry["relative_error"] = error / abs(kappa)
    return entry


def _projected_runs(n_runs: int, relative_error: float, target: float) -> float:
    """Runs needed for ``target`` if the error falls as 1/sqrt(n) (inf if unknown)."""
    if not np.isfinite(relative_error):
        return float("inf")
    return float(max(n_runs, int(np.ceil(n_runs * (relative_error / target) ** 2))))


def _totals(
    runs: list[RunResult], equilibration: _Equilibration, settings: dict[str, Any]
) -> dict[str, float]:
    return {
        "simulated_ps": sum(r.steps_done for r in runs) * settings["timestep"] / 1000.0,
        "wall_seconds": equilibration.seconds + sum(r.seconds for r in runs),
    }


def _next_run_cost(runs: list[RunResult], settings: dict[str, Any]) -> tuple[float, float]:
    """Simulated ps and expected wall seconds (NVE and its NVT segment) of one more run."""
    ps = int(settings["steps"]) * settings["timestep"] / 1000.0
    nvt_share = int(settings["snapshot_spacing"]) / int(settings["steps"])
    seconds = float(np.mean([r.seconds for r in runs])) * (1.0 + nvt_share) if runs else 0.0
    return ps, seconds


def _stop_reason(entry: dict[str, Any], runs: list[RunResult], settings: dict[str, Any]) -> str:
    """Why production ends now ("" to go on): runs too short for the integral, the target, or
    the budget the next run breaks.

    Without a zero of the flux autocorrelation within the lags a run allows, the cutoff is the
    last lag and kappa a truncated integral: more runs of the same length shrink its error
    but not its bias, so production stops (``runs_too_short``) and says so instead of
    spending the budget or calling the result converged.
    """
    if settings["require_decay"] and entry.get("cutoff_found") is False:
        return "runs_too_short"
    if entry["relative_error"] <= settings["target_error"]:
        return "target_error"
    if settings["max_runs"] is not None and len(runs) + 1 > settings["max_runs"]:
        return "max_runs"
    ps, seconds = _next_run_cost(runs, settings)
    limit_ps = settings["max_simulated_ps"]
    if limit_ps is not None and entry["simulated_ps"] + ps > limit_ps * (1 + 1e-9):
        return "max_simulated_ps"
    limit_hours = settings["max_wall_hours"]
    if limit_hours is not None and entry["wall_seconds"] + seconds > 3600.0 * limit_hours:
        return "max_wall_hours"
    return ""


def _warn_if_out_of_budget(
    entry: dict[str, Any], runs: list[RunResult], settings: dict[str, Any], temperature: float
) -> bool:
    """Warn (and return True) when the projected number of runs exceeds the budget."""
    budget = _budget_runs(runs, settings)
    projected = entry["projected_runs"]
    if not (np.isfinite(projected) and projected > budget):
        return False
    warnings.warn(
        f"{temperature:g} K: kappa's relative error is {entry['relative_error']:.3g} after "
        f"{len(runs)} run(s); reaching target_error {settings['target_error']:g} needs about "
        f"{projected:.0f} runs (n x (err/target)^2), more than the budget allows "
        f"({budget:.0f} runs)",
        stacklevel=3,
    )
    return True


def _budget_runs(runs: list[RunResult], settings: dict[str, Any]) -> float:
    """The most runs the budgets allow (inf: no budget)."""
    ps, seconds = _next_run_cost(runs, settings)
    counts = [float("inf")]
    if settings["max_runs"] is not None:
        counts.append(int(settings["max_runs"]))
    if settings["max_simulated_ps"] is not None:
        counts.append(int(settings["max_simulated_ps"] * (1 + 1e-9) // ps))
    if settings["max_wall_hours"] is not None and seconds > 0:
        counts.append(int(3600.0 * settings["max_wall_hours"] // seconds))
    return min(counts)


# --- NVT ---------------------------------------------------------------------------------------


def _equilibrate(
    atoms: Atoms,
    calculator: Calculator,
    flux: HeatFluxMethod,
    path: Path,
    temperature: float,
    settings: dict[str, Any],
    limits: dict[str, float],
    attrs: dict[str, Any],
    progress: bool,
) -> _Equilibration:
    """Langevin NVT; snapshots for the runs and atomic virials for their average."""
    start = time.perf_counter()
    work = atoms.copy()
    work.calc = calculator
    rng = np.random.default_rng(settings["seed"])
    thermalize(work, temperature, rng)
    work.set_constraint(FixCom())
    dyn = Langevin(
        work,
        timestep=settings["timestep"] * units.fs,
        temperature_K=temperature,
        friction=settings["friction"] / units.fs,
        rng=rng,
        fixcm=False,
    )
    n_eq, spacing, runs = (
        int(settings["equilibration_steps"]),
        int(settings["snapshot_spacing"]),
        int(settings["runs"]),
    )
    snapshot_steps = [n_eq + r * spacing for r in range(runs)]
    # the average virial from frames spread over at least one snapshot spacing
    total = n_eq + max(runs - 1, 1) * spacing
    n_virial = int(settings["average_virial_frames"]) if hasattr(flux, "atomic_virials") else 0
    virial_steps = set(np.rint(np.linspace(n_eq, total, n_virial)).astype(int).tolist())
    writer = TrajectoryWriter(
        path,
        reference=atoms,
        attrs={"ensemble": "NVT Langevin", "friction": settings["friction"], **attrs},
    )
    snapshots: list[tuple[int, np.ndarray, np.ndarray]] = []
    virials: list[np.ndarray] = []
    dt = settings["timestep"]

    def log(step: int, snapshot: bool) -> None:
        _append_nvt_frame(writer, work, step * dt, snapshot)

    reason = ""
    step = 0
    log(0, False)
    bar = tqdm(total=total, desc=f"NVT {temperature:g} K", disable=not progress, unit="step")
    try:
        while step < total:
            dyn.run(1)
            step += 1
            bar.update(1)
            is_snapshot = step in snapshot_steps
            # the last state too: a chain extension continues from it
            logged = is_snapshot or step % settings["log_interval"] == 0 or step == total
            reason = blow_up_reason(work, work.get_forces(), check_distances=logged, **limits)
            if reason:
                log(step, False)
                break
            if is_snapshot:
                snapshots.append((step, work.positions.copy(), work.get_velocities().copy()))
            if logged:
                log(step, is_snapshot)
            if step in virial_steps:
                virials.append(flux.atomic_virials(work))  # type: ignore[attr-defined]
    finally:
        bar.close()
    average = np.mean(virials, axis=0) if virials and not reason else None
    seconds = time.perf_counter() - start
    writer.attrs.update(
        {
            "seconds": seconds,
            "blew_up": bool(reason),
            "stop_reason": reason,
            "steps_done": step,
            "completed": not reason,
            "snapshot_steps": snapshot_steps,
            "average_virial_frames": len(virials),
            "average_virials": [] if average is None else average.reshape(-1).tolist(),
        }
    )
    writer.flush()
    return _Equilibration(snapshots, average, bool(reason), reason, seconds)


def _extend_chain(
    path: Path,
    atoms: Atoms,
    calculator: Calculator,
    equilibration: _Equilibration,
    settings: dict[str, Any],
    limits: dict[str, float],
    index: int,
    progress: bool,
) -> str:
    """One more starting snapshot: ``snapshot_spacing`` Langevin steps from the last frame of
    ``equilibration.nc``; appended to the file and to ``equilibration`` ("" ), or the blow-up
    reason (then nothing is written).

    The segment's random numbers are seeded by (``seed``, ``index``), so a segment lost to a
    kill is redone identically.
    """
    start = time.perf_counter()
    ds = read_trajectory(path)
    dt = settings["timestep"]
    step = round(float(ds["time"].values[-1]) / dt)
    work = atoms.copy()
    work.calc = calculator
    work.positions = ds["positions"].values[-1]
    work.set_velocities(ds["velocities"].values[-1])
    work.set_constraint(FixCom())
    rng = np.random.default_rng([int(settings["seed"]), index])
    dyn = Langevin(
        work,
        timestep=dt * units.fs,
        temperature_K=limits["target_temperature"],
        friction=settings["friction"] / units.fs,
        rng=rng,
        fixcm=False,
    )
    # the file's attributes as plain Python values (netCDF hands lists back as arrays)
    attrs = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in ds.attrs.items()}
    writer = TrajectoryWriter(path, reference=atoms, attrs=attrs)
    writer.load(ds)
    target = step + int(settings["snapshot_spacing"])
    bar = tqdm(
        total=target - step,
        desc=f"NVT {limits['target_temperature']:g} K, snapshot {index + 1}",
        disable=not progress,
        unit="step",
    )
    try:
        while step < target:
            dyn.run(1)
            step += 1
            bar.update(1)
            logged = step == target or step % settings["log_interval"] == 0
            reason = blow_up_reason(work, work.get_forces(), check_distances=logged, **limits)
            if reason:
                return reason
            if logged:
                _append_nvt_frame(writer, work, step * dt, step == target)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    steps = [int(x) for x in np.atleast_1d(attrs["snapshot_steps"])]
    writer.attrs.update(
        {
            "snapshot_steps": [*steps, target],
            "steps_done": target,
            "seconds": float(attrs.get("seconds", 0.0)) + seconds,
            "chain_extensions": int(attrs.get("chain_extensions", 0)) + 1,
        }
    )
    writer.flush()
    equilibration.snapshots.append((target, work.positions.copy(), work.get_velocities().copy()))
    equilibration.seconds += seconds
    return ""


def _load_equilibration(path: Path, reference: Atoms, fingerprint: str) -> _Equilibration | None:
    """A completed equilibration of this production, or None."""
    if not path.is_file():
        return None
    try:
        ds = read_trajectory(path)
    except (OSError, ValueError):
        return None
    if ds.attrs.get("run_fingerprint") != fingerprint or not int(ds.attrs.get("completed", 0)):
        return None
    if not np.allclose(ds["positions_reference"].values, reference.positions):
        return None
    steps = [int(s) for s in np.atleast_1d(ds.attrs["snapshot_steps"])]
    chosen = ds.isel(time=np.flatnonzero(ds["snapshot"].values > 0.5))
    if len(chosen["time"]) != len(steps):
        return None
    snapshots = [
        (step, chosen["positions"].values[k], chosen["velocities"].values[k])
        for k, step in enumerate(steps)
    ]
    flat = np.atleast_1d(ds.attrs.get("average_virials", []))
    average = None
    if flat.size:
        average = np.asarray(flat, dtype=float).reshape(len(reference), 3, 3)
    return _Equilibration(snapshots, average, False, "", float(ds.attrs.get("seconds", 0.0)))


# --- NVE ---------------------------------------------------------------------------------------


def _nve_run(
    index: int,
    path: Path,
    snapshot: tuple[int, np.ndarray, np.ndarray],
    atoms: Atoms,
    calculator: Calculator,
    flux: HeatFluxMethod,
    temperature: float,
    settings: dict[str, Any],
    limits: dict[str, float],
    attrs: dict[str, Any],
    progress: bool,
) -> RunResult:
    start = time.perf_counter()
    start_step, positions, velocities = snapshot
    work = atoms.copy()
    work.calc = calculator
    work.positions = positions
    work.set_velocities(velocities)
    velocitydistribution.Stationary(work)
    dt = settings["timestep"]
    interval = int(settings["sample_interval"])
    n_steps = int(settings["steps"])
    dyn = VelocityVerlet(work, timestep=dt * units.fs)
    writer = TrajectoryWriter(
        path,
        reference=atoms,
        attrs={
            "ensemble": "NVE",
            "run_index": index,
            "start_step": start_step,
            "sample_interval": interval,
            "completed": False,
            **attrs,
        },
    )
    n_atoms = len(work)
    times: list[float] = []
    totals: list[float] = []
    temperatures: list[float] = []
    mismatch = 0.0

    def log(step: int) -> None:
        nonlocal mismatch
        forces = work.get_forces()
        e_pot = work.get_potential_energy()
        e_kin = work.get_kinetic_energy()
        heat_flux = flux.heat_flux(work)
        res = flux.results
        values: dict[str, Any] = {
            "positions": work.positions,
            # ASE units (Å per ASE time unit), as FHI-vibes stores atoms.get_velocities()
            "velocities": work.get_velocities(),
            "forces": forces,
            "energy_potential": e_pot,
            "energy_kinetic": e_kin,
            "temperature": work.get_temperature(),
            "heat_flux": heat_flux,
        }
        for key in ("heat_flux_aux", "heat_flux_convective", "heat_flux_members"):
            if key in res and not (key == "heat_flux_members" and len(res[key]) < 2):
                values[key] = res[key]
        if work.pbc.all():
            try:
                values["stress_potential"] = work.get_stress(voigt=False)
                values["stress"] = work.get_stress(voigt=False, include_ideal_gas=True)
            except PropertyNotImplementedError:
                pass
        for key, value in frame_uncertainty(calculator).items():
            values[f"uncertainty_{key}"] = value
        if "energy" in res:
            mismatch = max(mismatch, abs(float(res["energy"]) - e_pot) / n_atoms)
        writer.append(step * dt, **values)
        times.append(step * dt)
        totals.append((e_pot + e_kin) / n_atoms)
        temperatures.append(values["temperature"])

    reason = ""
    step = 0
    bar = tqdm(
        total=n_steps,
        desc=f"NVE {index + 1} {temperature:g} K",
        disable=not progress,
        unit="step",
    )
    try:
        log(0)
        while step < n_steps:
            dyn.run(1)
            step += 1
            bar.update(1)
            sample = step % interval == 0
            reason = blow_up_reason(work, work.get_forces(), check_distances=sample, **limits)
            if reason:
                break
            if sample:
                log(step)
                if len(writer) % int(settings["flush_every"]) == 0:
                    writer.flush()
    finally:
        bar.close()
    if mismatch > ENERGY_MISMATCH_WARNING:
        warnings.warn(
            f"run {index}: the heat-flux model's energy differs from the MD calculator's by up "
            f"to {mismatch:.2e} eV/atom: are they the same potential?",
            stacklevel=2,
        )
    drift, deviation = energy_drift(np.array(times), np.array(totals))
    flagged = (
        bool(reason)
        or not abs(drift) <= settings["drift_threshold"]
        or not deviation <= settings["deviation_threshold"]
    )
    result = RunResult(
        index=index,
        path=path,
        start_step=start_step,
        steps_done=step,
        frames=len(writer),
        blew_up=bool(reason),
        reason=reason,
        drift=drift,
        max_deviation=deviation,
        drift_flagged=flagged,
        temperature_mean=float(np.mean(temperatures)) if temperatures else float("nan"),
        seconds=time.perf_counter() - start,
    )
    writer.attrs.update(
        {
            "blew_up": result.blew_up,
            "stop_reason": reason,
            "steps_done": step,
            "energy_drift": drift,
            "energy_drift_unit": "eV/atom/ps",
            "energy_max_deviation": deviation,
            "energy_max_deviation_unit": "eV/atom",
            "drift_threshold": settings["drift_threshold"],
            "deviation_threshold": settings["deviation_threshold"],
            "drift_flagged": flagged,
            "temperature_mean": result.temperature_mean,
            "flux_energy_mismatch_per_atom": mismatch,
            "seconds": result.seconds,
            "completed": True,
        }
    )
    writer.flush()
    return result


def _load_run(path: Path, fingerprint: str, index: int) -> RunResult | None:
    """The result of a completed run of this production, or None."""
    if not path.is_file():
        return None
    try:
        ds = read_trajectory(path)
    except (OSError, ValueError):
        return None
    a = ds.attrs
    if a.get("run_fingerprint") != fingerprint or not int(a.get("completed", 0)):
        return None
    return RunResult(
        index=index,
        path=path,
        start_step=int(a["start_step"]),
        steps_done=int(a["steps_done"]),
        frames=int(ds.sizes["time"]),
        blew_up=bool(a["blew_up"]),
        reason=str(a.get("stop_reason", "")),
        drift=float(a["energy_drift"]),
        max_deviation=float(a["energy_max_deviation"]),
        drift_flagged=bool(a["drift_flagged"]),
        temperature_mean=float(a["temperature_mean"]),
        seconds=float(a["seconds"]),
        reused=True,
    )


# --- helpers -----------------------------------------------------------------------------------


def _nearest_neighbour_distance(atoms: Atoms) -> float:
    if len(atoms) < 2:
        return float("inf")
    distances = atoms.get_all_distances(mic=bool(atoms.pbc.any()))
    distances[np.diag_indices_from(distances)] = np.inf
    return float(distances.min())


def _fingerprint(
    settings: dict[str, Any], temperature: float, flux: HeatFluxMethod, atoms: Atoms
) -> str:
    """What makes two productions the same (for reusing finished parts)."""
    # the stopping keys decide how many runs, not what a run is: a production rerun with
    # another target or budget reuses the runs (and the fingerprint is the same as before
    # these keys existed)
    same = {k: v for k, v in settings.items() if k not in STOPPING_KEYS}
    text = json.dumps(
        {
            "settings": same,
            "temperature": temperature,
            "flux": flux.name,
            "symbols": atoms.get_chemical_symbols(),
            "positions": np.round(atoms.positions, 6).tolist(),
            "cell": np.round(atoms.cell.array, 6).tolist(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _finite_or_none(value: Any) -> Any:
    """JSON-friendly: non-finite floats become None."""
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return None
    return value


def _append_nvt_frame(writer: Any, work: Atoms, time_fs: float, snapshot: bool) -> None:
    """One frame of ``equilibration.nc`` (``snapshot``: a run starts from it)."""
    writer.append(
        time_fs,
        positions=work.positions,
        velocities=work.get_velocities(),
        energy_potential=work.get_potential_energy(),
        energy_kinetic=work.get_kinetic_energy(),
        temperature=work.get_temperature(),
        snapshot=float(snapshot),
    )
