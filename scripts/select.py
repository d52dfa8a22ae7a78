from alkappa._smk import script_context
from alkappa.al.steps import run_select

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_select(
        settings,
        smk.input.trajectories,
        smk.input.metrics,
        smk.output.selection,
        smk.output.candidates,
        iteration=int(smk.wildcards.it),
    )
