from alkappa._smk import script_context
from alkappa.multifidelity.steps import run_mf_al_data_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_mf_al_data_step(
        settings,
        smk.input.initial,
        smk.input.test,
        smk.params.store,
        smk.output.initial,
        smk.output.test,
        smk.output.record,
    )
