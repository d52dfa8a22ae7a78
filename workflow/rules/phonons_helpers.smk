# Helpers of the rules in phonons.smk, which includes this file at its top: input functions,
# paths and targets.


def phonon_methods(material):
    """Where harmonic phonons are computed: always with the MLIP, with the oracle if asked."""
    return ["mlip", "oracle"] if msettings(material)["phonons"]["oracle"] else ["mlip"]


def force_inputs(wildcards):
    """The final ensemble for MLIP force constants; nothing extra for the oracle."""
    if wildcards.method == "mlip":
        return {"model": f"{R}/{wildcards.material}/model/ensemble.json"}
    return {}


def method_threads(wildcards):
    kind = "md" if wildcards.method == "mlip" else "oracle"
    return config["threads"][kind]


def anharmonicity_inputs(wildcards):
    """Trajectories scored: the reference MD and the final ensemble's exploration MD."""
    m = wildcards.material
    trajectories = [f"{R}/{m}/reference/md_T{t}.nc" for t in reference_temperatures(m)]
    last = final_iteration(m)
    trajectories += [f"{iter_dir(m, last)}/explore/T{t}.nc" for t in temperatures(m)]
    # harmonic forces from the oracle's force constants when there are any
    method = phonon_methods(m)[-1]
    return {
        "trajectories": trajectories,
        "force_constants": f"{R}/{m}/phonons/{method}/phonopy_params.yaml",
    }


def phonon_outputs():
    outputs = []
    for m in MATERIALS:
        settings = msettings(m)
        if settings["phonons"]["enabled"]:
            outputs += [
                f"{R}/{m}/phonons/comparison.json",
                f"{R}/{m}/phonons/anharmonicity.json",
            ]
        if settings["conductivity"]["enabled"]:
            outputs.append(f"{R}/{m}/conductivity/comparison.json")
            if settings["conductivity"]["track_iterations"]:
                outputs.append(f"{R}/{m}/al/kappa_curve.csv")
    return outputs


def kappa_curve_inputs(wildcards):
    """The oracle's kappa and every iteration's of the AL loop (and of the random
    baseline, where it runs), once the loop has converged."""
    m = wildcards.material
    kinds = ["al", "random"] if random_baseline(m) else ["al"]
    last = final_iteration(m)
    return {
        "oracle": f"{R}/{m}/conductivity/oracle/kappa.nc",
        **{
            kind: [f"{iter_dir(m, it, kind)}/kappa.nc" for it in range(last + 1)]
            for kind in kinds
        },
    }
