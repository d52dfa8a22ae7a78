from alkappa._smk import script_context
from alkappa.al.baseline import run_random_dataset

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_random_dataset(
        settings,
        smk.input.initial,
        smk.input.pool,
        smk.input.al,
        smk.output.dataset,
        iteration=int(smk.wildcards.it),
    )
