# Helpers of the rules in baseline.smk, which includes this file at its top: input functions,
# paths and targets.


def compare_inputs(wildcards):
    m = wildcards.material
    last = final_iteration(m)
    return {
        "summary": f"{R}/{m}/al/summary.csv",
        "al_metrics": [f"{iter_dir(m, i)}/test_metrics.json" for i in range(last + 1)],
        "random_metrics": [
            f"{iter_dir(m, i, 'random')}/test_metrics.json" for i in range(1, last + 1)
        ],
    }


def aimd_temperatures(material):
    from alkappa.config import baseline_temperatures

    return [f"{t:g}" for t in baseline_temperatures(msettings(material), "aimd")]


def harmonic_previous(material, it):
    it = int(it)
    return [] if it <= 1 else f"{iter_dir(material, it - 1, 'harmonic')}/dataset.extxyz"
