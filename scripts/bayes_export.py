from pathlib import Path

from alkappa._smk import script_context
from alkappa.bayesfc.steps import run_bayes_export_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_bayes_export_step(settings, smk.input.model, Path(smk.output.summary).parent)
