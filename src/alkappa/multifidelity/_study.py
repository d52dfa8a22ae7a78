"""The budget study: high-fidelity test errors of the four approaches against the number of
high-fidelity training frames, with a fixed pool of low-fidelity frames."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from ase.units import GPa

from alkappa.io.dataset import labels
from alkappa.multifidelity._baselines import APPROACHES, train_approach, train_low_model

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ase import Atoms
    from ase.calculators.calculator import Calculator

#: error metrics of the study, with their units
METRICS = {
    "energy_rmse": "meV/atom",
    "force_rmse": "eV/Å",
    "stress_rmse": "GPa",
}


def high_fidelity_indices(n_pool: int, n_max: int, seed: int) -> np.ndarray:
    """Pool indices of the frames that get high-level labels, in the order they are used.

    A seeded permutation: the ``n`` frames of a budget are its first ``n`` entries, so the
    training sets of the budgets are nested (5 of 10 of 20 ...).
    """
    if n_max > n_pool:
        raise ValueError(f"a high-fidelity budget of {n_max} exceeds the pool of {n_pool} frames")
    return np.random.default_rng(seed).permutation(n_pool)[:n_max]


def check_budgets(budgets: Sequence[int]) -> list[int]:
    """Sorted, unique, positive budgets; a clear error otherwise."""
    out = sorted({int(b) for b in budgets})
    if not out or out[0] < 1:
        raise ValueError(f"high-fidelity budgets must be positive integers, got {list(budgets)}")
    return out


def error_metrics(calculator: Calculator, frames: Sequence[Atoms]) -> dict[str, float]:
    """RMSEs of ``calculator`` against the labels of ``frames``: energy per atom (meV/atom),
    force components (eV/Å), stress components (GPa; ``nan`` without stress labels)."""
    de, df, ds = [], [], []
    for atoms in frames:
        ref = labels(atoms)
        work = atoms.copy()
        work.calc = calculator
        de.append((work.get_potential_energy() - float(ref["energy"])) / len(atoms))
        df.append((work.get_forces() - np.asarray(ref["forces"])).ravel())
        if "stress" in ref:
            ds.append(work.get_stress(voigt=True) - np.asarray(ref["stress"]))
    rms = lambda x: float(np.sqrt(np.mean(np.square(x))))  # noqa: E731
    return {
        "energy_rmse": 1000.0 * rms(np.asarray(de)),
        "force_rmse": rms(np.concatenate(df)),
        "stress_rmse": rms(np.concatenate(ds)) / GPa if ds else float("nan"),
    }


def study_dataset(
    rows: Sequence[Mapping[str, Any]], attrs: Mapping[str, Any] | None = None
) -> xr.Dataset:
    """Collect ``{approach, n_high, <metric>...}`` rows into a Dataset over (approach, n_high)."""
    approaches = [a for a in APPROACHES if any(r["approach"] == a for r in rows)]
    budgets = sorted({int(r["n_high"]) for r in rows})
    data = {m: np.full((len(approaches), len(budgets)), np.nan) for m in METRICS}
    for r in rows:
        i, j = approaches.index(r["approach"]), budgets.index(int(r["n_high"]))
        for m in METRICS:
            data[m][i, j] = float(r[m])
    ds = xr.Dataset(
        {m: (("approach", "n_high"), v, {"units": METRICS[m]}) for m, v in data.items()},
        coords={"approach": approaches, "n_high": budgets},
        attrs=dict(attrs or {}),
    )
    return ds


def best_approach(ds: xr.Dataset, metric: str = "force_rmse") -> dict[int, str]:
    """The approach with the lowest ``metric`` at each budget."""
    return {
        int(n): str(ds.approach.values[int(np.nanargmin(ds[metric].sel(n_high=n).values))])
        for n in ds.n_high.values
    }


def run_study(
    low: Sequence[Atoms],
    high: Sequence[Atoms],
    low_of_high: Sequence[Atoms],
    test: Sequence[Atoms],
    workdir: str | Path,
    *,
    budgets: Sequence[int],
    settings: Mapping[str, Any],
    low_level: str,
    high_level: str,
    approaches: Sequence[str] = APPROACHES,
    seed: int = 0,
    threads: int = 1,
) -> xr.Dataset:
    """The whole study in one process (the pipeline runs the same as one job per training).

    Parameters
    ----------
    low
        The low-fidelity training pool.
    high, low_of_high
        Candidate structures labelled at the high and at the low level, in the order they are
        used: budget ``n`` trains on the first ``n``.
    test
        High-fidelity test frames (never trained on).
    """
    budgets = check_budgets(budgets)
    if budgets[-1] > len(high):
        raise ValueError(f"budget {budgets[-1]} exceeds the {len(high)} high-fidelity frames")
    workdir = Path(workdir)
    low_model = None
    if {"transfer", "delta"} & set(approaches):
        low_model = train_low_model(
            low, workdir / "low", settings, low_level=low_level, seed=seed, threads=threads
        )
    rows = []
    for n in budgets:
        for approach in approaches:
            calc = train_approach(
                approach,
                low,
                high[:n],
                workdir / f"{approach}_{n}",
                settings,
                low_level=low_level,
                high_level=high_level,
                low_model=low_model,
                low_of_high=low_of_high[:n],
                seed=seed,
                threads=threads,
            )
            rows.append({"approach": approach, "n_high": n, **error_metrics(calc, test)})
    return study_dataset(rows, {"low_level": low_level, "high_level": high_level})
