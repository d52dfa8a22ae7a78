from alkappa._smk import script_context
from alkappa.multifidelity.steps import run_mf_study_step

smk = snakemake  # noqa: F821
with script_context(smk):
    run_mf_study_step(
        smk.input.errors,
        smk.input.data,
        smk.output.csv,
        smk.output.netcdf,
        smk.output.figure,
        smk.output.record,
    )
