from alkappa._smk import script_context
from alkappa.al.steps import member_model_files, run_explore

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_explore(
        settings,
        member_model_files(smk.input.members),
        smk.input.structure,
        smk.input.record,
        smk.output.trajectory,
        temperature=float(smk.wildcards.T),
        iteration=int(smk.wildcards.it),
        threads=smk.threads,
    )
