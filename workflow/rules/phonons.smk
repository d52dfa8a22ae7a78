# Lattice dynamics with the final ensemble and the oracle: harmonic phonons (phonopy),
# third-order force constants and thermal conductivity (phono3py), anharmonicity score.


include: "phonons_helpers.smk"


rule phonons:
    input:
        unpack(force_inputs),
        structure=f"{R}/{{material}}/structure/relaxed.extxyz",
    output:
        phonopy=f"{R}/{{material}}/phonons/{{method}}/phonopy_params.yaml",
        netcdf=f"{R}/{{material}}/phonons/{{method}}/phonons.nc",
        summary=f"{R}/{{material}}/phonons/{{method}}/phonons.json",
    log:
        f"{R}/{{material}}/logs/phonons_{{method}}.log",
    conda:
        "../envs/phonons.yaml"
    threads: method_threads
    params:
        settings=sections("oracle", "phonons"),
        store=lambda wildcards: f"{R}/{wildcards.material}/oracle",
    script:
        "../scripts/step.py"


rule phonon_comparison:
    input:
        summaries=lambda wildcards: expand(
            f"{R}/{wildcards.material}/phonons/{{method}}/phonons.json",
            method=phonon_methods(wildcards.material),
        ),
    output:
        summary=f"{R}/{{material}}/phonons/comparison.json",
        figure=report(
            f"{R}/{{material}}/phonons/bands.png",
            caption="../report/phonons.rst",
            category="Phonons",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/phonon_comparison.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=sections("phonons"),
    script:
        "../scripts/step.py"


rule fc3:
    input:
        unpack(force_inputs),
        structure=f"{R}/{{material}}/structure/relaxed.extxyz",
    output:
        fc2=f"{R}/{{material}}/conductivity/{{method}}/fc2.hdf5",
        fc3=f"{R}/{{material}}/conductivity/{{method}}/fc3.hdf5",
        params=f"{R}/{{material}}/conductivity/{{method}}/phono3py_params.yaml",
        summary=f"{R}/{{material}}/conductivity/{{method}}/fc3.json",
    log:
        f"{R}/{{material}}/logs/fc3_{{method}}.log",
    conda:
        "../envs/phonons.yaml"
    threads: method_threads
    params:
        settings=sections("oracle", "conductivity"),
        store=lambda wildcards: f"{R}/{wildcards.material}/oracle",
    script:
        "../scripts/step.py"


rule kappa:
    input:
        fc3=rules.fc3.output.fc3,
    output:
        netcdf=f"{R}/{{material}}/conductivity/{{method}}/kappa.nc",
    log:
        f"{R}/{{material}}/logs/kappa_{{method}}.log",
    conda:
        "../envs/phonons.yaml"
    threads: config["threads"]["kappa"]
    params:
        settings=sections("conductivity"),
    script:
        "../scripts/step.py"


rule kappa_commensurate:
    # kappa (RTA, quantum and classical) on exactly the MD supercell's q-points; requested
    # where Green-Kubo is compared with phono3py (conductivity.commensurate: true)
    input:
        fc3=rules.fc3.output.fc3,
    output:
        netcdf=f"{R}/{{material}}/conductivity/{{method}}/kappa_commensurate.nc",
    log:
        f"{R}/{{material}}/logs/kappa_commensurate_{{method}}.log",
    conda:
        "../envs/phonons.yaml"
    threads: config["threads"]["kappa"]
    params:
        settings=sections("conductivity"),
    script:
        "../scripts/step.py"


rule conductivity_comparison:
    input:
        kappa=lambda wildcards: expand(
            f"{R}/{wildcards.material}/conductivity/{{method}}/kappa.nc",
            method=conductivity_methods(wildcards.material),
        ),
        # the MLIP's kappa on the MD cell's q-points, when asked for: made with the comparison
        commensurate=lambda wildcards: (
            [f"{R}/{wildcards.material}/conductivity/mlip/kappa_commensurate.nc"]
            if msettings(wildcards.material)["conductivity"]["commensurate"]
            else []
        ),
    output:
        summary=f"{R}/{{material}}/conductivity/comparison.json",
        kappa=report(
            f"{R}/{{material}}/conductivity/kappa.png",
            caption="../report/kappa.rst",
            category="Thermal conductivity",
            subcategory="{material}",
        ),
        lifetimes=report(
            f"{R}/{{material}}/conductivity/lifetimes.png",
            caption="../report/lifetimes.rst",
            category="Thermal conductivity",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/conductivity_comparison.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=sections("conductivity"),
    script:
        "../scripts/step.py"


rule anharmonicity:
    input:
        unpack(anharmonicity_inputs),
    output:
        summary=f"{R}/{{material}}/phonons/anharmonicity.json",
        figure=report(
            f"{R}/{{material}}/phonons/anharmonicity.png",
            caption="../report/anharmonicity.rst",
            category="Phonons",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/anharmonicity.log",
    conda:
        "../envs/phonons.yaml"
    params:
        settings=sections("phonons"),
    script:
        "../scripts/step.py"


# conductivity.track_iterations: the target property along the AL loop (and the random
# baseline's), kappa of each iteration's ensemble against the oracle's on the same mesh
rule iteration_kappa:
    input:
        members=lambda wildcards: member_infos(
            wildcards.material, wildcards.it, wildcards.kind
        ),
        structure=f"{R}/{{material}}/structure/relaxed.extxyz",
    output:
        netcdf=f"{R}/{{material}}/{{kind}}/iter_{{it}}/kappa.nc",
    log:
        f"{R}/{{material}}/logs/{{kind}}/iter_{{it}}/kappa.log",
    conda:
        "../envs/phonons.yaml"
    threads: config["threads"]["md"]
    params:
        settings=sections("model", "conductivity"),
    script:
        "../scripts/step.py"


rule kappa_curve:
    input:
        unpack(kappa_curve_inputs),
    output:
        table=f"{R}/{{material}}/al/kappa_curve.csv",
        figure=report(
            f"{R}/{{material}}/al/kappa_curve.png",
            caption="../report/kappa_curve.rst",
            category="Active learning",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/kappa_curve.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=sections(),
    script:
        "../scripts/step.py"
