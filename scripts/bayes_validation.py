from alkappa._smk import script_context
from alkappa.bayesfc.steps import run_bayes_validation_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_bayes_validation_step(
        settings,
        smk.input.model,
        smk.input.oracle,
        smk.input.decision,
        smk.output.summary,
        smk.output.figure,
    )
