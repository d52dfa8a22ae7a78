from alkappa._smk import script_context
from alkappa.al.steps import run_initial_data

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_initial_data(
        settings, smk.input.structure, smk.params.store, smk.output.initial, smk.output.record
    )
