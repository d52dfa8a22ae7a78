# Helpers of the rules in al.smk, which includes this file at its top: input functions,
# paths and targets.

from alkappa.config import calibration_in_selection, gate_enabled, multifidelity_al


def al_test_set(material):
    """The frames the ensembles are tested on: the test set, at the high level with
    multi-fidelity AL (the level the ensemble predicts)."""
    if multifidelity_al(msettings(material)):
        return f"{R}/{material}/data/test_high.extxyz"
    return test_set(material)


def threshold_metrics(material, it):
    """The metrics the selection and the convergence decision of iteration `it` read their
    U_test and sigma_test from: the test set's, or with `select.thresholds_from: harmonic`
    and reference data, those of the harmonic samples (so the loop need not wait for the
    reference MD)."""
    harmonic = msettings(material)["select"]["thresholds_from"] == "harmonic"
    if harmonic and test_set(material) != f"{R}/{material}/data/test.extxyz":
        return f"{iter_dir(material, it)}/threshold_metrics.json"
    return f"{iter_dir(material, it)}/test_metrics.json"


def select_settings(wildcards):
    """params of `select`: the select section, and the calibration section only when the
    selection uses it (so that campaigns without it keep their selections)."""
    full = msettings(wildcards.material)
    out = {"name": full["name"], "select": full["select"]}
    if calibration_in_selection(full):
        out["calibration"] = full["calibration"]
    return out


def gate_input(wildcards):
    """The gate's limits for `merge` when the physical gate is on (else nothing)."""
    if gate_enabled(msettings(wildcards.material)):
        return [f"{R}/{wildcards.material}/al/gate.json"]
    return []


def label_files(material, it):
    """One labelled frame per selected candidate, known once the iteration's convergence
    checkpoint ran (it reads the selection). Asking `decide`, not the selection itself, keeps
    every checkpoint on the chain that `final_iteration` walks: on a resumed run Snakemake
    marks as done only the checkpoints it meets along that chain, so a merge asking for a
    selection met on the way would wait forever on a placeholder."""
    from alkappa.al.steps import count_selected

    checkpoints.decide.get(material=material, it=it)
    n = count_selected(f"{iter_dir(material, it)}/selection.csv")
    return [f"{iter_dir(material, it)}/labels/frame_{k}.extxyz" for k in range(n)]


def al_outputs():
    outputs = expand(
        [
            f"{R}/{{material}}/al/summary.csv",
            f"{R}/{{material}}/al/learning_curve.png",
            f"{R}/{{material}}/al/calibration.png",
            f"{R}/{{material}}/model/ensemble.json",
        ],
        material=MATERIALS,
    )
    # AL against random sampling of the reference data, where there is reference data
    for material in MATERIALS:
        if random_baseline(material):
            outputs.append(f"{R}/{material}/al/al_vs_random.csv")
        outputs.append(f"{R}/{material}/al/oracle_cost.csv")
    return outputs


def cost_inputs(wildcards):
    """The oracle-cost accounting reads the AL loop (its summary needs every iteration) and
    the baselines' evaluations, where there are any."""
    m = wildcards.material
    inputs = {"summary": f"{R}/{m}/al/summary.csv"}
    if random_baseline(m):
        last = final_iteration(m)
        inputs["random_metrics"] = [
            f"{iter_dir(m, i, 'random')}/test_metrics.json" for i in range(1, last + 1)
        ]
    if aimd_baseline(m):
        inputs["aimd_metrics"] = [
            f"{iter_dir(m, p['point'], 'aimd')}/test_metrics.json"
            for p in aimd_plan(m)["points"]
        ]
    if harmonic_baseline(m):
        inputs["harmonic_metrics"] = [
            f"{iter_dir(m, i, 'harmonic')}/test_metrics.json"
            for i in range(1, final_iteration(m) + 1)
        ]
    return inputs


def warm_start_input(wildcards):
    it = int(wildcards.it)
    warm = msettings(wildcards.material)["ensemble"]["warm_start"]
    if it == 0 or not warm or wildcards.kind != "al":
        return []
    return f"{iter_dir(wildcards.material, it - 1)}/ensemble/member_{wildcards.member}/member.json"


def summary_inputs(wildcards):
    from alkappa.reference_data import has_reference

    m = wildcards.material
    last = final_iteration(m)
    iterations = range(last + 1)
    harmonic_test = (
        {}
        if has_reference(msettings(m))
        else {"test_record": f"{R}/{m}/data/test.json"}
    )
    return harmonic_test | {
        "relax": f"{R}/{m}/structure/relax.json",
        "initial": f"{R}/{m}/data/initial.json",
        "initial_dataset": dataset_path(m, 0),
        "metrics": [f"{iter_dir(m, i)}/test_metrics.json" for i in iterations],
        "selections": [f"{iter_dir(m, i)}/selection.csv" for i in iterations],
        "decisions": [f"{iter_dir(m, i)}/decision.json" for i in iterations],
        "merges": [f"{iter_dir(m, i)}/merge.json" for i in range(1, last + 1)],
        "trajectories": [
            f"{iter_dir(m, i)}/explore/T{t}.nc"
            for i in iterations
            for t in temperatures(m)
        ],
        "members": member_infos(m, last),
    }
