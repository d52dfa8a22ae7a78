# Green-Kubo thermal conductivity from MD with the final ensemble: production (NVT
# equilibration, then independent NVE runs logging the heat flux), the Green-Kubo analysis,
# phonon lifetimes from the same runs against phono3py's, and a summary over temperatures.


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
        equilibration=update(f"{R}/{{material}}/greenkubo/T{{T}}/equilibration.nc"),
        record=f"{R}/{{material}}/greenkubo/T{{T}}/production.json",
    log:
        f"{R}/{{material}}/logs/greenkubo/production_T{{T}}.log",
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
        netcdf=f"{R}/{{material}}/greenkubo/T{{T}}/greenkubo.nc",
        figure=report(
            f"{R}/{{material}}/greenkubo/T{{T}}/greenkubo.png",
            caption="../report/green_kubo.rst",
            category="Green-Kubo",
            subcategory="{material}",
        ),
        convergence=report(
            f"{R}/{{material}}/greenkubo/T{{T}}/convergence.png",
            caption="../report/gk_convergence.rst",
            category="Green-Kubo",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/greenkubo/green_kubo_T{{T}}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        settings=sections("greenkubo"),
    script:
        "../../scripts/green_kubo.py"


rule mode_lifetimes:
    input:
        production=gk_production_record,
        force_constants=f"{R}/{{material}}/phonons/mlip/phonopy_params.yaml",
        kappa=f"{R}/{{material}}/conductivity/mlip/kappa.nc",
    output:
        netcdf=f"{R}/{{material}}/greenkubo/T{{T}}/lifetimes.nc",
        summary=f"{R}/{{material}}/greenkubo/T{{T}}/lifetimes.json",
        figure=report(
            f"{R}/{{material}}/greenkubo/T{{T}}/lifetimes.png",
            caption="../report/md_lifetimes.rst",
            category="Green-Kubo",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/greenkubo/mode_lifetimes_T{{T}}.log",
    conda:
        "../../envs/phonons.yaml"
    params:
        settings=sections("greenkubo"),
    script:
        "../../scripts/mode_lifetimes.py"


rule finite_size:
    input:
        green_kubo=f"{R}/{{material}}/greenkubo/T{{T}}/greenkubo.nc",
        lifetimes=f"{R}/{{material}}/greenkubo/T{{T}}/lifetimes.nc",
        force_constants=f"{R}/{{material}}/phonons/mlip/phonopy_params.yaml",
    output:
        netcdf=f"{R}/{{material}}/greenkubo/T{{T}}/finite_size.nc",
        figure=report(
            f"{R}/{{material}}/greenkubo/T{{T}}/finite_size.png",
            caption="../report/finite_size.rst",
            category="Green-Kubo",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/greenkubo/finite_size_T{{T}}.log",
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
        summary=f"{R}/{{material}}/greenkubo/summary.json",
        figure=report(
            f"{R}/{{material}}/greenkubo/kappa_T.png",
            caption="../report/kappa_gk.rst",
            category="Green-Kubo",
            subcategory="{material}",
        ),
    log:
        f"{R}/{{material}}/logs/greenkubo/summary.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        settings=sections("greenkubo"),
    script:
        "../../scripts/greenkubo_summary.py"
