from alkappa._smk import script_context
from alkappa.bayesfc.steps import run_bayes_check_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_bayes_check_step(settings, smk.input.model, smk.output.decision)
