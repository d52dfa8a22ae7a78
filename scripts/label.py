from alkappa._smk import script_context
from alkappa.al.steps import run_label

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_label(
        settings, smk.input.candidates, int(smk.wildcards.k), smk.params.store, smk.output.frame
    )
