from alkappa._smk import script_context
from alkappa.al.baseline import run_compare_random

smk = snakemake  # noqa: F821
with script_context(smk):
    run_compare_random(
        smk.input.summary,
        smk.input.al_metrics,
        smk.input.random_metrics,
        smk.output.table,
        smk.output.figure,
    )
