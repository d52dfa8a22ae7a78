"""The pipeline's campaign step (rule ``campaign_summary``): ``results/summary.csv`` and
``results/summary.png`` from every material's outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path


def campaign_summary_step(
    materials: Sequence[str],
    files: Mapping[str, Mapping[str, str | Path | None]],
    out_csv: str | Path,
    out_figure: str | Path,
) -> None:
    """One row per material (in campaign order) from ``files[material]``: the keyword arguments
    of :func:`~alkappa.campaign.material_summary` (``al_summary`` and, where the stage ran,
    ``anharmonicity``, ``conductivity``, ``greenkubo``, ``events``)."""
    from alkappa.campaign import material_summary, plot_campaign, write_summary_csv

    missing = [m for m in materials if m not in files or "al_summary" not in files[m]]
    if missing:
        raise ValueError(f"campaign summary: no AL summary for material(s) {missing}")
    rows = [material_summary(m, **files[m]) for m in materials]
    for r in rows:
        print(
            f"{r.material}: {r.al_iterations:g} iterations, {r.oracle_calls:g} oracle calls, "
            f"force RMSE {r.force_rmse_eV_per_A:.4f} eV/Å, kappa_GK {r.kappa_GK_W_per_mK:.3g}, "
            f"kappa_phono3py {r.kappa_phono3py_mlip_W_per_mK:.3g} W/mK"
        )
    write_summary_csv(rows, out_csv)
    plot_campaign(rows, out_figure)
