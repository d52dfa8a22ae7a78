# Bayesian lattice-dynamics force field (design section 1.3): dynamic training with the
# oracle, the no-new-data convergence decision, force constants for phono3py/ShengBTE,
# kappa with the phonon stage's functions, figures. Target rule: `snakemake bayesian`.


include: "bayesian_helpers.smk"


rule bayes_train:
    input:
        structure=f"{R}/{{material}}/structure/relaxed.extxyz",
    output:
        model=f"{R}/{{material}}/bayesian/train/model.npz",
        triggers=f"{R}/{{material}}/bayesian/train/triggers.csv",
        errors=f"{R}/{{material}}/bayesian/train/errors.csv",
        posterior=f"{R}/{{material}}/bayesian/train/posterior.csv",
        dataset=f"{R}/{{material}}/bayesian/train/dataset.extxyz",
        summary=f"{R}/{{material}}/bayesian/train/train.json",
    log:
        f"{R}/{{material}}/logs/bayes_train.log",
    conda:
        "../envs/phonons.yaml"
    threads: config["threads"]["oracle"]
    params:
        settings=sections("oracle", "bayesian"),
        store=lambda wildcards: f"{R}/{wildcards.material}/oracle",
    script:
        "../scripts/step.py"


rule bayes_converged:
    input:
        model=rules.bayes_train.output.model,
        summary=rules.bayes_train.output.summary,
    output:
        decision=f"{R}/{{material}}/bayesian/decision.json",
    log:
        f"{R}/{{material}}/logs/bayes_converged.log",
    conda:
        "../envs/phonons.yaml"
    params:
        settings=sections("bayesian"),
    script:
        "../scripts/step.py"


rule bayes_export:
    input:
        model=rules.bayes_train.output.model,
    output:
        fc2=f"{R}/{{material}}/bayesian/fc/fc2.hdf5",
        params=f"{R}/{{material}}/bayesian/fc/phono3py_params.yaml",
        shengbte=f"{R}/{{material}}/bayesian/fc/FORCE_CONSTANTS_2ND",
        summary=f"{R}/{{material}}/bayesian/fc/export.json",
    log:
        f"{R}/{{material}}/logs/bayes_export.log",
    conda:
        "../envs/phonons.yaml"
    params:
        settings=sections("bayesian"),
    script:
        "../scripts/step.py"


rule bayes_kappa:
    input:
        summary=rules.bayes_export.output.summary,
    output:
        netcdf=f"{R}/{{material}}/bayesian/kappa/kappa.nc",
    log:
        f"{R}/{{material}}/logs/bayes_kappa.log",
    conda:
        "../envs/phonons.yaml"
    threads: config["threads"]["kappa"]
    params:
        settings=sections("conductivity"),
    script:
        "../scripts/step.py"


# kappa of the Bayesian model against kappa of the oracle's own fc2/fc3 (rule fc3, method
# oracle), same mesh: requested when conductivity.oracle asks for the oracle's fc3
rule bayes_validation:
    input:
        model=rules.bayes_kappa.output.netcdf,
        oracle=f"{R}/{{material}}/conductivity/oracle/kappa.nc",
        decision=rules.bayes_converged.output.decision,
    output:
        summary=f"{R}/{{material}}/bayesian/validation.json",
        figure=report(
            f"{R}/{{material}}/bayesian/kappa_validation.png",
            caption="../report/bayes_validation.rst",
            category="Bayesian force field",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/bayes_validation.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=sections("bayesian", "conductivity"),
    script:
        "../scripts/step.py"


rule bayes_figures:
    input:
        errors=rules.bayes_train.output.errors,
        triggers=rules.bayes_train.output.triggers,
        posterior=rules.bayes_train.output.posterior,
    output:
        errors=report(
            f"{R}/{{material}}/bayesian/errors.png",
            caption="../report/bayes_errors.rst",
            category="Bayesian force field",
            subcategory="{material}",
        ),
        width=report(
            f"{R}/{{material}}/bayesian/posterior_width.png",
            caption="../report/bayes_posterior.rst",
            category="Bayesian force field",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/bayes_figures.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=sections("bayesian"),
    script:
        "../scripts/step.py"


rule bayesian:
    input:
        bayesian_outputs(),
