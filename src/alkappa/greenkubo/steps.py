"""The pipeline's Green-Kubo steps, one function per Snakemake rule.

Each reads files, calls the library (:mod:`alkappa.greenkubo`) and writes its outputs; the
adapters of :mod:`alkappa.steps` only translate the Snakemake object into one of these calls. All of
them work on ``results/<m>/greenkubo/T<T>/`` (``greenkubo_<n1>x<n2>x<n3>/`` for the cells of
``greenkubo.size_check``):

* :func:`gk_cell_step`: a Green-Kubo cell other than the material's supercell, with the
  MLIP's harmonic phonons in it (``cell/structure.extxyz``, ``cell/phonopy_params.yaml``);
* the production, in rounds of independent NVE runs with the final ensemble until kappa's
  relative error reaches ``target_error`` or a budget is spent:
  :func:`equilibration_step` (``equilibration.nc``), :func:`nve_step` (one run,
  ``run_<k>.nc``), :func:`round_step` (the decision after a round, ``round_<r>.json``,
  and the next round's snapshots, ``chain_<r + 1>.nc``) and :func:`production_step`
  (``production.json``, the record that lists the runs: :func:`production_runs`);
* :func:`green_kubo_step`: the Green-Kubo analysis (``greenkubo.nc``, ``greenkubo.png``);
* :func:`mode_lifetimes_step`: phonon lifetimes of the same runs against phono3py's
  (``lifetimes.nc``, ``lifetimes.json``, ``lifetimes.png``);
* :func:`greenkubo_summary_step`: kappa per temperature next to phono3py, drift flags and
  lifetime ratios (``greenkubo/summary.json``, ``greenkubo/kappa_T.png``).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from alkappa.io import read_json, read_structure, write_json
from alkappa.models import ensemble_members
from alkappa.settings import GreenKuboSettings, PhononSettings, RelaxSettings

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    import xarray as xr
    from ase import Atoms

    from alkappa.greenkubo._production import RoundRecord
    from alkappa.greenkubo._records import (
        DriftRecord,
        GreenKuboSummary,
        LifetimeCheck,
        LifetimeRecord,
        ModeLifetime,
        Phono3pyKappa,
        ProductionRecord,
        ProductionState,
        RunDrift,
        SizeCheck,
        SizeCheckRow,
        TemperatureSummary,
    )
    from alkappa.models.heat_flux import HeatFluxMethod
    from alkappa.settings import ProductionSettings, SettingsDict


def production_runs(record: str | Path) -> list[Path]:
    """The NVE run files listed in ``production.json``, found next to it.

    The number of runs is decided during production, so the rules after it take the record,
    not the run files. Raises ValueError naming the record and the file if one is missing.
    """
    record = Path(record)
    directory = record.parent
    paths = [directory / Path(run["path"]).name for run in read_json(record).get("runs", [])]
    if not paths:
        raise ValueError(f"{record}: the production record lists no runs")
    for path in paths:
        if not path.is_file():
            raise ValueError(
                f"{record}: its run {path} is missing; delete the record to rerun the production"
            )
    return paths


def _runs(runs: str | Path | Sequence[str | Path]) -> list[Path]:
    """A production record (``.json``) or the run files themselves."""
    if isinstance(runs, (str, Path)):
        if Path(runs).suffix == ".json":
            return production_runs(runs)
        return [Path(runs)]
    return [Path(p) for p in runs]


def model_spec(model_dir: str | Path) -> dict[str, object]:
    """The ``model`` block the final ensemble was trained with (its ``ensemble.json``;
    ``{"name": "nequip"}`` if it names none)."""
    spec = read_json(Path(model_dir) / "ensemble.json").get("model") or {"name": "nequip"}
    return dict(spec)


def make_flux(
    gk: GreenKuboSettings,
    *,
    model_dir: str | Path,
    structure: Atoms,
    force_constants: str | Path | None = None,
    threads: int | None = None,
) -> HeatFluxMethod:
    """The heat-flux method of ``greenkubo.flux`` (``gk.flux``), named ``gk.flux_label``.

    ``unfolded``: the final ensemble's own flux, from its model plugin
    (:meth:`alkappa.models.Model.heat_flux_method`; for NequIP the unfolded-system flux of the
    members, loaded eagerly); ``virial``: per-atom stresses of the MD calculator;
    ``harmonic``: the supercell force constants in ``force_constants`` (the MLIP's
    ``phonopy_params.yaml``), whose supercell is the MD cell. A model without a flux of its
    own is a ``ValueError`` of one line that names the key and the model.
    """
    from alkappa.greenkubo import make_heat_flux
    from alkappa.models.heat_flux import HeatFluxNotAvailable

    name = gk.flux
    convective = bool(gk.convective)
    method: HeatFluxMethod
    if name == "unfolded":
        spec = model_spec(model_dir)
        try:
            method = make_heat_flux(
                "unfolded",
                model_paths=ensemble_members(model_dir),
                model=spec,
                convective=convective,
                threads=threads,
                precision=gk.flux_precision,
            )
        except HeatFluxNotAvailable as exc:
            raise ValueError(_unfolded_flux_unavailable(spec.get("name"))) from exc
    elif name == "virial":
        method = make_heat_flux("virial", convective=convective)
    elif name == "harmonic":
        from alkappa.phonons import read_force_constants

        if force_constants is None:
            raise ValueError("greenkubo.flux: harmonic needs the MLIP's force constants")
        method = make_heat_flux(
            "harmonic",
            reference=structure,
            # full (N, N, 3, 3), in the MD cell's atom order
            force_constants=read_force_constants(force_constants, structure),
            convective=convective,
        )
    else:
        raise ValueError(f"greenkubo.flux: unknown heat flux {name!r}")
    method.name = gk.flux_label
    return method


def _unfolded_flux_unavailable(model: str | None) -> str:
    """The one line that says ``greenkubo.flux: unfolded`` is impossible with ``model``."""
    return (
        f"greenkubo.flux: unfolded needs the model's own heat flux, which model {model!r} "
        "does not provide (Model.heat_flux_method); use virial (per-atom stresses) or harmonic"
    )


def model_fingerprint(model_dir: str | Path) -> str:
    """A hash of the final ensemble (``ensemble.json`` and the member files)."""
    h = hashlib.sha256((Path(model_dir) / "ensemble.json").read_bytes())
    for path in ensemble_members(model_dir):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def discard_stale(paths: Sequence[str | Path], fingerprint: str) -> list[Path]:
    """Delete those of the production files ``paths`` that another model wrote (or that are
    unreadable).

    The production reuses a finished equilibration, chain extension or run of the same
    settings and structure; the model is checked here (the files carry
    ``model_fingerprint``), so that a production rerun after the ensemble changed starts
    afresh. Each job checks only its own files: the others may be in use. Returns the deleted
    files.
    """
    import xarray as xr

    removed = []
    for path in map(Path, paths):
        if not path.is_file():
            continue
        try:
            with xr.open_dataset(path) as ds:
                stamp = ds.attrs.get("model_fingerprint")
        except (OSError, ValueError):
            stamp = None
        if stamp != fingerprint:
            path.unlink()
            removed.append(path)
    if removed:
        print(f"removed {', '.join(p.name for p in removed)}: of another model or unreadable")
    return removed


def gk_cell_step(
    settings: SettingsDict,
    relaxed_path: str | Path,
    model_dir: str | Path,
    supercell: Sequence[int],
    out_dir: str | Path,
) -> None:
    """A Green-Kubo cell of ``supercell`` repetitions of the unit cell with the relaxed
    lattice (:func:`~alkappa.structure.resize_supercell`), positions relaxed with the final
    MLIP, and the MLIP's harmonic phonons in that cell (the modes of the MD lifetimes and of
    the finite-size correction): ``structure.extxyz``, ``relax.json`` and the phonon files
    (``phonopy_params.yaml``, ``phonons.nc``, ``phonons.json``) in ``out_dir``."""
    from alkappa import load_model
    from alkappa.io import write_dataset
    from alkappa.phonons.steps import write_harmonic_phonons
    from alkappa.structure import read_unit_cell, relax_structure, resize_supercell

    relax = RelaxSettings.from_settings(settings)
    phonons = PhononSettings.from_settings(settings)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atoms = resize_supercell(
        read_unit_cell(settings["structure"]),
        read_structure(relaxed_path),
        settings["supercell"],
        list(supercell),
    )
    calculator = load_model(model_dir)
    result = relax_structure(
        atoms,
        calculator,
        cell=False,
        keep_symmetry=relax.keep_symmetry,
        fmax=relax.fmax,
        max_steps=relax.max_steps,
    )
    cell = result.atoms
    cell.calc = None
    cell.info.update({"source": "greenkubo_cell", "supercell": "x".join(map(str, supercell))})
    record = {"material": settings["name"], "supercell": list(supercell), "natoms": len(cell)}
    record.update(result.record())
    write_dataset(out / "structure.extxyz", [cell])
    write_json(out / "relax.json", record)
    print(
        f"{settings['name']}: Green-Kubo cell {supercell} ({len(cell)} atoms), positions "
        f"relaxed with the MLIP in {result.steps} steps"
    )
    write_harmonic_phonons(phonons, cell, calculator, out, method="mlip")


def _check_virial(atoms: Atoms, calculator: Any) -> None:
    from ase.calculators.calculator import PropertyNotImplementedError

    work = atoms.copy()
    work.calc = calculator
    try:
        work.get_stresses()
    except (PropertyNotImplementedError, NotImplementedError, AttributeError) as exc:
        raise ValueError(
            "greenkubo.flux: virial needs per-atom stresses, which the final ensemble's "
            f"calculator does not give ({type(exc).__name__}); use unfolded or harmonic"
        ) from exc


class _Setup:
    """What every production job of a material and temperature loads: the structure, the
    flux, the production and analysis settings and the files' attributes."""

    @contextlib.contextmanager
    def quiet_flux_energy(self) -> Iterator[None]:
        """Warnings go to stderr, the job's log; the harmonic flux's energies are harmonic
        ones, so that they differ from the MLIP's is no sign of a wrong model."""
        with warnings.catch_warnings():
            if self.flux_name == "harmonic":
                warnings.filterwarnings("ignore", message=r".*heat-flux model's energy differs")
            yield

    @classmethod
    def of(
        cls,
        settings: SettingsDict,
        structure_path: str | Path,
        model_dir: str | Path,
        *,
        threads: int,
        force_constants: str | Path | None = None,
        flux: bool = True,
    ) -> _Setup:
        """The set-up of a job from the material's settings (its name and ``greenkubo``)."""
        gk = GreenKuboSettings.from_settings(settings)
        return cls(
            settings["name"],
            gk,
            structure_path,
            model_dir,
            threads=threads,
            force_constants=force_constants,
            flux=flux,
        )

    def __init__(
        self,
        material: str,
        gk: GreenKuboSettings,
        structure_path: str | Path,
        model_dir: str | Path,
        *,
        threads: int,
        force_constants: str | Path | None,
        flux: bool = True,
    ) -> None:
        self.gk, self.model_dir, self.threads = gk, Path(model_dir), threads
        self.force_constants = force_constants
        self.atoms = read_structure(structure_path)
        self.flux_name = gk.flux_label
        self.prod = gk.production
        self.analysis = gk.analysis
        self.fingerprint = model_fingerprint(model_dir)
        self.attrs = {
            "material": material,
            "model": str(model_dir),
            "model_fingerprint": self.fingerprint,
        }
        self.flux = self.make_flux() if flux else None

    def calculator(self) -> Any:
        """The final ensemble with ``threads`` threads."""
        from alkappa import load_model

        calculator = load_model(self.model_dir, threads=self.threads)
        if self.flux_name == "virial":
            _check_virial(self.atoms, calculator)
        return calculator

    def make_flux(self) -> HeatFluxMethod:
        return make_flux(
            self.gk,
            model_dir=self.model_dir,
            structure=self.atoms,
            force_constants=self.force_constants,
            threads=self.threads,
        )


def equilibration_step(
    settings: SettingsDict,
    structure_path: str | Path,
    model_dir: str | Path,
    out_path: str | Path,
    *,
    temperature: float,
    threads: int = 1,
    force_constants: str | Path | None = None,
    progress: bool = True,
) -> None:
    """The NVT equilibration of a production with the final ensemble at ``temperature``
    (:func:`~alkappa.greenkubo.run_equilibration`): ``equilibration.nc`` with the first
    ``greenkubo.runs`` starting snapshots. A completed one of the same settings, structure
    and model is reused (:func:`discard_stale`). Raises RuntimeError if the MD blew up."""
    from alkappa.greenkubo import run_equilibration

    job = _Setup.of(
        settings,
        structure_path,
        model_dir,
        threads=threads,
        force_constants=force_constants,
    )
    out = Path(out_path)
    discard_stale([out], job.fingerprint)
    print(
        f"{settings['name']} at {temperature:g} K: {job.flux_name} heat flux, "
        f"{threads} thread(s); {_plan(job.prod)}",
        flush=True,
    )
    result = run_equilibration(
        job.atoms,
        job.calculator(),
        job.flux,  # type: ignore[arg-type]
        out.parent,
        temperature=temperature,
        settings=job.prod,
        attrs=job.attrs,
        progress=progress,
    )
    if result.blew_up:
        raise RuntimeError(
            f"the NVT equilibration at {temperature:g} K blew up ({result.reason}); see {out}"
        )
    state = "reused" if result.reused else f"{result.seconds:.0f} s"
    print(f"equilibration: {len(result.snapshots)} starting snapshot(s) ({state})")


def nve_step(
    settings: SettingsDict,
    structure_path: str | Path,
    model_dir: str | Path,
    out_run: str | Path,
    *,
    index: int,
    temperature: float,
    threads: int = 1,
    force_constants: str | Path | None = None,
    progress: bool = True,
    steps: int | None = None,
) -> None:
    """NVE run ``index`` of a production with the final ensemble, logging the heat flux
    (:func:`~alkappa.greenkubo.run_nve`), from its snapshot in ``equilibration.nc`` or
    ``chain_<r>.nc`` next to ``out_run``. A completed run of the same settings, structure
    and model is reused (:func:`discard_stale`). ``steps``: its length (None:
    ``greenkubo.steps``; a run added after the runs were extended: the record's
    ``next_run_steps``, so that it is made at that length at once)."""
    from alkappa.greenkubo import run_nve

    job = _Setup.of(
        settings,
        structure_path,
        model_dir,
        threads=threads,
        force_constants=force_constants,
    )
    out = Path(out_run)
    discard_stale([out], job.fingerprint)
    n_steps = job.prod.steps if steps is None else int(steps)
    n_frames = n_steps // job.prod.sample_interval + 1
    print(
        f"{settings['name']} at {temperature:g} K, run {index}: {job.flux_name} heat flux, "
        f"{n_steps} x {job.prod.timestep:g} fs ({n_frames} flux frames), "
        f"{threads} thread(s)",
        flush=True,
    )
    with job.quiet_flux_energy():
        run = run_nve(
            index,
            job.atoms,
            job.calculator(),
            job.flux,  # type: ignore[arg-type]
            out.parent,
            temperature=temperature,
            settings=job.prod,
            attrs=job.attrs,
            progress=progress,
            steps=steps,
        )
    if run.path != out:
        raise RuntimeError(f"run {index} wrote {run.path}, not {out}")
    print(_run_line(run))


def next_run_steps(record: str | Path | None) -> int | None:
    """The run length a round's record plans for the next round (``next_run_steps``; None
    without a record: ``greenkubo.steps``)."""
    if record is None:
        return None
    steps = read_json(record).get("next_run_steps")
    return None if steps is None else int(steps)


def extend_step(
    settings: SettingsDict,
    structure_path: str | Path,
    model_dir: str | Path,
    run: str | Path,
    *,
    index: int,
    steps: int,
    temperature: float,
    threads: int = 1,
    force_constants: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Run ``index`` (the finished file ``run``, ``run_<k>.nc``) of a production brought to
    ``steps`` NVE steps with the final ensemble: one extension segment
    ``run_<k>.seg<s>.nc`` next to it (:func:`~alkappa.greenkubo._production.extend_run`),
    when a round's record extends the runs (``action: extend``, ``next_run_steps``). A
    finished segment of the same production is reused. Returns the run's last segment
    (the run file itself if it needed none)."""
    from alkappa.greenkubo._production import extend_run, segment_path

    job = _Setup.of(
        settings,
        structure_path,
        model_dir,
        threads=threads,
        force_constants=force_constants,
    )
    out = Path(run)
    discard_stale(sorted(out.parent.glob(f"{out.stem}.seg*{out.suffix}")), job.fingerprint)
    with job.quiet_flux_energy():
        result = extend_run(
            index,
            job.atoms,
            job.calculator(),
            job.flux,  # type: ignore[arg-type]
            out.parent,
            steps=steps,
            temperature=temperature,
            settings=job.prod,
            attrs=job.attrs,
            progress=progress,
        )
    if result.path != out:
        raise RuntimeError(f"run {index} is {result.path}, not {out}")
    print(_run_line(result) + f", {result.segments} extension segment(s)")
    return segment_path(out, result.segments) if result.segments else out


def round_step(
    settings: SettingsDict,
    structure_path: str | Path,
    model_dir: str | Path,
    out_record: str | Path,
    *,
    round_index: int,
    previous: str | Path | None,
    temperature: float,
    threads: int = 1,
    progress: bool = True,
    force_constants: str | Path | None = None,
) -> None:
    """The decision after round ``round_index`` of a production
    (:func:`~alkappa.greenkubo.run_round`): kappa's error from all runs so far, and whether
    production goes on, by extending the runs or with how many more runs; if it adds runs,
    the next round's starting snapshots (``chain_<round_index + 1>.nc``, with the final
    ensemble). ``previous``: the record of the round before (None for round 0). Runs that
    the previous record extended and that have no segment of that length yet
    (:func:`extend_step`) are extended here, one after the other (``force_constants``:
    for the harmonic flux). Writes the round's record."""
    from alkappa.greenkubo import run_round
    from alkappa.greenkubo._production import chain_path

    job = _Setup.of(
        settings,
        structure_path,
        model_dir,
        threads=threads,
        force_constants=force_constants,
        flux=False,
    )
    out = Path(out_record)
    discard_stale([chain_path(out.parent, round_index + 1)], job.fingerprint)
    record = run_round(
        out.parent,
        round_index,
        read_json(previous) if previous is not None else None,
        atoms=job.atoms,
        calculator=job.calculator,
        flux_name=job.flux_name,
        temperature=temperature,
        settings=job.prod,
        attrs=job.attrs,
        analysis=job.analysis,
        progress=progress,
        flux=job.make_flux,
    )
    write_json(out, {"material": settings["name"], **record})
    print(_history_line(record))
    if record["stop"]:
        print(f"stopped by {record['stopped_by']}")
    elif record["action"] == "extend":
        print(
            f"next round: runs {record['runs']} extended to {record['next_run_steps']} steps "
            "(the autocorrelation has not decayed)"
        )
    else:
        print(f"next round: runs {record['next_runs']}")


def production_step(
    settings: SettingsDict,
    structure_path: str | Path,
    model_dir: str | Path,
    rounds: Sequence[str | Path],
    out_record: str | Path,
    *,
    temperature: float,
    threads: int = 1,
) -> None:
    """``production.json``, the record of a finished production from its rounds' records
    (:func:`~alkappa.greenkubo.collect_production`): the runs (energy drift, timings), the
    error after each round (``history``), ``stopped_by``, ``relative_error``,
    ``simulated_ps`` and ``wall_seconds`` (NVT and NVE seconds summed over all jobs)."""
    from alkappa.greenkubo import collect_production

    job = _Setup.of(
        settings,
        structure_path,
        model_dir,
        threads=threads,
        flux=False,
    )
    records = [read_json(p) for p in rounds]
    if not records or not records[-1]["stop"]:
        raise ValueError(f"the last round record ({rounds[-1] if rounds else None}) does not stop")
    result = collect_production(
        Path(out_record).parent,
        records,
        atoms=job.atoms,
        flux_name=job.flux_name,
        temperature=temperature,
        settings=job.prod,
    )
    record = {
        "material": settings["name"],
        "flux": job.flux_name,
        "threads": threads,
        "model_fingerprint": job.fingerprint,
        "settings": job.prod.to_dict(),
        "analysis": job.analysis.to_dict(),
        **result.to_dict(),
        "seconds": result.wall_seconds,
    }
    write_json(out_record, record)
    for run in result.runs:
        print(_run_line(run))
    for entry in result.history:
        print(_history_line(entry))
    print(
        f"stopped by {result.stopped_by}: {len(result.runs)} run(s) in {len(records)} "
        f"round(s), {result.simulated_ps:g} ps, {result.wall_seconds / 3600:.2f} h of MD"
    )


def _run_line(run: Any) -> str:
    state = "reused" if run.reused else f"{run.seconds:.0f} s"
    flag = "  FLAGGED" if run.drift_flagged else ""
    return (
        f"run {run.index}: {run.steps_done} steps, <T> = {run.temperature_mean:.1f} K, "
        f"drift {run.drift:.2e} eV/atom/ps, max deviation {run.max_deviation:.2e} eV/atom "
        f"({state}){flag}{': ' + run.reason if run.reason else ''}"
    )


def _history_line(entry: RoundRecord) -> str:
    error = entry.get("relative_error")
    kappa, kappa_error = entry.get("kappa", float("nan")), entry.get("kappa_error", float("nan"))
    return (
        f"after {entry['n_runs']} run(s): kappa {kappa:.4g} ± {kappa_error:.2g} W/(m K), "
        "relative error "
        + (f"{error:.3f}" if error is not None and math.isfinite(error) else "n/a")
        + (f" ({entry['analysis_error']})" if "analysis_error" in entry else "")
    )


def _plan(prod: ProductionSettings) -> str:
    """The stopping rule in words."""
    if prod.target_error is None:
        return f"{prod.runs} run(s)"
    budgets = [
        f"{key} {getattr(prod, key):g}"
        for key in ("max_runs", "max_simulated_ps", "max_wall_hours")
        if getattr(prod, key) is not None
    ]
    return (
        f"at least {prod.runs} run(s), more until kappa's relative error is "
        f"<= {prod.target_error:g} ({', '.join(budgets)})"
    )


def usable_runs(run_paths: Sequence[str | Path]) -> list[Path]:
    """The runs that did not blow up (a blown-up run's last frames are not physical; a run
    with its extension segments, :func:`~alkappa.greenkubo._production.read_run`)."""
    from alkappa.greenkubo._production import read_run

    good = []
    for path in run_paths:
        attrs = read_run(path).attrs
        if int(attrs.get("blew_up", 0)):
            print(f"WARNING: {path} blew up ({attrs.get('stop_reason', '')}): left out")
        else:
            good.append(Path(path))
    if not good:
        raise RuntimeError(f"all {len(run_paths)} production runs blew up")
    return good


def green_kubo_step(
    settings: SettingsDict,
    run_paths: str | Path | Sequence[str | Path],
    out_netcdf: str | Path,
    out_figure: str | Path,
    *,
    temperature: float,
    out_convergence: str | Path | None = None,
) -> None:
    """Green-Kubo kappa of the production runs at one temperature (:func:`run_green_kubo`
    with the ``greenkubo`` analysis settings), its kappa(t) figure and (``out_convergence``) kappa
    against simulated time with the cepstral estimate. ``run_paths``: the production record
    ``production.json`` (its runs) or the run files."""
    from alkappa.greenkubo import (
        plot_green_kubo,
        plot_kappa_convergence,
        run_green_kubo,
        write_green_kubo,
    )

    gk = GreenKuboSettings.from_settings(settings)
    ds = run_green_kubo([str(p) for p in usable_runs(_runs(run_paths))], **gk.analysis.to_dict())
    ds.attrs.update(
        {
            "material": settings["name"],
            "temperature_target": float(temperature),
            "heat_flux_method": gk.flux,
        }
    )
    write_green_kubo(ds, out_netcdf)
    print(
        f"kappa = {float(ds['kappa_scalar']):.3f} ± {float(ds['kappa_scalar_error']):.3f} "
        f"W/(m K) from {ds.attrs['n_runs']} run(s), <T> = {ds.attrs['temperature']:.1f} K, "
        f"window {float(ds['window_fs'].mean()):.0f} fs; cepstral "
        f"{float(ds['kappa_cepstral']):.3f} ± {float(ds['kappa_cepstral_error']):.3f}"
    )
    plot_green_kubo(ds, out_figure)
    if out_convergence is not None:
        plot_kappa_convergence(ds, out_convergence, title=f"{settings['name']}, {temperature:g} K")


def finite_size_step(
    settings: SettingsDict,
    green_kubo: str | Path,
    lifetimes: str | Path,
    force_constants: str | Path,
    out_netcdf: str | Path,
    out_figure: str | Path,
    *,
    temperature: float,
) -> None:
    """The finite-size correction of kappa_GK by harmonic interpolation
    (:func:`~alkappa.greenkubo.run_finite_size_correction`): the harmonic-model kappa from
    the MD lifetimes (``lifetimes.nc``) at the supercell's commensurate q-points, its
    interpolation to denser meshes with the MLIP's force constants and extrapolation in 1/n;
    ``finite_size.nc`` (FHI-vibes' variable names) and the extrapolation figure."""
    import xarray as xr

    from alkappa.greenkubo import plot_finite_size, run_finite_size_correction
    from alkappa.phonons import read_netcdf, write_netcdf

    gk = read_netcdf(green_kubo)
    try:
        ds = run_finite_size_correction(gk, read_netcdf(lifetimes), str(force_constants))
    except ValueError as exc:
        # e.g. modes without a finite MD lifetime (runs too short): kappa_GK stands as it is
        print(f"WARNING: no finite-size correction at {temperature:g} K: {exc}")
        ds = xr.Dataset(
            {"kappa_corrected": ((), np.nan), "kappa_corrected_error": ((), np.nan)},
            attrs={"failed_reason": str(exc)},
        )
    ds.attrs.update({"material": settings["name"], "temperature_target": float(temperature)})
    write_netcdf(ds, out_netcdf)
    if "failed_reason" in ds.attrs:
        plot_finite_size(ds, out_figure, title=f"{settings['name']}, {temperature:g} K")
        return
    print(
        f"harmonic-model kappa {float(ds['kappa_ha_scalar']):.3f} W/(m K) at the commensurate "
        f"q-points, {float(ds['interpolation_fit_intercept']):.3f} extrapolated; kappa_GK "
        f"{float(gk['kappa_scalar']):.3f} -> corrected {float(ds['kappa_corrected']):.3f} ± "
        f"{float(ds['kappa_corrected_error']):.3f} W/(m K)"
    )
    plot_finite_size(ds, out_figure, title=f"{settings['name']}, {temperature:g} K")


def mode_lifetimes_step(
    settings: SettingsDict,
    run_paths: str | Path | Sequence[str | Path],
    force_constants: str | Path,
    kappa_netcdf: str | Path,
    out_netcdf: str | Path,
    out_json: str | Path,
    out_figure: str | Path,
    *,
    temperature: float,
) -> None:
    """Phonon lifetimes from the mode-energy autocorrelation of the production runs
    (harmonic modes of the MLIP's ``phonopy_params.yaml``), against phono3py's of the MLIP
    (``kappa.nc``) at the same q-points: ``lifetimes.nc`` (the MD lifetimes with phono3py's
    next to them), ``lifetimes.json`` (median ratio and per-mode values) and the figure.
    ``run_paths``: the production record ``production.json`` (its runs) or the run files."""
    from alkappa.greenkubo import compare_mode_lifetimes, plot_mode_lifetimes, run_mode_lifetimes
    from alkappa.phonons import write_netcdf

    md = run_mode_lifetimes([str(p) for p in usable_runs(_runs(run_paths))], force_constants)
    comparison = compare_mode_lifetimes(md, kappa_netcdf, temperature=temperature)
    out = md.copy()
    for name in ("tau_phono3py", "frequency_phono3py"):
        out[name] = comparison[name]
    out["tau_md_degenerate"] = comparison["tau_md"]
    out["matched"] = comparison["matched"]
    out.attrs.update({f"comparison_{k}": v for k, v in comparison.attrs.items()})
    out.attrs["material"] = settings["name"]
    write_netcdf(out, out_netcdf)
    write_json(out_json, lifetime_record(comparison, temperature))
    info = comparison.attrs
    ratio = info.get("median_ratio")
    print(
        f"{info['n_modes_compared']} modes compared on {info['n_matched_qpoints']} of "
        f"{info['n_qpoints']} q-points; median tau MD / phono3py = "
        + (f"{ratio:.2f}" if ratio is not None else "n/a")
    )
    plot_mode_lifetimes(comparison, out_figure)


def lifetime_record(comparison: xr.Dataset, temperature: float) -> LifetimeRecord:
    """The numbers of :func:`compare_mode_lifetimes` (its attributes) and one row per mode."""
    info = {k: _finite(v) for k, v in comparison.attrs.items()}
    modes: list[ModeLifetime] = []
    q = comparison["qpoints"].values
    for iq, ib in np.ndindex(comparison["tau_md"].shape):
        modes.append(
            {
                "qpoint": [float(x) for x in q[iq]],
                "band": int(ib),
                "frequency_THz": _finite(comparison["frequency_md"].values[iq, ib]),
                "tau_md_ps": _finite(comparison["tau_md"].values[iq, ib]),
                "tau_phono3py_ps": _finite(comparison["tau_phono3py"].values[iq, ib]),
            }
        )
    return cast(
        "LifetimeRecord",
        {
            "temperature_K": float(temperature),
            "median_ratio": info.pop("median_ratio", None),
            **info,
            "modes": modes,
        },
    )


#: least fraction of the slowest (acoustic) modes' heat-flux autocorrelation that the cutoff
#: must keep for kappa_GK to count as converged
MIN_CAPTURED_FRACTION = 0.8


def gk_convergence(
    cutoff_fs: float, run_length_fs: float, tau_md_ps: Sequence[float], bands: Sequence[int]
) -> LifetimeCheck:
    """Whether the GK cutoff and the run length are long against the MD phonon lifetimes.

    The heat carried by a mode decays in the flux autocorrelation as exp(-t/tau); reading kappa
    at ``cutoff_fs`` keeps the fraction 1 - exp(-t_c/tau) of it. With ``tau`` the median MD
    lifetime of the acoustic modes (bands 0-2 at the commensurate q-points, the slow heat
    carriers), kappa_GK counts as under-converged when that fraction is below
    :data:`MIN_CAPTURED_FRACTION` or a run is shorter than 10 tau (then the autocorrelation is
    buried in noise before it has decayed, and the first-dip cutoff falls early). kappa_GK is
    then a lower bound; its error bar (over runs) does not include this.
    """
    tau = np.asarray(tau_md_ps, dtype=float)
    band = np.asarray(bands)
    acoustic = tau[(band < 3) & np.isfinite(tau) & (tau > 0)]
    if acoustic.size == 0:
        return {"checked": False, "reason": "no finite MD lifetimes of acoustic modes"}
    tau_fs = 1000.0 * float(np.median(acoustic))
    captured = 1.0 - float(np.exp(-cutoff_fs / tau_fs))
    reasons = []
    if captured < MIN_CAPTURED_FRACTION:
        reasons.append(
            f"the cutoff ({cutoff_fs / 1000:.2g} ps) keeps {captured:.0%} of the decay of the "
            f"acoustic modes (MD lifetime {tau_fs / 1000:.2g} ps)"
        )
    if run_length_fs < 10.0 * tau_fs:
        reasons.append(
            f"runs of {run_length_fs / 1000:.3g} ps are shorter than 10 acoustic lifetimes"
        )
    return {
        "checked": True,
        "acoustic_lifetime_ps": tau_fs / 1000.0,
        "cutoff_ps": cutoff_fs / 1000.0,
        "run_length_ps": run_length_fs / 1000.0,
        "captured_fraction": captured,
        "under_converged": bool(reasons),
        "reason": "; ".join(reasons),
    }


def greenkubo_summary_step(
    settings: SettingsDict,
    green_kubo: Mapping[str, str | Path],
    productions: Mapping[str, str | Path],
    lifetimes: Mapping[str, str | Path],
    kappa_files: Mapping[str, str | Path],
    out_json: str | Path,
    out_figure: str | Path,
    finite_size: Mapping[str, str | Path] | None = None,
    *,
    structure: str | Path | None = None,
    size_check: Sequence[str | Path] = (),
) -> None:
    """Green-Kubo kappa per temperature (with its cepstral estimate and, where
    ``finite_size`` has the temperature, the finite-size-corrected value) next to phono3py's
    RTA and LBTE kappa at that temperature with quantum and classical statistics, energy
    drift of every run, median lifetime ratio (``summary.json``); kappa(T) figure.

    Whether kappa_GK is the answer is said by the production's stopping state
    (:func:`production_state`: ``converged``, ``stopped_by``, ``relative_error``,
    ``target_error``, ``simulated_ps`` per temperature; ``converged`` overall when every
    temperature reached its target). The lifetime-based check (:func:`gk_convergence`) is
    extra information (``lifetime_check``).

    ``green_kubo``, ``productions`` and ``lifetimes`` map the temperature (as in the paths,
    ``"300"``) to ``greenkubo.nc``, ``production.json`` and ``lifetimes.json``;
    ``kappa_files`` the phono3py method (``mlip``, ``oracle``) to its ``kappa.nc``;
    ``finite_size`` the temperature to ``finite_size.nc``; ``structure`` the MD cell (its
    atom count is recorded); ``size_check`` the ``summary.json`` of the same stage in other
    cells, compared with this one (:func:`size_check_record`).
    """
    from alkappa.greenkubo import plot_kappa_temperature
    from alkappa.phonons import read_netcdf

    gk = GreenKuboSettings.from_settings(settings)
    phono3py = {method: read_netcdf(path) for method, path in kappa_files.items()}
    finite_size = finite_size or {}
    rows: dict[str, TemperatureSummary] = {}
    datasets = []
    corrected = []
    for key in sorted(green_kubo, key=float):
        ds = read_netcdf(green_kubo[key])
        datasets.append(ds)
        target = float(key)
        kappa = float(ds["kappa_scalar"])
        row: TemperatureSummary = {
            "temperature_K": target,
            "temperature_md_K": float(ds.attrs["temperature"]),
            "kappa_W_per_mK": kappa,
            "kappa_error_W_per_mK": _finite(float(ds["kappa_scalar_error"])),
            "kappa_tensor_W_per_mK": ds["kappa"].values.tolist(),
            "kappa_runs_W_per_mK": [float(k) for k in ds["kappa_run_scalar"].values],
            "n_runs": int(ds.attrs["n_runs"]),
            "cutoff_found": bool(_diagonal(ds["cutoff_found"].values).all()),
            "cutoff_time_fs": float(_diagonal(ds["cutoff_time"].values).mean()),
            "window_fs": float(ds["window_fs"].values.mean()),
            "kappa_cepstral_W_per_mK": _finite(float(ds["kappa_cepstral"]))
            if "kappa_cepstral" in ds
            else None,
            "kappa_cepstral_error_W_per_mK": _finite(float(ds["kappa_cepstral_error"]))
            if "kappa_cepstral_error" in ds
            else None,
            "finite_size": None,
            "phono3py": {},
        }
        fs = read_netcdf(finite_size[key]) if key in finite_size else None
        if fs is not None and "failed_reason" in fs.attrs:
            row["finite_size"] = {"failed": str(fs.attrs["failed_reason"])}
        elif fs is not None:
            row["finite_size"] = {
                "kappa_corrected_W_per_mK": float(fs["kappa_corrected"]),
                "kappa_corrected_error_W_per_mK": _finite(float(fs["kappa_corrected_error"])),
                "interpolation_correction_W_per_mK": float(fs["interpolation_correction"]),
                "correction_jackknife_error_W_per_mK": (
                    _finite(float(fs["interpolation_correction_jackknife_error"]))
                    if "interpolation_correction_jackknife_error" in fs
                    else None
                ),
                "kappa_ha_commensurate_W_per_mK": float(fs["kappa_ha_scalar"]),
                "kappa_ha_bulk_W_per_mK": float(fs["interpolation_fit_intercept"]),
            }
            corrected.append(
                (
                    float(ds.attrs["temperature"]),
                    float(fs["kappa_corrected"]),
                    float(fs["kappa_corrected_error"]),
                )
            )
        for method, k_ds in phono3py.items():
            entry: Phono3pyKappa = {}
            for name in ("rta", "lbte", "rta_classical", "lbte_classical"):
                if f"kappa_{name}_average" in k_ds:
                    value, how = kappa_at_temperature(k_ds, f"kappa_{name}_average", target)
                    entry[f"kappa_{name}_W_per_mK"] = value  # type: ignore[literal-required]
                    entry.setdefault("how", how)
            rta = entry.get("kappa_rta_W_per_mK")
            entry["gk_over_rta"] = kappa / rta if rta else None
            row["phono3py"][method] = entry
        production = read_json(productions[key])
        row.update(production_state(production, kappa, row["kappa_error_W_per_mK"]))
        row["drift"] = drift_record(production)
        row["lifetimes"] = None
        row["lifetime_check"] = {"checked": False, "reason": "no MD lifetimes"}
        if key in lifetimes:
            life = read_json(lifetimes[key])
            step = production["settings"]
            row["lifetime_check"] = gk_convergence(
                row["cutoff_time_fs"],
                step["steps"] * step["timestep"],
                [m["tau_md_ps"] if m["tau_md_ps"] is not None else np.nan for m in life["modes"]],
                [m["band"] for m in life["modes"]],
            )
            row["lifetimes"] = {
                "median_ratio_md_over_phono3py": life.get("median_ratio"),
                "n_modes_compared": life.get("n_modes_compared"),
                "n_matched_qpoints": life.get("n_matched_qpoints"),
                "n_qpoints": life.get("n_qpoints"),
                "log10_ratio_rms": life.get("log10_ratio_rms"),
                "temperature_phono3py_K": life.get("temperature_phono3py"),
            }
        rows[key] = row
    record: GreenKuboSummary = {
        "material": settings["name"],
        "flux": gk.flux,
        "converged": all(r["converged"] for r in rows.values()),
        "stopped_by": {key: r["stopped_by"] for key, r in rows.items()},
        "drift_flagged": any(r["drift"]["flagged"] for r in rows.values()),
        "lifetime_check_under_converged": any(
            r["lifetime_check"].get("under_converged") for r in rows.values()
        ),
        "temperatures": rows,
    }
    if structure is not None:
        record["natoms"] = len(read_structure(structure))
    if size_check:
        record["size_check"] = size_check_record(record, [read_json(p) for p in size_check])
    write_json(out_json, record)
    for key, row in rows.items():
        vs = ", ".join(
            f"{m} RTA {e['kappa_rta_W_per_mK']:.3f}"
            for m, e in row["phono3py"].items()
            if e.get("kappa_rta_W_per_mK") is not None
        )
        flag = "; DRIFT FLAGGED" if row["drift"]["flagged"] else ""
        if row["lifetime_check"].get("under_converged"):
            flag += f"; lifetime check: {row['lifetime_check']['reason']}"
        fs = row["finite_size"] or {}
        corr = (
            f", finite-size corrected {fs['kappa_corrected_W_per_mK']:.3f} ± "
            f"{fs['kappa_corrected_error_W_per_mK'] or 0:.3f}"
            if "kappa_corrected_W_per_mK" in fs
            else (f", no finite-size correction ({fs['failed']})" if fs else "")
        )
        print(
            f"{key} K: GK {row['kappa_W_per_mK']:.3f} ± {row['kappa_error_W_per_mK'] or 0:.3f} "
            f"W/(m K){corr}, {_state_words(row)}{'; ' + vs if vs else ''}{flag}"
        )
    plot_kappa_temperature(
        {"MLIP": datasets},
        out_figure,
        phono3py={_label(m): ds for m, ds in phono3py.items()},
        corrected={"MLIP": corrected} if corrected else None,
        title=f"{settings['name']}: Green-Kubo against phono3py",
    )


def size_check_record(
    main: GreenKuboSummary, others: Sequence[GreenKuboSummary]
) -> list[SizeCheck]:
    """Green-Kubo kappa of other cells against the main cell's, per common temperature.

    For every other cell (a ``summary.json`` record with ``natoms``): its plain and
    finite-size-corrected kappa and, as ``(other - main) / combined error``, how far they are
    from the main cell's corrected kappa (the correction's purpose is that the small cell's
    corrected value equals a large cell's value).
    """

    def corrected(row: TemperatureSummary) -> tuple[float | None, float | None]:
        fs = row.get("finite_size") or {}
        return fs.get("kappa_corrected_W_per_mK"), fs.get("kappa_corrected_error_W_per_mK")

    def sigmas(a: float | None, ea: float | None, b: float | None, eb: float | None):
        if None in (a, b, ea, eb) or not math.hypot(ea, eb):  # type: ignore[arg-type]
            return None
        return _finite((a - b) / math.hypot(ea, eb))  # type: ignore[operator]

    out: list[SizeCheck] = []
    for other in others:
        rows: list[SizeCheckRow] = []
        for key, row in other["temperatures"].items():
            if key not in main["temperatures"]:
                continue
            base = main["temperatures"][key]
            main_corr, main_corr_err = corrected(base)
            corr, corr_err = corrected(row)
            kappa, error = row["kappa_W_per_mK"], row["kappa_error_W_per_mK"]
            rows.append(
                {
                    "temperature_K": row["temperature_K"],
                    "kappa_W_per_mK": kappa,
                    "kappa_error_W_per_mK": error,
                    "kappa_corrected_W_per_mK": corr,
                    "kappa_corrected_error_W_per_mK": corr_err,
                    "main_kappa_W_per_mK": base["kappa_W_per_mK"],
                    "main_kappa_corrected_W_per_mK": main_corr,
                    "kappa_minus_main_corrected_sigma": sigmas(
                        kappa, error, main_corr, main_corr_err
                    ),
                    "corrected_minus_main_corrected_sigma": sigmas(
                        corr, corr_err, main_corr, main_corr_err
                    ),
                }
            )
        out.append({"natoms": other.get("natoms"), "temperatures": rows})
    return out


def production_state(
    production: ProductionRecord, kappa: float, kappa_error: float | None
) -> ProductionState:
    """Why a production ended and how far kappa's error got (for ``summary.json``).

    ``relative_error`` is that of the final analysis (``kappa_error / |kappa|``);
    ``converged`` means the production stopped because it reached ``target_error``. A record
    written before productions had a target reads as a fixed number of runs.
    """
    relative = None
    if kappa_error is not None and math.isfinite(kappa) and kappa != 0.0:
        relative = _finite(kappa_error / abs(kappa))
    runs = production.get("runs", [])
    step = production.get("settings", {})
    simulated = production.get("simulated_ps")
    if simulated is None:
        simulated = sum(r["steps_done"] for r in runs) * step.get("timestep", 0.0) / 1000.0
    stopped_by = production.get("stopped_by", "fixed_runs")
    return {
        "converged": stopped_by == "target_error",
        "stopped_by": stopped_by,
        "relative_error": relative,
        "target_error": production.get("target_error"),
        "simulated_ps": float(simulated),
        "wall_hours": _finite(production.get("wall_seconds", float("nan")) / 3600.0),
    }


def _state_words(row: TemperatureSummary) -> str:
    error = row["relative_error"]
    text = f"relative error {error:.1%}" if error is not None else "relative error n/a"
    text += f" from {row['n_runs']} run(s), {row['simulated_ps']:g} ps"
    target = row["target_error"]
    if row["stopped_by"] == "target_error":
        return f"{text}: target {target:.0%} reached"
    if row["stopped_by"] == "fixed_runs":
        return f"{text} (fixed number of runs, no target)"
    if row["stopped_by"] == "runs_too_short":
        return (
            f"{text}: NOT converged, the runs are too short (the flux autocorrelation has no "
            "zero within half a run; make greenkubo.steps larger)"
        )
    return f"{text}: target {target:.0%} NOT reached, stopped by {row['stopped_by']}"


def by_temperature(paths: Sequence[str | Path]) -> dict[str, str]:
    """``{"300": ".../greenkubo/T300/greenkubo.nc", ...}``: files keyed by the temperature of
    their ``T<T>`` directory."""
    return {Path(p).parent.name.removeprefix("T"): str(p) for p in paths}


def kappa_at_temperature(
    ds: xr.Dataset, variable: str, temperature: float
) -> tuple[float | None, str]:
    """phono3py's ``variable`` at ``temperature``: the value there (``"exact"``), linear
    between the two nearest temperatures (``"interpolated"``), or None outside the range."""
    temps = np.asarray(ds["temperature"].values, dtype=float)
    values = np.asarray(ds[variable].values, dtype=float)
    if temps.size == 0:
        return None, "none"
    close = np.abs(temps - temperature) < 1e-6
    if close.any():
        return _finite(float(values[np.argmax(close)])), "exact"
    if temps.min() < temperature < temps.max():
        order = np.argsort(temps)
        return _finite(float(np.interp(temperature, temps[order], values[order]))), "interpolated"
    return None, "outside"


def drift_record(production: ProductionRecord) -> DriftRecord:
    """Energy conservation of a production (``production.json``): per run and overall."""
    runs: list[RunDrift] = [
        {
            "run": r["index"],
            "drift_eV_per_atom_per_ps": _finite(r["drift"]),
            "max_deviation_eV_per_atom": _finite(r["max_deviation"]),
            "flagged": bool(r["drift_flagged"]),
            "blew_up": bool(r["blew_up"]),
            "reason": r["reason"],
        }
        for r in production.get("runs", [])
    ]
    drifts = [abs(r["drift"]) for r in production.get("runs", [])]
    settings = production.get("settings", {})
    return {
        "flagged": bool(production.get("drift_flagged", True)),
        "max_abs_drift_eV_per_atom_per_ps": _finite(max(drifts)) if drifts else None,
        "drift_threshold": settings.get("drift_threshold"),
        "deviation_threshold": settings.get("deviation_threshold"),
        "runs": runs,
    }


def _diagonal(values: np.ndarray) -> np.ndarray:
    return np.diagonal(values, axis1=-2, axis2=-1)


def _finite(value: Any) -> Any:
    """JSON-friendly: non-finite floats become None."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _label(key: str) -> str:
    return {"mlip": "MLIP", "oracle": "oracle"}.get(key, key)
