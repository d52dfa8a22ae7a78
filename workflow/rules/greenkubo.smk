# Green-Kubo thermal conductivity from MD with the final ensemble: production (NVT
# equilibration, then independent NVE runs logging the heat flux), the Green-Kubo analysis,
# phonon lifetimes from the same runs against phono3py's, and a summary over temperatures.
# {gk} is greenkubo/ for the main cell and greenkubo_<n1>x<n2>x<n3>/ for greenkubo.size_check.


include: "greenkubo_helpers.smk"


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
        "../envs/phonons.yaml"
    params:
        settings=sections("structure", "supercell", "relax", "phonons", "greenkubo"),
        supercell=lambda wildcards: gk_cell(wildcards.material, wildcards.gk),
    script:
        "../scripts/step.py"


# Production in rounds, each NVE run its own job (threads.md each), so `--cores N` and the
# SLURM profile run the runs of a round in parallel:
#   gk_equilibrate  NVT equilibration and the first greenkubo.runs starting snapshots
#   gk_run          one NVE run (run_<k>.nc), from its snapshot; round 0's runs are planned
#                   from the start, later ones once the round before has been decided
#   gk_round        checkpoint after round r: kappa's error from all runs so far; it stops
#                   (target_error, a budget, runs_too_short) or gives round r + 1 the runs
#                   projected to reach the target (at most doubling the runs, within max_runs
#                   and the budgets) and makes their snapshots by continuing the NVT chain
#                   (chain_<r + 1>.nc, cheap next to the runs)
#   production      production.json, the record the rules after it read (runs, history per
#                   round, stopped_by)
# Run k starts from snapshot k of one chain (segment k seeded by (seed, k)) whatever the
# rounds or the cores, so the results do not depend on either; max_wall_hours counts the NVT
# and NVE seconds of all jobs (compute, not elapsed time). Runs and the equilibration are
# update(): Snakemake does not delete them before a rerun and the library reuses a finished
# one of the same settings and model, so a rerun forced by a newer input redoes nothing
# finished; the chain files are no outputs (a round's snapshots are its record's business).
rule gk_equilibrate:
    input:
        unpack(production_inputs),
    output:
        equilibration=update(f"{R}/{{material}}/{{gk}}/T{{T}}/equilibration.nc"),
    log:
        f"{R}/{{material}}/logs/{{gk}}/equilibrate_T{{T}}.log",
    conda:
        "../envs/mlip.yaml"
    threads: config["threads"]["md"]
    params:
        settings=sections("greenkubo"),
    script:
        "../scripts/step.py"


rule gk_run:
    input:
        unpack(gk_run_inputs),
    output:
        run=update(f"{R}/{{material}}/{{gk}}/T{{T}}/run_{{k}}.nc"),
    log:
        f"{R}/{{material}}/logs/{{gk}}/T{{T}}/run_{{k}}.log",
    wildcard_constraints:
        k=r"\d+",
    conda:
        "../envs/mlip.yaml"
    threads: config["threads"]["md"]
    params:
        settings=sections("greenkubo"),
    script:
        "../scripts/step.py"


# greenkubo.max_run_steps: while the flux autocorrelation has not decayed within half a run, a
# round extends every run instead of adding runs; each run's extension segment s continues its
# trajectory (run_<k>.seg<s>.nc, to the length in the planning round's record) as its own job
rule gk_extend:
    input:
        unpack(gk_extend_inputs),
    output:
        segment=update(f"{R}/{{material}}/{{gk}}/T{{T}}/run_{{k}}.seg{{s}}.nc"),
    log:
        f"{R}/{{material}}/logs/{{gk}}/T{{T}}/run_{{k}}.seg{{s}}.log",
    wildcard_constraints:
        k=r"\d+",
        s=r"\d+",
    conda:
        "../envs/mlip.yaml"
    threads: config["threads"]["md"]
    params:
        settings=sections("greenkubo"),
    script:
        "../scripts/step.py"


checkpoint gk_round:
    input:
        unpack(gk_round_inputs),
    output:
        record=f"{R}/{{material}}/{{gk}}/T{{T}}/round_{{round}}.json",
    log:
        f"{R}/{{material}}/logs/{{gk}}/T{{T}}/round_{{round}}.log",
    wildcard_constraints:
        round=r"\d+",
    conda:
        "../envs/mlip.yaml"
    threads: config["threads"]["md"]
    params:
        settings=sections("greenkubo"),
    script:
        "../scripts/step.py"


rule production:
    input:
        unpack(gk_production_inputs),
    output:
        record=f"{R}/{{material}}/{{gk}}/T{{T}}/production.json",
    log:
        f"{R}/{{material}}/logs/{{gk}}/production_T{{T}}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=sections("greenkubo"),
        md_threads=config["threads"]["md"],
    script:
        "../scripts/step.py"


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
        "../envs/analysis.yaml"
    params:
        settings=sections("greenkubo"),
    script:
        "../scripts/step.py"


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
        "../envs/phonons.yaml"
    params:
        settings=sections("greenkubo"),
    script:
        "../scripts/step.py"


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
        "../envs/phonons.yaml"
    params:
        settings=sections("greenkubo"),
    script:
        "../scripts/step.py"


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
        "../envs/analysis.yaml"
    params:
        settings=sections("greenkubo"),
    script:
        "../scripts/step.py"
