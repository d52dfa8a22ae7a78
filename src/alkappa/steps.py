"""The step each Snakemake rule runs: one entry for every rule's ``script:``.

Every rule names the same script, ``workflow/scripts/step.py``, which calls :func:`run_rule`
with Snakemake's ``snakemake`` object. :data:`STEPS` maps the rule's name to an adapter that
reads the rule's files, wildcards and params and calls the stage's step function; the stage
module is imported when the job starts, before the log opens (a job imports only its stage).
The step functions themselves live in the stages (``alkappa.<stage>.steps``) and know nothing
of Snakemake; an adapter holds no logic beyond naming what the rule hands over. A step
function that writes files and returns nothing is named ``<what>_step``; ``run_*`` returns
a result.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from alkappa._smk import script_context

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from alkappa.settings import SettingsDict


class Job(Protocol):
    """What a step reads of Snakemake's ``snakemake`` object (``snakemake.script.Snakemake``).

    ``input``, ``output``, ``params`` and ``wildcards`` are Snakemake's named lists: items by
    name (``job.input.structure``) or position, ``keys()`` and ``get()``.
    """

    rule: str
    input: Any
    output: Any
    params: Any
    wildcards: Any
    log: Any
    threads: int


@dataclass(frozen=True)
class Step:
    """A rule's step: the stage module it imports and the adapter that calls into it."""

    module: str
    call: Callable[[Job, SettingsDict], None]


#: rule name -> its step; filled by :func:`step` below
STEPS: dict[str, Step] = {}


def step(
    *rules: str, module: str
) -> Callable[[Callable[[Job, SettingsDict], None]], Callable[[Job, SettingsDict], None]]:
    """Register the decorated adapter as the step of ``rules``; it imports from ``module``."""

    def register(
        call: Callable[[Job, SettingsDict], None],
    ) -> Callable[[Job, SettingsDict], None]:
        for rule in rules:
            if rule in STEPS:
                raise ValueError(f"rule {rule!r} has two steps")
            STEPS[rule] = Step(module, call)
        return call

    return register


def run_rule(job: Job) -> None:
    """Run the step of ``job.rule``: import its stage, then call it inside
    :func:`alkappa._smk.script_context` (the rule's log, threads and ``settings``)."""
    try:
        found = STEPS[job.rule]
    except KeyError:
        raise KeyError(f"rule {job.rule!r} has no step in alkappa.steps.STEPS") from None
    # as each rule's own script did: the stage is imported before the log opens and the
    # threads are set, so the time the log reports is the step's alone
    importlib.import_module(found.module)
    with script_context(job) as settings:
        found.call(job, settings)


def _optional(job: Job, name: str) -> Any:
    """The named input, or None where the rule did not declare it (an unpacked dict input)."""
    return getattr(job.input, name) if name in job.input.keys() else None


def _one_or_none(files: str | Iterable[str]) -> str | None:
    """The file of an input that is one file or none (an input function returning [])."""
    if isinstance(files, str):
        return files
    return next(iter(files), None)


def _parent(path: str) -> Path:
    return Path(path).parent


def _by_dir_name(paths: Iterable[str]) -> dict[str, str]:
    """Each file by the name of its directory (the method or model it belongs to)."""
    return {Path(p).parent.name: p for p in paths}


# -- reference data (workflow/rules/reference.smk) -----------------------------------------


@step("prepare_structure", module="alkappa.al.steps")
def _prepare_structure(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.steps import prepare_structure_step

    prepare_structure_step(settings, job.output.structure, job.output.record)


@step("initial_data", module="alkappa.al.steps")
def _initial_data(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.steps import initial_data_step

    initial_data_step(
        settings, job.input.structure, job.params.store, job.output.initial, job.output.record
    )


@step("harmonic_test_set", module="alkappa.al.steps")
def _harmonic_test_set(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.steps import harmonic_test_set_step

    harmonic_test_set_step(
        settings, job.input.structure, job.params.store, job.output.test, job.output.record
    )


@step("reference_md", module="alkappa.reference_data")
def _reference_md(job: Job, settings: SettingsDict) -> None:
    from alkappa.reference_data import run_reference_md

    run_reference_md(
        settings,
        job.input.structure,
        job.input.record,
        job.output.trajectory,
        temperature=float(job.wildcards.T),
    )


@step("reference_split", module="alkappa.reference_data")
def _reference_split(job: Job, settings: SettingsDict) -> None:
    from alkappa.reference_data import run_reference_split

    run_reference_split(settings, job.input.md, job.output.test, job.output.pool, job.output.record)


# -- active learning (workflow/rules/al.smk) ------------------------------------------------


@step("train_member", module="alkappa.al.steps")
def _train_member(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.steps import train_member_step, warm_start_checkpoint

    train_member_step(
        settings,
        job.input.dataset,
        _parent(job.output.info),
        iteration=int(job.wildcards.it),
        member=int(job.wildcards.member),
        threads=job.threads,
        init_checkpoint=warm_start_checkpoint(job.input.previous),
    )


@step("evaluate", "evaluate_thresholds", module="alkappa.al.steps")
def _evaluate(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.steps import evaluate_step, member_model_files

    evaluate_step(
        settings,
        member_model_files(job.input.members),
        job.input.test,
        job.output.metrics,
        threads=job.threads,
    )


@step("explore", module="alkappa.al.steps")
def _explore(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.steps import explore_step, member_model_files

    explore_step(
        settings,
        member_model_files(job.input.members),
        job.input.structure,
        job.input.record,
        job.output.trajectory,
        temperature=float(job.wildcards.T),
        iteration=int(job.wildcards.it),
        threads=job.threads,
    )


@step("select", module="alkappa.al.steps")
def _select(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.steps import select_step

    select_step(
        settings,
        job.input.trajectories,
        job.input.metrics,
        job.output.selection,
        job.output.candidates,
        iteration=int(job.wildcards.it),
    )


@step("decide", module="alkappa.al.steps")
def _decide(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.steps import decide_step

    decide_step(
        settings, int(job.wildcards.it), job.input.selection, job.input.metrics, job.output.decision
    )


@step("label", module="alkappa.al.steps")
def _label(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.steps import label_step

    label_step(
        settings, job.input.candidates, int(job.wildcards.k), job.params.store, job.output.frame
    )


@step("gate", module="alkappa.al.steps")
def _gate(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.steps import gate_step

    gate_step(settings, job.input.structure, job.output.limits)


@step("merge", module="alkappa.al.steps")
def _merge(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.steps import merge_step

    merge_step(
        job.input.dataset,
        job.input.labels,
        job.output.dataset,
        job.output.record,
        iteration=int(job.wildcards.it),
        gate_path=_one_or_none(job.input.gate),  # none without the physical gate
    )


@step("summary", module="alkappa.al.steps")
def _summary(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.steps import summary_step

    summary_step(
        settings,
        relax_record=job.input.relax,
        initial_record=job.input.initial,
        test_record=job.input.get("test_record"),
        initial_dataset=job.input.initial_dataset,
        metrics=job.input.metrics,
        selections=job.input.selections,
        decisions=job.input.decisions,
        merges=job.input.merges,
        trajectories=job.input.trajectories,
        members=job.input.members,
        out_summary=job.output.summary,
        out_curve=job.output.curve,
        out_calibration=job.output.calibration,
        out_ensemble=job.output.ensemble,
    )


@step("oracle_cost", module="alkappa.al.cost")
def _oracle_cost(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.cost import run_oracle_cost

    run_oracle_cost(job.params.directory, job.output.table, job.output.record, job.output.figure)


# -- baselines (workflow/rules/baseline.smk) -------------------------------------------------


@step("random_dataset", module="alkappa.al.baseline")
def _random_dataset(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.baseline import run_random_dataset

    run_random_dataset(
        settings,
        job.input.initial,
        job.input.pool,
        job.input.al,
        job.output.dataset,
        iteration=int(job.wildcards.it),
    )


@step("compare_random", module="alkappa.al.baseline")
def _compare_random(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.baseline import run_compare_random

    run_compare_random(
        job.input.summary,
        job.input.al_metrics,
        job.input.random_metrics,
        job.output.table,
        job.output.figure,
    )


@step("aimd_plan", module="alkappa.al.aimd_baseline")
def _aimd_plan(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.aimd_baseline import run_aimd_plan

    run_aimd_plan(settings, job.params.directory, job.output.plan)


@step("aimd_md", module="alkappa.al.aimd_baseline")
def _aimd_md(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.aimd_baseline import run_aimd_md

    run_aimd_md(
        settings,
        job.input.structure,
        job.input.record,
        job.input.plan,
        job.output.trajectory,
        temperature=float(job.wildcards.T),
    )


@step("aimd_dataset", module="alkappa.al.aimd_baseline")
def _aimd_dataset(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.aimd_baseline import run_aimd_dataset

    run_aimd_dataset(
        job.input.plan, job.input.trajectories, job.output.dataset, point=int(job.wildcards.it)
    )


@step("harmonic_dataset", module="alkappa.al.harmonic_baseline")
def _harmonic_dataset(job: Job, settings: SettingsDict) -> None:
    from alkappa.al.harmonic_baseline import run_harmonic_dataset

    run_harmonic_dataset(
        settings,
        job.input.structure,
        job.input.initial,
        job.input.al,
        job.input.final,
        job.params.store,
        job.output.dataset,
        job.output.record,
        iteration=int(job.wildcards.it),
    )


# -- phonons and phono3py conductivity (workflow/rules/phonons.smk) --------------------------


@step("phonons", module="alkappa.phonons.steps")
def _phonons(job: Job, settings: SettingsDict) -> None:
    from alkappa.phonons.steps import phonons_step

    model = _optional(job, "model")
    phonons_step(
        settings,
        job.input.structure,
        _parent(job.output.phonopy),
        method=job.wildcards.method,
        model_dir=_parent(model) if model is not None else None,
        store=job.params.store,
    )


@step("phonon_comparison", module="alkappa.phonons.steps")
def _phonon_comparison(job: Job, settings: SettingsDict) -> None:
    from alkappa.phonons.steps import phonon_comparison_step

    phonon_comparison_step(
        settings,
        {_parent(p).name: _parent(p) for p in job.input.summaries},
        job.output.summary,
        job.output.figure,
    )


@step("fc3", module="alkappa.phonons.steps")
def _fc3(job: Job, settings: SettingsDict) -> None:
    from alkappa.phonons.steps import fc3_step

    model = _optional(job, "model")
    fc3_step(
        settings,
        job.input.structure,
        _parent(job.output.fc3),
        method=job.wildcards.method,
        model_dir=_parent(model) if model is not None else None,
        store=job.params.store,
    )


@step("kappa", module="alkappa.phonons.steps")
def _kappa(job: Job, settings: SettingsDict) -> None:
    from alkappa.phonons.steps import kappa_step

    kappa_step(settings, _parent(job.input.fc3), job.output.netcdf)


@step("iteration_kappa", module="alkappa.phonons.steps")
def _iteration_kappa(job: Job, settings: SettingsDict) -> None:
    from alkappa.phonons.steps import iteration_kappa_step

    iteration_kappa_step(
        settings,
        job.input.structure,
        list(job.input.members),
        job.output.netcdf,
        threads=job.threads,
    )


@step("kappa_curve", module="alkappa.phonons.steps")
def _kappa_curve(job: Job, settings: SettingsDict) -> None:
    from alkappa.phonons.steps import kappa_curve_step

    kinds = [kind for kind in ("al", "random") if kind in job.input.keys()]
    kappa_curve_step(
        job.input.oracle,
        {kind: list(getattr(job.input, kind)) for kind in kinds},
        job.output.table,
        job.output.figure,
        title=str(job.wildcards.material),
    )


@step("kappa_commensurate", module="alkappa.phonons.steps")
def _kappa_commensurate(job: Job, settings: SettingsDict) -> None:
    from alkappa.phonons.steps import kappa_commensurate_step

    kappa_commensurate_step(settings, _parent(job.input.fc3), job.output.netcdf)


@step("conductivity_comparison", module="alkappa.phonons.steps")
def _conductivity_comparison(job: Job, settings: SettingsDict) -> None:
    from alkappa.phonons.steps import conductivity_comparison_step

    conductivity_comparison_step(
        settings,
        _by_dir_name(job.input.kappa),
        job.output.summary,
        job.output.kappa,
        job.output.lifetimes,
    )


@step("anharmonicity", module="alkappa.phonons.steps")
def _anharmonicity(job: Job, settings: SettingsDict) -> None:
    from alkappa.phonons.steps import anharmonicity_step, trajectory_labels

    anharmonicity_step(
        settings,
        trajectory_labels(job.input.trajectories),
        job.input.force_constants,
        job.output.summary,
        job.output.figure,
    )


# -- Green-Kubo (workflow/rules/greenkubo.smk) -----------------------------------------------


@step("gk_cell", module="alkappa.greenkubo.steps")
def _gk_cell(job: Job, settings: SettingsDict) -> None:
    from alkappa.greenkubo.steps import gk_cell_step

    gk_cell_step(
        settings,
        job.input.structure,
        _parent(job.input.model),
        job.params.supercell,
        _parent(job.output.structure),
    )


@step("gk_equilibrate", module="alkappa.greenkubo.steps")
def _gk_equilibrate(job: Job, settings: SettingsDict) -> None:
    from alkappa.greenkubo.steps import equilibration_step

    equilibration_step(
        settings,
        job.input.structure,
        _parent(job.input.model),
        job.output.equilibration,
        temperature=float(job.wildcards.T),
        threads=job.threads,
        force_constants=_optional(job, "force_constants"),
    )


@step("gk_run", module="alkappa.greenkubo.steps")
def _gk_run(job: Job, settings: SettingsDict) -> None:
    from alkappa.greenkubo.steps import next_run_steps, nve_step

    nve_step(
        settings,
        job.input.structure,
        _parent(job.input.model),
        job.output.run,
        index=int(job.wildcards.k),
        temperature=float(job.wildcards.T),
        threads=job.threads,
        force_constants=_optional(job, "force_constants"),
        # a run added after the runs were extended is made at their length at once
        steps=next_run_steps(_optional(job, "round")),
    )


@step("gk_extend", module="alkappa.greenkubo.steps")
def _gk_extend(job: Job, settings: SettingsDict) -> None:
    from alkappa.greenkubo.steps import extend_step, next_run_steps

    made = extend_step(
        settings,
        job.input.structure,
        _parent(job.input.model),
        job.input.run,
        index=int(job.wildcards.k),
        steps=next_run_steps(job.input.round),
        temperature=float(job.wildcards.T),
        threads=job.threads,
        force_constants=_optional(job, "force_constants"),
    )
    if Path(made) != Path(job.output.segment):
        raise RuntimeError(f"run {job.wildcards.k}: made {made}, not {job.output.segment}")


@step("gk_round", module="alkappa.greenkubo.steps")
def _gk_round(job: Job, settings: SettingsDict) -> None:
    from alkappa.greenkubo.steps import round_step

    round_step(
        settings,
        job.input.structure,
        _parent(job.input.model),
        job.output.record,
        round_index=int(job.wildcards.round),
        previous=_optional(job, "previous"),
        temperature=float(job.wildcards.T),
        threads=job.threads,
    )


@step("production", module="alkappa.greenkubo.steps")
def _production(job: Job, settings: SettingsDict) -> None:
    from alkappa.greenkubo.steps import production_step

    production_step(
        settings,
        job.input.structure,
        _parent(job.input.model),
        list(job.input.rounds),
        job.output.record,
        temperature=float(job.wildcards.T),
        threads=job.params.md_threads,
    )


@step("green_kubo", module="alkappa.greenkubo.steps")
def _green_kubo(job: Job, settings: SettingsDict) -> None:
    from alkappa.greenkubo.steps import green_kubo_step

    green_kubo_step(
        settings,
        job.input.production,
        job.output.netcdf,
        job.output.figure,
        temperature=float(job.wildcards.T),
        out_convergence=job.output.convergence,
    )


@step("mode_lifetimes", module="alkappa.greenkubo.steps")
def _mode_lifetimes(job: Job, settings: SettingsDict) -> None:
    from alkappa.greenkubo.steps import mode_lifetimes_step

    mode_lifetimes_step(
        settings,
        job.input.production,
        job.input.force_constants,
        job.input.kappa,
        job.output.netcdf,
        job.output.summary,
        job.output.figure,
        temperature=float(job.wildcards.T),
    )


@step("finite_size", module="alkappa.greenkubo.steps")
def _finite_size(job: Job, settings: SettingsDict) -> None:
    from alkappa.greenkubo.steps import finite_size_step

    finite_size_step(
        settings,
        job.input.green_kubo,
        job.input.lifetimes,
        job.input.force_constants,
        job.output.netcdf,
        job.output.figure,
        temperature=float(job.wildcards.T),
    )


@step("greenkubo_summary", module="alkappa.greenkubo.steps")
def _greenkubo_summary(job: Job, settings: SettingsDict) -> None:
    from alkappa.greenkubo.steps import by_temperature, greenkubo_summary_step

    greenkubo_summary_step(
        settings,
        by_temperature(job.input.greenkubo),
        by_temperature(job.input.productions),
        by_temperature(job.input.lifetimes),
        _by_dir_name(job.input.kappa),
        job.output.summary,
        job.output.figure,
        finite_size=by_temperature(job.input.finite_size),
        structure=job.input.structure,
        size_check=list(job.input.size_check),
    )


# -- events diagnosis (workflow/rules/events.smk) --------------------------------------------


@step("events_md", module="alkappa.events.steps")
def _events_md(job: Job, settings: SettingsDict) -> None:
    from alkappa.events.steps import events_md_step

    events_md_step(
        settings,
        list(job.input.models),
        job.input.structure,
        job.input.record,
        job.output.trajectory,
        temperature=float(job.wildcards.T),
        model=job.wildcards.model,
        threads=job.threads,
    )


@step("events_kappa", module="alkappa.events.steps")
def _events_kappa(job: Job, settings: SettingsDict) -> None:
    from alkappa.events.steps import events_kappa_step

    events_kappa_step(
        settings,
        list(job.input.models),
        job.input.structure,
        job.output.netcdf,
        threads=job.threads,
    )


@step("events_diagnosis", module="alkappa.events.steps")
def _events_diagnosis(job: Job, settings: SettingsDict) -> None:
    from alkappa.events.steps import mlip_md_by_model, run_events_diagnosis_step

    temperatures = job.params.temperatures
    run_events_diagnosis_step(
        settings,
        reference_md=dict(zip(temperatures, job.input.reference, strict=True)),
        mlip_md=mlip_md_by_model(job.input.mlip, job.params.models, temperatures),
        test_metrics=dict(job.params.metrics),
        kappa=dict(job.params.kappa),
        store=job.params.store,
        out_dir=job.params.out_dir,
    )


# -- Bayesian force constants (workflow/rules/bayesian.smk) ----------------------------------


@step("bayes_train", module="alkappa.bayesfc.steps")
def _bayes_train(job: Job, settings: SettingsDict) -> None:
    from alkappa.bayesfc.steps import bayes_train_step

    bayes_train_step(settings, job.input.structure, job.params.store, _parent(job.output.model))


@step("bayes_converged", module="alkappa.bayesfc.steps")
def _bayes_converged(job: Job, settings: SettingsDict) -> None:
    from alkappa.bayesfc.steps import bayes_check_step

    bayes_check_step(settings, job.input.model, job.output.decision)


@step("bayes_export", module="alkappa.bayesfc.steps")
def _bayes_export(job: Job, settings: SettingsDict) -> None:
    from alkappa.bayesfc.steps import bayes_export_step

    bayes_export_step(settings, job.input.model, _parent(job.output.summary))


@step("bayes_kappa", module="alkappa.phonons.steps")
def _bayes_kappa(job: Job, settings: SettingsDict) -> None:
    from alkappa.phonons.steps import kappa_step

    kappa_step(settings, _parent(job.input.summary), job.output.netcdf)


@step("bayes_validation", module="alkappa.bayesfc.steps")
def _bayes_validation(job: Job, settings: SettingsDict) -> None:
    from alkappa.bayesfc.steps import run_bayes_validation_step

    run_bayes_validation_step(
        settings,
        job.input.model,
        job.input.oracle,
        job.input.decision,
        job.output.summary,
        job.output.figure,
    )


@step("bayes_figures", module="alkappa.bayesfc.steps")
def _bayes_figures(job: Job, settings: SettingsDict) -> None:
    from alkappa.bayesfc.steps import bayes_figures_step

    bayes_figures_step(settings, _parent(job.input.errors), job.output.errors, job.output.width)


# -- multi-fidelity (workflow/rules/multifidelity.smk) ---------------------------------------


@step("mf_al_data", module="alkappa.multifidelity.steps")
def _mf_al_data(job: Job, settings: SettingsDict) -> None:
    from alkappa.multifidelity.steps import mf_al_data_step

    mf_al_data_step(
        settings,
        job.input.initial,
        job.input.test,
        job.params.store,
        job.output.initial,
        job.output.test,
        job.output.record,
    )


@step("mf_data", module="alkappa.multifidelity.steps")
def _mf_data(job: Job, settings: SettingsDict) -> None:
    from alkappa.multifidelity.steps import mf_data_step

    mf_data_step(
        settings,
        job.input.pool,
        job.input.test,
        job.params.store,
        _parent(job.output.record),
    )


@step("mf_low_model", module="alkappa.multifidelity.steps")
def _mf_low_model(job: Job, settings: SettingsDict) -> None:
    from alkappa.multifidelity.steps import mf_low_model_step

    mf_low_model_step(settings, _parent(job.input.data), job.output.model, threads=job.threads)


@step("mf_train", module="alkappa.multifidelity.steps")
def _mf_train(job: Job, settings: SettingsDict) -> None:
    from alkappa.multifidelity.steps import mf_train_step

    mf_train_step(
        settings,
        _parent(job.input.data),
        job.wildcards.approach,
        int(job.wildcards.n),
        job.output.errors,
        low_model=_optional(job, "low_model"),
        threads=job.threads,
    )


@step("mf_study", module="alkappa.multifidelity.steps")
def _mf_study(job: Job, settings: SettingsDict) -> None:
    from alkappa.multifidelity.steps import mf_study_step

    mf_study_step(
        job.input.errors,
        job.input.data,
        job.output.csv,
        job.output.netcdf,
        job.output.figure,
        job.output.record,
    )


# -- the campaign (workflow/rules/campaign.smk) ----------------------------------------------


@step("campaign_summary", module="alkappa.campaign.steps")
def _campaign_summary(job: Job, settings: SettingsDict) -> None:
    from alkappa.campaign.steps import campaign_summary_step

    campaign_summary_step(
        job.params.materials, job.params.files, job.output.summary, job.output.figure
    )
