# Reference calculations before the AL loop: relaxed supercell, initial dataset D_0, test set.


rule prepare_structure:
    output:
        structure=f"{R}/{{material}}/structure/relaxed.extxyz",
        record=f"{R}/{{material}}/structure/relax.json",
    log:
        f"{R}/{{material}}/logs/prepare_structure.log",
    conda:
        "../../envs/oracle.yaml"
    threads: config["threads"]["oracle"]
    params:
        settings=sections("structure", "supercell", "oracle", "relax"),
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
    conda:
        "../../envs/oracle.yaml"
    threads: config["threads"]["oracle"]
    params:
        settings=sections("oracle", "initial", "test", "explore"),
        store=lambda wildcards: f"{R}/{wildcards.material}/oracle",
    script:
        "../../scripts/initial_data.py"
