# The active-learning loop (design 1.2): train -> evaluate -> explore -> select -> decide
# -> label -> merge, repeated until the convergence checkpoint says stop.


include: "al_helpers.smk"


rule train_member:
    input:
        dataset=lambda wildcards: dataset_path(
            wildcards.material, wildcards.it, wildcards.kind
        ),
        previous=warm_start_input,
    output:
        info=f"{R}/{{material}}/{{kind}}/iter_{{it}}/ensemble/member_{{member}}/member.json",
    log:
        f"{R}/{{material}}/logs/{{kind}}/iter_{{it}}/train_member_{{member}}.log",
    conda:
        "../envs/mlip.yaml"
    threads: config["threads"]["train"]
    resources:
        mem_mb=4000,
        gpu=config["resources"]["train_gpus"],
    params:
        settings=sections("model", "ensemble"),
    script:
        "../scripts/step.py"


rule evaluate:
    input:
        members=lambda wildcards: member_infos(
            wildcards.material, wildcards.it, wildcards.kind
        ),
        test=lambda wildcards: al_test_set(wildcards.material),
    output:
        metrics=f"{R}/{{material}}/{{kind}}/iter_{{it}}/test_metrics.json",
    log:
        f"{R}/{{material}}/logs/{{kind}}/iter_{{it}}/evaluate.log",
    conda:
        "../envs/mlip.yaml"
    threads: config["threads"]["md"]
    params:
        settings=sections("model"),
    script:
        "../scripts/step.py"


rule evaluate_thresholds:
    # select.thresholds_from: harmonic: the selection's U_test from harmonic samples, which
    # exist right after D_0, instead of the reference-MD test set
    input:
        members=lambda wildcards: member_infos(wildcards.material, wildcards.it),
        test=f"{R}/{{material}}/data/test.extxyz",
    output:
        metrics=f"{R}/{{material}}/al/iter_{{it}}/threshold_metrics.json",
    log:
        f"{R}/{{material}}/logs/al/iter_{{it}}/evaluate_thresholds.log",
    conda:
        "../envs/mlip.yaml"
    threads: config["threads"]["md"]
    params:
        settings=sections("model"),
    script:
        "../scripts/step.py"


rule explore:
    input:
        members=lambda wildcards: member_infos(wildcards.material, wildcards.it),
        structure=rules.prepare_structure.output.structure,
        record=rules.prepare_structure.output.record,
    output:
        trajectory=f"{R}/{{material}}/al/iter_{{it}}/explore/T{{T}}.nc",
    log:
        f"{R}/{{material}}/logs/al/iter_{{it}}/explore_T{{T}}.log",
    conda:
        "../envs/mlip.yaml"
    threads: config["threads"]["md"]
    params:
        settings=sections("model", "explore"),
    script:
        "../scripts/step.py"


rule select:
    input:
        trajectories=lambda wildcards: expand(
            f"{iter_dir(wildcards.material, wildcards.it)}/explore/T{{T}}.nc",
            T=temperatures(wildcards.material),
        ),
        metrics=lambda wildcards: threshold_metrics(wildcards.material, wildcards.it),
    output:
        selection=f"{R}/{{material}}/al/iter_{{it}}/selection.csv",
        candidates=f"{R}/{{material}}/al/iter_{{it}}/candidates.extxyz",
    log:
        f"{R}/{{material}}/logs/al/iter_{{it}}/select.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=select_settings,
    script:
        "../scripts/step.py"


checkpoint decide:
    input:
        selection=rules.select.output.selection,
        metrics=lambda wildcards: [
            threshold_metrics(wildcards.material, i)
            for i in range(int(wildcards.it) + 1)
        ],
    output:
        decision=f"{R}/{{material}}/al/iter_{{it}}/decision.json",
    log:
        f"{R}/{{material}}/logs/al/iter_{{it}}/decide.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=sections("select", "convergence"),
    script:
        "../scripts/step.py"


rule label:
    input:
        candidates=rules.select.output.candidates,
    output:
        frame=f"{R}/{{material}}/al/iter_{{it}}/labels/frame_{{k}}.extxyz",
    log:
        f"{R}/{{material}}/logs/al/iter_{{it}}/label_{{k}}.log",
    group:
        "label"
    conda:
        "../envs/oracle.yaml"
    threads: config["threads"]["oracle"]
    params:
        settings=label_settings,
        store=lambda wildcards: f"{R}/{wildcards.material}/oracle",
    script:
        "../scripts/step.py"


rule gate:
    input:
        structure=rules.prepare_structure.output.structure,
    output:
        limits=f"{R}/{{material}}/al/gate.json",
    log:
        f"{R}/{{material}}/logs/al/gate.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=sections("gate", "explore"),
    script:
        "../scripts/step.py"


rule merge:
    input:
        dataset=lambda wildcards: dataset_path(
            wildcards.material, int(wildcards.it) - 1
        ),
        labels=lambda wildcards: label_files(wildcards.material, int(wildcards.it) - 1),
        gate=gate_input,
    output:
        dataset=f"{R}/{{material}}/al/iter_{{it}}/dataset.extxyz",
        record=f"{R}/{{material}}/al/iter_{{it}}/merge.json",
    log:
        f"{R}/{{material}}/logs/al/iter_{{it}}/merge.log",
    wildcard_constraints:
        it=r"[1-9][0-9]*",
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/step.py"


rule summary:
    input:
        unpack(summary_inputs),
    output:
        summary=report(
            f"{R}/{{material}}/al/summary.csv",
            caption="../report/al_summary.rst",
            category="Active learning",
            subcategory="{material}",
        ),
        curve=report(
            f"{R}/{{material}}/al/learning_curve.png",
            caption="../report/learning_curve.rst",
            category="Active learning",
            subcategory="{material}",
        ),
        calibration=report(
            f"{R}/{{material}}/al/calibration.png",
            caption="../report/calibration.rst",
            category="Active learning",
            subcategory="{material}",
        ),
        ensemble=f"{R}/{{material}}/model/ensemble.json",
    log:
        f"{R}/{{material}}/logs/summary.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=sections("select", "model", "explore"),
    script:
        "../scripts/step.py"


rule oracle_cost:
    input:
        unpack(cost_inputs),
    output:
        table=f"{R}/{{material}}/al/oracle_cost.csv",
        record=f"{R}/{{material}}/al/oracle_cost.json",
        figure=report(
            f"{R}/{{material}}/al/learning_curve_cost.png",
            caption="../report/learning_curve_cost.rst",
            category="Active learning",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/oracle_cost.log",
    conda:
        "../envs/analysis.yaml"
    params:
        # the oracle store and the label files are read from the results directory
        directory=lambda wildcards: f"{R}/{wildcards.material}",
    script:
        "../scripts/step.py"
