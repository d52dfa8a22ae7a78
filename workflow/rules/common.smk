# Helpers shared by the workflow: config validation, paths, input functions.

import sys

from alkappa.config import (
    ConfigError,
    calibration_in_selection,
    gate_enabled,
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


def member_models(infos):
    """Model files of trained members, from their member.json records."""
    from pathlib import Path

    return [str(Path(p).parent / read_json(p)["model_file"]) for p in infos]


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


def final_iteration(material):
    """The iteration whose ensemble is final, following the convergence checkpoints."""
    it = 0
    while True:
        decision = checkpoints.decide.get(material=material, it=it).output.decision
        if read_json(decision)["stop"]:
            return it
        it += 1


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


def random_baseline(material):
    from alkappa.reference_data import has_reference

    settings = msettings(material)
    return has_reference(settings) and settings["reference"]["random_baseline"]


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


def aimd_baseline(material):
    return msettings(material)["baselines"]["aimd"]["enabled"]


def harmonic_baseline(material):
    return msettings(material)["baselines"]["harmonic"]["enabled"]


def aimd_plan(material):
    """The aiMD baseline's plan, made after the AL loop (a checkpoint: it sets the points)."""
    return read_json(checkpoints.aimd_plan.get(material=material).output.plan)


def aimd_temperatures(material):
    from alkappa.config import baseline_temperatures

    return [f"{t:g}" for t in baseline_temperatures(msettings(material), "aimd")]


def harmonic_previous(material, it):
    it = int(it)
    return [] if it <= 1 else f"{iter_dir(material, it - 1, 'harmonic')}/dataset.extxyz"


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


def phonon_methods(material):
    """Where harmonic phonons are computed: always with the MLIP, with the oracle if asked."""
    return ["mlip", "oracle"] if msettings(material)["phonons"]["oracle"] else ["mlip"]


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
    return outputs


def gk_settings(material):
    return msettings(material)["greenkubo"]


def gk_materials():
    return [m for m in MATERIALS if gk_settings(m)["enabled"]]


def gk_temperatures(material):
    return [f"{t:g}" for t in gk_settings(material)["temperatures"]]


def gk_dir(material, T, gk="greenkubo"):
    return f"{R}/{material}/{gk}/T{T}"


def gk_dirname(cell):
    """The directory of a Green-Kubo cell: greenkubo_<n1>x<n2>x<n3> for a size-check cell."""
    return "greenkubo_" + "x".join(str(n) for n in cell)


def gk_cell(material, gk):
    """The repetitions of the unit cell of a Green-Kubo directory; None: the material's
    supercell (the relaxed structure itself)."""
    if gk == "greenkubo":
        return gk_settings(material)["supercell"]
    return [int(n) for n in gk.removeprefix("greenkubo_").split("x")]


def gk_size_check_dirs(material):
    return [gk_dirname(cell) for cell in gk_settings(material)["size_check"]]


def gk_structure(material, gk):
    if gk_cell(material, gk) is None:
        return f"{R}/{material}/structure/relaxed.extxyz"
    return f"{R}/{material}/{gk}/cell/structure.extxyz"


def gk_force_constants(wildcards):
    """The MLIP's harmonic force constants in the Green-Kubo cell."""
    m, gk = wildcards.material, wildcards.gk
    if gk_cell(m, gk) is None:
        return f"{R}/{m}/phonons/mlip/phonopy_params.yaml"
    return f"{R}/{m}/{gk}/cell/phonopy_params.yaml"


def gk_production_record(wildcards):
    """production.json, which lists the NVE runs (their number is decided during production)."""
    return f"{gk_dir(wildcards.material, wildcards.T, wildcards.gk)}/production.json"


def gk_lifetimes(material):
    """MD lifetimes need the MLIP's harmonic phonons and its phono3py lifetimes."""
    settings = msettings(material)
    return (
        settings["greenkubo"]["lifetimes"]
        and settings["phonons"]["enabled"]
        and settings["conductivity"]["enabled"]
    )


def production_inputs(wildcards):
    """The final ensemble and the Green-Kubo cell; the MLIP's force constants in that cell
    for the harmonic flux."""
    m = wildcards.material
    inputs = {
        "model": f"{R}/{m}/model/ensemble.json",
        "structure": gk_structure(m, wildcards.gk),
    }
    if gk_settings(m)["flux"] == "harmonic":
        inputs["force_constants"] = gk_force_constants(wildcards)
    return inputs


def gk_round_runs(material, gk, T, r):
    """The NVE runs of round r of a production: the first greenkubo.runs (round 0), else
    those the decision of round r - 1 added (known once that checkpoint ran)."""
    if r == 0:
        return list(range(gk_settings(material)["runs"]))
    record = checkpoints.gk_round.get(
        material=material, gk=gk, T=T, round=str(r - 1)
    ).output.record
    return read_json(record)["next_runs"]


def gk_run_file(material, gk, T, k):
    return f"{gk_dir(material, T, gk)}/run_{k:02d}.nc"


def gk_run_inputs(wildcards):
    """What an NVE run needs, and where its snapshot is: the equilibration (round 0) or the
    record of the round whose decision extended the chain for it."""
    m, gk, T = wildcards.material, wildcards.gk, wildcards.T
    k = int(wildcards.k)
    inputs = production_inputs(wildcards)
    inputs["equilibration"] = f"{gk_dir(m, T, gk)}/equilibration.nc"
    r = 1
    while k >= gk_settings(m)["runs"]:
        runs = gk_round_runs(m, gk, T, r)
        if not runs:
            raise ValueError(f"{wildcards.material} {gk} T{T}: no round makes run {k}")
        if k in runs:
            inputs["round"] = f"{gk_dir(m, T, gk)}/round_{r - 1}.json"
            break
        r += 1
    return inputs


def gk_round_inputs(wildcards):
    """The runs of rounds 0..r, all finished, and the record of the round before."""
    m, gk, T, r = wildcards.material, wildcards.gk, wildcards.T, int(wildcards.round)
    runs = [k for i in range(r + 1) for k in gk_round_runs(m, gk, T, i)]
    inputs = {
        "model": f"{R}/{m}/model/ensemble.json",
        "structure": gk_structure(m, gk),
        "equilibration": f"{gk_dir(m, T, gk)}/equilibration.nc",
        "runs": [gk_run_file(m, gk, T, k) for k in runs],
    }
    if r > 0:
        inputs["previous"] = f"{gk_dir(m, T, gk)}/round_{r - 1}.json"
    return inputs


def gk_rounds(material, gk, T):
    """The round records of a production up to the one that stops it, following the
    checkpoints."""
    records = []
    while True:
        record = checkpoints.gk_round.get(
            material=material, gk=gk, T=T, round=str(len(records))
        ).output.record
        records.append(record)
        if read_json(record)["stop"]:
            return records


def gk_production_inputs(wildcards):
    m, gk, T = wildcards.material, wildcards.gk, wildcards.T
    rounds = gk_rounds(m, gk, T)
    return {
        "model": f"{R}/{m}/model/ensemble.json",
        "structure": gk_structure(m, gk),
        "rounds": rounds,
        "runs": [gk_run_file(m, gk, T, k) for k in read_json(rounds[-1])["runs"]],
    }


def gk_summary_inputs(wildcards):
    m, gk = wildcards.material, wildcards.gk
    temps = gk_temperatures(m)
    kappa = []
    if msettings(m)["conductivity"]["enabled"]:
        kappa = [f"{R}/{m}/conductivity/{x}/kappa.nc" for x in conductivity_methods(m)]
    return {
        "greenkubo": [f"{gk_dir(m, t, gk)}/greenkubo.nc" for t in temps],
        "productions": [f"{gk_dir(m, t, gk)}/production.json" for t in temps],
        "lifetimes": (
            [f"{gk_dir(m, t, gk)}/lifetimes.json" for t in temps]
            if gk_lifetimes(m)
            else []
        ),
        "finite_size": (
            [f"{gk_dir(m, t, gk)}/finite_size.nc" for t in temps]
            if gk_lifetimes(m)
            else []
        ),
        "kappa": kappa,
        "structure": gk_structure(m, gk),
        # the main cell's summary compares the size-check cells with it
        "size_check": (
            [f"{R}/{m}/{d}/summary.json" for d in gk_size_check_dirs(m)]
            if gk == "greenkubo"
            else []
        ),
    }


def greenkubo_outputs():
    return [f"{R}/{m}/greenkubo/summary.json" for m in gk_materials()]


def bayesian_outputs():
    """Bayesian FC stage of the materials that enable it (kappa needs third order)."""
    outputs = []
    for m in MATERIALS:
        bayes = msettings(m)["bayesian"]
        if not bayes["enabled"]:
            continue
        outputs += [
            f"{R}/{m}/bayesian/decision.json",
            f"{R}/{m}/bayesian/fc/export.json",
            f"{R}/{m}/bayesian/errors.png",
            f"{R}/{m}/bayesian/posterior_width.png",
        ]
        if bayes["kappa"] and len(bayes["cutoffs"]) >= 2:
            outputs.append(f"{R}/{m}/bayesian/kappa/kappa.nc")
            if "oracle" in conductivity_methods(m):
                outputs.append(f"{R}/{m}/bayesian/validation.json")
    return outputs


def events_diagnosis(material):
    """The events diagnosis of a material, if it has the events stage (reference MD)."""
    if material in events_materials():
        return f"{R}/{material}/events/diagnosis.json"
    return None


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


# --- multi-fidelity study (workflow/rules/multifidelity.smk) ---


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
