# Reference calculations before the AL loop: relaxed supercell, initial dataset D_0, test set.


rule prepare_structure:
    output:
        structure=f"{R}/{{material}}/structure/relaxed.extxyz",
        record=f"{R}/{{material}}/structure/relax.json",
    log:
        f"{R}/{{material}}/logs/prepare_structure.log",
    params:
        settings=sections("structure", "supercell", "oracle", "relax"),
    threads: config["threads"]["oracle"]
    conda:
        "../../envs/oracle.yaml"
    script:
        "../../scripts/prepare_structure.py"


rule initial_data:
    input:
        structure=rules.prepare_structure.output.structure,
    output:
        initial=f"{R}/{{material}}/data/initial.extxyz",
        test=f"{R}/{{material}}/data/test.extxyz",
        record=f"{R}/{{material}}/data/initial.json",
    log:
        f"{R}/{{material}}/logs/initial_data.log",
    params:
        settings=sections("oracle", "initial", "test", "explore"),
        store=lambda wildcards: f"{R}/{wildcards.material}/oracle",
    threads: config["threads"]["oracle"]
    conda:
        "../../envs/oracle.yaml"
    script:
        "../../scripts/initial_data.py"
