from alkappa._smk import script_context
from alkappa.reference_data import run_reference_split

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_reference_split(settings, smk.input.md, smk.output.test, smk.output.pool, smk.output.record)
