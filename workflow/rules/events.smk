# Event diagnostics (first seed paper): atoms leaving their lattice sites in the oracle's
# reference MD and in MLIP MD with the same thermostat, timestep, temperature and duration;
# missing and false events (oracle spot checks), uncertainty alignment, lifetime bias before
# and after active learning.


include: "events_helpers.smk"


rule events_md:
    input:
        models=lambda wildcards: events_members(wildcards.material, wildcards.model),
        structure=f"{R}/{{material}}/structure/relaxed.extxyz",
        record=f"{R}/{{material}}/structure/relax.json",
    output:
        trajectory=f"{R}/{{material}}/events/{{model}}/md_T{{T}}.nc",
    log:
        f"{R}/{{material}}/logs/events/md_{{model}}_T{{T}}.log",
    wildcard_constraints:
        model="al|random|initial",
    conda:
        "../envs/mlip.yaml"
    threads: config["threads"]["md"]
    params:
        settings=sections("model", "reference", "explore"),
    script:
        "../scripts/step.py"


rule events_kappa:
    input:
        models=lambda wildcards: events_members(wildcards.material, wildcards.model),
        structure=f"{R}/{{material}}/structure/relaxed.extxyz",
    output:
        netcdf=f"{R}/{{material}}/events/{{model}}/kappa.nc",
    log:
        f"{R}/{{material}}/logs/events/kappa_{{model}}.log",
    wildcard_constraints:
        model="random|initial",
    conda:
        "../envs/phonons.yaml"
    threads: config["threads"]["kappa"]
    params:
        settings=sections("model", "conductivity", "events"),
    script:
        "../scripts/step.py"


rule events_diagnosis:
    input:
        unpack(events_inputs),
    output:
        diagnosis=f"{R}/{{material}}/events/diagnosis.json",
        markdown=f"{R}/{{material}}/events/diagnosis.md",
        table=f"{R}/{{material}}/events/events.csv",
        timeline=report(
            f"{R}/{{material}}/events/timeline.png",
            caption="../report/events_timeline.rst",
            category="Events",
            subcategory="{material}",
        ),
        lifetimes=report(
            f"{R}/{{material}}/events/lifetimes.png",
            caption="../report/events_lifetimes.rst",
            category="Events",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/events/diagnosis.log",
    conda:
        "../envs/oracle.yaml"
    threads: config["threads"]["oracle"]
    params:
        settings=sections("oracle", "events"),
        temperatures=lambda wildcards: events_temperatures(wildcards.material),
        models=lambda wildcards: events_models(wildcards.material),
        kappa=lambda wildcards: events_lifetimes(wildcards.material),
        metrics=lambda wildcards: {
            x: events_test_metrics(wildcards.material, x)
            for x in events_models(wildcards.material)
        },
        store=lambda wildcards: f"{R}/{wildcards.material}/oracle",
        out_dir=lambda wildcards: f"{R}/{wildcards.material}/events",
    script:
        "../scripts/step.py"
