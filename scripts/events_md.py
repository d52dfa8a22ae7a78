from alkappa._smk import script_context
from alkappa.events.steps import run_events_md_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_events_md_step(
        settings,
        list(smk.input.models),
        smk.input.structure,
        smk.input.record,
        smk.output.trajectory,
        temperature=float(smk.wildcards.T),
        model=smk.wildcards.model,
        threads=smk.threads,
    )
