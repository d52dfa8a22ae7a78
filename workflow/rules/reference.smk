# Reference calculations before the AL loop: relaxed supercell, initial dataset D_0, test set.


rule prepare_structure:
    output:
        structure=f"{R}/{{material}}/structure/relaxed.extxyz",
        record=f"{R}/{{material}}/structure/relax.json",
    log:
        f"{R}/{{material}}/logs/prepare_structure.log",
    conda:
        "../envs/oracle.yaml"
    threads: config["threads"]["oracle"]
    params:
        settings=sections("structure", "supercell", "oracle", "relax"),
    script:
        "../scripts/step.py"


rule initial_data:
    input:
        structure=rules.prepare_structure.output.structure,
    output:
        initial=f"{R}/{{material}}/data/initial.extxyz",
        record=f"{R}/{{material}}/data/initial.json",
    log:
        f"{R}/{{material}}/logs/initial_data.log",
    conda:
        "../envs/oracle.yaml"
    threads: config["threads"]["oracle"]
    params:
        settings=sections("oracle", "initial"),
        store=lambda wildcards: f"{R}/{wildcards.material}/oracle",
    script:
        "../scripts/step.py"


# only without reference data (else rule reference_split draws it); after D_0, whose
# force-constant calls it reuses from the oracle store instead of paying for them again
rule harmonic_test_set:
    input:
        structure=rules.prepare_structure.output.structure,
        after=rules.initial_data.output.record,
    output:
        test=f"{R}/{{material}}/data/test.extxyz",
        record=f"{R}/{{material}}/data/test.json",
    log:
        f"{R}/{{material}}/logs/harmonic_test_set.log",
    conda:
        "../envs/oracle.yaml"
    threads: config["threads"]["oracle"]
    params:
        settings=sections("oracle", "initial", "test", "explore"),
        store=lambda wildcards: f"{R}/{wildcards.material}/oracle",
    script:
        "../scripts/step.py"


rule reference_md:
    input:
        structure=rules.prepare_structure.output.structure,
        record=rules.prepare_structure.output.record,
    output:
        trajectory=f"{R}/{{material}}/reference/md_T{{T}}.nc",
    log:
        f"{R}/{{material}}/logs/reference_md_T{{T}}.log",
    conda:
        "../envs/oracle.yaml"
    threads: config["threads"]["oracle"]
    params:
        settings=sections("oracle", "reference", "explore"),
    script:
        "../scripts/step.py"


rule reference_split:
    input:
        md=lambda wildcards: expand(
            f"{R}/{wildcards.material}/reference/md_T{{T}}.nc",
            T=reference_temperatures(wildcards.material),
        ),
        files=lambda wildcards: [
            entry["path"]
            for entry in msettings(wildcards.material)["reference"]["files"]
        ],
    output:
        test=f"{R}/{{material}}/reference/test.extxyz",
        pool=f"{R}/{{material}}/reference/pool.extxyz",
        record=f"{R}/{{material}}/reference/split.json",
    log:
        f"{R}/{{material}}/logs/reference_split.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=sections("oracle", "reference"),
    script:
        "../scripts/step.py"
