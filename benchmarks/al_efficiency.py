"""How many oracle labels and calls active learning needs compared with its baselines.

Usage: python benchmarks/al_efficiency.py results/<material>

Reads ``al/al_vs_random.csv`` (where the random baseline ran), ``al/summary.csv`` and the
campaign's oracle cost (:func:`alkappa.al.cost.campaign_cost`) and prints
- the training labels random sampling used for its final force RMSE (all test frames),
  the training labels AL needed to reach that RMSE (first AL iteration at or below it), and
  their ratio (below 1: AL is more label-efficient);
- the fraction of explored MD frames that AL sent to the oracle;
- per baseline (aiMD only, random from the reference-MD pool, harmonic sampling only), the
  oracle calls and CPU hours, all of them (relaxation, D_0, test set, labels, the baseline's
  MD or pool), that AL spent to reach the baseline's final force RMSE against the
  baseline's, with their ratios (for aiMD only the goal is 1/3 or less), or that AL did not
  reach it; for the random and harmonic baselines also the labels' ratio.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alkappa.al.cost import CampaignCost
    from alkappa.labelling import OracleCost


def main(directory: str) -> int:
    root = Path(directory)
    if (root / "al/al_vs_random.csv").is_file():
        print_labels(root)
    else:
        print("no random baseline (no reference data): no comparison at equal labels")
    with open(root / "al/summary.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    explored = sum(int(r["frames_explored"]) for r in summary)
    labelled = sum(int(r["oracle_calls"]) for r in summary)
    print(f"explored MD frames labelled: {labelled}/{explored} = {labelled / max(explored, 1):.3f}")
    print_cost(root)
    return 0


def print_labels(root: Path) -> None:
    """AL's labels to reach the random baseline's final force RMSE, at equal dataset sizes."""
    with open(root / "al/al_vs_random.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["group"] == "all"]
    final = rows[-1]
    target = float(final["random_force_rmse_eV_per_A"])
    random_labels = int(final["n_frames"])
    reached = [r for r in rows if float(r["al_force_rmse_eV_per_A"]) <= target]
    print(f"random sampling: {random_labels} labels -> force RMSE {target:.4f} eV/Å")
    if reached:
        al_labels = int(reached[0]["n_frames"])
        print(
            f"active learning: {al_labels} labels -> force RMSE "
            f"{float(reached[0]['al_force_rmse_eV_per_A']):.4f} eV/Å "
            f"(iteration {reached[0]['iteration']})"
        )
        print(f"ratio AL/random labels: {al_labels / random_labels:.3f}")
    else:
        best = min(rows, key=lambda r: float(r["al_force_rmse_eV_per_A"]))
        print(
            "active learning did not reach it: best "
            f"{float(best['al_force_rmse_eV_per_A']):.4f} eV/Å at {best['n_frames']} labels"
        )


def _cost(total: OracleCost) -> str:
    text = f"{total.calls} oracle calls, {total.cpu_seconds / 3600:.3g} CPU h"
    return text + (f" ({total.untimed_cpu} calls without a CPU time)" if total.untimed_cpu else "")


#: the baselines compared, with what their ratio's goal is
BASELINES = {
    "aimd": ("aiMD only", "oracle calls, goal <= 1/3"),
    "random": ("random from the reference-MD pool (its cost counted)", "oracle calls"),
    "harmonic": ("harmonic sampling only", "oracle calls"),
}


def print_cost(root: Path) -> None:
    """The cost-aware comparisons: all oracle calls and CPU hours, each baseline's own MD or
    pool included."""
    from alkappa.al.cost import campaign_cost

    cost = campaign_cost(root)
    print("oracle cost (relaxation, D_0, test set, labels; the baselines' MD, pool and samples):")
    for purpose, spent in cost.purposes.items():
        print(f"  {purpose:<15} {_cost(spent)}")
    for note in cost.notes:
        print(f"  note: {note}")
    for method in BASELINES:
        print_reach(cost, method)


def print_reach(cost: CampaignCost, method: str) -> None:
    """What AL spent to reach the final force RMSE of baseline ``method``, and the ratios."""
    from alkappa.al.cost import baseline_reach

    name, goal = BASELINES[method]
    reach = baseline_reach(cost, method)
    if reach is None:
        print(f"{name}: not evaluated (off, or not run yet)")
        return
    b = reach.baseline
    extra = {"aimd": "aimd_md", "random": "reference_md", "harmonic": "labels"}[method]
    print(
        f"{name}: force RMSE {reach.target_force_rmse:.4f} eV/Å with {b.dataset_size} frames "
        f"for {_cost(b.total)} ({extra}: {b.cost[extra].calls} calls)"
    )
    if reach.al is None:
        best = reach.best_al
        print(
            f"  active learning did not reach it: best {best.errors['force_rmse_eV_per_A']:.4f} "
            f"eV/Å at {_cost(best.total)} (iteration {best.iteration})"
        )
        return
    a = reach.al
    print(
        f"  active learning: force RMSE {a.errors['force_rmse_eV_per_A']:.4f} eV/Å with "
        f"{a.dataset_size} frames for {_cost(a.total)} (iteration {a.iteration})"
    )
    calls, cpu = reach.ratio("calls"), reach.ratio("cpu_seconds")
    if calls is not None:
        print(f"  ratio AL/{method} {goal}: {calls:.3f}")
    if cpu is None:
        print(f"  ratio AL/{method} oracle CPU time: unknown (calls without a recorded time)")
    else:
        print(f"  ratio AL/{method} oracle CPU time: {cpu:.3f}")
    labels = reach.ratio("labels")
    if method == "harmonic" and labels is not None:  # random's: above, from al_vs_random
        print(f"  ratio AL/{method} training labels (D_0 included): {labels:.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
