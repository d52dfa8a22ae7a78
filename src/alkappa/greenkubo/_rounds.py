"""Convergence by design: Green-Kubo production in rounds of independent NVE runs.

Round 0 is the first ``runs`` runs (from the snapshots of the equilibration). After each
round the finished (not blown-up) runs are analysed with
:func:`alkappa.greenkubo.run_green_kubo` (:func:`decide_round`); while the relative standard
error of the scalar kappa (``kappa_scalar_error / |kappa_scalar|``) exceeds ``target_error``,
the next round gets the runs projected to reach it (the error of a mean over n independent
runs falls as 1/sqrt(n), so about n (err/target)^2 runs are needed), at most as many as
there are (the error of a few runs is itself uncertain: doubling bounds the overshoot) and
at least one, within the budgets; their starting snapshots continue the NVT chain
(:func:`alkappa.greenkubo._production.extend_chain`). The runs of a round are independent,
so the pipeline runs them as parallel jobs; :func:`run_production` runs them one after the
other. Which runs a production makes depends only on the settings and the analyses, never
on how many ran at once.

Production ends when the target is reached or when the budget allows no further run:
``max_runs``, ``max_simulated_ps`` (NVE time over all runs) or ``max_wall_hours`` (the NVT
and NVE seconds summed over all parts and restarts: compute time, not elapsed time, so the
answer does not depend on how many runs ran at once; a further run is expected to cost the
mean of the runs so far, plus its NVT segment); a round is cut to what the budgets allow. A
warning says when the projected runs exceed the budget.

Runs too short: if the run-averaged autocorrelation has no zero within the lags a run allows
(half its length), the integral is truncated whatever the number of runs. With
``max_run_steps`` set (above ``steps``), the next round then *extends* every run that did not
blow up instead (``action = "extend"``; adding runs is ``"add_runs"``): its NVE trajectory
is continued from its last frame (positions and velocities, the velocity-Verlet state; the
forces are recomputed) to double its length, at most ``max_run_steps`` and what
``max_simulated_ps`` and ``max_wall_hours`` allow (an extension of n runs by s steps costs
n s timesteps and, expected, n s times the seconds per step so far; ``max_runs`` counts runs,
not their length); a budget that allows no extension ends production with its name
(and a warning that kappa is truncated). Each extension is a file of its own,
``run_<k>.seg<s>.nc`` (:func:`~alkappa.greenkubo._production.extend_run`), so finished
files are never rewritten, and every reader joins a run's segments
(:func:`~alkappa.greenkubo._production.read_run`, which checks that each starts where the
run so far ends). Runs added later are made at the current length at once (the same
trajectory as a shorter run extended). Only runs at ``max_run_steps`` (or with it None, the
default, or equal to ``steps``) that still show no zero stop production with
``stopped_by = "runs_too_short"`` and a warning to make the runs longer (``require_decay``
False: it goes on as if the cutoff were found). With ``target_error`` None exactly ``runs``
runs of ``steps`` are made (``stopped_by = "fixed_runs"``). A chain extension that blows up
ends production after the runs whose snapshots it made (``nvt_blew_up``).

Each round's decision is a JSON-able record (``round_<r>.json`` in the pipeline):
:func:`run_round` makes it (``action``; ``run_steps``/``run_ps``, the length of the runs it
analysed; ``next_run_steps``, their length in the next round) and
:func:`collect_production` turns the records into the
:class:`~alkappa.greenkubo._production.ProductionResult` (``run_steps``, ``run_ps``: the
final length). Restarts: finished runs and segments of the same production are reused, an
unfinished segment is redone, and :func:`run_round` makes the segments a round needs that
are missing when it is given the flux (the pipeline can make them in parallel jobs before).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alkappa.greenkubo._production import (
    EQUILIBRATION_FILE,
    ProductionResult,
    RoundRecord,
    RunResult,
    _load_run,
    extend_chain,
    extend_run,
    max_run_steps,
    production_fingerprint,
    read_run,
    resolve_production_settings,
    run_equilibration,
    run_nve,
    run_path,
)
from alkappa.io import read_json, write_json
from alkappa.io.trajectory import open_trajectory
from alkappa.settings import AnalysisSettings, ProductionSettings

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Mapping

    from ase import Atoms
    from ase.calculators.calculator import Calculator

    from alkappa.io import NetCDFAttrs
    from alkappa.models.heat_flux import HeatFluxMethod


def round_path(directory: str | os.PathLike[str], round_index: int) -> Path:
    """The decision record of round ``round_index``: ``round_<r>.json``."""
    return Path(directory) / f"round_{round_index}.json"


def round_run_steps(
    settings: ProductionSettings | Mapping[str, Any] | None, previous: RoundRecord | None
) -> int:
    """The NVE steps of every run analysed after a round: ``steps`` (round 0), else what
    the ``previous`` round's record set (``next_run_steps``; longer when it extended them)."""
    if previous is None or "next_run_steps" not in previous:
        return int(resolve_production_settings(settings).steps)
    return int(previous["next_run_steps"])


def round_runs(
    settings: ProductionSettings | Mapping[str, Any] | None, previous: RoundRecord | None
) -> list[int]:
    """The runs analysed after a round: the first ``runs`` (round 0), else the runs of the
    ``previous`` round's record and the runs it added."""
    if previous is None:
        return list(range(int(resolve_production_settings(settings).runs)))
    return [*previous["runs"], *previous["next_runs"]]


def decide_round(
    round_index: int,
    runs: list[RunResult],
    *,
    settings: ProductionSettings | Mapping[str, Any],
    analysis: AnalysisSettings | Mapping[str, Any] | None = None,
    temperature: float,
    nvt_seconds: float = 0.0,
    chain_stop: str = "",
    run_steps: int | None = None,
) -> RoundRecord:
    """Analyse the finished ``runs`` and decide whether production goes on (module docstring):
    stop, extend the runs or add runs.

    Parameters
    ----------
    round_index
        The round just finished (0: the first ``runs`` runs).
    runs
        All runs made so far.
    settings
        Production settings (:class:`~alkappa.settings.ProductionSettings`, or a mapping of
        some of its fields).
    analysis
        The analysis (:class:`~alkappa.settings.AnalysisSettings`, or a mapping of
        :func:`alkappa.greenkubo.run_green_kubo`'s keywords). With ``target_error`` None the
        runs are analysed only if this is given.
    temperature
        For the messages (K).
    nvt_seconds
        The seconds of the NVT parts so far (equilibration and chain extensions).
    chain_stop
        Why the chain extension of the previous round ended early ("" : it did not).
    run_steps
        The NVE steps of each run (None: ``steps``; more once the runs were extended).

    Returns
    -------
    dict
        The round's history entry (``round``, ``n_runs``, ``kappa``, ``kappa_error``,
        ``relative_error``, ``projected_runs``, ``simulated_ps``, ``wall_seconds``,
        ``run_steps``, ``run_ps``, ...) with ``stopped_by`` ("" : go on), ``action``
        ("extend", "add_runs" or "" when it stops), ``next_run_steps`` (the runs' length in
        the next round) and ``new_runs`` (runs the next round adds).
    """
    settings = resolve_production_settings(settings)
    target = settings.target_error
    steps = int(settings.steps if run_steps is None else run_steps)
    length = {"run_steps": steps, "run_ps": steps * settings.timestep / 1000.0}
    totals = _totals(runs, settings, nvt_seconds)
    if target is None:
        entry = {**_analyse(runs, analysis), **totals} if analysis is not None else dict(totals)
        entry.update(round=round_index, n_runs=len(runs), **length)
        entry.update(stopped_by="fixed_runs", action="", next_run_steps=steps, new_runs=0)
        return entry
    entry = {"round": round_index, **_analyse(runs, analysis), **totals, **length}
    entry["projected_runs"] = _projected_runs(len(runs), entry["relative_error"], target)
    undecayed = settings.require_decay and entry.get("cutoff_found") is False
    if undecayed and steps < max_run_steps(settings):
        stopped_by, next_steps = _extension(entry, runs, settings)
        if stopped_by:
            _warn_truncated(
                entry,
                temperature,
                f"the budget {stopped_by} leaves no time to extend the runs, so production "
                f"stops with it",
            )
        entry.update(
            stopped_by=stopped_by,
            action="" if stopped_by else "extend",
            next_run_steps=next_steps,
            new_runs=0,
        )
        return entry
    stopped_by, new_runs = _next_round(entry, runs, settings, chain_stop)
    if entry["relative_error"] > target:
        _warn_if_out_of_budget(entry, runs, settings, temperature)
    if stopped_by == "runs_too_short":
        if settings.max_run_steps is None:
            how = (
                f"set greenkubo.max_run_steps (e.g. 8 x steps; a rerun extends the runs made "
                f"so far) or raise greenkubo.steps, now {settings.steps} (a rerun starts afresh)"
            )
        else:
            how = (
                f"raise greenkubo.max_run_steps, now {max_run_steps(settings)} steps, which "
                f"the runs have reached (a rerun extends the runs made so far)"
            )
        _warn_truncated(
            entry,
            temperature,
            f"more runs of this length would not fix it; production stops. Make the runs "
            f"longer: {how}",
        )
    entry.update(
        stopped_by=stopped_by,
        action="" if stopped_by else "add_runs",
        next_run_steps=steps,
        new_runs=new_runs,
    )
    return entry


def _warn_truncated(entry: RoundRecord, temperature: float, what: str) -> None:
    warnings.warn(
        f"{temperature:g} K: the heat-flux autocorrelation does not cross zero within "
        f"{entry['max_lag_fs'] / 1000:g} ps (half a run of {entry['run_ps']:g} ps): kappa "
        f"is a truncated integral and {what}",
        stacklevel=3,
    )


def run_round(
    directory: str | os.PathLike[str],
    round_index: int,
    previous: RoundRecord | None,
    *,
    atoms: Atoms,
    calculator: Calculator | Callable[[], Calculator],
    flux_name: str,
    temperature: float,
    settings: ProductionSettings | Mapping[str, Any] | None = None,
    attrs: NetCDFAttrs | None = None,
    analysis: AnalysisSettings | Mapping[str, Any] | None = None,
    progress: bool = True,
    flux: HeatFluxMethod | Callable[[], HeatFluxMethod] | None = None,
) -> RoundRecord:
    """The decision after round ``round_index`` (:func:`decide_round` on all runs so far,
    which must be finished, at the length the round before set) and, if production goes on
    with more runs, the starting snapshots of the next round's runs
    (:func:`~alkappa.greenkubo._production.extend_chain`).

    ``previous`` is the record of the round before (None for round 0); ``calculator`` may be
    a function that makes it (called only when the chain is extended or a run extended).
    A run shorter than this round's length (:func:`round_run_steps`) that did not blow up is
    extended to it here (:func:`~alkappa.greenkubo._production.extend_run`; the pipeline may
    make the segments in parallel jobs before) if ``flux`` (the heat-flux method, or a
    function that makes it) is given; else that raises FileNotFoundError. Returns the round's
    record: its history entry, ``runs`` (analysed), ``next_runs`` (added by the next round;
    empty when production stops or extends the runs), ``stop`` and ``chain_stop`` (why the
    chain ended early).
    """
    settings = resolve_production_settings(settings)
    directory = Path(directory)
    fingerprint = production_fingerprint(settings, temperature, flux_name, atoms)
    indices = round_runs(settings, previous)
    length = round_run_steps(settings, previous)
    runs = []
    for k in indices:
        run = _load_run(run_path(directory, k), fingerprint, k, steps=length)
        if run is None:
            raise FileNotFoundError(f"{run_path(directory, k)}: run {k} is not finished")
        if not run.blew_up and run.steps_done < length:
            if flux is None:
                raise FileNotFoundError(
                    f"{run_path(directory, k)}: run {k} has {run.steps_done} steps, not yet "
                    f"extended to {length} (run_<k>.seg<s>.nc)"
                )
            flux = _made(flux, "heat_flux")
            calculator = _made(calculator, "get_forces")
            run = extend_run(
                k,
                atoms,
                calculator,  # type: ignore[arg-type]
                flux,  # type: ignore[arg-type]
                directory,
                steps=length,
                temperature=temperature,
                settings=settings,
                attrs=attrs,
                progress=progress,
            )
        runs.append(run)
    if previous is None:
        with open_trajectory(directory / EQUILIBRATION_FILE) as ds:
            nvt_seconds = float(ds.attrs.get("seconds", 0.0))
    else:
        nvt_seconds = float(previous["nvt_seconds"])
    entry = decide_round(
        round_index,
        runs,
        settings=settings,
        analysis=analysis,
        temperature=temperature,
        nvt_seconds=nvt_seconds,
        chain_stop=previous.get("chain_stop", "") if previous else "",
        run_steps=length,
    )
    record = {**entry, "runs": indices, "next_runs": [], "chain_stop": ""}
    record["nvt_seconds"] = nvt_seconds
    if entry["action"] == "extend":
        # the runs to extend (those that blew up stay as they are: no segment)
        record["extend_runs"] = [r.index for r in runs if not r.blew_up]
        # no new snapshots: a chain that ended early still ends production once runs are added
        record["chain_stop"] = previous.get("chain_stop", "") if previous else ""
    elif not entry["stopped_by"]:
        calculator = _made(calculator, "get_forces")
        chain = extend_chain(
            atoms,
            calculator,  # type: ignore[arg-type]
            directory,
            round_index + 1,
            len(indices),
            int(entry["new_runs"]),
            temperature=temperature,
            flux_name=flux_name,
            settings=settings,
            attrs=attrs,
            progress=progress,
        )
        record["next_runs"] = list(range(len(indices), len(indices) + len(chain.snapshots)))
        record["new_runs"] = len(chain.snapshots)
        record["chain_stop"] = chain.reason
        record["nvt_seconds"] = nvt_seconds + chain.seconds
        if not chain.snapshots:
            record["stopped_by"] = "nvt_blew_up"
    record["stop"] = bool(record["stopped_by"])
    return record


def _made(thing: Any, method: str) -> Any:
    """``thing``, or what it makes if it is a function or class (no bound ``method``)."""
    if isinstance(thing, type) or (callable(thing) and not hasattr(thing, method)):
        return thing()
    return thing


def collect_production(
    directory: str | os.PathLike[str],
    records: list[RoundRecord],
    *,
    atoms: Atoms,
    flux_name: str,
    temperature: float,
    settings: ProductionSettings | Mapping[str, Any] | None = None,
) -> ProductionResult:
    """The production in ``directory`` from its round ``records`` (the last one stops it)."""
    settings = resolve_production_settings(settings)
    directory = Path(directory)
    fingerprint = production_fingerprint(settings, temperature, flux_name, atoms)
    last = records[-1]
    length = round_run_steps(settings, records[-2] if len(records) > 1 else None)
    runs = []
    for k in last["runs"]:
        run = _load_run(run_path(directory, k), fingerprint, k, steps=length)
        if run is None or (not run.blew_up and run.steps_done < length):
            raise FileNotFoundError(f"{run_path(directory, k)}: run {k} is not finished")
        runs.append(replace(run, reused=False))
    history = [
        {
            k: v
            for k, v in r.items()
            if k not in ("runs", "next_runs", "extend_runs", "stop", "material")
        }
        for r in records
    ]
    return ProductionResult(
        directory=directory,
        temperature=temperature,
        equilibration=directory / EQUILIBRATION_FILE,
        equilibrated=True,
        reason="",
        runs=runs,
        stopped_by=last["stopped_by"],
        target_error=settings.target_error,
        history=history,
        run_steps=length,
        run_ps=length * settings.timestep / 1000.0,
        **_totals(runs, settings, float(last["nvt_seconds"])),
    )


def run_production(
    atoms: Atoms,
    calculator: Calculator,
    flux: HeatFluxMethod,
    path: str | os.PathLike[str],
    *,
    temperature: float,
    settings: ProductionSettings | Mapping[str, Any] | None = None,
    attrs: NetCDFAttrs | None = None,
    analysis: AnalysisSettings | Mapping[str, Any] | None = None,
    progress: bool = True,
) -> ProductionResult:
    """NVT equilibration at ``temperature``, then rounds of NVE runs logging the heat flux
    until kappa's relative error reaches ``target_error`` or a budget is spent (module
    docstring), all in this process.

    Parameters
    ----------
    atoms
        The reference (relaxed) supercell; the MD starts from it.
    calculator
        Forces for the MD (e.g. the ensemble, :func:`alkappa.models.ensemble.load_ensemble`).
    flux
        Heat-flux method (:func:`alkappa.greenkubo.make_heat_flux`); if it has
        ``atomic_virials``, its ``average_virials`` are set here (from the NVT part).
    path
        Output directory: ``equilibration.nc``, ``chain_<r>.nc``, ``run_00.nc``, ... and the
        rounds' records ``round_<r>.json``.
    temperature
        Target temperature (K).
    settings
        :class:`~alkappa.settings.ProductionSettings`, or a mapping of some of its fields
        (:data:`DEFAULT_PRODUCTION_SETTINGS` for the others).
    attrs
        Extra attributes for every file.
    analysis
        :class:`~alkappa.settings.AnalysisSettings` (or a mapping of
        :func:`alkappa.greenkubo.run_green_kubo`'s keywords: ``window_fs``, ...) for the
        analyses that decide when to stop. With ``target_error`` None the runs are analysed
        once at the end only if this is given.
    progress
        Show tqdm progress bars.

    Returns
    -------
    ProductionResult
        The runs, the error after each round and why production ended.
    """
    start = time.perf_counter()
    settings = resolve_production_settings(settings)
    directory = Path(path)
    equilibration = run_equilibration(
        atoms,
        calculator,
        flux,
        directory,
        temperature=temperature,
        settings=settings,
        attrs=attrs,
        progress=progress,
    )
    if equilibration.blew_up:
        return ProductionResult(
            directory=directory,
            temperature=temperature,
            equilibration=directory / EQUILIBRATION_FILE,
            equilibrated=False,
            reason=equilibration.reason,
            seconds=time.perf_counter() - start,
            stopped_by="nvt_blew_up",
            target_error=settings.target_error,
            wall_seconds=equilibration.seconds,
        )
    records: list[RoundRecord] = []
    todo = round_runs(settings, None)
    made: set[int] = set()  # the runs this call made or extended (the others: reused)
    while True:
        length = round_run_steps(settings, records[-1] if records else None)
        common = {"temperature": temperature, "settings": settings, "attrs": attrs}
        for k in todo:
            run = run_nve(
                k, atoms, calculator, flux, directory, progress=progress, steps=length, **common
            )
            if not run.reused:
                made.add(k)
            if not run.blew_up and run.steps_done < length:
                run = extend_run(
                    k, atoms, calculator, flux, directory, steps=length, progress=progress, **common
                )
                if not run.reused:
                    made.add(k)
        record = run_round(
            directory,
            len(records),
            records[-1] if records else None,
            atoms=atoms,
            calculator=calculator,
            flux_name=flux.name,
            temperature=temperature,
            settings=settings,
            attrs=attrs,
            analysis=analysis,
            progress=progress,
            flux=flux,
        )
        write_json(round_path(directory, len(records)), record)
        records.append(record)
        if record["stop"]:
            break
        todo = record["runs"] if record["action"] == "extend" else record["next_runs"]
    result = collect_production(
        directory,
        records,
        atoms=atoms,
        flux_name=flux.name,
        temperature=temperature,
        settings=settings,
    )
    runs = [replace(r, reused=r.index not in made) for r in result.runs]
    return replace(result, runs=runs, seconds=time.perf_counter() - start)


def read_rounds(directory: str | os.PathLike[str]) -> list[RoundRecord]:
    """The round records ``round_0.json``, ... in ``directory`` up to the one that stops."""
    records = []
    while (path := round_path(directory, len(records))).is_file():
        records.append(read_json(path))
        if records[-1]["stop"]:
            break
    return records


# --- when to stop -------------------------------------------------------------------------------


def _analyse(
    runs: list[RunResult], analysis: AnalysisSettings | Mapping[str, Any] | None
) -> RoundRecord:
    """kappa and its relative standard error from the runs that did not blow up (the
    analysis's keywords: ``analysis``; None: :func:`run_green_kubo`'s defaults)."""
    from alkappa.greenkubo._analysis import run_green_kubo

    entry: RoundRecord = {
        "n_runs": len(runs),
        "kappa": float("nan"),
        "kappa_error": float("nan"),
        "relative_error": float("inf"),
    }
    # each run as long as this round has it (its file and extension segments)
    usable = [_joined(r) for r in runs if not r.blew_up]
    if not usable:
        entry["analysis_error"] = "all runs blew up"
        return entry
    try:
        options = (
            analysis.to_dict() if isinstance(analysis, AnalysisSettings) else dict(analysis or {})
        )
        ds = run_green_kubo(usable, **options)
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


def _joined(run: RunResult) -> Any:
    """Run ``run`` with its extension segments up to its steps, for the analysis."""
    ds = read_run(run.path, steps=run.steps_done)
    ds.attrs["source"] = str(run.path)
    return ds


def _projected_runs(n_runs: int, relative_error: float, target: float) -> float:
    """Runs needed for ``target`` if the error falls as 1/sqrt(n) (inf if unknown)."""
    if not np.isfinite(relative_error):
        return float("inf")
    return float(max(n_runs, int(np.ceil(n_runs * (relative_error / target) ** 2))))


def _totals(
    runs: list[RunResult], settings: ProductionSettings, nvt_seconds: float
) -> dict[str, float]:
    """NVE time of ``runs``; seconds of the NVT parts and the runs (compute time)."""
    return {
        "simulated_ps": sum(r.steps_done for r in runs) * settings.timestep / 1000.0,
        "wall_seconds": nvt_seconds + sum(r.seconds for r in runs),
    }


def _next_run_cost(
    runs: list[RunResult], settings: ProductionSettings, run_steps: int | None = None
) -> tuple[float, float]:
    """Simulated ps and expected seconds (NVE and its NVT segment) of one more run of
    ``run_steps`` steps (None: ``steps``; the runs so far are that long)."""
    steps = int(settings.steps if run_steps is None else run_steps)
    ps = steps * settings.timestep / 1000.0
    nvt_share = int(settings.snapshot_spacing) / steps
    seconds = float(np.mean([r.seconds for r in runs])) * (1.0 + nvt_share) if runs else 0.0
    return ps, seconds


def _next_round(
    entry: RoundRecord, runs: list[RunResult], settings: ProductionSettings, chain_stop: str
) -> tuple[str, int]:
    """Why production ends now (and 0), or "" and the runs of the next round.

    Without a zero of the flux autocorrelation within the lags a run allows, the cutoff is the
    last lag and kappa a truncated integral: more runs of the same length shrink its error
    but not its bias, so production stops (``runs_too_short``) and says so instead of
    spending the budget or calling the result converged.
    """
    if settings.require_decay and entry.get("cutoff_found") is False:
        return "runs_too_short", 0
    if entry["relative_error"] <= settings.target_error:
        return "target_error", 0
    if chain_stop:
        return "nvt_blew_up", 0
    n = len(runs)
    projected = entry["projected_runs"]
    # an unknown error (a failed analysis): one more run, as more data may help
    wanted = min(int(projected) - n, n) if np.isfinite(projected) else 1
    wanted = max(wanted, 1)
    for key, allowed in _budget_caps(entry, runs, settings):
        if allowed < 1:
            return key, 0
        wanted = min(wanted, allowed)
    return "", wanted


def _extension(
    entry: RoundRecord, runs: list[RunResult], settings: ProductionSettings
) -> tuple[str, int]:
    """The runs' length in the next round when they are extended: double, at most
    ``max_run_steps`` and what the budgets allow for every run that did not blow up; or the
    budget that allows no extension (and the length now).

    An extension of n runs by s steps costs n s ``timestep`` of NVE time and is expected to
    take n s times the seconds per step of the runs so far (their NVE seconds over their
    steps); ``max_runs`` counts runs, not their length.
    """
    steps = int(entry["run_steps"])
    interval = int(settings.sample_interval)
    longest = min(2 * steps, max_run_steps(settings))
    n = sum(not r.blew_up for r in runs)
    extra = longest - steps
    bound = ""
    limit_ps = settings.max_simulated_ps
    if limit_ps is not None and n:
        left_ps = limit_ps * (1 + 1e-9) - entry["simulated_ps"]
        allowed = int(left_ps * 1000.0 / settings.timestep // n) if left_ps > 0 else 0
        if allowed < extra:
            extra, bound = allowed, "max_simulated_ps"
    done_steps = sum(r.steps_done for r in runs)
    per_step = sum(r.seconds for r in runs) / done_steps if done_steps else 0.0
    if settings.max_wall_hours is not None and n:
        left = 3600.0 * settings.max_wall_hours - entry["wall_seconds"]
        allowed = int(left / (n * per_step)) if per_step > 0 else int(left > 0) * extra
        if allowed < extra:
            extra, bound = max(allowed, 0), "max_wall_hours"
    extra -= extra % interval
    if extra < interval:
        return bound or "runs_too_short", steps
    return "", steps + extra


def _budget_caps(
    entry: RoundRecord, runs: list[RunResult], settings: ProductionSettings
) -> list[tuple[str, int]]:
    """How many more runs each budget allows (the budgets that are set)."""
    ps, seconds = _next_run_cost(runs, settings, entry.get("run_steps"))
    caps = []
    if settings.max_runs is not None:
        caps.append(("max_runs", int(settings.max_runs) - len(runs)))
    limit_ps = settings.max_simulated_ps
    if limit_ps is not None:
        caps.append(
            ("max_simulated_ps", int((limit_ps * (1 + 1e-9) - entry["simulated_ps"]) // ps))
        )
    limit_hours = settings.max_wall_hours
    if limit_hours is not None:
        left = 3600.0 * limit_hours - entry["wall_seconds"]
        caps.append(("max_wall_hours", int(left // seconds) if seconds > 0 else int(left > 0)))
    return caps


def _warn_if_out_of_budget(
    entry: RoundRecord, runs: list[RunResult], settings: ProductionSettings, temperature: float
) -> bool:
    """Warn (and return True) when the projected number of runs exceeds the budget."""
    budget = _budget_runs(runs, settings, entry.get("run_steps"))
    projected = entry["projected_runs"]
    if not (np.isfinite(projected) and projected > budget):
        return False
    warnings.warn(
        f"{temperature:g} K: kappa's relative error is {entry['relative_error']:.3g} after "
        f"{len(runs)} run(s); reaching target_error {settings.target_error:g} needs about "
        f"{projected:.0f} runs (n x (err/target)^2), more than the budget allows "
        f"({budget:.0f} runs)",
        stacklevel=3,
    )
    return True


def _budget_runs(
    runs: list[RunResult], settings: ProductionSettings, run_steps: int | None = None
) -> float:
    """The most runs (of ``run_steps``) the budgets allow (inf: no budget)."""
    ps, seconds = _next_run_cost(runs, settings, run_steps)
    counts = [float("inf")]
    if settings.max_runs is not None:
        counts.append(int(settings.max_runs))
    if settings.max_simulated_ps is not None:
        counts.append(int(settings.max_simulated_ps * (1 + 1e-9) // ps))
    if settings.max_wall_hours is not None and seconds > 0:
        counts.append(int(3600.0 * settings.max_wall_hours // seconds))
    return min(counts)
