from alkappa._smk import script_context
from alkappa.phonons.steps import run_anharmonicity_step, trajectory_labels

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    run_anharmonicity_step(
        settings,
        trajectory_labels(smk.input.trajectories),
        smk.input.force_constants,
        smk.output.summary,
        smk.output.figure,
    )
