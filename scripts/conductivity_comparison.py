from pathlib import Path

from alkappa._smk import script_context
from alkappa.phonons.steps import run_conductivity_comparison_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_conductivity_comparison_step(
        settings,
        {Path(p).parent.name: p for p in smk.input.kappa},
        smk.output.summary,
        smk.output.kappa,
        smk.output.lifetimes,
    )
