from pathlib import Path

from alkappa._smk import script_context
from alkappa.phonons.steps import run_kappa_commensurate_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_kappa_commensurate_step(settings, Path(smk.input.fc3).parent, smk.output.netcdf)
