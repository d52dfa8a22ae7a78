from pathlib import Path

from alkappa._smk import script_context
from alkappa.phonons.steps import run_fc3_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_fc3_step(
        settings,
        smk.input.structure,
        Path(smk.output.fc3).parent,
        method=smk.wildcards.method,
        model_dir=Path(smk.input.model).parent if "model" in smk.input.keys() else None,
        store=smk.params.store,
    )
