from pathlib import Path

from alkappa._smk import script_context
from alkappa.phonons.steps import run_phonon_comparison_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_phonon_comparison_step(
        settings,
        {Path(p).parent.name: Path(p).parent for p in smk.input.summaries},
        smk.output.summary,
        smk.output.figure,
    )
