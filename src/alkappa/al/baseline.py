"""The random-sampling baseline: the same ensemble on random reference frames, same budget."""

from __future__ import annotations

import csv
from typing import TYPE_CHECKING, Any

import numpy as np

from alkappa.io import atomic_path, read_dataset, read_json, write_dataset

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from alkappa.settings import SettingsDict


def run_random_dataset(
    settings: SettingsDict,
    initial_path: str | Path,
    pool_path: str | Path,
    al_dataset_path: str | Path,
    out_dataset: str | Path,
    *,
    iteration: int,
) -> None:
    """D_0 plus random pool frames, as many as the AL dataset of ``iteration`` holds.

    The pool holds reference frames (labelled, never in the test set); drawing without
    replacement, seeded by ``reference.seed`` and the iteration. A pool too small for the
    target size is used whole, with a message.
    """
    initial = read_dataset(initial_path)
    pool = read_dataset(pool_path)
    target = len(read_dataset(al_dataset_path))
    n_draw = max(0, target - len(initial))
    if n_draw > len(pool):
        print(f"reference pool has {len(pool)} frames, {n_draw} wanted: using all of them")
        n_draw = len(pool)
    from alkappa.settings import ReferenceSettings

    seed = ReferenceSettings.from_settings(settings).seed
    rng = np.random.default_rng([seed, iteration])
    chosen = sorted(rng.choice(len(pool), size=n_draw, replace=False).tolist())
    frames = []
    for i in chosen:
        frame = pool[i]
        frame.info.update({"source": "random", "iteration": iteration})
        frames.append(frame)
    write_dataset(out_dataset, initial + frames)


COMPARE_FIELDS = (
    "iteration",
    "n_frames",
    "al_oracle_calls_cumulative",
    "group",
    "al_force_rmse_eV_per_A",
    "random_force_rmse_eV_per_A",
    "al_reliability",
    "random_reliability",
)


def compare_rows(
    summary_path: str | Path,
    al_metrics: Sequence[str | Path],
    random_metrics: Sequence[str | Path],
) -> list[dict[str, Any]]:
    """One row per (iteration, test group): AL and random errors at the same dataset size.

    Iteration 0 trains both on the same D_0, so its random entry is the AL one.
    """
    with open(summary_path, newline="") as fh:
        summary = list(csv.DictReader(fh))
    rows = []
    for i, al_path in enumerate(al_metrics):
        al = read_json(al_path)["per_member"]
        rnd = read_json(random_metrics[i - 1])["per_member"] if i > 0 else al
        groups = {"all": (al["all"], rnd["all"])}
        if len(al["by_temperature"]) > 1:  # one panel per temperature when there are several
            for t, group in al["by_temperature"].items():
                groups[f"{t} K"] = (group, rnd["by_temperature"].get(t, {}))
        for name, (a, r) in groups.items():
            rows.append(
                {
                    "iteration": i,
                    "n_frames": int(summary[i]["dataset_size"]),
                    "al_oracle_calls_cumulative": int(summary[i]["oracle_calls_cumulative"])
                    - int(summary[i]["oracle_calls"]),
                    "group": name,
                    "al_force_rmse_eV_per_A": a["mean"]["forces_eV_per_A"]["rmse"],
                    "random_force_rmse_eV_per_A": r.get("mean", {})
                    .get("forces_eV_per_A", {})
                    .get("rmse"),
                    "al_reliability": a["mean"]["reliability"]["fraction"],
                    "random_reliability": r.get("mean", {}).get("reliability", {}).get("fraction"),
                }
            )
    return rows


def run_compare_random(
    summary_path: str | Path,
    al_metrics: Sequence[str | Path],
    random_metrics: Sequence[str | Path],
    out_table: str | Path,
    out_figure: str | Path,
) -> None:
    """The AL-vs-random table and figure (force RMSE and reliability, one column per test group)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = compare_rows(summary_path, al_metrics, random_metrics)
    with atomic_path(out_table) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COMPARE_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    groups = list(dict.fromkeys(r["group"] for r in rows))
    # top row force RMSE, bottom row reliability; one column per test group
    fig, axes = plt.subplots(
        2,
        len(groups),
        figsize=(3.6 * len(groups), 6.4),
        sharex=True,
        squeeze=False,
        constrained_layout=True,
    )
    panels = (
        ("force_rmse_eV_per_A", "force RMSE (eV/Å)"),
        ("reliability", "frames with force error > 3x median"),
    )
    for col, group in enumerate(groups):
        sel = [r for r in rows if r["group"] == group]
        n = [r["n_frames"] for r in sel]
        for row, (key, label) in enumerate(panels):
            ax = axes[row, col]
            ax.plot(n, [r[f"al_{key}"] for r in sel], "o-", label="active learning")
            ax.plot(n, [_nan(r[f"random_{key}"]) for r in sel], "s--", label="random")
            ax.set_ylabel(label)
            if row == 0:
                ax.set_title(f"test set: {group}")
                ax.legend(frameon=False)
            else:
                ax.set_ylim(bottom=0)
                ax.set_xlabel("training frames (oracle labels)")
    with atomic_path(out_figure) as tmp:
        fig.savefig(tmp, dpi=150, format="png")
    plt.close(fig)


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)
