from alkappa._smk import script_context
from alkappa.al.aimd_baseline import run_aimd_md

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_aimd_md(
        settings,
        smk.input.structure,
        smk.input.record,
        smk.input.plan,
        smk.output.trajectory,
        temperature=float(smk.wildcards.T),
    )
