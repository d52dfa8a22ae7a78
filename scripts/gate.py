from alkappa._smk import script_context
from alkappa.al.steps import run_gate

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_gate(settings, smk.input.structure, smk.output.limits)
