from pathlib import Path

from alkappa._smk import script_context
from alkappa.greenkubo.steps import run_equilibration_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_equilibration_step(
        settings,
        smk.input.structure,
        Path(smk.input.model).parent,
        smk.output.equilibration,
        temperature=float(smk.wildcards.T),
        threads=smk.threads,
        force_constants=(
            smk.input.force_constants if "force_constants" in smk.input.keys() else None
        ),
    )
