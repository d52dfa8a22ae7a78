# Green-Kubo thermal conductivity from MD with the final ensemble: production (NVT
# equilibration, then independent NVE runs logging the heat flux), the Green-Kubo analysis,
# phonon lifetimes from the same runs against phono3py's, and a summary over temperatures.
# {gk} is greenkubo/ for the main cell and greenkubo_<n1>x<n2>x<n3>/ for greenkubo.size_check.


# A cell other than the material's supercell: resized relaxed lattice, MLIP-relaxed positions,
# the MLIP's harmonic phonons in it.
rule gk_cell:
    input:
        structure=f"{R}/{{material}}/structure/relaxed.extxyz",
        model=f"{R}/{{material}}/model/ensemble.json",
    output:
        structure=f"{R}/{{material}}/{{gk}}/cell/structure.extxyz",
        phonopy=f"{R}/{{material}}/{{gk}}/cell/phonopy_params.yaml",
    log:
        f"{R}/{{material}}/logs/{{gk}}/cell.log",
    conda:
        "../../envs/phonons.yaml"
    params:
        settings=sections("structure", "supercell", "relax", "phonons", "greenkubo"),
        supercell=lambda wildcards: gk_cell(wildcards.material, wildcards.gk),
    script:
        "../../scripts/gk_cell.py"


# The number of NVE runs is decided during production (more runs until kappa's relative error
# reaches greenkubo.target_error or a budget is spent), so the outputs are the record that lists
# the runs and the NVT chain; the rules after it read the runs from production.json. The run
# files are no outputs (Snakemake never deletes them) and the chain is update(): a production
# killed mid-way continues with its first unfinished run (the library reuses completed runs
# of the same settings).
rule production:
    input:
        unpack(production_inputs),
    output:
        equilibration=update(f"{R}/{{material}}/{{gk}}/T{{T}}/equilibration.nc"),
        record=f"{R}/{{material}}/{{gk}}/T{{T}}/production.json",
    log:
        f"{R}/{{material}}/logs/{{gk}}/production_T{{T}}.log",
    conda:
        "../../envs/mlip.yaml"
    threads: config["threads"]["md"]
    params:
        settings=sections("greenkubo"),
    script:
        "../../scripts/gk_production.py"


rule green_kubo:
    input:
        production=gk_production_record,
    output:
        netcdf=f"{R}/{{material}}/{{gk}}/T{{T}}/greenkubo.nc",
        figure=report(
            f"{R}/{{material}}/{{gk}}/T{{T}}/greenkubo.png",
            caption="../report/green_kubo.rst",
            category="Green-Kubo",
            subcategory="{material}",
        ),
        convergence=report(
            f"{R}/{{material}}/{{gk}}/T{{T}}/convergence.png",
            caption="../report/gk_convergence.rst",
            category="Green-Kubo",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/{{gk}}/green_kubo_T{{T}}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        settings=sections("greenkubo"),
    script:
        "../../scripts/green_kubo.py"


rule mode_lifetimes:
    input:
        production=gk_production_record,
        force_constants=gk_force_constants,
        kappa=f"{R}/{{material}}/conductivity/mlip/kappa.nc",
    output:
        netcdf=f"{R}/{{material}}/{{gk}}/T{{T}}/lifetimes.nc",
        summary=f"{R}/{{material}}/{{gk}}/T{{T}}/lifetimes.json",
        figure=report(
            f"{R}/{{material}}/{{gk}}/T{{T}}/lifetimes.png",
            caption="../report/md_lifetimes.rst",
            category="Green-Kubo",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/{{gk}}/mode_lifetimes_T{{T}}.log",
    conda:
        "../../envs/phonons.yaml"
    params:
        settings=sections("greenkubo"),
    script:
        "../../scripts/mode_lifetimes.py"


rule finite_size:
    input:
        green_kubo=f"{R}/{{material}}/{{gk}}/T{{T}}/greenkubo.nc",
        lifetimes=f"{R}/{{material}}/{{gk}}/T{{T}}/lifetimes.nc",
        force_constants=gk_force_constants,
    output:
        netcdf=f"{R}/{{material}}/{{gk}}/T{{T}}/finite_size.nc",
        figure=report(
            f"{R}/{{material}}/{{gk}}/T{{T}}/finite_size.png",
            caption="../report/finite_size.rst",
            category="Green-Kubo",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/{{gk}}/finite_size_T{{T}}.log",
    conda:
        "../../envs/phonons.yaml"
    params:
        settings=sections("greenkubo"),
    script:
        "../../scripts/finite_size.py"


rule greenkubo_summary:
    input:
        unpack(gk_summary_inputs),
    output:
        summary=f"{R}/{{material}}/{{gk}}/summary.json",
        figure=report(
            f"{R}/{{material}}/{{gk}}/kappa_T.png",
            caption="../report/kappa_gk.rst",
            category="Green-Kubo",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/{{gk}}/summary.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        settings=sections("greenkubo"),
    script:
        "../../scripts/greenkubo_summary.py"
