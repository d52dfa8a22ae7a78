from alkappa._smk import script_context
from alkappa.al.harmonic_baseline import run_harmonic_dataset

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_harmonic_dataset(
        settings,
        smk.input.structure,
        smk.input.initial,
        smk.input.al,
        smk.input.final,
        smk.params.store,
        smk.output.dataset,
        smk.output.record,
        iteration=int(smk.wildcards.it),
    )
