"""The AL campaign's summary table, learning-curve figure and exported final ensemble."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from alkappa.io import atomic_path, read_json, read_trajectory, write_json

if TYPE_CHECKING:
    from collections.abc import Sequence

    from alkappa.al.metrics import MetricsRecord
    from alkappa.settings import SelectSettings, SettingsDict

SUMMARY_FIELDS = (
    "iteration",
    "dataset_size",
    "oracle_calls",
    "oracle_failures",
    "oracle_calls_cumulative",
    "energy_rmse_meV_per_atom",
    "energy_mae_meV_per_atom",
    "force_rmse_eV_per_A",
    "force_mae_eV_per_A",
    "force_max_error_eV_per_A",
    "stress_rmse_GPa",
    "stress_mae_GPa",
    "reliability",
    "spearman_force_atom",
    "miscalibration_area_force_atom",
    "sigma_scale",
    "miscalibration_area_force_atom_scaled",
    "miscalibration_area_force_atom_isotonic",
    "U_test_mean",
    "U_test_std",
    "frames_explored",
    "frames_uncertain",
    "frames_selected",
    "md_blowups",
    "frames_gated",
    "decision",
)


class SummaryRow(TypedDict):
    """One AL iteration's row of ``summary.csv`` (the columns of :data:`SUMMARY_FIELDS`)."""

    iteration: int
    dataset_size: int
    oracle_calls: int
    oracle_failures: int
    oracle_calls_cumulative: int
    energy_rmse_meV_per_atom: float | None
    energy_mae_meV_per_atom: float | None
    force_rmse_eV_per_A: float | None
    force_mae_eV_per_A: float | None
    force_max_error_eV_per_A: float | None
    stress_rmse_GPa: float | None
    stress_mae_GPa: float | None
    reliability: float | None
    spearman_force_atom: float | None
    miscalibration_area_force_atom: float | None
    sigma_scale: float | None
    miscalibration_area_force_atom_scaled: float | None
    miscalibration_area_force_atom_isotonic: float | None
    U_test_mean: float
    U_test_std: float
    frames_explored: int
    frames_uncertain: int
    frames_selected: int
    md_blowups: int
    frames_gated: int | None
    decision: str


class IterationPaths(TypedDict):
    """The files of one AL iteration that :func:`summary_rows` reads."""

    metrics: str | Path
    selection: str | Path
    decision: str | Path
    #: the record of D_(i+1) (None for the last iteration)
    merge: str | Path | None
    trajectories: list[str | Path]
    initial_size: int


class _RecalibrationColumns(TypedDict):
    sigma_scale: float | None
    miscalibration_area_force_atom_scaled: float | None
    miscalibration_area_force_atom_isotonic: float | None


def _recalibration_columns(metrics: MetricsRecord) -> _RecalibrationColumns:
    """The ML sigma scale and the cross-validated miscalibration areas after recalibration
    (None for metrics written before recalibration was reported)."""
    rec = metrics.get("recalibration") or {}
    scale, iso = rec.get("scale") or {}, rec.get("isotonic") or {}
    return {
        "sigma_scale": (scale.get("map") or {}).get("scale"),
        "miscalibration_area_force_atom_scaled": (scale.get("after") or {}).get(
            "miscalibration_area_atom"
        ),
        "miscalibration_area_force_atom_isotonic": (iso.get("after") or {}).get(
            "miscalibration_area_atom"
        ),
    }


def _gated(merge_path: str | Path | None) -> int | None:
    if not merge_path:
        return None
    gated = read_json(merge_path).get("gated")
    return None if gated is None else len(gated)


def summary_rows(
    select: SelectSettings,
    relax_record: str | Path,
    initial_record: str | Path,
    iterations: Sequence[IterationPaths],
    test_record: str | Path | None = None,
) -> list[SummaryRow]:
    """One row per AL iteration.

    ``select`` is the ``select`` section (its ``statistic``). ``iterations[i]`` holds the
    paths of iteration i: ``metrics``, ``selection``, ``decision``, ``trajectories`` (list)
    and, for all but the last, ``merge`` (the record of D_{i+1}).
    ``oracle_calls`` of row i counts the labelling calls made with iteration i's selection;
    ``oracle_calls_cumulative`` adds everything before (relaxation, force constants, D_0 and,
    from ``test_record``, the harmonic test set without the force constants it shares with
    D_0; a test set drawn from reference MD is not counted: it is shared with the baselines).
    :func:`alkappa.al.cost.campaign_cost` has the full account, with times.
    """
    stat = select.statistic
    cumulative = int(read_json(relax_record).get("oracle_calls", 0))
    initial = read_json(initial_record)["oracle_calls"]
    cumulative += sum(initial.values())
    if test_record is not None:
        # its fc2 single points are D_0's, reused from the oracle store
        test = read_json(test_record)["oracle_calls"]
        cumulative += sum(n for purpose, n in test.items() if purpose not in initial)
    rows: list[SummaryRow] = []
    size = None
    for i, paths in enumerate(iterations):
        metrics = read_json(paths["metrics"])
        decision = read_json(paths["decision"])
        with open(paths["selection"], newline="") as fh:
            sel = list(csv.DictReader(fh))
        blowups = sum(
            int(read_trajectory(p).attrs.get("blew_up", 0)) for p in paths["trajectories"]
        )
        if size is None:
            size = int(paths["initial_size"])
        calls = failures = 0
        if paths.get("merge"):
            merge = read_json(paths["merge"])
            calls, failures = int(merge["oracle_calls"]), len(merge["failed"])
        cumulative += calls
        unc = metrics["uncertainty"][stat]
        rows.append(
            {
                "iteration": i,
                "dataset_size": size,
                "oracle_calls": calls,
                "oracle_failures": failures,
                "oracle_calls_cumulative": cumulative,
                "energy_rmse_meV_per_atom": metrics["energy_per_atom_meV"]["rmse"],
                "energy_mae_meV_per_atom": metrics["energy_per_atom_meV"]["mae"],
                "force_rmse_eV_per_A": metrics["forces_eV_per_A"]["rmse"],
                "force_mae_eV_per_A": metrics["forces_eV_per_A"]["mae"],
                "force_max_error_eV_per_A": metrics["forces_eV_per_A"]["max"],
                "stress_rmse_GPa": metrics["stress_GPa"]["rmse"],
                "stress_mae_GPa": metrics["stress_GPa"]["mae"],
                "reliability": metrics["per_member"]["all"]["mean"]["reliability"]["fraction"],
                "spearman_force_atom": metrics["calibration"]["atom"]["spearman"],
                "miscalibration_area_force_atom": metrics["calibration"]["atom"][
                    "miscalibration_area"
                ],
                **_recalibration_columns(metrics),
                "U_test_mean": unc["mean"],
                "U_test_std": unc["std"],
                "frames_explored": len(sel),
                "frames_uncertain": sum(float(r["P_U"]) > 0.5 for r in sel),
                "frames_selected": sum(r["accepted"] == "True" for r in sel),
                "md_blowups": blowups,
                # labels of this iteration the physical gate down-weighted (None: no gate)
                "frames_gated": _gated(paths.get("merge")),
                "decision": "converged"
                if decision["converged"]
                else ("stopped" if decision["stop"] else "continue"),
            }
        )
        if paths.get("merge"):
            size = int(read_json(paths["merge"])["size_after"])
    return rows


def write_summary(rows: Sequence[SummaryRow], path: str | Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row[k]) for k in SUMMARY_FIELDS})


def plot_learning_curve(rows: Sequence[SummaryRow], path: str | Path, title: str) -> None:
    """Test errors and uncertainty against cumulative oracle calls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calls = [r["oracle_calls_cumulative"] - r["oracle_calls"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), constrained_layout=True)
    axes[0].plot(calls, [r["force_rmse_eV_per_A"] for r in rows], "o-", label="RMSE")
    axes[0].plot(calls, [r["force_mae_eV_per_A"] for r in rows], "s--", label="MAE")
    axes[0].set_ylabel("force error (eV/Å)")
    axes[1].plot(calls, [r["energy_rmse_meV_per_atom"] for r in rows], "o-", label="RMSE")
    axes[1].plot(calls, [r["energy_mae_meV_per_atom"] for r in rows], "s--", label="MAE")
    axes[1].set_ylabel("energy error (meV/atom)")
    mean = [r["U_test_mean"] for r in rows]
    std = [r["U_test_std"] for r in rows]
    axes[2].errorbar(calls, mean, yerr=std, fmt="o-", capsize=3, label="test set")
    axes[2].set_ylabel("ensemble force uncertainty (eV/Å)")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.set_xlabel("oracle calls before training")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(frameon=False)
    for r, x in zip(rows, calls, strict=True):
        axes[0].annotate(
            f"{r['iteration']}",
            (x, r["force_rmse_eV_per_A"]),
            textcoords="offset points",
            xytext=(3, 3),
            fontsize=8,
        )
    fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)


def export_ensemble(
    settings: SettingsDict,
    member_dirs: Sequence[str | Path],
    decision: str | Path,
    out_dir: str | Path,
) -> None:
    """Copy the final members to ``out_dir`` with an ``ensemble.json`` describing them."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for k, member_dir in enumerate(member_dirs):
        info = read_json(Path(member_dir) / "member.json")
        src = Path(member_dir) / info["model_file"]
        dst = out_dir / f"member_{k}{''.join(src.suffixes)}"
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        files.append(dst.name)
        # companions: the files named after the package's stem (NequIP: the compiled
        # model.nequip.pt2, the LLPR's model.llpr.npz and model.llpr.nequip.pt2), renamed
        # alike and copied after the package so that they stay the newer files (an older
        # compiled companion counts as stale and is ignored)
        stem = src.name.split(".", 1)[0]
        for companion in sorted(src.parent.glob(f"{stem}.*")):
            if companion == src or not companion.is_file():
                continue
            with atomic_path(out_dir / f"member_{k}{companion.name[len(stem) :]}") as tmp:
                shutil.copyfile(companion, tmp)
    dec = read_json(decision)
    write_json(
        out_dir / "ensemble.json",
        {
            "material": settings["name"],
            "model": settings["model"],
            "members": files,
            "iteration": dec["iteration"],
            "converged": dec["converged"],
            "decision": dec["reason"],
        },
    )


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value
