"""The pipeline's event-diagnostics steps, one function per Snakemake rule.

All work in ``results/<m>/events/``:

* :func:`events_md_step`: MLIP MD (the AL model, the random-sampling baseline at the same
  label budget, optionally the initial model) with the thermostat, timestep, temperature,
  duration and seed of the reference (oracle) MD, through the same MD loop
  (:func:`alkappa.al.explore.run_exploration`) (``<model>/md_T<T>.nc``);
* :func:`events_kappa_step`: phono3py lifetimes of the random baseline ensemble
  (``random/kappa.nc``), to compare with the oracle's and the AL model's of the conductivity
  stage;
* :func:`run_events_diagnosis_step`: events of every trajectory, rates, missing and false
  events (oracle spot checks through the labelling store, so ``alkappa oracle-calls`` counts
  them), uncertainty alignment, lifetime bias, figures and ``diagnosis.json``/``.md``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import numpy as np

from alkappa.events._compare import EventComparison
from alkappa.io import read_dataset, read_json, write_json, write_text

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from alkappa.al.explore import MDOptions
    from alkappa.events._compare import FalseEventCheck, LifetimeRatios
    from alkappa.settings import SettingsDict

MODEL_LABELS = {
    "al": "AL model",
    "random": "random sampling, same budget (no AL)",
    "initial": "initial model (no AL)",
}


def model_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Member model files from a final ``ensemble.json`` or a list of ``member.json``."""
    paths = [Path(p) for p in inputs]
    if len(paths) == 1 and paths[0].name == "ensemble.json":
        from alkappa.models import ensemble_members

        return ensemble_members(paths[0].parent)
    return [p.parent / read_json(p)["model_file"] for p in paths]


def mlip_md_by_model(
    files: Sequence[str | Path], models: Sequence[str], temperatures: Sequence[str]
) -> dict[str, dict[str, str | Path]]:
    """The MLIP trajectories of ``events_diagnosis`` by model, then temperature.

    ``files`` lists them model by model, each model's at every temperature in turn (the order
    ``events_inputs`` in ``workflow/rules/events.smk`` gives).
    """
    if len(files) != len(models) * len(temperatures):
        raise ValueError(
            f"{len(files)} MLIP trajectories for {len(models)} models "
            f"at {len(temperatures)} temperatures"
        )
    n = len(temperatures)
    return {
        model: {T: files[i * n + k] for k, T in enumerate(temperatures)}
        for i, model in enumerate(models)
    }


def _md_settings(settings: SettingsDict, temperature: float) -> MDOptions:
    """The reference MD's settings, as :func:`alkappa.reference_data.run_reference_md` uses."""
    from alkappa.al.oracle_md import oracle_md_settings
    from alkappa.settings import ReferenceSettings

    md = ReferenceSettings.from_settings(settings).md.to_dict()
    return oracle_md_settings(settings, md, temperature)


def events_md_step(
    settings: SettingsDict,
    models: Sequence[str | Path],
    structure_path: str | Path,
    record_path: str | Path,
    out_trajectory: str | Path,
    *,
    temperature: float,
    model: str,
    threads: int = 1,
) -> None:
    """MLIP MD at ``temperature`` matching the reference MD (same settings and seed)."""
    from alkappa.al.explore import run_exploration
    from alkappa.al.steps import load_members

    atoms = read_dataset(structure_path)[0]
    atoms.calc = None
    result = run_exploration(
        atoms,
        load_members(settings, model_files(models), threads),
        Path(out_trajectory),
        temperature=temperature,
        settings=_md_settings(settings, temperature),
        nn_distance=float(read_json(record_path)["nearest_neighbour_distance"]),
        attrs={"material": settings["name"], "model": model, "source": "events-md"},
        progress=False,
    )
    print(
        f"{model} MD at {temperature:g} K: {result.steps_done} steps, {result.frames} frames, "
        f"{result.seconds:.0f} s" + (f"; stopped: {result.reason}" if result.blew_up else "")
    )


def events_kappa_step(
    settings: SettingsDict,
    models: Sequence[str | Path],
    structure_path: str | Path,
    out_netcdf: str | Path,
    *,
    threads: int = 1,
) -> None:
    """fc3 and phono3py RTA lifetimes of an ensemble on the conductivity stage's mesh, at the
    events' lifetime temperature (``kappa.nc`` and the fc3 files next to it)."""
    from alkappa.al.steps import load_members
    from alkappa.io import read_structure
    from alkappa.phonons import run_fc3, run_phono3py, write_fc3, write_netcdf
    from alkappa.settings import ConductivitySettings, EventsSettings

    kappa = ConductivitySettings.from_settings(settings)
    events = EventsSettings.from_settings(settings)
    out = Path(out_netcdf)
    calc = load_members(settings, model_files(models), threads)
    result = run_fc3(read_structure(structure_path), calc, **kappa.fc3_options().to_dict())
    write_fc3(result, out.parent)
    ds = run_phono3py(
        result.phono3py,
        mesh=list(kappa.mesh),
        temperatures=[events.lifetime_temperature],
        lbte=False,
        sigma=kappa.sigma,
        hdf5_directory=out.parent,
    )
    write_netcdf(ds, out)
    print(f"fc3 from {result.n_supercells} supercells; kappa RTA {ds['kappa_rta_average'].values}")


def _labeller(settings: SettingsDict, store: str | Path, temperature: float, model: str) -> Any:
    from alkappa.labelling import label_frames
    from alkappa.oracles import OracleSpec, get_oracle

    spec = OracleSpec.from_settings(settings)  # once per job
    oracle = get_oracle(spec)

    def label(frames: list[Any]) -> list[Any]:
        outcome = label_frames(
            frames,
            oracle,
            spec,
            store,
            purpose="events",
            provenance={"temperature": temperature, "trajectory": f"events/{model}"},
            progress=False,
        )
        done = {float(f.info.get("time", -1)): f for f in outcome.frames}
        print(
            f"spot check {model} {temperature:g} K: {outcome.oracle_calls} oracle calls, "
            f"{outcome.reused} reused, {len(outcome.failures)} failed"
        )
        return [done.get(float(f.info["time"])) for f in frames]

    return label


class LifetimeBias(TypedDict):
    """A model's phono3py lifetimes against the oracle's at one temperature."""

    temperature: float
    n_modes: int
    median_ratio: float | None
    geometric_mean_ratio: float | None


class TemperatureDiagnosis(EventComparison):
    """One model at one temperature: the event comparison, the spot checks, the uncertainty
    alignment and whether the MD blew up."""

    blew_up: bool
    stop_reason: str
    test_force_rmse: float
    spot_checks: list[FalseEventCheck]
    false_events_checked: int
    false_events_estimate: float
    #: :class:`~alkappa.events._alignment.Alignment`, non-finite numbers as None; empty
    #: without an uncertainty
    alignment: dict[str, object]


class ModelDiagnosis(TypedDict):
    """One model's events against the reference MD's (``diagnosis.json``, ``models``)."""

    label: str
    #: per temperature (as in the file names): the event comparison, spot checks, the
    #: uncertainty alignment and whether the MD blew up
    temperatures: dict[str, TemperatureDiagnosis]
    missing_events: NotRequired[int]
    false_events: NotRequired[int]
    events: NotRequired[int]
    auc: NotRequired[float | None]
    lifetimes: NotRequired[LifetimeBias | None]


class Diagnosis(TypedDict):
    """The event diagnosis of one material (``diagnosis.json``)."""

    material: str
    #: the oracle block as the config gives it
    oracle: Any
    temperatures: list[str]
    #: the ``events`` section as the config gives it
    settings: Any
    reference_events: int
    #: the campaign's final (AL) model; the baselines are under ``models``
    model: str
    missing_events: int
    false_events: int
    auc: float | None
    lifetime_source: str
    models: dict[str, ModelDiagnosis]
    verdict: list[str]
    paper_pattern: str


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def run_events_diagnosis_step(
    settings: SettingsDict,
    *,
    reference_md: Mapping[str, str | Path],
    mlip_md: Mapping[str, Mapping[str, str | Path]],
    test_metrics: Mapping[str, str | Path],
    kappa: Mapping[str, str | Path],
    store: str | Path,
    out_dir: str | Path,
) -> Diagnosis:
    """Events, classification, alignment, lifetime bias and figures of one material.

    Parameters
    ----------
    reference_md
        Temperature (string, as in the file names) to the oracle's MD.
    mlip_md
        Model (``al``, ``random``, ``initial``) to temperature to its matching MD.
    test_metrics
        Model to its ``test_metrics.json`` (the force RMSE of the spot check).
    kappa
        ``reference`` (the oracle's) and model to phono3py ``kappa.nc``; may be empty.
    store
        The oracle store (``results/<m>/oracle``): spot checks are labelled there.
    out_dir
        ``results/<m>/events``.
    """
    import pandas as pd

    from alkappa.events import (
        compare_events,
        detect_trajectory_events,
        event_frames,
        lifetime_ratios,
        plot_event_timeline,
        plot_lifetime_ratios,
        spot_check,
        thermal_energy_range,
        uncertainty_alignment,
    )
    from alkappa.io import atomic_path, read_trajectory
    from alkappa.settings import EventsSettings

    cfg = EventsSettings.from_settings(settings)
    out = Path(out_dir)
    detect = cfg.detection()
    tables = []
    panels = []
    reference_total = 0
    per_model: dict[str, ModelDiagnosis] = {
        m: {"label": MODEL_LABELS.get(m, m), "temperatures": {}} for m in mlip_md
    }
    for T, ref_path in reference_md.items():
        ref_ds = read_trajectory(ref_path)
        ref_det = detect_trajectory_events(ref_ds, **detect)
        reference_total += len(ref_det.events)
        tables.append(ref_det.events.assign(source="reference", temperature=float(T)))
        panels.append((f"reference (oracle) {T} K", ref_det, None))
        e_mean, e_std = thermal_energy_range(ref_ds)
        for model, paths in mlip_md.items():
            ds = read_trajectory(paths[T])
            det = detect_trajectory_events(ds, **detect)
            tables.append(det.events.assign(source=model, temperature=float(T)))
            statistic = f"uncertainty_{cfg.statistic}"
            unc = ds[statistic].values if statistic in ds else None
            panels.append((f"{MODEL_LABELS.get(model, model)} {T} K", det, unc))
            comparison = compare_events(ref_det, det, confidence=cfg.confidence)
            rmse = float(read_json(test_metrics[model])["forces_eV_per_A"]["rmse"])
            checks = spot_check(
                event_frames(ds, det, cfg.spot_checks),
                _labeller(settings, store, float(T), model),
                energy_mean=e_mean,
                energy_std=e_std,
                test_force_rmse=rmse,
                energy_sigma=cfg.energy_sigma,
                force_factor=cfg.force_factor,
            )
            n_false = sum(bool(c["false"]) for c in checks)
            # events not checked count as false in the proportion of the checked ones
            estimate = n_false / len(checks) * len(det.events) if checks else 0.0
            alignment = uncertainty_alignment(ds, det, cfg.statistic) if unc is not None else {}
            per_model[model]["temperatures"][T] = {
                **comparison,
                "blew_up": bool(ds.attrs.get("blew_up", 0)),
                "stop_reason": str(ds.attrs.get("stop_reason", "")),
                "test_force_rmse": rmse,
                "spot_checks": checks,
                "false_events_checked": n_false,
                "false_events_estimate": estimate,
                "alignment": {
                    k: _finite(v) if isinstance(v, float) else v for k, v in alignment.items()
                },
            }
    # lifetime bias per model against the oracle's lifetimes
    lifetimes: dict[str, LifetimeBias] = {}
    ratios_plot: dict[str, LifetimeRatios] = {}
    if "reference" in kappa:
        import xarray as xr

        T_tau = float(cfg.lifetime_temperature)
        with xr.open_dataset(kappa["reference"]) as ref_k:
            ref_k = ref_k.load()
        for model in mlip_md:
            if model not in kappa:
                continue
            with xr.open_dataset(kappa[model]) as k:
                result = lifetime_ratios(k.load(), ref_k, T_tau)
            ratios_plot[MODEL_LABELS.get(model, model)] = result
            lifetimes[model] = {
                "temperature": T_tau,
                "n_modes": result["n_modes"],
                "median_ratio": _finite(result["median_ratio"]),
                "geometric_mean_ratio": _finite(math.exp(result["weighted_mean_log_ratio"])),
            }
    for model, record in per_model.items():
        temps = record["temperatures"].values()
        record["missing_events"] = int(sum(t["missing_events"] for t in temps))
        record["false_events"] = int(sum(t["false_events_checked"] for t in temps))
        record["events"] = int(sum(t["mlip"]["all"]["count"] for t in temps))
        aucs = [t["alignment"].get("auc") for t in temps if t["alignment"].get("auc") is not None]
        record["auc"] = float(np.mean(aucs)) if aucs else None
        record["lifetimes"] = lifetimes.get(model)
    main = "al" if "al" in per_model else next(iter(per_model))
    diagnosis: Diagnosis = {
        "material": settings["name"],
        "oracle": settings["oracle"],
        "temperatures": list(reference_md),
        # the section as the config gives it, in its key order (diagnosis.json unchanged)
        "settings": dict(settings["events"]),
        "reference_events": int(reference_total),
        # the campaign's final (AL) model; the baselines are under "models"
        "model": main,
        "missing_events": per_model[main]["missing_events"],
        "false_events": per_model[main]["false_events"],
        "auc": per_model[main]["auc"],
        "lifetime_source": "phono3py RTA (the Langevin friction of the MD dominates mode decay)",
        "models": per_model,
        "verdict": _verdict(per_model, reference_total),
        "paper_pattern": _paper_pattern(per_model),
    }
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    with atomic_path(out / "events.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_json(out / "diagnosis.json", diagnosis)
    write_text(out / "diagnosis.md", _markdown(diagnosis))
    plot_event_timeline(panels, out / "timeline.png", title=f"{settings['name']}: events")
    if ratios_plot:
        plot_lifetime_ratios(
            ratios_plot, out / "lifetimes.png", title=f"{settings['name']}: τ MLIP / τ oracle"
        )
    else:
        _empty_figure(out / "lifetimes.png", "no oracle phono3py lifetimes to compare with")
    return diagnosis


def _empty_figure(path: Path, text: str) -> None:
    from alkappa.plotting import pyplot as _pyplot
    from alkappa.plotting import save_figure as _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    _save(fig, path)


LIFETIME_TOLERANCE = 0.1  # a median lifetime ratio within 10 % of 1 counts as unbiased


def _bias(median: float) -> str:
    if abs(median - 1.0) <= LIFETIME_TOLERANCE:
        return f"no lifetime bias beyond {LIFETIME_TOLERANCE:.0%} (median ratio {median:.2f})"
    side = "over" if median > 1 else "under"
    return f"lifetimes {side}-estimated (median ratio {median:.2f})"


def _paper_pattern(per_model: Mapping[str, Mapping[str, Any]]) -> str:
    """Whether the first seed paper's pattern shows: without AL (the random baseline, else the
    initial model) missing events with over-estimated lifetimes (its CuI) or false events with
    under-estimated ones (its AgGaSe2), and fewer of them with AL."""
    before = next((per_model[m] for m in ("random", "initial") if m in per_model), None)
    after = per_model.get("al")
    if before is None or after is None:
        return "not assessed: needs the AL model and a model without AL"
    tau_b = (before.get("lifetimes") or {}).get("median_ratio")
    tau_a = (after.get("lifetimes") or {}).get("median_ratio")
    found = []
    if before["missing_events"] > after["missing_events"]:
        found.append("missing events without AL, fewer with AL")
    if before["false_events"] > after["false_events"]:
        found.append("false events without AL, fewer with AL")
    # a bias counts as reduced when it shrinks by more than the tolerance itself
    if tau_b is not None and abs(tau_b - 1) > LIFETIME_TOLERANCE:
        if tau_a is not None and abs(tau_a - 1) < abs(tau_b - 1) - LIFETIME_TOLERANCE:
            found.append(f"lifetime bias {tau_b:.2f} without AL reduced to {tau_a:.2f} with AL")
    if not found:
        return (
            f"not reproduced: without AL ({before['label']}) {before['missing_events']} "
            f"missing and {before['false_events']} false events, lifetime ratio "
            f"{'n/a' if tau_b is None else f'{tau_b:.2f}'}; with AL {after['missing_events']}, "
            f"{after['false_events']}, {'n/a' if tau_a is None else f'{tau_a:.2f}'}"
        )
    return "reproduced in part: " + "; ".join(found)


def _verdict(per_model: Mapping[str, Mapping[str, Any]], reference_events: int) -> list[str]:
    lines = []
    for record in per_model.values():
        tau = record.get("lifetimes") or {}
        median = tau.get("median_ratio")
        bias = "no lifetimes" if median is None else _bias(median)
        lines.append(
            f"{record['label']}: {record['events']} events vs {reference_events} in the "
            f"reference, {record['missing_events']} missing, {record['false_events']} "
            f"confirmed false by the oracle; {bias}"
        )
    return lines


def _markdown(d: Mapping[str, Any]) -> str:
    lines = [
        f"# Event diagnosis: {d['material']}",
        "",
        f"Oracle: {d['oracle'].get('name')} {d['oracle'].get('method', '')}; temperatures "
        f"{', '.join(d['temperatures'])} K; site radius {d['settings']['threshold_fraction']} x "
        f"nearest-neighbour distance, events lasting at least {d['settings']['min_duration']} fs.",
        "",
        f"Reference (oracle MD) events: **{d['reference_events']}**.",
        "",
        "| model | T (K) | events | rate /ps [95% CI] | reference rate /ps [95% CI] | missing "
        "| spot-checked | false | AUC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for record in d["models"].values():
        for T, t in record["temperatures"].items():
            ml, ref = t["mlip"]["all"], t["reference"]["all"]
            auc = t["alignment"].get("auc")
            lines.append(
                f"| {record['label']} | {T} | {ml['count']} | {ml['rate_per_ps']:.2f} "
                f"[{ml['rate_low']:.2f}, {ml['rate_high']:.2f}] | {ref['rate_per_ps']:.2f} "
                f"[{ref['rate_low']:.2f}, {ref['rate_high']:.2f}] | {t['missing_events']} | "
                f"{len(t['spot_checks'])} | {t['false_events_checked']} | "
                f"{'n/a' if auc is None else f'{auc:.2f}'} |"
            )
    lines += ["", "## Lifetime bias (τ MLIP / τ oracle, phono3py RTA)", ""]
    for record in d["models"].values():
        tau = record.get("lifetimes")
        if tau:
            lines.append(
                f"- {record['label']}: median {tau['median_ratio']:.3f}, geometric mean "
                f"{tau['geometric_mean_ratio']:.3f} over {tau['n_modes']} modes at "
                f"{tau['temperature']:g} K"
            )
        else:
            lines.append(f"- {record['label']}: not available")
    lines += ["", "## Verdict", "", *[f"- {v}" for v in d["verdict"]], ""]
    lines += [f"First seed paper's pattern: {d['paper_pattern']}.", ""]
    return "\n".join(lines)
