# The honest baseline of every AL claim: the same ensemble trained on frames drawn at random from
# the reference data, at every dataset size the AL loop reached, evaluated on the same test set.


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
        "../../envs/analysis.yaml"
    params:
        settings=sections("reference"),
    script:
        "../../scripts/random_dataset.py"


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
        "../../envs/analysis.yaml"
    script:
        "../../scripts/compare_random.py"
