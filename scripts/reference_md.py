from alkappa._smk import script_context
from alkappa.reference_data import run_reference_md

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_reference_md(
        settings,
        smk.input.structure,
        smk.input.record,
        smk.output.trajectory,
        temperature=float(smk.wildcards.T),
    )
