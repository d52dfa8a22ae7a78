from pathlib import Path

from alkappa._smk import script_context
from alkappa.greenkubo.steps import run_gk_cell_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_gk_cell_step(
        settings,
        smk.input.structure,
        Path(smk.input.model).parent,
        smk.params.supercell,
        Path(smk.output.structure).parent,
    )
