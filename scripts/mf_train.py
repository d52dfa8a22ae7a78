from pathlib import Path

from alkappa._smk import script_context
from alkappa.multifidelity.steps import run_mf_train_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_mf_train_step(
        settings,
        Path(smk.input.data).parent,
        smk.wildcards.approach,
        int(smk.wildcards.n),
        smk.output.errors,
        low_model=smk.input.low_model if "low_model" in smk.input.keys() else None,
        threads=smk.threads,
    )
