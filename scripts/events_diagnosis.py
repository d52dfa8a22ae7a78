from alkappa._smk import script_context
from alkappa.events.steps import run_events_diagnosis_step

smk = snakemake  # noqa: F821
with script_context(smk) as settings:
    R, p = smk.input, smk.params
    run_events_diagnosis_step(
        settings,
        reference_md=dict(zip(p.temperatures, R.reference, strict=True)),
        mlip_md={
            model: {T: R.mlip[i * len(p.temperatures) + k] for k, T in enumerate(p.temperatures)}
            for i, model in enumerate(p.models)
        },
        test_metrics=dict(p.metrics),
        kappa=dict(p.kappa),
        store=p.store,
        out_dir=p.out_dir,
    )
