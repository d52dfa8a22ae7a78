"""Green-Kubo production MD: NVT equilibration, then independent NVE runs that log the heat flux.

The production follows the protocol of FHI-vibes' Green-Kubo workflow (Knoop et al.,
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
``sample_interval`` steps; see :mod:`alkappa.models.heat_flux` for the flux conventions. With a
method that has atomic virials, their average over ``average_virial_frames`` NVT frames
(after equilibration) is subtracted from ``heat_flux`` and written as ``heat_flux_aux``, as
FHI-vibes does (it does not change κ, but removes noise). Ensemble fluxes add
``heat_flux_members`` (time, member, a), ensemble calculators ``uncertainty_*``.

Energy conservation is checked per run: the slope of the total energy per atom (least
squares, eV/atom/ps) and its largest deviation from the initial value (eV/atom) are written to
the file's attributes and returned; a run whose ``|slope|`` exceeds ``drift_threshold``, whose
deviation exceeds ``deviation_threshold`` or that blew up (the checks of
:func:`alkappa.al.explore.blow_up_reason`) is ``drift_flagged``.

The production is split into parts that can run as separate processes (the pipeline runs
each as its own Snakemake job, so the runs of a round run in parallel):
:func:`run_equilibration` (the NVT equilibration with the first ``runs`` snapshots,
``equilibration.nc``), :func:`run_nve` (one NVE run, ``run_<k>.nc``; its snapshot is read
from the NVT files, so it does not matter which runs ran before or beside it),
:func:`extend_run` (one extension segment of a finished run, ``run_<k>.seg<s>.nc``: the
run continued from its last frame when production makes its runs longer; :func:`read_run`
joins a run and its segments) and
:func:`extend_chain` (the starting snapshots of further runs, ``chain_<r>.nc``: the NVT chain
continued ``snapshot_spacing`` steps per run, the segment of run k seeded by (``seed``, k) and
started from snapshot k - 1, so snapshot k is the same however the runs are grouped).
:mod:`alkappa.greenkubo._rounds` decides how many runs there are (convergence by design) and
:func:`alkappa.greenkubo.run_production` runs it all in one process.

Restarts: a completed equilibration, chain and runs of the same settings (same fingerprint;
the stopping keys :data:`STOPPING_KEYS` are not part of it) are reused, so a killed
production continues with its first unfinished run, and a production rerun with a tighter
target or a larger budget continues where the last one stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

import numpy as np
from ase import units
from ase.calculators.calculator import PropertyNotImplementedError
from ase.constraints import FixCom
from ase.md import velocitydistribution
from ase.md.langevin import Langevin
from ase.md.verlet import VelocityVerlet
from tqdm import tqdm

from alkappa.al.explore import blow_up_reason, frame_uncertainty, thermalize
from alkappa.io.trajectory import TrajectoryWriter, read_trajectory
from alkappa.models.heat_flux import HEAT_FLUX_UNIT
from alkappa.settings import ProductionSettings, check_greenkubo_budget

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

    from ase import Atoms
    from ase.calculators.calculator import Calculator

    from alkappa.greenkubo._records import ProductionResultRecord, RunRecord
    from alkappa.io import AttrValue, NetCDFAttrs
    from alkappa.models.heat_flux import HeatFluxMethod

#: production settings and their defaults (times in fs, steps of ``timestep``; the fields of
#: :class:`~alkappa.settings.ProductionSettings`, which describes them)
DEFAULT_PRODUCTION_SETTINGS: dict[str, float | None] = ProductionSettings().to_dict()


class RoundRecord(TypedDict, total=False):
    """The decision after a round of a production (``round_<r>.json``; the pipeline adds
    ``material``). :func:`~alkappa.greenkubo._rounds.decide_round` makes the history entry
    (the keys down to ``new_runs``); :func:`~alkappa.greenkubo._rounds.run_round` adds the
    rest. ``ProductionResult.history`` holds the entries without ``runs``, ``next_runs``,
    ``extend_runs``, ``stop`` and ``material``."""

    round: int
    n_runs: int
    kappa: float
    kappa_error: float
    relative_error: float
    cutoff_found: bool  # did the run-averaged flux autocorrelation cross zero?
    max_lag_fs: float
    analysis_error: str  # why there is no kappa (all runs blew up, no VDOS peak, ...)
    simulated_ps: float
    wall_seconds: float
    projected_runs: float  # runs needed for the target if the error falls as 1/sqrt(n)
    run_steps: int  # NVE steps of each run analysed (runs are extended while it grows)
    run_ps: float
    stopped_by: str  # one of STOPPED_BY; "": production goes on
    action: str  # "extend" (the runs), "add_runs" or "" (production stops)
    next_run_steps: int  # the runs' length in the next round
    new_runs: int
    runs: list[int]  # the runs analysed
    next_runs: list[int]  # the next round's runs (empty when production stops)
    extend_runs: list[int]  # action "extend": the runs to extend to next_run_steps
    chain_stop: str  # why the chain extension ended early ("": it did not)
    nvt_seconds: float
    stop: bool
    material: str


#: settings that decide when production ends, not what a run is (not in the fingerprint)
STOPPING_KEYS = (
    "target_error",
    "max_runs",
    "max_simulated_ps",
    "max_wall_hours",
    "require_decay",
    "max_run_steps",
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

#: written to every file (see :mod:`alkappa.models.heat_flux`)
HEAT_FLUX_CONVENTION = (
    "energy current J = (1/V) [sum_ij (r_i - r_j) (dU_i/dr_j . v_j) + sum_i E_i v_i if "
    "convective] - heat_flux_aux, v in Å/fs; FHI-vibes' heat_flux is -J (same autocorrelation)"
)

#: flux and MD energies further apart than this (eV/atom) mean different models: warn
ENERGY_MISMATCH_WARNING = 1e-6


def resolve_production_settings(
    settings: ProductionSettings | Mapping[str, Any] | None,
) -> ProductionSettings:
    """The production settings of ``settings``, checked: a :class:`ProductionSettings`, or a
    mapping of some of its fields (:data:`DEFAULT_PRODUCTION_SETTINGS` for the others;
    unknown keys raise). Raises ValueError in one line naming the key."""
    out = ProductionSettings.from_dict(settings)
    positive = ("runs", "steps", "sample_interval", "snapshot_spacing", "log_interval")
    for key in (*positive, "equilibration_steps", "flush_every"):
        if int(getattr(out, key)) < 1:
            raise ValueError(f"production setting {key} must be >= 1 (got {getattr(out, key)})")
    if out.timestep <= 0 or out.friction <= 0:
        raise ValueError("timestep and friction must be positive")
    for key in ("target_error", "max_runs", "max_simulated_ps", "max_wall_hours"):
        value = getattr(out, key)
        if value is not None and not value > 0:
            raise ValueError(f"production setting {key} must be positive or None (got {value})")
    check_greenkubo_budget(out.to_dict(), "greenkubo")
    return out


def run_files(directory: str | os.PathLike[str], runs: int) -> list[Path]:
    """The NVE trajectory files of a production in ``directory``: ``run_00.nc``, ..."""
    return [run_path(directory, k) for k in range(runs)]


def run_path(directory: str | os.PathLike[str], index: int) -> Path:
    """The NVE trajectory file of run ``index``: ``run_<index:02d>.nc``."""
    return Path(directory) / f"run_{index:02d}.nc"


def segment_path(run: str | os.PathLike[str], segment: int) -> Path:
    """Extension ``segment`` (1, 2, ...) of the run in file ``run``: ``run_<k>.seg<s>.nc``."""
    run = Path(run)
    return run.parent / f"{run.stem}.seg{segment}{run.suffix}"


def max_run_steps(settings: ProductionSettings) -> int:
    """The most NVE steps a run may grow to: ``max_run_steps`` rounded down to a multiple of
    ``sample_interval``; ``steps`` (runs are not extended) when it is None or ``steps`` is
    not a multiple of ``sample_interval`` (the last step has no frame to continue from)."""
    steps, interval = int(settings.steps), int(settings.sample_interval)
    if settings.max_run_steps is None or steps % interval:
        return steps
    most = int(settings.max_run_steps)
    return max(steps, most - most % interval)


def chain_path(directory: str | os.PathLike[str], round_index: int) -> Path:
    """The NVT chain extension that holds the snapshots of round ``round_index`` (>= 1)."""
    return Path(directory) / f"chain_{round_index}.nc"


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
    segments: int = 0  # extension segments (run_<k>.seg<s>.nc) after the run's own file

    def to_dict(self) -> RunRecord:
        out = asdict(self)
        out["path"] = str(self.path)
        return cast("RunRecord", out)


@dataclass(frozen=True)
class ProductionResult:
    """A whole production at one temperature.

    ``history`` has one entry per round, the analysis of the runs finished by then
    (:func:`alkappa.greenkubo._rounds.decide_round`: ``round``, ``n_runs``, ``kappa``,
    ``kappa_error``, ``relative_error``, ``projected_runs``, ``new_runs``, ``simulated_ps``,
    ``wall_seconds``, ``action``, ``run_ps``, and ``analysis_error`` if the analysis failed);
    ``stopped_by`` is one of :data:`STOPPED_BY`; ``simulated_ps`` the NVE time of all runs
    (extensions included), ``wall_seconds`` the NVT and NVE seconds summed over all parts and
    restarts (compute time, whatever ran in parallel); ``run_steps`` and ``run_ps`` the final
    length of the runs (longer than ``steps`` when they were extended).
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
    history: list[RoundRecord] = field(default_factory=list)
    simulated_ps: float = 0.0
    wall_seconds: float = 0.0
    run_steps: int = 0
    run_ps: float = 0.0

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

    def to_dict(self) -> ProductionResultRecord:
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
            "run_steps": self.run_steps,
            "run_ps": self.run_ps,
            "history": [
                cast("RoundRecord", {k: _finite_or_none(v) for k, v in entry.items()})
                for entry in self.history
            ],
            "runs": [r.to_dict() for r in self.runs],
        }


#: a starting snapshot: (NVT step, positions, velocities)
Snapshot = tuple[int, np.ndarray, np.ndarray]


@dataclass
class Equilibration:
    """The NVT equilibration (``equilibration.nc``) and the first ``runs`` snapshots."""

    snapshots: list[Snapshot]
    average_virials: np.ndarray | None
    blew_up: bool
    reason: str
    seconds: float = 0.0  # NVT wall time
    reused: bool = False
    last: Snapshot | None = None  # the last state, where the chain continues


@dataclass(frozen=True)
class Chain:
    """The snapshots of a chain extension (``chain_<r>.nc``): runs ``first_run``, ... ."""

    path: Path
    first_run: int
    snapshots: list[Snapshot]
    reason: str  # the blow-up that ended it early ("" : none)
    seconds: float
    reused: bool = False


# --- the parts of a production -----------------------------------------------------------------


def production_fingerprint(
    settings: ProductionSettings, temperature: float, flux_name: str, atoms: Atoms
) -> str:
    """What makes two productions the same (for reusing finished parts)."""
    # the stopping keys decide how many runs, not what a run is: a production rerun with
    # another target or budget reuses the runs (and the fingerprint is the same as before
    # these keys existed)
    same = {
        k: v
        for k, v in resolve_production_settings(settings).to_dict().items()
        if k not in STOPPING_KEYS
    }
    text = json.dumps(
        {
            "settings": same,
            "temperature": temperature,
            "flux": flux_name,
            "symbols": atoms.get_chemical_symbols(),
            "positions": np.round(atoms.positions, 6).tolist(),
            "cell": np.round(atoms.cell.array, 6).tolist(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_equilibration(
    atoms: Atoms,
    calculator: Calculator,
    flux: HeatFluxMethod,
    path: str | os.PathLike[str],
    *,
    temperature: float,
    settings: ProductionSettings | Mapping[str, Any] | None = None,
    attrs: NetCDFAttrs | None = None,
    progress: bool = True,
) -> Equilibration:
    """Langevin NVT at ``temperature`` from ``atoms``: the first ``runs`` starting snapshots,
    ``snapshot_spacing`` steps apart after ``equilibration_steps``, and the average atomic
    virial (if ``flux`` has ``atomic_virials``), written to ``path/equilibration.nc``. A
    completed equilibration of the same production there is reused. ``blew_up`` says whether
    the MD blew up (then there are no runs)."""
    settings = resolve_production_settings(settings)
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    fingerprint = production_fingerprint(settings, temperature, flux.name, atoms)
    eq_path = directory / EQUILIBRATION_FILE
    done = _load_equilibration(eq_path, atoms, fingerprint)
    if done is not None:
        return done
    return _equilibrate(
        atoms,
        calculator,
        flux,
        eq_path,
        temperature,
        settings,
        _limits(atoms, temperature, settings),
        _common_attrs(settings, temperature, fingerprint, flux.name, attrs),
        progress,
    )


def run_nve(
    index: int,
    atoms: Atoms,
    calculator: Calculator,
    flux: HeatFluxMethod,
    path: str | os.PathLike[str],
    *,
    temperature: float,
    settings: ProductionSettings | Mapping[str, Any] | None = None,
    attrs: NetCDFAttrs | None = None,
    progress: bool = True,
    steps: int | None = None,
) -> RunResult:
    """NVE run ``index`` of the production in ``path`` (``run_<index:02d>.nc``), from its
    snapshot in ``equilibration.nc`` or a ``chain_<r>.nc`` (which must exist); a completed
    run of the same production is reused (``reused``, as long as it is, even if shorter
    than ``steps``: :func:`extend_run` continues it).

    ``steps``: the run's NVE steps (None: ``steps`` of the settings; longer once production
    has extended its runs). The flux's ``average_virials`` (if it has them) are set from the
    equilibration.
    """
    settings = resolve_production_settings(settings)
    directory = Path(path)
    fingerprint = production_fingerprint(settings, temperature, flux.name, atoms)
    out = run_path(directory, index)
    done = _load_run(out, fingerprint, index)
    if done is not None:
        return done
    equilibration = _load_equilibration(directory / EQUILIBRATION_FILE, atoms, fingerprint)
    if equilibration is None:
        raise FileNotFoundError(
            f"{directory / EQUILIBRATION_FILE}: no completed equilibration of this production "
            f"for run {index}"
        )
    snapshot = _find_snapshot(directory, index, equilibration, atoms, fingerprint)
    if hasattr(flux, "average_virials"):
        flux.average_virials = equilibration.average_virials  # type: ignore[attr-defined]
    common = _common_attrs(settings, temperature, fingerprint, flux.name, attrs)
    run_attrs = {**common, "average_virial_subtracted": equilibration.average_virials is not None}
    return _nve_run(
        index,
        out,
        snapshot,
        atoms,
        calculator,
        flux,
        temperature,
        settings,
        _limits(atoms, temperature, settings),
        run_attrs,
        progress,
        last_step=int(settings.steps if steps is None else steps),
    )


def extend_run(
    index: int,
    atoms: Atoms,
    calculator: Calculator,
    flux: HeatFluxMethod,
    path: str | os.PathLike[str],
    *,
    steps: int,
    temperature: float,
    settings: ProductionSettings | Mapping[str, Any] | None = None,
    attrs: dict[str, Any] | None = None,
    progress: bool = True,
) -> RunResult:
    """Run ``index`` of the production in ``path`` brought to ``steps`` NVE steps: one
    extension segment ``run_<index:02d>.seg<s>.nc`` continues the velocity-Verlet
    trajectory from the last frame of the run and its segments so far (positions and
    velocities; the forces are recomputed) up to step ``steps``.

    The run (``run_<index:02d>.nc``) must be finished. Finished files are never rewritten:
    finished segments of the same production are reused, an unfinished one (a kill) is
    redone; a run that blew up, or is already that long, is returned as it is. Returns the
    whole run (:func:`read_run`: the file and its segments) up to ``steps``.
    """
    settings = resolve_production_settings(settings)
    directory = Path(path)
    fingerprint = production_fingerprint(settings, temperature, flux.name, atoms)
    out = run_path(directory, index)
    done = _load_run(out, fingerprint, index)
    if done is None:
        raise FileNotFoundError(f"{out}: run {index} is not finished, so it cannot be extended")
    steps = int(steps)
    if done.blew_up or done.steps_done >= steps:
        return _load_run(out, fingerprint, index, steps=steps) or done
    dt, interval = settings.timestep, int(settings.sample_interval)
    if done.steps_done % interval or steps % interval:
        raise ValueError(
            f"run {index}: {done.steps_done} -> {steps} steps: an extension starts and ends at a "
            f"frame, so both must be multiples of sample_interval ({interval})"
        )
    whole = read_run(out)
    if not np.isclose(float(whole["time"].values[-1]), done.steps_done * dt):
        raise ValueError(f"{out}: the last frame is not at step {done.steps_done}")
    begin = (done.start_step, whole["positions"].values[-1], whole["velocities"].values[-1])
    equilibration = _load_equilibration(directory / EQUILIBRATION_FILE, atoms, fingerprint)
    if equilibration is None:
        raise FileNotFoundError(
            f"{directory / EQUILIBRATION_FILE}: no completed equilibration of this production "
            f"for run {index}"
        )
    if hasattr(flux, "average_virials"):
        flux.average_virials = equilibration.average_virials  # type: ignore[attr-defined]
    common = _common_attrs(settings, temperature, fingerprint, flux.name, attrs)
    run_attrs = {**common, "average_virial_subtracted": equilibration.average_virials is not None}
    segment = done.segments + 1
    _nve_run(
        index,
        segment_path(out, segment),
        begin,
        atoms,
        calculator,
        flux,
        temperature,
        settings,
        _limits(atoms, temperature, settings),
        run_attrs,
        progress,
        first_step=done.steps_done,
        last_step=steps,
        segment=segment,
    )
    extended = _load_run(out, fingerprint, index, steps=steps)
    if extended is None or extended.segments != segment:
        raise RuntimeError(f"{segment_path(out, segment)} does not continue {out}")
    return replace(extended, reused=False)


def read_run(path: str | os.PathLike[str], *, steps: int | None = None) -> Any:
    """The NVE run in file ``path`` with its extension segments (``run_<k>.seg1.nc``, ...)
    as one trajectory (an :class:`xarray.Dataset`), up to step ``steps`` (None: all).

    A segment belongs to the run if it is finished, has the run's fingerprint and number and
    continues it: it starts at the step where the run so far ends, and its first frame is
    the run's last (positions and velocities; that frame is dropped). The first segment that
    does not (a kill, a stale file) and those after it are left out, as are segments after
    one that blew up. The attributes are the run file's, with ``steps_done``, ``blew_up``,
    ``stop_reason``, ``seconds`` and the energy-drift ones for the whole run and
    ``segments``. A file without segments (also one FHI-vibes wrote) is read as it is.
    """
    import xarray as xr

    path = Path(path)
    ds = read_trajectory(path)
    parts = []
    a = ds.attrs
    end = ds
    while not int(end.attrs.get("blew_up", 0)) and "steps_done" in end.attrs:
        if steps is not None and int(end.attrs["steps_done"]) >= steps:
            break
        seg = _read_segment(segment_path(path, len(parts) + 1), end, a, len(parts) + 1)
        if seg is None:
            break
        parts.append(seg)
        end = seg
    if not parts and (steps is None or "steps_done" not in a or int(a["steps_done"]) <= steps):
        return ds
    out = xr.concat(
        [ds, *(p.isel(time=slice(1, None)) for p in parts)],
        dim="time",
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="outer",
        combine_attrs="override",
    )
    out.attrs = dict(a)
    done = int(end.attrs["steps_done"])
    if steps is not None and done > steps:
        dt = float(a["timestep"])
        out = out.isel(time=np.flatnonzero(out["time"].values <= steps * dt + 1e-6 * dt))
        done = steps
    n_atoms = int(out.sizes.get("I", len(out["positions"].values[0])))
    drift, deviation = energy_drift(
        out["time"].values,
        (out["energy_potential"].values + out["energy_kinetic"].values) / n_atoms,
    )
    blew_up = bool(int(end.attrs.get("blew_up", 0))) and done == int(end.attrs["steps_done"])
    out.attrs.update(
        {
            "steps_done": done,
            "blew_up": int(blew_up),
            "stop_reason": str(end.attrs.get("stop_reason", "")) if blew_up else "",
            "energy_drift": drift,
            "energy_max_deviation": deviation,
            "drift_flagged": int(
                blew_up
                or not abs(drift) <= float(a.get("drift_threshold", np.inf))
                or not deviation <= float(a.get("deviation_threshold", np.inf))
            ),
            "temperature_mean": float(np.nanmean(out["temperature"].values)),
            "seconds": float(a.get("seconds", 0.0))
            + sum(float(p.attrs.get("seconds", 0.0)) for p in parts),
            "segments": len(parts),
        }
    )
    return out


def _read_segment(path: Path, before: Any, run_attrs: dict[str, Any], segment: int) -> Any:
    """Extension ``segment`` in ``path`` if it is finished and continues ``before``."""
    if not path.is_file():
        return None
    try:
        seg = read_trajectory(path)
    except (OSError, ValueError):
        return None
    a = seg.attrs
    if (
        a.get("run_fingerprint") != run_attrs.get("run_fingerprint")
        or a.get("model_fingerprint") != run_attrs.get("model_fingerprint")
        or not int(a.get("completed", 0))
        or int(a.get("segment", -1)) != segment
        or int(a.get("run_index", -1)) != int(run_attrs.get("run_index", -2))
        or int(a.get("first_step", -1)) != int(before.attrs["steps_done"])
        or seg.sizes["time"] < 2
    ):
        return None
    # continuity: the segment starts where the run so far ends
    same = np.isclose(float(seg["time"].values[0]), float(before["time"].values[-1]))
    for name in ("positions", "velocities"):
        same = same and np.allclose(
            seg[name].values[0], before[name].values[-1], rtol=1e-12, atol=1e-12
        )
    return seg if same else None


def extend_chain(
    atoms: Atoms,
    calculator: Calculator,
    path: str | os.PathLike[str],
    round_index: int,
    first_run: int,
    n_runs: int,
    *,
    temperature: float,
    flux_name: str,
    settings: ProductionSettings | Mapping[str, Any] | None = None,
    attrs: NetCDFAttrs | None = None,
    progress: bool = True,
) -> Chain:
    """The starting snapshots of runs ``first_run``, ..., ``first_run + n_runs - 1``: the NVT
    chain continued ``snapshot_spacing`` Langevin steps per run, written to
    ``path/chain_<round_index>.nc`` after each segment.

    The segment of run k starts from snapshot k - 1 (the first extension: from the last
    frame of ``equilibration.nc``) and its random numbers are seeded by (``seed``, k), so a
    snapshot is the same whichever round makes it, and a segment lost to a kill is redone
    identically; the completed segments of the file are reused. A segment that blows up ends
    the chain (``reason``; the snapshots before it are kept).
    """
    settings = resolve_production_settings(settings)
    directory = Path(path)
    fingerprint = production_fingerprint(settings, temperature, flux_name, atoms)
    out = chain_path(directory, round_index)
    done = _load_chain(out, atoms, fingerprint)
    if done is not None and done.first_run == first_run:
        if len(done.snapshots) >= n_runs or done.reason:
            return replace(done, snapshots=done.snapshots[:n_runs], reused=True)
        ds = read_trajectory(out)
        attrs_done = {
            k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in ds.attrs.items()
        }
        writer = TrajectoryWriter(out, reference=atoms, attrs=attrs_done)
        writer.load(ds)
        snapshots = list(done.snapshots)
        seconds = done.seconds
    else:
        common = _common_attrs(settings, temperature, fingerprint, flux_name, attrs)
        writer = TrajectoryWriter(
            out,
            reference=atoms,
            attrs={
                "ensemble": "NVT Langevin",
                "friction": settings.friction,
                **common,
                "round": round_index,
                "first_run": first_run,
                "n_snapshots": 0,
                "completed": False,
            },
        )
        snapshots, seconds = [], 0.0
    limits = _limits(atoms, temperature, settings)
    reason = ""
    while len(snapshots) < n_runs:
        k = first_run + len(snapshots)
        if snapshots:
            begin = snapshots[-1]
        elif first_run == int(settings.runs):
            equilibration = _load_equilibration(directory / EQUILIBRATION_FILE, atoms, fingerprint)
            if equilibration is None or equilibration.last is None:
                raise FileNotFoundError(
                    f"{directory / EQUILIBRATION_FILE}: no completed equilibration to continue"
                )
            begin = equilibration.last
        else:
            begin = _find_snapshot(directory, first_run - 1, None, atoms, fingerprint)
        segment_start = time.perf_counter()
        snapshot, reason = _chain_segment(
            writer, begin, k, atoms, calculator, settings, limits, progress
        )
        seconds += time.perf_counter() - segment_start
        if reason:
            break
        snapshots.append(snapshot)
        writer.attrs.update(
            {
                "snapshot_steps": [s[0] for s in snapshots],
                "n_snapshots": len(snapshots),
                "steps_done": snapshot[0],
                "seconds": seconds,
            }
        )
        writer.flush()  # a kill loses at most the segment it interrupts
    writer.attrs.update({"seconds": seconds, "blew_up": bool(reason), "stop_reason": reason})
    writer.attrs["completed"] = True
    writer.flush()
    return Chain(out, first_run, snapshots, reason, seconds)


def _limits(atoms: Atoms, temperature: float, settings: ProductionSettings) -> dict[str, float]:
    """The blow-up checks of the MD (:func:`alkappa.al.explore.blow_up_reason`)."""
    return {
        "target_temperature": temperature,
        "max_force": settings.max_force,
        "min_distance": settings.min_distance_fraction * _nearest_neighbour_distance(atoms),
        "max_temperature_factor": settings.max_temperature_factor,
    }


def _common_attrs(
    settings: ProductionSettings,
    temperature: float,
    fingerprint: str,
    flux_name: str,
    attrs: NetCDFAttrs | None,
) -> dict[str, AttrValue]:
    """The attributes of every file of a production."""
    return {
        "temperature_target": temperature,
        "timestep": settings.timestep,
        "run_fingerprint": fingerprint,
        "heat_flux_method": flux_name,
        "heat_flux_unit": HEAT_FLUX_UNIT,
        "heat_flux_convention": HEAT_FLUX_CONVENTION,
        "velocity_unit": "ASE (Å per ASE time unit; times ase.units.fs gives Å/fs)",
        **(attrs or {}),
    }


def _find_snapshot(
    directory: Path,
    index: int,
    equilibration: Equilibration | None,
    atoms: Atoms,
    fingerprint: str,
) -> Snapshot:
    """The starting snapshot of run ``index``: in the equilibration or a chain file."""
    if equilibration is None:
        equilibration = _load_equilibration(directory / EQUILIBRATION_FILE, atoms, fingerprint)
    if equilibration is not None and index < len(equilibration.snapshots):
        return equilibration.snapshots[index]
    for path in sorted(directory.glob("chain_*.nc")):
        chain = _load_chain(path, atoms, fingerprint)
        if chain is not None and 0 <= index - chain.first_run < len(chain.snapshots):
            return chain.snapshots[index - chain.first_run]
    raise FileNotFoundError(f"{directory}: no NVT snapshot of this production for run {index}")


# --- NVT ---------------------------------------------------------------------------------------


def _equilibrate(
    atoms: Atoms,
    calculator: Calculator,
    flux: HeatFluxMethod,
    path: Path,
    temperature: float,
    settings: ProductionSettings,
    limits: dict[str, float],
    attrs: NetCDFAttrs,
    progress: bool,
) -> Equilibration:
    """Langevin NVT; snapshots for the runs and atomic virials for their average."""
    start = time.perf_counter()
    work = atoms.copy()
    work.calc = calculator
    rng = np.random.default_rng(settings.seed)
    thermalize(work, temperature, rng)
    work.set_constraint(FixCom())
    dyn = Langevin(
        work,
        timestep=settings.timestep * units.fs,
        temperature_K=temperature,
        friction=settings.friction / units.fs,
        rng=rng,
        fixcm=False,
    )
    n_eq, spacing, runs = (
        int(settings.equilibration_steps),
        int(settings.snapshot_spacing),
        int(settings.runs),
    )
    snapshot_steps = [n_eq + r * spacing for r in range(runs)]
    # the average virial from frames spread over at least one snapshot spacing
    total = n_eq + max(runs - 1, 1) * spacing
    n_virial = int(settings.average_virial_frames) if hasattr(flux, "atomic_virials") else 0
    virial_steps = set(np.rint(np.linspace(n_eq, total, n_virial)).astype(int).tolist())
    writer = TrajectoryWriter(
        path,
        reference=atoms,
        attrs={"ensemble": "NVT Langevin", "friction": settings.friction, **attrs},
    )
    snapshots: list[tuple[int, np.ndarray, np.ndarray]] = []
    virials: list[np.ndarray] = []
    dt = settings.timestep

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
            logged = is_snapshot or step % settings.log_interval == 0 or step == total
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
    last = (step, work.positions.copy(), work.get_velocities().copy())
    return Equilibration(snapshots, average, bool(reason), reason, seconds, last=last)


def _chain_segment(
    writer: TrajectoryWriter,
    begin: Snapshot,
    index: int,
    atoms: Atoms,
    calculator: Calculator,
    settings: ProductionSettings,
    limits: dict[str, float],
    progress: bool,
) -> tuple[Snapshot, str]:
    """The starting snapshot of run ``index``: ``snapshot_spacing`` Langevin steps from
    ``begin``, its frames appended to ``writer``; or the blow-up reason."""
    dt = settings.timestep
    step, positions, velocities = begin
    work = atoms.copy()
    work.calc = calculator
    work.positions = positions
    work.set_velocities(velocities)
    work.set_constraint(FixCom())
    rng = np.random.default_rng([int(settings.seed), index])
    dyn = Langevin(
        work,
        timestep=dt * units.fs,
        temperature_K=limits["target_temperature"],
        friction=settings.friction / units.fs,
        rng=rng,
        fixcm=False,
    )
    target = step + int(settings.snapshot_spacing)
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
            logged = step == target or step % settings.log_interval == 0
            reason = blow_up_reason(work, work.get_forces(), check_distances=logged, **limits)
            if reason:
                return begin, reason
            if logged:
                _append_nvt_frame(writer, work, step * dt, step == target)
    finally:
        bar.close()
    return (target, work.positions.copy(), work.get_velocities().copy()), ""


def _load_chain(path: Path, reference: Atoms, fingerprint: str) -> Chain | None:
    """The snapshots of a chain file of this production (complete or not), or None."""
    ds = _read_own(path, reference, fingerprint)
    if ds is None:
        return None
    # (an empty list is no netCDF attribute: the count says whether there are steps)
    n = int(ds.attrs.get("n_snapshots", 0))
    steps = [int(s) for s in np.atleast_1d(ds.attrs["snapshot_steps"])][:n] if n else []
    snapshots: list[Snapshot] = []
    if steps:
        chosen = ds.isel(time=np.flatnonzero(ds["snapshot"].values > 0.5))
        if len(chosen["time"]) < len(steps):
            return None
        snapshots = [
            (step, chosen["positions"].values[k], chosen["velocities"].values[k])
            for k, step in enumerate(steps)
        ]
    return Chain(
        path,
        int(ds.attrs["first_run"]),
        snapshots,
        str(ds.attrs.get("stop_reason", "")),
        float(ds.attrs.get("seconds", 0.0)),
    )


def _read_own(path: Path, reference: Atoms, fingerprint: str) -> Any:
    """The NVT file ``path`` if this production wrote it (else None)."""
    if not path.is_file():
        return None
    try:
        ds = read_trajectory(path)
    except (OSError, ValueError):
        return None
    if ds.attrs.get("run_fingerprint") != fingerprint:
        return None
    if not np.allclose(ds["positions_reference"].values, reference.positions):
        return None
    return ds


def _load_equilibration(path: Path, reference: Atoms, fingerprint: str) -> Equilibration | None:
    """A completed equilibration of this production, or None."""
    ds = _read_own(path, reference, fingerprint)
    if ds is None or not int(ds.attrs.get("completed", 0)):
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
    dt = float(ds.attrs["timestep"])
    last = (
        round(float(ds["time"].values[-1]) / dt),
        ds["positions"].values[-1],
        ds["velocities"].values[-1],
    )
    seconds = float(ds.attrs.get("seconds", 0.0))
    return Equilibration(snapshots, average, False, "", seconds, reused=True, last=last)


# --- NVE ---------------------------------------------------------------------------------------


def _nve_run(
    index: int,
    path: Path,
    snapshot: tuple[int, np.ndarray, np.ndarray],
    atoms: Atoms,
    calculator: Calculator,
    flux: HeatFluxMethod,
    temperature: float,
    settings: ProductionSettings,
    limits: dict[str, float],
    attrs: NetCDFAttrs,
    progress: bool,
    *,
    last_step: int | None = None,
    first_step: int = 0,
    segment: int = 0,
) -> RunResult:
    """NVE from ``snapshot`` (NVT step, positions, velocities) to step ``last_step`` (None:
    ``steps``) into ``path``. ``segment`` > 0: an extension of a run, continued from its
    frame at step ``first_step`` (``snapshot`` holds that frame's state; the momentum is
    not reset, so the trajectory is the one an uninterrupted run would have made)."""
    start = time.perf_counter()
    start_step, positions, velocities = snapshot
    work = atoms.copy()
    work.calc = calculator
    work.positions = positions
    work.set_velocities(velocities)
    if not segment:
        velocitydistribution.Stationary(work)
    dt = settings.timestep
    interval = int(settings.sample_interval)
    n_steps = int(settings.steps if last_step is None else last_step)
    dyn = VelocityVerlet(work, timestep=dt * units.fs)
    extra = {"segment": segment, "first_step": first_step} if segment else {}
    writer = TrajectoryWriter(
        path,
        reference=atoms,
        attrs={
            "ensemble": "NVE",
            "run_index": index,
            "start_step": start_step,
            "sample_interval": interval,
            "completed": False,
            **extra,
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
        values: dict[str, np.ndarray | float] = {
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
    step = first_step
    bar = tqdm(
        total=n_steps - first_step,
        desc=f"NVE {index + 1}{f'.{segment}' if segment else ''} {temperature:g} K",
        disable=not progress,
        unit="step",
    )
    try:
        log(step)
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
                if len(writer) % int(settings.flush_every) == 0:
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
        or not abs(drift) <= settings.drift_threshold
        or not deviation <= settings.deviation_threshold
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
            "drift_threshold": settings.drift_threshold,
            "deviation_threshold": settings.deviation_threshold,
            "drift_flagged": flagged,
            "temperature_mean": result.temperature_mean,
            "flux_energy_mismatch_per_atom": mismatch,
            "seconds": result.seconds,
            "completed": True,
        }
    )
    writer.flush()
    return result


def _load_run(
    path: Path, fingerprint: str, index: int, *, steps: int | None = None
) -> RunResult | None:
    """The result of a completed run of this production, or None: the run file with its
    extension segments up to step ``steps`` (:func:`read_run`; None: all of them)."""
    if not path.is_file():
        return None
    try:
        ds = read_run(path, steps=steps)
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
        blew_up=bool(int(a["blew_up"])),
        reason=str(a.get("stop_reason", "")),
        drift=float(a["energy_drift"]),
        max_deviation=float(a["energy_max_deviation"]),
        drift_flagged=bool(int(a["drift_flagged"])),
        temperature_mean=float(a["temperature_mean"]),
        seconds=float(a["seconds"]),
        reused=True,
        segments=int(a.get("segments", 0)),
    )


# --- helpers -----------------------------------------------------------------------------------


def _nearest_neighbour_distance(atoms: Atoms) -> float:
    if len(atoms) < 2:
        return float("inf")
    distances = atoms.get_all_distances(mic=bool(atoms.pbc.any()))
    distances[np.diag_indices_from(distances)] = np.inf
    return float(distances.min())


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
