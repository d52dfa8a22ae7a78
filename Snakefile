# alkappa: active learning of reliable MLIPs and lattice thermal conductivity.
#
#   snakemake --cores 64                      # the default campaign (config/config.yaml)
#   snakemake --cores 2 --configfile config/test.yaml
#   snakemake --profile profiles/slurm        # on a SLURM cluster (README)


from snakemake.utils import min_version

min_version("9.0")


# the default campaign, unless another config is given with --configfile
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    material="|".join(MATERIALS),
    it=r"\d+",
    kind="al|random|aimd|harmonic",
    member=r"\d+",
    T=r"[0-9]+(\.[0-9]+)?",
    k=r"\d+",
    method="mlip|oracle",
    gk=r"greenkubo(_[0-9]+x[0-9]+x[0-9]+)?",


include: "workflow/rules/reference.smk"
include: "workflow/rules/al.smk"
include: "workflow/rules/baseline.smk"
include: "workflow/rules/phonons.smk"
include: "workflow/rules/greenkubo.smk"
include: "workflow/rules/events.smk"
include: "workflow/rules/bayesian.smk"
include: "workflow/rules/multifidelity.smk"
# last: the campaign summary reads what the rules above produce
include: "workflow/rules/campaign.smk"


rule all:
    default_target: True
    input:
        al_outputs(),
        phonon_outputs(),
        greenkubo_outputs(),
        events_outputs(),
        bayesian_outputs(),
        multifidelity_outputs(),
        campaign_outputs(),
    localrule: True
