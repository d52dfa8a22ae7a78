from alkappa._smk import script_context
from alkappa.al.steps import run_summary

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_summary(
        settings,
        relax_record=smk.input.relax,
        initial_record=smk.input.initial,
        test_record=smk.input.get("test_record"),
        initial_dataset=smk.input.initial_dataset,
        metrics=smk.input.metrics,
        selections=smk.input.selections,
        decisions=smk.input.decisions,
        merges=smk.input.merges,
        trajectories=smk.input.trajectories,
        members=smk.input.members,
        out_summary=smk.output.summary,
        out_curve=smk.output.curve,
        out_calibration=smk.output.calibration,
        out_ensemble=smk.output.ensemble,
    )
