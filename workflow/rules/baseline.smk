# The baselines of every AL claim, the same ensemble trained and evaluated on the same test set:
# frames drawn at random from the reference data at every AL dataset size; oracle MD only
# (aiMD) and harmonic samples only, at the AL iterations' oracle cost (config `baselines`).


include: "baseline_helpers.smk"


rule random_dataset:
    input:
        initial=lambda wildcards: dataset_path(wildcards.material, 0),
        pool=f"{R}/{{material}}/reference/pool.extxyz",
        al=lambda wildcards: dataset_path(wildcards.material, wildcards.it),
    output:
        dataset=f"{R}/{{material}}/random/iter_{{it}}/dataset.extxyz",
    log:
        f"{R}/{{material}}/logs/random/iter_{{it}}/random_dataset.log",
    wildcard_constraints:
        it=r"[1-9][0-9]*",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=sections("reference"),
    script:
        "../scripts/step.py"


rule compare_random:
    input:
        unpack(compare_inputs),
    output:
        table=f"{R}/{{material}}/al/al_vs_random.csv",
        figure=report(
            f"{R}/{{material}}/al/al_vs_random.png",
            caption="../report/al_vs_random.rst",
            category="Active learning",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/compare_random.log",
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/step.py"


# after the AL loop: the baseline's MD length and points follow from AL's oracle cost
checkpoint aimd_plan:
    input:
        summary=f"{R}/{{material}}/al/summary.csv",
    output:
        plan=f"{R}/{{material}}/aimd/plan.json",
    log:
        f"{R}/{{material}}/logs/aimd/plan.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=sections("baselines", "explore", "reference"),
        directory=lambda wildcards: f"{R}/{wildcards.material}",
    script:
        "../scripts/step.py"


rule aimd_md:
    input:
        structure=rules.prepare_structure.output.structure,
        record=rules.prepare_structure.output.record,
        # a plan rewritten alike (a rerun of the AL summary) is unchanged to Snakemake (same
        # checksum): the MD is not paid again
        plan=f"{R}/{{material}}/aimd/plan.json",
    output:
        trajectory=f"{R}/{{material}}/aimd/md_T{{T}}.nc",
    log:
        f"{R}/{{material}}/logs/aimd/md_T{{T}}.log",
    conda:
        "../envs/oracle.yaml"
    threads: config["threads"]["oracle"]
    params:
        settings=sections("oracle", "explore", "baselines"),
    script:
        "../scripts/step.py"


rule aimd_dataset:
    input:
        plan=f"{R}/{{material}}/aimd/plan.json",
        trajectories=lambda wildcards: expand(
            f"{R}/{wildcards.material}/aimd/md_T{{T}}.nc",
            T=aimd_temperatures(wildcards.material),
        ),
    output:
        dataset=f"{R}/{{material}}/aimd/iter_{{it}}/dataset.extxyz",
    log:
        f"{R}/{{material}}/logs/aimd/iter_{{it}}/aimd_dataset.log",
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/step.py"


rule harmonic_dataset:
    input:
        structure=rules.prepare_structure.output.structure,
        initial=lambda wildcards: dataset_path(wildcards.material, 0),
        al=lambda wildcards: dataset_path(wildcards.material, wildcards.it),
        final=lambda wildcards: dataset_path(
            wildcards.material, final_iteration(wildcards.material)
        ),
        # one iteration after the other: each labels only the samples new to it
        previous=lambda wildcards: harmonic_previous(wildcards.material, wildcards.it),
    output:
        dataset=f"{R}/{{material}}/harmonic/iter_{{it}}/dataset.extxyz",
        record=f"{R}/{{material}}/harmonic/iter_{{it}}/record.json",
    log:
        f"{R}/{{material}}/logs/harmonic/iter_{{it}}/harmonic_dataset.log",
    wildcard_constraints:
        it=r"[1-9][0-9]*",
    conda:
        "../envs/oracle.yaml"
    threads: config["threads"]["oracle"]
    params:
        settings=sections("oracle", "initial", "explore", "baselines"),
        store=lambda wildcards: f"{R}/{wildcards.material}/oracle",
    script:
        "../scripts/step.py"
