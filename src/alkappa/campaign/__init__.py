"""Multi-material campaigns: one summary row per material and a figure across materials.

* :func:`material_summary`: a material's AL iterations, oracle calls, final errors, sigma^A,
  kappa (Green-Kubo and phono3py) and flagged events, from its output files;
* :func:`write_summary_csv`, :func:`read_summary_csv`: ``results/summary.csv``;
* :func:`plot_campaign`: the summary figure;
* :func:`campaign_status`, :func:`format_status`, :func:`planned_jobs`: where a running or
  stopped campaign stands (``alkappa status``); :func:`remove_stale_lock` (``alkappa
  unlock``); :func:`run_snakemake`, :func:`stop_snakemake`: a run that stops within seconds and
  leaves no lock (``alkappa run``, ``alkappa stop``); :func:`estimate_time_left`: the time
  left (``alkappa status --configfile``).
"""

from __future__ import annotations

from alkappa.campaign._eta import (
    TimeLeft,
    estimate_time_left,
    gk_runs_beyond_plan,
    iterations_beyond_plan,
    run_cores,
    typical_job_seconds,
)
from alkappa.campaign._run import GRACE_SECONDS, run_snakemake, stop_snakemake
from alkappa.campaign._status import (
    CampaignStatus,
    MaterialStatus,
    RunningJob,
    campaign_status,
    format_status,
    planned_jobs,
    remove_stale_lock,
    snakemake_processes,
    status_line,
)
from alkappa.campaign._summary import (
    SUMMARY_COLUMNS,
    SUMMARY_TEMPERATURE,
    MaterialSummary,
    material_summary,
    plot_campaign,
    read_summary_csv,
    write_summary_csv,
)

__all__ = [
    "GRACE_SECONDS",
    "SUMMARY_COLUMNS",
    "SUMMARY_TEMPERATURE",
    "CampaignStatus",
    "MaterialStatus",
    "MaterialSummary",
    "RunningJob",
    "TimeLeft",
    "campaign_status",
    "estimate_time_left",
    "format_status",
    "gk_runs_beyond_plan",
    "iterations_beyond_plan",
    "material_summary",
    "planned_jobs",
    "plot_campaign",
    "read_summary_csv",
    "remove_stale_lock",
    "run_cores",
    "run_snakemake",
    "snakemake_processes",
    "status_line",
    "stop_snakemake",
    "typical_job_seconds",
    "write_summary_csv",
]
