from alkappa._smk import script_context
from alkappa.al.steps import run_test_set

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_test_set(
        settings, smk.input.structure, smk.params.store, smk.output.test, smk.output.record
    )
