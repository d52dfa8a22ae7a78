from alkappa._smk import script_context
from alkappa.al.cost import run_oracle_cost

smk = snakemake  # noqa: F821
with script_context(smk):
    run_oracle_cost(
        smk.params.directory,
        smk.output.table,
        smk.output.record,
        smk.output.figure,
    )
