# The active-learning loop (design 1.2): train -> evaluate -> explore -> select -> decide
# -> label -> merge, repeated until the convergence checkpoint says stop.


def warm_start_input(wildcards):
    it = int(wildcards.it)
    if it == 0 or not msettings(wildcards.material)["ensemble"]["warm_start"]:
        return []
    return f"{iter_dir(wildcards.material, it - 1)}/ensemble/member_{wildcards.member}/member.json"


rule train_member:
    input:
        dataset=lambda wildcards: dataset_path(wildcards.material, wildcards.it),
        previous=warm_start_input,
    output:
        info=f"{R}/{{material}}/al/iter_{{it}}/ensemble/member_{{member}}/member.json",
    log:
        f"{R}/{{material}}/logs/iter_{{it}}/train_member_{{member}}.log",
    params:
        settings=sections("model", "ensemble"),
    threads: config["threads"]["train"]
    resources:
        mem_mb=4000,
    conda:
        "../../envs/mlip.yaml"
    script:
        "../../scripts/train_member.py"


rule evaluate:
    input:
        members=lambda wildcards: member_infos(wildcards.material, wildcards.it),
        test=rules.initial_data.output.test,
    output:
        metrics=f"{R}/{{material}}/al/iter_{{it}}/test_metrics.json",
    log:
        f"{R}/{{material}}/logs/iter_{{it}}/evaluate.log",
    params:
        settings=sections("model"),
    threads: config["threads"]["md"]
    conda:
        "../../envs/mlip.yaml"
    script:
        "../../scripts/evaluate.py"


rule explore:
    input:
        members=lambda wildcards: member_infos(wildcards.material, wildcards.it),
        structure=rules.prepare_structure.output.structure,
        record=rules.prepare_structure.output.record,
    output:
        trajectory=f"{R}/{{material}}/al/iter_{{it}}/explore/T{{T}}.nc",
    log:
        f"{R}/{{material}}/logs/iter_{{it}}/explore_T{{T}}.log",
    params:
        settings=sections("model", "explore"),
    threads: config["threads"]["md"]
    conda:
        "../../envs/mlip.yaml"
    script:
        "../../scripts/explore.py"


checkpoint select:
    input:
        trajectories=lambda wildcards: expand(
            f"{iter_dir(wildcards.material, wildcards.it)}/explore/T{{T}}.nc",
            T=temperatures(wildcards.material),
        ),
        metrics=rules.evaluate.output.metrics,
    output:
        selection=f"{R}/{{material}}/al/iter_{{it}}/selection.csv",
        candidates=f"{R}/{{material}}/al/iter_{{it}}/candidates.extxyz",
    log:
        f"{R}/{{material}}/logs/iter_{{it}}/select.log",
    params:
        settings=sections("select"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/select.py"


checkpoint decide:
    input:
        selection=rules.select.output.selection,
        metrics=lambda wildcards: [
            f"{iter_dir(wildcards.material, i)}/test_metrics.json"
            for i in range(int(wildcards.it) + 1)
        ],
    output:
        decision=f"{R}/{{material}}/al/iter_{{it}}/decision.json",
    log:
        f"{R}/{{material}}/logs/iter_{{it}}/decide.log",
    params:
        settings=sections("select", "convergence"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/decide.py"


rule label:
    input:
        candidates=rules.select.output.candidates,
    output:
        frame=f"{R}/{{material}}/al/iter_{{it}}/labels/frame_{{k}}.extxyz",
    log:
        f"{R}/{{material}}/logs/iter_{{it}}/label_{{k}}.log",
    params:
        settings=sections("oracle"),
        store=lambda wildcards: f"{R}/{wildcards.material}/oracle",
    threads: config["threads"]["oracle"]
    group:
        "label"
    conda:
        "../../envs/oracle.yaml"
    script:
        "../../scripts/label.py"


rule merge:
    input:
        dataset=lambda wildcards: dataset_path(wildcards.material, int(wildcards.it) - 1),
        labels=lambda wildcards: label_files(wildcards.material, int(wildcards.it) - 1),
    output:
        dataset=f"{R}/{{material}}/al/iter_{{it}}/dataset.extxyz",
        record=f"{R}/{{material}}/al/iter_{{it}}/merge.json",
    log:
        f"{R}/{{material}}/logs/iter_{{it}}/merge.log",
    wildcard_constraints:
        it=r"[1-9][0-9]*",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/merge.py"


def summary_inputs(wildcards):
    m = wildcards.material
    last = final_iteration(m)
    iterations = range(last + 1)
    return {
        "relax": f"{R}/{m}/structure/relax.json",
        "initial": f"{R}/{m}/data/initial.json",
        "initial_dataset": dataset_path(m, 0),
        "metrics": [f"{iter_dir(m, i)}/test_metrics.json" for i in iterations],
        "selections": [f"{iter_dir(m, i)}/selection.csv" for i in iterations],
        "decisions": [f"{iter_dir(m, i)}/decision.json" for i in iterations],
        "merges": [f"{iter_dir(m, i)}/merge.json" for i in range(1, last + 1)],
        "trajectories": [
            f"{iter_dir(m, i)}/explore/T{t}.nc" for i in iterations for t in temperatures(m)
        ],
        "members": member_infos(m, last),
    }


rule summary:
    input:
        unpack(summary_inputs),
    output:
        summary=f"{R}/{{material}}/al/summary.csv",
        curve=report(
            f"{R}/{{material}}/al/learning_curve.png",
            caption="../report/learning_curve.rst",
            category="Active learning",
            subcategory="{material}",
        ),
        ensemble=f"{R}/{{material}}/model/ensemble.json",
    log:
        f"{R}/{{material}}/logs/summary.log",
    params:
        settings=sections("select", "model", "explore"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/summary.py"
