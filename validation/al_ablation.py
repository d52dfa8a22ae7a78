"""Ablation of the active-learning options of issue 17, item 3, with two or more seeds.

    python validation/al_ablation.py --out results-ablation                 # CuI, all variants
    python validation/al_ablation.py --config config/AgGaSe2.yaml --out results-ablation-agse
    python validation/al_ablation.py --out results-ablation --variants plain gate --seeds 0
    python validation/al_ablation.py --out results-ablation --table-only    # collect, run nothing

Writes one complete campaign config per (variant, seed) under ``OUT/<variant>_s<seed>/``
(the base config with the variant's options merged in, its own ``results`` directory, and
every random seed of the loop shifted by the seed: ensemble, D_0, exploration, selection),
runs the AL loop, the random, aiMD-only and harmonic-only baselines and the phono3py
comparison of each with Snakemake (Green-Kubo and the event diagnostics off: they do not
enter the table), then prints and writes ``OUT/ablation.csv``: per run, the labels AL needed
to reach the random baseline's final force RMSE, AL's oracle calls to reach aiMD-only's, the
final force RMSE, the calibration of the final ensemble before and after recalibration, and
kappa(MLIP)/kappa(oracle) at 300 K.

Every run of a material labels the same structures for its relaxation, D_0, test set and
reference MD: the first finished run's oracle store is copied into the next run's results
before it starts, so those calls are paid once in wall time, while each run's cost
accounting still counts them (``alkappa.al.cost`` counts the records, not the store's hits).
Resumable: a finished run is skipped by Snakemake, an interrupted one continues.
The uncertainty-biased exploration is not a variant here: its width must be set from the
test set's energy spread of a finished run first (README, "explore.uncertainty_bias").
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]

#: the options of issue 17 item 3 (each alone against "plain", today's defaults)
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "gate": {"gate": {"enabled": True}},
    "calibrated": {"calibration": {"select_on": "calibrated", "method": "isotonic"}},
    "diversity": {"select": {"diversity": "farthest_point"}},
    "ramp": {"explore": {"ramp": {"start": 1.0, "end": 1.5}}},
    "harmonic_thresholds": {"select": {"thresholds_from": "harmonic"}},
}

#: seeds of the loop's random draws, shifted per repetition (reference MD and test set stay)
SEEDED = ("ensemble", "initial", "explore", "select")

#: what the whole comparison needs besides the AL loop
OFF = {"greenkubo": {"enabled": False}, "events": {"enabled": False}}
BASELINES = {"aimd": {"enabled": True}, "harmonic": {"enabled": True}}

FIELDS = (
    "variant",
    "seed",
    "labels_al_to_random_final",
    "labels_random",
    "calls_al_over_aimd",
    "final_force_rmse_eV_per_A",
    "iterations",
    "spearman_force_atom",
    "miscalibration_area_before",
    "miscalibration_area_isotonic",
    "kappa_mlip_over_oracle_300K",
)


def merged(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay`` merged in, mapping by mapping."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def run_config(base: dict[str, Any], variant: str, seed: int, results: Path) -> dict[str, Any]:
    """The complete config of one (variant, seed) run."""
    from alkappa.config import schema

    cfg = merged(base, {**OFF, "baselines": BASELINES, **VARIANTS[variant]})
    cfg["results"] = str(results)
    if seed:
        properties = schema()["properties"]
        for section in SEEDED:
            default = _seed_default(properties[section])
            own = (cfg.get(section) or {}).get("seed", default)
            cfg.setdefault(section, {})["seed"] = own + 1000 * seed
    return cfg


def _seed_default(section_schema: dict[str, Any]) -> int:
    ref = section_schema.get("$ref")
    if ref:
        from alkappa.config import schema

        section_schema = schema()["$defs"][ref.rsplit("/", 1)[-1]]
    return int(section_schema["properties"]["seed"]["default"])


def collect(root: Path, variant: str, seed: int) -> dict[str, Any]:
    """One table row from a finished run's files (empty cells for what is missing)."""
    row: dict[str, Any] = {"variant": variant, "seed": seed}
    al = root / "al"
    vs_random = al / "al_vs_random.csv"
    if vs_random.is_file():
        with open(vs_random, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["group"] == "all"]
        if rows:
            target = float(rows[-1]["random_force_rmse_eV_per_A"])
            row["labels_random"] = int(rows[-1]["n_frames"])
            reached = [r for r in rows if float(r["al_force_rmse_eV_per_A"]) <= target]
            row["labels_al_to_random_final"] = int(reached[0]["n_frames"]) if reached else "never"
    summary = al / "summary.csv"
    if summary.is_file():
        with open(summary, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows:
            last = rows[-1]
            row["iterations"] = len(rows)
            row["final_force_rmse_eV_per_A"] = last["force_rmse_eV_per_A"]
            row["spearman_force_atom"] = last.get("spearman_force_atom", "")
            row["miscalibration_area_before"] = last.get("miscalibration_area_force_atom", "")
            row["miscalibration_area_isotonic"] = last.get(
                "miscalibration_area_force_atom_isotonic", ""
            )
    if (al / "oracle_cost.csv").is_file():
        from alkappa.al.cost import baseline_reach, campaign_cost

        reach = baseline_reach(campaign_cost(root), "aimd")
        if reach is not None:
            ratio = reach.ratio("calls")
            row["calls_al_over_aimd"] = "never" if ratio is None else f"{ratio:.3f}"
    comparison = root / "conductivity/comparison.json"
    if comparison.is_file():
        record = json.loads(comparison.read_text())
        mlip, oracle = (record.get(k, {}).get("kappa_rta_300K") for k in ("mlip", "oracle"))
        if mlip and oracle:
            row["kappa_mlip_over_oracle_300K"] = f"{mlip / oracle:.3f}"
    return row


def seed_store(runs: list[Path], target: Path) -> None:
    """Copy the oracle store of the first run that has one into ``target`` (once)."""
    store = target / "oracle"
    if store.exists():
        return
    for run in runs:
        source = run / "oracle"
        if source.is_dir() and run != target:
            shutil.copytree(source, store)
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config/config.yaml")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--cores", default="all")
    parser.add_argument("--table-only", action="store_true", help="collect finished runs only")
    args = parser.parse_args()

    base = yaml.safe_load(args.config.read_text())
    materials = list(base["materials"])
    if len(materials) != 1:
        sys.exit(f"{args.config}: the ablation takes a config of one material, not {materials}")
    material = materials[0]
    out = args.out.resolve()
    runs = [(v, s, out / f"{v}_s{s}") for s in args.seeds for v in args.variants]
    table = []
    for variant, seed, work in runs:
        results = work / "results"
        if not args.table_only:
            work.mkdir(parents=True, exist_ok=True)
            cfgfile = work / "config.yaml"
            cfgfile.write_text(yaml.safe_dump(run_config(base, variant, seed, results)))
            seed_store([r / "results" / material for _, _, r in runs], results / material)
            print(f"== {variant}, seed {seed}: {work}", flush=True)
            proc = subprocess.run(
                [
                    str(Path(sys.executable).parent / "alkappa"),
                    "run",
                    "--cores",
                    str(args.cores),
                    "--configfile",
                    str(cfgfile),
                ],
                cwd=ROOT,
            )
            if proc.returncode != 0:
                print(f"   {variant}, seed {seed}: the run failed (exit {proc.returncode})")
        table.append(collect(results / material, variant, seed))
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "ablation.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, restval="")
        writer.writeheader()
        writer.writerows(table)
    tmp.replace(out / "ablation.csv")
    widths = [max(len(f), 8) for f in FIELDS]
    print("  ".join(f.ljust(w) for f, w in zip(FIELDS, widths, strict=True)))
    for row in table:
        cells = [str(row.get(f, "")) for f in FIELDS]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
