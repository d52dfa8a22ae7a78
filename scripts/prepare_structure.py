from alkappa._smk import script_context
from alkappa.al.steps import run_prepare_structure

with script_context(snakemake) as settings:  # noqa: F821
    run_prepare_structure(settings, snakemake.output.structure, snakemake.output.record)  # noqa: F821
