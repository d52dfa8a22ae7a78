from alkappa._smk import script_context
from alkappa.al.steps import run_decide

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_decide(
        settings, int(smk.wildcards.it), smk.input.selection, smk.input.metrics, smk.output.decision
    )
