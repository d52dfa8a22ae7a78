# Across materials: the campaign summary table and figure, and the `figures` target.


include: "campaign_helpers.smk"


rule campaign_summary:
    input:
        campaign_inputs,
    output:
        summary=report(
            f"{R}/summary.csv",
            caption="../report/campaign_table.rst",
            category="Campaign",
        ),
        figure=report(
            f"{R}/summary.png",
            caption="../report/campaign.rst",
            category="Campaign",
        ),
    log:
        f"{R}/logs/campaign_summary.log",
    conda:
        "../envs/analysis.yaml"
    params:
        materials=MATERIALS,
        files=lambda wildcards: campaign_files(),
    script:
        "../scripts/step.py"


# `snakemake figures` builds every figure (and what it needs); to redraw them all from
# finished results, force the figure rules (README, "Report and figures")
rule figures:
    input:
        figure_outputs,
    localrule: True
