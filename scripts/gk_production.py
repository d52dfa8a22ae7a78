from pathlib import Path

from alkappa._smk import script_context
from alkappa.greenkubo.steps import run_production_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_production_step(
        settings,
        smk.input.structure,
        Path(smk.input.model).parent,
        list(smk.input.rounds),
        smk.output.record,
        temperature=float(smk.wildcards.T),
        threads=smk.params.md_threads,
    )
