from alkappa._smk import script_context
from alkappa.events.steps import run_events_kappa_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_events_kappa_step(
        settings,
        list(smk.input.models),
        smk.input.structure,
        smk.output.netcdf,
        threads=smk.threads,
    )
