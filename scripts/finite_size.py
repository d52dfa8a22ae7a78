from alkappa._smk import script_context
from alkappa.greenkubo.steps import run_finite_size_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_finite_size_step(
        settings,
        smk.input.green_kubo,
        smk.input.lifetimes,
        smk.input.force_constants,
        smk.output.netcdf,
        smk.output.figure,
        temperature=float(smk.wildcards.T),
    )
