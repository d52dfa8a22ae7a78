# Helpers of the rules in campaign.smk, which includes this file at its top: input functions,
# paths and targets.


def campaign_files():
    """Per material, the files the campaign summary reads (None: stage not run)."""
    files = {}
    for m in MATERIALS:
        settings = msettings(m)
        phonons, kappa = (
            settings["phonons"]["enabled"],
            settings["conductivity"]["enabled"],
        )
        files[m] = {
            "al_summary": f"{R}/{m}/al/summary.csv",
            "anharmonicity": f"{R}/{m}/phonons/anharmonicity.json" if phonons else None,
            "conductivity": f"{R}/{m}/conductivity/comparison.json" if kappa else None,
            "greenkubo": (
                f"{R}/{m}/greenkubo/summary.json" if m in gk_materials() else None
            ),
            "events": events_diagnosis(m),
        }
    return files


def campaign_inputs(wildcards):
    return [p for f in campaign_files().values() for p in f.values() if p is not None]


def campaign_outputs():
    return [f"{R}/summary.csv"]


def figure_outputs(wildcards=None):
    """Every figure of the campaign (what `snakemake figures` builds)."""
    figures = [f"{R}/summary.png"]
    for m in MATERIALS:
        settings = msettings(m)
        figures += [
            f"{R}/{m}/al/learning_curve.png",
            f"{R}/{m}/al/learning_curve_cost.png",
            f"{R}/{m}/al/calibration.png",
        ]
        if random_baseline(m):
            figures.append(f"{R}/{m}/al/al_vs_random.png")
        if settings["phonons"]["enabled"]:
            figures += [
                f"{R}/{m}/phonons/bands.png",
                f"{R}/{m}/phonons/anharmonicity.png",
            ]
        if settings["conductivity"]["enabled"]:
            figures += [
                f"{R}/{m}/conductivity/kappa.png",
                f"{R}/{m}/conductivity/lifetimes.png",
            ]
            if settings["conductivity"]["track_iterations"]:
                figures.append(f"{R}/{m}/al/kappa_curve.png")
        if m in gk_materials():
            figures.append(f"{R}/{m}/greenkubo/kappa_T.png")
            for t in gk_temperatures(m):
                figures += [
                    f"{gk_dir(m, t)}/greenkubo.png",
                    f"{gk_dir(m, t)}/convergence.png",
                ]
                if gk_lifetimes(m):
                    figures += [
                        f"{gk_dir(m, t)}/lifetimes.png",
                        f"{gk_dir(m, t)}/finite_size.png",
                    ]
    for m in events_materials():
        figures += [f"{R}/{m}/events/timeline.png", f"{R}/{m}/events/lifetimes.png"]
    figures += [p for p in bayesian_outputs() if p.endswith(".png")]
    figures += [f"{mf_dir(m)}/study.png" for m in mf_materials()]
    return figures
