# Multi-fidelity study: a low-level pool plus a growing number of high-level frames; four
# approaches (multi-fidelity SevenNet, high-only, transfer, Delta) evaluated on high-level
# test frames. One job per training. Multi-fidelity active learning (multifidelity.al) uses
# the AL loop of al.smk; here only its high-level start (D_0 and test set at the high level).


include: "multifidelity_helpers.smk"


rule mf_al_data:
    input:
        initial=rules.initial_data.output.initial,
        test=lambda wildcards: test_set(wildcards.material),
    output:
        initial=f"{R}/{{material}}/data/initial_mf.extxyz",
        test=f"{R}/{{material}}/data/test_high.extxyz",
        record=f"{R}/{{material}}/data/initial_mf.json",
    log:
        f"{R}/{{material}}/logs/multifidelity/al_data.log",
    conda:
        "../envs/oracle.yaml"
    threads: config["threads"]["oracle"]
    params:
        settings=label_settings,
        store=lambda wildcards: f"{R}/{wildcards.material}/oracle",
    script:
        "../scripts/step.py"


rule mf_data:
    input:
        pool=mf_pool,
        test=lambda wildcards: test_set(wildcards.material),
    output:
        record=f"{R}/{{material}}/multifidelity/data/data.json",
    log:
        f"{R}/{{material}}/logs/multifidelity/data.log",
    conda:
        "../envs/oracle.yaml"
    threads: config["threads"]["oracle"]
    params:
        settings=sections("multifidelity"),
        store=lambda wildcards: f"{R}/{wildcards.material}/oracle",
    script:
        "../scripts/step.py"


rule mf_low_model:
    input:
        data=rules.mf_data.output.record,
    output:
        model=f"{R}/{{material}}/multifidelity/low/model.pth",
    log:
        f"{R}/{{material}}/logs/multifidelity/low_model.log",
    conda:
        "../envs/mlip.yaml"
    threads: config["threads"]["train"]
    params:
        settings=sections("multifidelity"),
    script:
        "../scripts/step.py"


rule mf_train:
    input:
        unpack(mf_train_inputs),
    output:
        errors=f"{R}/{{material}}/multifidelity/{{approach}}_{{n}}/errors.json",
    log:
        f"{R}/{{material}}/logs/multifidelity/{{approach}}_{{n}}.log",
    wildcard_constraints:
        approach="multifidelity|high_only|transfer|delta",
        n=r"\d+",
    conda:
        "../envs/mlip.yaml"
    threads: config["threads"]["train"]
    params:
        settings=sections("multifidelity"),
    script:
        "../scripts/step.py"


rule mf_study:
    input:
        errors=mf_errors,
        data=rules.mf_data.output.record,
    output:
        csv=f"{R}/{{material}}/multifidelity/study.csv",
        netcdf=f"{R}/{{material}}/multifidelity/study.nc",
        figure=report(
            f"{R}/{{material}}/multifidelity/study.png",
            caption="../report/multifidelity.rst",
            category="Multi-fidelity",
            subcategory="{material}",
        ),
        record=f"{R}/{{material}}/multifidelity/study.json",
    log:
        f"{R}/{{material}}/logs/multifidelity/study.log",
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/step.py"
