"""How many oracle labels active learning needs compared with random sampling.

Usage: python benchmarks/al_efficiency.py results/<material>

Reads ``al/al_vs_random.csv`` and ``al/summary.csv`` of a finished campaign that had reference
data (so the random baseline ran) and prints
- the training labels random sampling used for its final force RMSE (all test frames),
- the training labels AL needed to reach that RMSE (first AL iteration at or below it),
- their ratio (below 1: AL is more label-efficient),
- the fraction of explored MD frames that AL sent to the oracle.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


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
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
