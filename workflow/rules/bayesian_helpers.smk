# Helpers of the rules in bayesian.smk, which includes this file at its top: input functions,
# paths and targets.
# figure_outputs (campaign_helpers.smk) reads bayesian_outputs.


def bayesian_outputs():
    """Bayesian FC stage of the materials that enable it (kappa needs third order)."""
    outputs = []
    for m in MATERIALS:
        bayes = msettings(m)["bayesian"]
        if not bayes["enabled"]:
            continue
        outputs += [
            f"{R}/{m}/bayesian/decision.json",
            f"{R}/{m}/bayesian/fc/export.json",
            f"{R}/{m}/bayesian/errors.png",
            f"{R}/{m}/bayesian/posterior_width.png",
        ]
        if bayes["kappa"] and len(bayes["cutoffs"]) >= 2:
            outputs.append(f"{R}/{m}/bayesian/kappa/kappa.nc")
            if "oracle" in conductivity_methods(m):
                outputs.append(f"{R}/{m}/bayesian/validation.json")
    return outputs
