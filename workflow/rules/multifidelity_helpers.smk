# Helpers of the rules in multifidelity.smk, which includes this file at its top: input functions,
# paths and targets.
# figure_outputs (campaign_helpers.smk) reads mf_materials and mf_dir.


def mf_materials():
    """Materials whose config has a multifidelity section with the study enabled."""
    return [
        m
        for m in MATERIALS
        if (msettings(m).get("multifidelity") or {}).get("study", {}).get("enabled")
    ]


def mf_dir(material):
    return f"{R}/{material}/multifidelity"


def mf_pool(wildcards):
    """Low-level pool of the study: the reference pool, else the initial dataset."""
    from alkappa.reference_data import has_reference

    m = wildcards.material
    if has_reference(msettings(m)):
        return f"{R}/{m}/reference/pool.extxyz"
    return f"{R}/{m}/data/initial.extxyz"


def mf_train_inputs(wildcards):
    inputs = {"data": f"{mf_dir(wildcards.material)}/data/data.json"}
    if wildcards.approach in ("transfer", "delta"):
        inputs["low_model"] = f"{mf_dir(wildcards.material)}/low/model.pth"
    return inputs


def mf_errors(wildcards):
    study = msettings(wildcards.material)["multifidelity"]["study"]
    return [
        f"{mf_dir(wildcards.material)}/{a}_{n}/errors.json"
        for a in study["approaches"]
        for n in study["budgets"]
    ]


def multifidelity_outputs():
    return [f"{mf_dir(m)}/study.csv" for m in mf_materials()]
