"""The Bayesian force field against the oracle's own force constants, one row per material.

Reads ``<results>/<material>/bayesian/validation.json`` (rule ``bayes_validation``) of each
directory given and prints a Markdown table at one temperature: kappa of the Bayesian model,
kappa of the oracle's fc2/fc3, their ratio, the mesh, isotopes, the oracle calls of the
training, converged by the no-new-data criterion, and the change of each kappa between the
last two meshes of ``conductivity.mesh_convergence``.

    python validation/bayes_table.py results-Si/Si results-BAs/BAs results-SnSe/SnSe
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any


def row(material_dir: Path, temperature: float) -> dict[str, Any]:
    """One material's numbers at ``temperature`` (K)."""
    record = json.loads((material_dir / "bayesian" / "validation.json").read_text())
    temps = record["temperatures_K"]
    if temperature not in temps:
        raise SystemExit(f"{material_dir}: no kappa at {temperature:g} K (has {temps})")
    k = temps.index(temperature)
    out = {
        "material": record["material"],
        "kappa_model": record["kappa_model_W_per_mK"][k],
        "kappa_oracle": record["kappa_oracle_W_per_mK"][k],
        "ratio": record["ratio"][k],
        "mesh": "x".join(str(n) for n in record["mesh"]),
        "isotopes": "on" if record["isotopes"] else "off",
        "oracle_calls": record["oracle_calls"],
        "converged": "yes" if record["converged"] else "no",
    }
    for name in ("model", "oracle"):
        table = record.get(f"mesh_convergence_{name}")
        out[f"mesh_change_{name}"] = _last_change(table, temperature) if table else math.nan
    return out


def _last_change(table: dict[str, Any], temperature: float) -> float:
    """Relative change of kappa between the last two meshes of a convergence table."""
    k = table["temperatures_K"].index(temperature)
    value = table["relative_change_rta"][-1][k]
    return math.nan if value is None else float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("material_dirs", nargs="+", type=Path)
    parser.add_argument("--temperature", type=float, default=300.0)
    args = parser.parse_args()
    print(f"kappa (W/mK, RTA) at {args.temperature:g} K\n")
    print(
        "| material | kappa model | kappa oracle | ratio | mesh | isotopes | oracle calls | "
        "converged | last mesh step: model / oracle |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for directory in args.material_dirs:
        r = row(directory, args.temperature)
        print(
            f"| {r['material']} | {r['kappa_model']:.4g} | {r['kappa_oracle']:.4g} | "
            f"{r['ratio']:.3f} | {r['mesh']} | {r['isotopes']} | {r['oracle_calls']} | "
            f"{r['converged']} | {r['mesh_change_model']:+.1%} / {r['mesh_change_oracle']:+.1%} |"
        )


if __name__ == "__main__":
    main()
