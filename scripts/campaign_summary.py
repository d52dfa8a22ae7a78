from alkappa._smk import script_context
from alkappa.campaign.steps import run_campaign_summary_step

smk = snakemake  # noqa: F821
with script_context(smk):
    run_campaign_summary_step(
        smk.params.materials, smk.params.files, smk.output.summary, smk.output.figure
    )
