from pathlib import Path

from alkappa._smk import script_context
from alkappa.greenkubo.steps import by_temperature, run_greenkubo_summary_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_greenkubo_summary_step(
        settings,
        by_temperature(smk.input.greenkubo),
        by_temperature(smk.input.productions),
        by_temperature(smk.input.lifetimes),
        {Path(p).parent.name: p for p in smk.input.kappa},
        smk.output.summary,
        smk.output.figure,
        finite_size=by_temperature(smk.input.finite_size),
        structure=smk.input.structure,
        size_check=list(smk.input.size_check),
    )
