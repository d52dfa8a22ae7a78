from alkappa._smk import script_context
from alkappa.al.aimd_baseline import run_aimd_plan

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_aimd_plan(settings, smk.params.directory, smk.output.plan)
