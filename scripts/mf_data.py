from pathlib import Path

from alkappa._smk import script_context
from alkappa.multifidelity.steps import run_mf_data_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_mf_data_step(
        settings,
        smk.input.pool,
        smk.input.test,
        smk.params.store,
        Path(smk.output.record).parent,
    )
