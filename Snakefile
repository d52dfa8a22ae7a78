# alkappa: active learning of reliable MLIPs and lattice thermal conductivity.
#
#   snakemake --cores 64                      # the default campaign (config/config.yaml)
#   snakemake --cores 2 --configfile config/test.yaml
#   snakemake --profile profiles/slurm        # one job per rule on a SLURM cluster


from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/al.smk"


rule all:
    input:
        al_outputs(),
    default_target: True
