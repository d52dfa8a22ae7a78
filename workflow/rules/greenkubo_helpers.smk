# Helpers of the rules in greenkubo.smk, which includes this file at its top: input functions,
# paths and targets.
# figure_outputs and campaign_files (campaign_helpers.smk) read gk_materials, gk_temperatures,
# gk_dir and gk_lifetimes.

from alkappa.io import read_json


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
    return read_json(gk_record(material, gk, T, r - 1))["next_runs"]


def gk_run_file(material, gk, T, k):
    return f"{gk_dir(material, T, gk)}/run_{k:02d}.nc"


def gk_record(material, gk, T, r):
    """The record of round r (known once that checkpoint ran)."""
    return checkpoints.gk_round.get(
        material=material, gk=gk, T=T, round=str(r)
    ).output.record


def gk_run_inputs(wildcards):
    """What an NVE run needs, and where its snapshot is: the equilibration (round 0) or the
    record of the round whose decision extended the chain for it (rounds that extended the
    runs add none)."""
    m, gk, T = wildcards.material, wildcards.gk, wildcards.T
    k = int(wildcards.k)
    inputs = production_inputs(wildcards)
    inputs["equilibration"] = f"{gk_dir(m, T, gk)}/equilibration.nc"
    r = 0
    while k >= gk_settings(m)["runs"]:
        record = read_json(gk_record(m, gk, T, r))
        if k in record["next_runs"]:
            inputs["round"] = f"{gk_dir(m, T, gk)}/round_{r}.json"
            break
        if record["stop"]:
            raise ValueError(f"{wildcards.material} {gk} T{T}: no round makes run {k}")
        r += 1
    return inputs


def gk_segment_file(material, gk, T, k, s):
    return f"{gk_dir(material, T, gk)}/run_{k:02d}.seg{s}.nc"


def gk_segments(material, gk, T, rounds):
    """The extension segments that rounds 0..rounds-1 planned (``action: extend``: one more
    segment for each run in ``extend_runs``), with the record that planned each."""
    made, segments = {}, []
    for r in range(rounds):
        record = read_json(gk_record(material, gk, T, r))
        if record.get("action") != "extend":
            continue
        for k in record.get("extend_runs", []):
            made[k] = made.get(k, 0) + 1
            segments.append((k, made[k], r))
    return segments


def gk_extend_inputs(wildcards):
    """An extension segment needs its run, the segment before it and the record of the
    round that planned it (the new length)."""
    m, gk, T = wildcards.material, wildcards.gk, wildcards.T
    k, s = int(wildcards.k), int(wildcards.s)
    inputs = production_inputs(wildcards)
    inputs["run"] = gk_run_file(m, gk, T, k)
    if s > 1:
        inputs["previous"] = gk_segment_file(m, gk, T, k, s - 1)
    r = 0
    while True:
        planned = [x for x in gk_segments(m, gk, T, r + 1) if x[:2] == (k, s)]
        if planned:
            inputs["round"] = f"{gk_dir(m, T, gk)}/round_{planned[0][2]}.json"
            return inputs
        if read_json(gk_record(m, gk, T, r))["stop"]:
            raise ValueError(f"{m} {gk} T{T}: no round extends run {k} to segment {s}")
        r += 1


def gk_round_inputs(wildcards):
    """The runs of rounds 0..r and the segments rounds 0..r-1 planned, all finished, and
    the record of the round before."""
    m, gk, T, r = wildcards.material, wildcards.gk, wildcards.T, int(wildcards.round)
    runs = [k for i in range(r + 1) for k in gk_round_runs(m, gk, T, i)]
    inputs = {
        "model": f"{R}/{m}/model/ensemble.json",
        "structure": gk_structure(m, gk),
        "equilibration": f"{gk_dir(m, T, gk)}/equilibration.nc",
        "runs": [gk_run_file(m, gk, T, k) for k in runs],
        "segments": [
            gk_segment_file(m, gk, T, k, s) for k, s, _ in gk_segments(m, gk, T, r)
        ],
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
        "segments": [
            gk_segment_file(m, gk, T, k, s)
            for k, s, _ in gk_segments(m, gk, T, len(rounds))
        ],
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
