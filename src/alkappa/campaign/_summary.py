"""One row per material of a multi-material campaign, from the per-material outputs."""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alkappa.io import atomic_path, read_json

if TYPE_CHECKING:
    from collections.abc import Sequence

NAN = float("nan")
#: the temperature (K) at which kappa is compared across materials
SUMMARY_TEMPERATURE = 300.0


@dataclass
class MaterialSummary:
    """A material's campaign result (NaN where its stage did not run).

    Attributes
    ----------
    al_iterations
        Number of AL iterations (ensembles trained), from ``al/summary.csv``.
    oracle_calls
        Oracle calls made up to the final iteration (relaxation, D_0, test set, labels).
    energy_rmse_meV_per_atom, force_rmse_eV_per_A, reliability
        Test-set errors of the final ensemble.
    sigma_A
        Anharmonicity score (Knoop et al., Phys. Rev. Materials 4, 083809 (2020)) of the final
        exploration MD at the lowest temperature (``sigma_A_trajectory`` names it).
    kappa_GK_W_per_mK, kappa_GK_error_W_per_mK
        Green-Kubo kappa at :data:`SUMMARY_TEMPERATURE` and its standard error over runs.
    kappa_phono3py_mlip_W_per_mK, kappa_phono3py_oracle_W_per_mK
        phono3py RTA kappa at :data:`SUMMARY_TEMPERATURE`, with the MLIP and with the oracle.
    missing_events, false_events
        Events flagged by the events diagnosis (``events/diagnosis.json``).
    """

    material: str
    decision: str = ""
    al_iterations: float = NAN
    oracle_calls: float = NAN
    energy_rmse_meV_per_atom: float = NAN
    force_rmse_eV_per_A: float = NAN
    reliability: float = NAN
    sigma_A: float = NAN
    sigma_A_trajectory: str = ""
    kappa_GK_W_per_mK: float = NAN
    kappa_GK_error_W_per_mK: float = NAN
    kappa_phono3py_mlip_W_per_mK: float = NAN
    kappa_phono3py_oracle_W_per_mK: float = NAN
    missing_events: float = NAN
    false_events: float = NAN


SUMMARY_COLUMNS = tuple(f.name for f in fields(MaterialSummary))


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return NAN


def _count(value: Any) -> float:
    """An event count: a number, or the length of a list of events."""
    if isinstance(value, (list, tuple, dict)):
        return float(len(value))
    return _number(value)


def material_summary(
    material: str,
    *,
    al_summary: str | Path,
    anharmonicity: str | Path | None = None,
    conductivity: str | Path | None = None,
    greenkubo: str | Path | None = None,
    events: str | Path | None = None,
) -> MaterialSummary:
    """Collect one material's numbers from its output files (``None``: stage not run)."""
    with open(al_summary, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{al_summary} has no iterations")
    last = rows[-1]
    row = MaterialSummary(
        material=material,
        decision=last["decision"],
        al_iterations=float(len(rows)),
        oracle_calls=_number(last["oracle_calls_cumulative"]),
        energy_rmse_meV_per_atom=_number(last["energy_rmse_meV_per_atom"]),
        force_rmse_eV_per_A=_number(last["force_rmse_eV_per_A"]),
        reliability=_number(last["reliability"]),
    )
    if anharmonicity is not None:
        scores = {k: v for k, v in read_json(anharmonicity).items() if k.startswith("MLIP ")}
        if scores:
            # the lowest exploration temperature: "MLIP 300 K" before "MLIP 900 K"
            label = min(scores, key=lambda k: _number(k.split()[1]))
            row.sigma_A = _number(scores[label]["sigma_A"])
            row.sigma_A_trajectory = label
    if conductivity is not None:
        record = read_json(conductivity)
        for method in ("mlip", "oracle"):
            if method in record:
                value = _kappa_at(record[method], SUMMARY_TEMPERATURE)
                setattr(row, f"kappa_phono3py_{method}_W_per_mK", value)
    if greenkubo is not None:
        for key, entry in read_json(greenkubo)["temperatures"].items():
            if math.isclose(float(key), SUMMARY_TEMPERATURE):
                row.kappa_GK_W_per_mK = _number(entry["kappa_W_per_mK"])
                row.kappa_GK_error_W_per_mK = _number(entry["kappa_error_W_per_mK"])
    if events is not None:
        diagnosis = read_json(events)
        row.missing_events = _count(diagnosis.get("missing_events"))
        row.false_events = _count(diagnosis.get("false_events"))
    return row


def _kappa_at(record: dict[str, Any], temperature: float) -> float:
    for t, k in zip(record["temperatures_K"], record["kappa_rta_W_per_mK"], strict=True):
        if math.isclose(float(t), temperature):
            return _number(k)
    return NAN


def write_summary_csv(rows: Sequence[MaterialSummary], path: str | Path) -> None:
    """``results/summary.csv``: one row per material, :data:`SUMMARY_COLUMNS`, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))


def read_summary_csv(path: str | Path) -> list[MaterialSummary]:
    """The rows of a ``summary.csv`` written by :func:`write_summary_csv`."""
    types = {f.name: f.type for f in fields(MaterialSummary)}
    out = []
    with open(path, newline="") as fh:
        for raw in csv.DictReader(fh):
            values = {k: (v if types[k] == "str" else _number(v)) for k, v in raw.items()}
            out.append(MaterialSummary(**values))
    return out


def plot_campaign(rows: Sequence[MaterialSummary], path: str | Path) -> None:
    """Summary figure across materials: AL iterations, oracle calls, force RMSE, sigma^A,
    kappa (Green-Kubo and phono3py with MLIP and oracle, log scale) and events flagged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [r.material for r in rows]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
    panels = [
        ("al_iterations", "AL iterations"),
        ("oracle_calls", "oracle calls"),
        ("force_rmse_eV_per_A", "force RMSE (eV/Å)"),
        ("sigma_A", r"$\sigma^A$"),
    ]
    flat = axes.ravel()
    for ax, (key, label) in zip(flat[:4], panels, strict=True):
        ax.bar(x, [getattr(r, key) for r in rows], color="C0")
        ax.set_ylabel(label)
    ax = flat[4]
    width = 0.27
    for j, (key, label) in enumerate(
        [
            ("kappa_GK_W_per_mK", "Green-Kubo (MLIP)"),
            ("kappa_phono3py_mlip_W_per_mK", "phono3py RTA (MLIP)"),
            ("kappa_phono3py_oracle_W_per_mK", "phono3py RTA (oracle)"),
        ]
    ):
        values = np.array([getattr(r, key) for r in rows], dtype=float)
        errors = None
        if key == "kappa_GK_W_per_mK":
            errors = np.nan_to_num([r.kappa_GK_error_W_per_mK for r in rows])
        ax.bar(x + (j - 1) * width, values, width, yerr=errors, label=label, color=f"C{j}")
    if any(getattr(r, k) > 0 for r in rows for k in ("kappa_phono3py_mlip_W_per_mK",)):
        ax.set_yscale("log")
    ax.set_ylabel(f"κ at {SUMMARY_TEMPERATURE:g} K (W/mK)")
    ax.legend(fontsize="small")
    ax = flat[5]
    ax.bar(x - 0.2, [r.missing_events for r in rows], 0.4, label="missing")
    ax.bar(x + 0.2, [r.false_events for r in rows], 0.4, label="false")
    ax.set_ylabel("events flagged")
    if all(math.isnan(r.missing_events) and math.isnan(r.false_events) for r in rows):
        ax.text(0.5, 0.5, "no events diagnosis", transform=ax.transAxes, ha="center")
    else:
        ax.legend(fontsize="small")
    for ax in flat:
        ax.set_xticks(x, names, rotation=30, ha="right")
    fig.suptitle(f"Campaign: {len(rows)} materials")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
