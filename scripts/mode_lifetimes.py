from alkappa._smk import script_context
from alkappa.greenkubo.steps import run_mode_lifetimes_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_mode_lifetimes_step(
        settings,
        smk.input.production,
        smk.input.force_constants,
        smk.input.kappa,
        smk.output.netcdf,
        smk.output.summary,
        smk.output.figure,
        temperature=float(smk.wildcards.T),
    )
