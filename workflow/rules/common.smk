# Helpers that several stages share: config validation, the material's settings, the AL
# loop's paths and checkpoints, which baselines and conductivity methods run. The helpers of
# one stage (its input functions, paths and targets) sit at the top of that stage's file; the
# campaign summary (campaign.smk, included last) reads those of every stage.

import sys

from alkappa.config import (
    ConfigError,
    load_config,
    material_settings,
    multifidelity_al,
)
from alkappa.io import read_json

# validate before anything runs: one line naming the problem, in seconds
try:
    config.update(load_config(config))
except ConfigError as exc:
    sys.exit(f"alkappa: invalid config: {exc}")


R = config["results"]
MATERIALS = list(config["materials"])


def sections(*names):
    """params function: only the config sections a job uses (so editing another
    section does not make Snakemake rerun it)."""

    def get(wildcards):
        full = msettings(wildcards.material)
        keep = {"name", *names}
        return {key: value for key, value in full.items() if key in keep}

    return get


def msettings(material):
    """A material's settings (read-only: computed once, input functions call this often)."""
    if material not in _SETTINGS:
        _SETTINGS[material] = material_settings(config, material)
    return _SETTINGS[material]


_SETTINGS = {}


def temperatures(material):
    return [f"{t:g}" for t in msettings(material)["explore"]["temperatures"]]


def reference_temperatures(material):
    return [f"{t:g}" for t in msettings(material)["reference"]["md"]["temperatures"]]


def test_set(material):
    """The held-out test set: from reference data when there is any, else harmonic samples."""
    from alkappa.reference_data import has_reference

    if has_reference(msettings(material)):
        return f"{R}/{material}/reference/test.extxyz"
    return f"{R}/{material}/data/test.extxyz"


def n_members(material):
    return msettings(material)["ensemble"]["size"]


def iter_dir(material, it, kind="al"):
    """Directory of iteration `it` of the AL loop (kind "al") or of the random baseline."""
    return f"{R}/{material}/{kind}/iter_{it}"


def dataset_path(material, it, kind="al"):
    it = int(it)
    if it == 0 and kind != "aimd":  # the aiMD baseline has no D_0
        if multifidelity_al(msettings(material)):  # plus a few frames at the high level
            return f"{R}/{material}/data/initial_mf.extxyz"
        return f"{R}/{material}/data/initial.extxyz"
    return f"{iter_dir(material, it, kind)}/dataset.extxyz"


def label_settings(wildcards):
    """params of `label`: the oracle, and the levels and policy of multi-fidelity AL (only
    then, so that editing the multi-fidelity study does not relabel the AL loop)."""
    full = msettings(wildcards.material)
    out = {"name": full["name"], "oracle": full["oracle"]}
    if multifidelity_al(full):
        mf = full["multifidelity"]
        out["multifidelity"] = {"levels": mf["levels"], "al": mf["al"]}
    return out


def member_infos(material, it, kind="al"):
    return [
        f"{iter_dir(material, it, kind)}/ensemble/member_{m}/member.json"
        for m in range(n_members(material))
    ]


def final_iteration(material):
    """The iteration whose ensemble is final, following the convergence checkpoints."""
    it = 0
    while True:
        decision = checkpoints.decide.get(material=material, it=it).output.decision
        if read_json(decision)["stop"]:
            return it
        it += 1


def random_baseline(material):
    from alkappa.reference_data import has_reference

    settings = msettings(material)
    return has_reference(settings) and settings["reference"]["random_baseline"]


def aimd_baseline(material):
    return msettings(material)["baselines"]["aimd"]["enabled"]


def harmonic_baseline(material):
    return msettings(material)["baselines"]["harmonic"]["enabled"]


def aimd_plan(material):
    """The aiMD baseline's plan, made after the AL loop (a checkpoint: it sets the points)."""
    return read_json(checkpoints.aimd_plan.get(material=material).output.plan)


def conductivity_methods(material):
    """phono3py with the MLIP, and with the oracle when the config (or `auto`) asks for it."""
    from alkappa.phonons.steps import oracle_conductivity_wanted

    if material not in _ORACLE_KAPPA:  # a symmetry analysis: once per material
        _ORACLE_KAPPA[material] = _cached_decision(
            material,
            "oracle_fc3",
            ("structure", "supercell", "conductivity"),
            oracle_conductivity_wanted,
        )
    return ["mlip", "oracle"] if _ORACLE_KAPPA[material] else ["mlip"]


_ORACLE_KAPPA = {}


def _cached_decision(material, kind, keys, decide):
    """`decide(settings)` of a material, kept in .snakemake/alkappa/ under a hash of the
    settings it depends on (and the structure file's time stamp): a campaign of 100+
    materials does not repeat a second of symmetry analysis per material at every start.
    """
    import hashlib
    import json
    from pathlib import Path

    from alkappa.io import write_json

    settings = msettings(material)
    key = {k: settings[k] for k in keys}
    if "file" in settings["structure"]:
        key["mtime"] = Path(settings["structure"]["file"]).stat().st_mtime_ns
    text = json.dumps(key, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    path = Path(".snakemake/alkappa") / f"{kind}_{digest}.json"
    if path.is_file():
        return read_json(path)["value"]
    value = decide(settings)
    write_json(path, {"value": value, "material": material, "key": text})
    return value
