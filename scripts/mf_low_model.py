from pathlib import Path

from alkappa._smk import script_context
from alkappa.multifidelity.steps import run_mf_low_model_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_mf_low_model_step(
        settings, Path(smk.input.data).parent, smk.output.model, threads=smk.threads
    )
