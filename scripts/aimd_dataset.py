from alkappa._smk import script_context
from alkappa.al.aimd_baseline import run_aimd_dataset

smk = snakemake  # noqa: F821
with script_context(smk):
    run_aimd_dataset(
        smk.input.plan, smk.input.trajectories, smk.output.dataset, point=int(smk.wildcards.it)
    )
