"""How many oracle labels active learning needs compared with random sampling.

Usage: python benchmarks/al_efficiency.py results/<material>

Reads ``al/al_vs_random.csv`` and ``al/summary.csv`` of a finished campaign that had reference
data (so the random baseline ran) and prints
- the training labels random sampling used for its final force RMSE (all test frames),
- the training labels AL needed to reach that RMSE (first AL iteration at or below it),
- their ratio (below 1: AL is more label-efficient),
- the fraction of explored MD frames that AL sent to the oracle,
- the same comparison in oracle cost, all of it (:func:`alkappa.al.cost.campaign_cost`):
  the oracle calls and CPU hours AL spent (relaxation, D_0, test set, labels) to reach the
  random baseline's final force RMSE, against the baseline's (the same and the whole
  reference-MD pool it draws from), with their ratios, or that AL did not reach it.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alkappa.labelling import OracleCost


def main(directory: str) -> int:
    root = Path(directory)
    with open(root / "al/al_vs_random.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["group"] == "all"]
    with open(root / "al/summary.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
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
    explored = sum(int(r["frames_explored"]) for r in summary)
    labelled = sum(int(r["oracle_calls"]) for r in summary)
    print(f"explored MD frames labelled: {labelled}/{explored} = {labelled / max(explored, 1):.3f}")
    print_cost(root)
    return 0


def _cost(total: OracleCost) -> str:
    text = f"{total.calls} oracle calls, {total.cpu_seconds / 3600:.3g} CPU h"
    return text + (f" ({total.untimed_cpu} calls without a CPU time)" if total.untimed_cpu else "")


def print_cost(root: Path) -> None:
    """The cost-aware comparison: all oracle calls and CPU hours, the baseline's pool included."""
    from alkappa.al.cost import baseline_reach, campaign_cost

    cost = campaign_cost(root)
    reach = baseline_reach(cost)
    print("oracle cost (relaxation, D_0, test set, labels; the baseline's reference-MD pool):")
    for purpose, spent in cost.purposes.items():
        print(f"  {purpose:<13} {_cost(spent)}")
    for note in cost.notes:
        print(f"  note: {note}")
    if reach is None:
        print("  no evaluated random baseline: no cost comparison")
        return
    r = reach.random
    pool = r.cost["reference_md"]
    print(
        f"random sampling: force RMSE {reach.target_force_rmse:.4f} eV/Å for {_cost(r.total)} "
        f"(iteration {r.iteration}; the pool: {pool.calls} calls)"
    )
    if reach.al is None:
        b = reach.best_al
        print(
            f"active learning did not reach it: best {b.errors['force_rmse_eV_per_A']:.4f} "
            f"eV/Å at {_cost(b.total)} (iteration {b.iteration})"
        )
        return
    a = reach.al
    print(
        f"active learning: force RMSE {a.errors['force_rmse_eV_per_A']:.4f} eV/Å for "
        f"{_cost(a.total)} (iteration {a.iteration})"
    )
    calls, cpu = reach.ratio("calls"), reach.ratio("cpu_seconds")
    if calls is not None:
        print(f"ratio AL/random oracle calls: {calls:.3f}")
    if cpu is None:
        print("ratio AL/random oracle CPU time: unknown (calls without a recorded time)")
    else:
        print(f"ratio AL/random oracle CPU time: {cpu:.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
