from alkappa._smk import script_context
from alkappa.greenkubo.steps import run_green_kubo_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_green_kubo_step(
        settings,
        smk.input.production,
        smk.output.netcdf,
        smk.output.figure,
        temperature=float(smk.wildcards.T),
        out_convergence=smk.output.convergence,
    )
