from pathlib import Path

from alkappa._smk import script_context
from alkappa.al.steps import run_train_member
from alkappa.io import read_json

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    # warm start from the previous iteration's packaged model of the same member
    previous = None
    if smk.input.previous:
        info = read_json(smk.input.previous)
        previous = Path(smk.input.previous).parent / info["model_file"]
    run_train_member(
        settings,
        smk.input.dataset,
        Path(smk.output.info).parent,
        iteration=int(smk.wildcards.it),
        member=int(smk.wildcards.member),
        threads=smk.threads,
        init_checkpoint=previous or None,
    )
