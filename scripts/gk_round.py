from pathlib import Path

from alkappa._smk import script_context
from alkappa.greenkubo.steps import run_round_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_round_step(
        settings,
        smk.input.structure,
        Path(smk.input.model).parent,
        smk.output.record,
        round_index=int(smk.wildcards.round),
        previous=smk.input.previous if "previous" in smk.input.keys() else None,
        temperature=float(smk.wildcards.T),
        threads=smk.threads,
    )
