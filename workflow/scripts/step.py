"""The script of every rule: runs the rule's step (``alkappa.steps.STEPS``)."""

from alkappa.steps import run_rule

run_rule(snakemake)  # noqa: F821
