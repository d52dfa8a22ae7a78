from alkappa._smk import script_context
from alkappa.al.steps import run_merge

smk = snakemake  # noqa: F821
with script_context(smk):
    gate = smk.input.gate  # [] without the physical gate
    run_merge(
        smk.input.dataset,
        smk.input.labels,
        smk.output.dataset,
        smk.output.record,
        iteration=int(smk.wildcards.it),
        gate_path=gate if isinstance(gate, str) else (gate[0] if gate else None),
    )
