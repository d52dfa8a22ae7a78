# Helpers of the rules in events.smk, which includes this file at its top: input functions,
# paths and targets.
# figure_outputs and campaign_files (campaign_helpers.smk) read events_materials and
# events_diagnosis.

import sys


def events_diagnosis(material):
    """The events diagnosis of a material, if it has the events stage (reference MD)."""
    if material in events_materials():
        return f"{R}/{material}/events/diagnosis.json"
    return None


def events_settings(material):
    return msettings(material)["events"]


def events_materials():
    """Materials with the events stage: it needs reference (oracle) MD to compare with."""
    return [
        m
        for m in MATERIALS
        if events_settings(m)["enabled"] and reference_temperatures(m)
    ]


def events_temperatures(material):
    temps = events_settings(material)["temperatures"]
    return [f"{t:g}" for t in temps] if temps else reference_temperatures(material)


def events_models(material):
    models = list(events_settings(material)["models"])
    if not random_baseline(material):
        models = [m for m in models if m != "random"]
    return models


def events_members(material, model):
    """The ensemble behind an events model: the final AL model, the random baseline at the
    last AL dataset size, or the iteration-0 ensemble."""
    if model == "al":
        return [f"{R}/{material}/model/ensemble.json"]
    if model == "random":
        return member_infos(material, final_iteration(material), "random")
    return member_infos(material, 0)


def events_test_metrics(material, model):
    if model == "random":
        return f"{iter_dir(material, final_iteration(material), 'random')}/test_metrics.json"
    it = final_iteration(material) if model == "al" else 0
    return f"{iter_dir(material, it)}/test_metrics.json"


def events_lifetimes(material):
    """phono3py lifetimes to compare: the oracle's, the AL model's, the random baseline's."""
    settings = msettings(material)
    if not (
        settings["conductivity"]["enabled"]
        and "oracle" in conductivity_methods(material)
    ):
        return {}
    T = events_settings(material)["lifetime_temperature"]
    if not any(abs(T - t) < 1e-6 for t in settings["conductivity"]["temperatures"]):
        sys.exit(
            f"alkappa: invalid config: events.lifetime_temperature {T:g} K of {material} "
            "is not among conductivity.temperatures"
        )
    kappa = {
        "reference": f"{R}/{material}/conductivity/oracle/kappa.nc",
        "al": f"{R}/{material}/conductivity/mlip/kappa.nc",
    }
    if "random" in events_models(material):  # before AL: the same label budget, no AL
        kappa["random"] = f"{R}/{material}/events/random/kappa.nc"
    return kappa


def events_inputs(wildcards):
    m = wildcards.material
    temps = events_temperatures(m)
    models = events_models(m)
    inputs = {
        "reference": [f"{R}/{m}/reference/md_T{t}.nc" for t in temps],
        "mlip": [f"{R}/{m}/events/{x}/md_T{t}.nc" for x in models for t in temps],
        "metrics": [events_test_metrics(m, x) for x in models],
    }
    kappa = events_lifetimes(m)
    if kappa:
        inputs["kappa"] = list(kappa.values())
    return inputs


def events_outputs():
    return [f"{R}/{m}/events/diagnosis.json" for m in events_materials()]
