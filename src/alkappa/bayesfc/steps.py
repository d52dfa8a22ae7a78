"""The pipeline's Bayesian force-constant steps, one function per Snakemake rule.

Oracle calls go through :func:`alkappa.labelling.label_frames` (purpose ``bayesian``), so they
are counted by ``alkappa oracle-calls`` and a rerun after a crash pays only for the calls not
yet in the store: the MD is seeded, so the rerun meets the same structures.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from alkappa.io import atomic_path, read_dataset, read_json, write_dataset, write_json
from alkappa.settings import BayesianSettings, ConductivitySettings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ase import Atoms

    from alkappa.bayesfc._dynamic import MDSettings, TriggerRule
    from alkappa.settings import SettingsDict

TRIGGER_COLUMNS = ("round", "step", "error", "rolling_mean", "reason", "n_train")
ERROR_COLUMNS = ("round", "step", "error", "rolling_mean", "trigger", "limit")


def rule_from_settings(bayes: BayesianSettings) -> TriggerRule:
    """The trigger rule of the config's ``bayesian`` section."""
    from alkappa.bayesfc._dynamic import TriggerRule

    auto = bayes.absolute == "auto"
    return TriggerRule(
        window=bayes.window,
        factor=bayes.factor,
        absolute=None if bayes.absolute == "auto" else bayes.absolute,
        min_gap=bayes.min_gap,
        warmup=bayes.warmup,
        noise_factor=bayes.absolute_noise_factor if auto else None,
    )


def md_from_settings(bayes: BayesianSettings) -> MDSettings:
    """The MD settings of the config's ``bayesian`` section."""
    from alkappa.bayesfc._dynamic import MDSettings

    return MDSettings(
        temperature=bayes.temperature,
        timestep=bayes.timestep,
        friction=bayes.friction,
        max_displacement=bayes.max_displacement,
        statistic=bayes.statistic,
    )


def check_settings(bayes: BayesianSettings) -> None:
    """One clear error for inconsistent settings, before any MD or oracle call."""
    rule = rule_from_settings(bayes)
    md_from_settings(bayes)
    if bayes.check_steps < 2 * rule.window + 2:
        raise ValueError(
            f"bayesian.check_steps ({bayes.check_steps}) must be at least 2 * window + 2 = "
            f"{2 * rule.window + 2}"
        )


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Rows as CSV (atomically)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a CSV written by :func:`write_csv`, numbers converted."""
    with open(path, newline="") as fh:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _number(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _labeller(settings: SettingsDict, store: str | Path, counter: dict[str, int]) -> Any:
    import ase.io

    from alkappa.labelling import label_frames
    from alkappa.oracles import OracleSpec, get_oracle

    spec = OracleSpec.from_settings(settings)  # once per job
    oracle = get_oracle(spec)

    def label(frames: list[Atoms]) -> list[Atoms]:
        outcome = label_frames(frames, oracle, spec, store, purpose="bayesian", progress=False)
        counter["made"] += outcome.oracle_calls
        counter["reused"] += outcome.reused
        for failure in outcome.failures:
            print(f"WARNING: oracle failed: {failure.get('error')}")
        # the stored copy, also for fresh results: a rerun after a crash then fits exactly the
        # same numbers, follows the same MD and meets the same structures in the store
        return [
            ase.io.read(Path(store) / f"{f.info['oracle_key']}.extxyz", format="extxyz")
            for f in outcome.frames
        ]

    return label


def bayes_train_step(
    settings: SettingsDict, structure_path: str | Path, store: str | Path, out_dir: str | Path
) -> None:
    """Dynamic training from the relaxed supercell; writes into ``out_dir``:

    ``model.npz`` (the fit), ``dataset.extxyz`` (labelled structures), ``triggers.csv``,
    ``errors.csv`` (every MD step), ``posterior.csv`` (one row per fit), ``train.json``
    (summary with the convergence check of every round).
    """
    import time

    from alkappa.bayesfc._dynamic import run_dynamic_training

    bayes = BayesianSettings.from_settings(settings)
    check_settings(bayes)
    reference = read_dataset(structure_path)[0]
    reference.calc = None
    counter = {"made": 0, "reused": 0}
    start = time.perf_counter()
    result = run_dynamic_training(
        reference,
        _labeller(settings, store, counter),
        cutoffs=list(bayes.cutoffs),
        rule=rule_from_settings(bayes),
        md=md_from_settings(bayes),
        steps_per_round=bayes.steps_per_round,
        max_rounds=bayes.max_rounds,
        check_steps=bayes.check_steps,
        flat_tolerance=bayes.flat_tolerance,
        check_equilibration=bayes.check_equilibration,
        n_initial=bayes.initial_frames,
        initial_amplitude=bayes.initial_amplitude,
        seed=bayes.seed,
        max_calls=bayes.max_calls,
        symprec=bayes.symprec,
        progress=print,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_dataset(out / "dataset.extxyz", result.frames)
    write_csv(out / "triggers.csv", result.triggers, TRIGGER_COLUMNS)
    write_csv(out / "errors.csv", result.errors, ERROR_COLUMNS)
    write_csv(out / "posterior.csv", result.posterior, list(result.posterior[-1]))
    post = result.model.posterior
    write_json(
        out / "train.json",
        {
            "converged": result.converged,
            "oracle_calls": result.oracle_calls,
            "oracle_calls_made_now": counter["made"],
            "oracle_calls_reused": counter["reused"],
            "n_train": len(result.frames),
            "n_triggers": len(result.triggers),
            "md_steps": len(result.errors),
            "md_restarts": result.md_restarts,
            "n_parameters": result.model.basis.n_params,
            "parameters_per_order": {
                str(o): int((result.model.basis.orders == o).sum())
                for o in sorted(set(result.model.basis.orders.tolist()))
            },
            "alpha": post.alpha,
            "beta": post.beta,
            "noise_std": post.noise_std,
            "rounds": result.checks,
            "wall_seconds": time.perf_counter() - start,
        },
    )
    result.model.save(out / "model.npz")  # last: its presence marks a finished run
    print(
        f"{result.oracle_calls} oracle calls ({counter['made']} made now), "
        f"{len(result.triggers)} triggers, converged: {result.converged}"
    )


def bayes_check_step(
    settings: SettingsDict, model_path: str | Path, decision_path: str | Path
) -> None:
    """The no-new-data convergence decision of the final model (``decision.json``).

    A fresh frozen-model MD (seed ``seed + 10000``, independent of the training's checks);
    no oracle call is made.
    """
    from alkappa.bayesfc._dynamic import check_convergence
    from alkappa.bayesfc._model import BayesianFCModelFit

    bayes = BayesianSettings.from_settings(settings)
    check_settings(bayes)
    model = BayesianFCModelFit.load(model_path)
    rule = rule_from_settings(bayes).for_model(model)
    check = check_convergence(
        model,
        rule,
        md_from_settings(bayes),
        steps=bayes.check_steps,
        seed=bayes.seed + 10000,
        flat_tolerance=bayes.flat_tolerance,
        equilibration=bayes.check_equilibration,
    )
    train = read_json(Path(model_path).parent / "train.json")
    decision = {
        **check.summary(),
        "n_train": model.n_structures,
        "training_oracle_calls": train["oracle_calls"],
        "check_equilibration": bayes.check_equilibration,
        "rule": {
            k: getattr(bayes, k) for k in ("window", "factor", "absolute", "min_gap", "warmup")
        },
        "absolute_limit": rule.absolute,
        "force_noise": float(np.sqrt(3.0) * model.posterior.noise_std),
    }
    write_json(decision_path, decision)
    print(
        f"converged: {check.converged} ({len(check.would_fire)} would fire in {check.steps} "
        f"steps, rolling error change {check.relative_change:.3f})"
    )


def bayes_export_step(settings: SettingsDict, model_path: str | Path, out_dir: str | Path) -> None:
    """Force constants for phono3py and ShengBTE (see :mod:`alkappa.bayesfc._export`)."""
    from alkappa.bayesfc._export import export_force_constants
    from alkappa.bayesfc._model import BayesianFCModelFit

    model = BayesianFCModelFit.load(model_path)
    result = export_force_constants(
        model, out_dir, symprec=BayesianSettings.from_settings(settings).symprec
    )
    write_json(Path(out_dir) / "export.json", result.summary())
    print(f"wrote {', '.join(sorted(result.paths))}")


def bayes_figures_step(
    settings: SettingsDict, train_dir: str | Path, errors_png: str | Path, width_png: str | Path
) -> None:
    """Error vs MD step (triggers marked) and posterior width vs training size."""
    from alkappa.bayesfc._plots import plot_errors, plot_posterior_width

    train_dir = Path(train_dir)
    bayes = BayesianSettings.from_settings(settings)
    plot_errors(
        read_csv(train_dir / "errors.csv"),
        read_csv(train_dir / "triggers.csv"),
        errors_png,
        factor=bayes.factor,
        absolute=None if bayes.absolute == "auto" else bayes.absolute,
    )
    plot_posterior_width(read_csv(train_dir / "posterior.csv"), width_png)


class ValidationRecord(TypedDict, total=False):
    """kappa of the Bayesian force constants against the oracle's (``validation.json``);
    ``mesh_convergence_model`` and ``mesh_convergence_oracle`` only where the conductivity
    stage made the tables."""

    material: str
    temperatures_K: list[float]
    kappa_model_W_per_mK: list[float]
    kappa_oracle_W_per_mK: list[float]
    ratio: list[float]
    mesh: list[int]
    same_qpoints: bool
    isotopes: bool
    oracle_calls: int
    converged: bool
    lifetimes: Any
    frequency: Any
    mesh_convergence_model: Any
    mesh_convergence_oracle: Any


def run_bayes_validation_step(
    settings: SettingsDict,
    model_kappa: str | Path,
    oracle_kappa: str | Path,
    decision_path: str | Path,
    out_json: str | Path,
    out_png: str | Path,
) -> ValidationRecord:
    """kappa from the Bayesian model's force constants against kappa from the oracle's own
    fc2/fc3, same mesh and conductivity settings (``validation.json`` and a kappa(T) figure).

    The record, per temperature: both kappas (RTA, average of the diagonal), their ratio, the
    per-mode lifetime statistics where both are on the same q-points
    (:func:`~alkappa.phonons.compare_conductivity`); with the mesh, isotope scattering, the
    oracle calls of the training and the no-new-data decision, and the mesh-convergence
    tables of both when the conductivity stage made them (``mesh_convergence.json``).
    """
    from alkappa.phonons import compare_conductivity, plot_kappa, read_netcdf

    model = read_netcdf(model_kappa)
    oracle = read_netcdf(oracle_kappa)
    comparison = compare_conductivity(oracle, model)
    rta = comparison["kappa_rta"]
    pairs = zip(rta["other"], rta["reference"], strict=True)
    ratios = [m / o if o else float("nan") for m, o in pairs]
    decision = read_json(decision_path)
    record: ValidationRecord = {
        "material": settings["name"],
        "temperatures_K": comparison["temperature"],
        "kappa_model_W_per_mK": rta["other"],
        "kappa_oracle_W_per_mK": rta["reference"],
        "ratio": ratios,
        "mesh": [int(n) for n in model.attrs["mesh"]],
        "same_qpoints": comparison["same_qpoints"],
        "isotopes": bool(ConductivitySettings.from_settings(settings).isotopes),
        "oracle_calls": decision["training_oracle_calls"],
        "converged": bool(decision["converged"]),
        "lifetimes": comparison.get("tau"),
        "frequency": comparison.get("frequency"),
    }
    model_table = Path(model_kappa).parent / "mesh_convergence.json"
    if model_table.is_file():
        record["mesh_convergence_model"] = read_json(model_table)
    oracle_table = Path(oracle_kappa).parent / "mesh_convergence.json"
    if oracle_table.is_file():
        record["mesh_convergence_oracle"] = read_json(oracle_table)
    write_json(out_json, record)
    plot_kappa(
        {"Bayesian FC": model, "oracle fc2/fc3": oracle},
        out_png,
        title=f"{settings['name']}: Bayesian force constants against the oracle's",
    )
    for t, m, o, r in zip(
        record["temperatures_K"], rta["other"], rta["reference"], ratios, strict=True
    ):
        print(f"{t:g} K: kappa model {m:.4g}, oracle {o:.4g} W/(m K), ratio {r:.3f}")
    print(f"converged by the no-new-data criterion: {record['converged']}")
    return record
