from alkappa._smk import script_context
from alkappa.al.steps import member_model_files, run_evaluate

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_evaluate(
        settings,
        member_model_files(smk.input.members),
        smk.input.test,
        smk.output.metrics,
        threads=smk.threads,
    )
