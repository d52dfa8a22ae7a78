"""The pipeline's multi-fidelity steps, one function per Snakemake rule.

All work in ``results/<m>/multifidelity/``:

* :func:`mf_data_step`: the study's data: ``data/low.extxyz`` (the low-fidelity pool),
  ``data/high.extxyz`` and ``data/low_of_high.extxyz`` (the high-fidelity candidates at both
  levels, in the order the budgets use them), ``data/test.extxyz`` (test frames at the high
  level), ``data/data.json`` (counts and oracle cost per level);
* :func:`mf_low_model_step`: the low-fidelity model of ``transfer`` and ``delta``
  (``low/model.pth``, ``low/reference.json``);
* :func:`mf_train_step`: one approach at one budget, evaluated on the test frames
  (``<approach>_<n>/errors.json``);
* :func:`mf_study_step`: ``study.csv``, ``study.nc`` and ``study.png``, and the best
  approach per budget in ``study.json``.

Multi-fidelity active learning (``multifidelity.al``) adds two steps to the AL loop:

* :func:`mf_al_data_step`: ``data/initial_mf.extxyz`` (D_0 at the cheap level plus a few
  of its frames at the high level) and ``data/test_high.extxyz`` (the test set at the high
  level, which the ensemble predicts);
* :func:`mf_label_step`: one selected frame at the cheap level, and also at the high level
  when it is among the most uncertain of its iteration.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

from alkappa.io import atomic_path, read_dataset, read_json, write_dataset, write_json, write_text
from alkappa.settings import MultiFidelitySettings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ase import Atoms

    from alkappa.oracles import OracleSpec
    from alkappa.settings import FidelityLevel, SettingsDict


def levels(settings: SettingsDict) -> list[FidelityLevel]:
    """The ordered fidelity levels (low to high) of the ``multifidelity`` section."""
    return list(MultiFidelitySettings.for_labelling(settings).levels)


def level_oracle_spec(level: FidelityLevel) -> OracleSpec:
    """The oracle spec of a level, with the level's name as the frames' fidelity."""
    return level.oracle.with_fidelity(level.name)


def _label(
    frames: Sequence[Atoms], level: FidelityLevel, store: Path, purpose: str
) -> tuple[list[Atoms], float, int]:
    from alkappa.labelling import label_frames
    from alkappa.oracles import get_oracle

    spec = level_oracle_spec(level)
    outcome = label_frames(frames, get_oracle(spec), spec, store, purpose=purpose)
    if outcome.failures:
        raise RuntimeError(
            f"{len(outcome.failures)} {level.name} oracle call(s) failed for {purpose}: "
            f"{outcome.failures[0]['error']}"
        )
    return outcome.frames, outcome.oracle_seconds, outcome.oracle_calls


def _at_level(
    frames: Sequence[Atoms], level: FidelityLevel, store: Path, purpose: str
) -> tuple[list[Atoms], float, int]:
    """``frames`` labelled at ``level``: kept when they already are, else labelled."""
    if frames and all(a.info.get("fidelity") == level.name and a.calc is not None for a in frames):
        return list(frames), 0.0, 0
    return _label(frames, level, store, purpose)


def mf_data_step(
    settings: SettingsDict,
    pool_path: str | Path,
    test_path: str | Path,
    store: str | Path,
    out_dir: str | Path,
) -> None:
    """Label the study's frames at the low and the high level (reusing stored oracle calls)."""
    from alkappa.multifidelity._study import check_budgets, high_fidelity_indices

    mf = MultiFidelitySettings.from_settings(settings)
    study = mf.study
    low_level, high_level = mf.levels[0], mf.levels[-1]
    budgets = check_budgets(list(study.budgets))
    pool = read_dataset(pool_path)
    n_low = min(int(study.n_low), len(pool))
    order = high_fidelity_indices(len(pool), max(n_low, budgets[-1]), int(study.seed))
    store = Path(store)
    low, s_low, c_low = _at_level([pool[i] for i in order[:n_low]], low_level, store, "mf-low")
    cand = [pool[i] for i in order[: budgets[-1]]]
    low_of_high, s_lh, c_lh = _at_level(cand, low_level, store, "mf-low")
    high, s_high, c_high = _label(cand, high_level, store, "mf-high")
    test = read_dataset(test_path)
    if study.n_test:
        test = test[: int(study.n_test)]
    test_high, s_test, c_test = _label(test, high_level, store, "mf-test")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, frames in (
        ("low", low),
        ("low_of_high", low_of_high),
        ("high", high),
        ("test", test_high),
    ):
        write_dataset(out / f"{name}.extxyz", frames)
    seconds_high = sum(float(a.info.get("oracle_seconds", 0.0)) for a in high + test_high)
    write_json(
        out / "data.json",
        {
            "low_level": low_level.name,
            "high_level": high_level.name,
            "n_low": len(low),
            "n_high": len(high),
            "n_test": len(test_high),
            "oracle_calls_now": {"low": c_low + c_lh, "high": c_high + c_test},
            "oracle_seconds": {"low": s_low + s_lh, "high": s_high + s_test},
            "high_seconds_per_frame": seconds_high / max(1, len(high) + len(test_high)),
        },
    )


def mf_low_model_step(
    settings: SettingsDict, data_dir: str | Path, out_model: str | Path, *, threads: int = 1
) -> None:
    """Train the low-fidelity model shared by ``transfer`` and ``delta``."""
    from alkappa.multifidelity._baselines import train_low_model

    mf = MultiFidelitySettings.from_settings(settings)
    low = read_dataset(Path(data_dir) / "low.extxyz")
    out_model = Path(out_model)
    _, ref = train_low_model(
        low,
        out_model.parent,
        mf.model.to_dict(),
        low_level=mf.names[0],
        seed=int(mf.study.seed),
        threads=threads,
    )
    write_json(out_model.parent / "reference.json", ref.to_dict())


def mf_train_step(
    settings: SettingsDict,
    data_dir: str | Path,
    approach: str,
    n_high: int,
    out_errors: str | Path,
    *,
    low_model: str | Path | None = None,
    threads: int = 1,
) -> None:
    """Train ``approach`` on the first ``n_high`` high-fidelity frames; write its test errors."""
    import time

    from alkappa.multifidelity._baselines import train_approach
    from alkappa.multifidelity._data import EnergyReference
    from alkappa.multifidelity._study import error_metrics

    mf = MultiFidelitySettings.from_settings(settings)
    data_dir = Path(data_dir)
    out_errors = Path(out_errors)
    start = time.perf_counter()
    lows = None
    if low_model is not None:
        ref = EnergyReference.from_dict(read_json(Path(low_model).parent / "reference.json"))
        lows = (Path(low_model), ref)
    calc = train_approach(
        approach,
        read_dataset(data_dir / "low.extxyz"),
        read_dataset(data_dir / "high.extxyz")[:n_high],
        out_errors.parent,
        mf.model.to_dict(),
        low_level=mf.names[0],
        high_level=mf.names[-1],
        low_model=lows,
        low_of_high=read_dataset(data_dir / "low_of_high.extxyz")[:n_high],
        seed=int(mf.study.seed),
        threads=threads,
    )
    errors = error_metrics(calc, read_dataset(data_dir / "test.extxyz"))
    print(f"{approach} with {n_high} high-fidelity frames: {errors}")
    write_json(
        out_errors,
        {
            "approach": approach,
            "n_high": n_high,
            **errors,
            "seconds": time.perf_counter() - start,
        },
    )


def mf_study_step(
    error_paths: Sequence[str | Path],
    data_json: str | Path,
    out_csv: str | Path,
    out_netcdf: str | Path,
    out_figure: str | Path,
    out_json: str | Path,
) -> None:
    """Collect the trainings into the study table, dataset, figure and verdict."""
    from alkappa.multifidelity._plots import plot_study
    from alkappa.multifidelity._study import METRICS, best_approach, study_dataset

    rows = [read_json(p) for p in error_paths]
    data = read_json(data_json)
    ds = study_dataset(rows, {k: data[k] for k in ("low_level", "high_level", "n_low", "n_test")})
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["approach", "n_high", *METRICS, "seconds"])
    for r in sorted(rows, key=lambda r: (int(r["n_high"]), r["approach"])):
        writer.writerow(
            [
                r["approach"],
                r["n_high"],
                *(f"{float(r[m]):.5g}" for m in METRICS),
                f"{r['seconds']:.0f}",
            ]
        )
    write_text(out_csv, buf.getvalue())
    with atomic_path(out_netcdf) as tmp:
        ds.to_netcdf(tmp)
    plot_study(ds, out_figure)
    best = best_approach(ds, "force_rmse")
    write_json(
        out_json,
        {
            "best_force_rmse": {str(n): a for n, a in best.items()},
            "multifidelity_best_at": [n for n, a in best.items() if a == "multifidelity"],
            "data": data,
        },
    )


def spread_indices(n: int, k: int) -> list[int]:
    """``min(k, n)`` distinct indices spread evenly over ``range(n)``, first and last included."""
    import numpy as np

    if k >= n:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, k).round()})


def mf_al_data_step(
    settings: SettingsDict,
    initial_path: str | Path,
    test_path: str | Path,
    store: str | Path,
    out_initial: str | Path,
    out_test: str | Path,
    out_record: str | Path,
) -> None:
    """D_0 for multi-fidelity AL (cheap labels + ``initial_high`` frames at the high level)
    and the test set at the high level."""
    mf = MultiFidelitySettings.for_labelling(settings)
    low_level, high_level = mf.levels[0], mf.levels[-1]
    store = Path(store)
    initial = read_dataset(initial_path)
    wrong = sorted({str(a.info.get("fidelity")) for a in initial} - {low_level.name})
    if wrong:
        raise ValueError(
            f"{initial_path}: D_0 frames of fidelity {wrong}, expected the cheap level "
            f"'{low_level.name}' (rerun initial_data after enabling multifidelity.al)"
        )
    chosen = spread_indices(len(initial), int(mf.al.initial_high))
    high, s_high, c_high = _label([initial[i] for i in chosen], high_level, store, "al")
    test, s_test, c_test = _label(read_dataset(test_path), high_level, store, "test")
    write_dataset(out_initial, initial + high)
    write_dataset(out_test, test)
    write_json(
        out_record,
        {
            "low_level": low_level.name,
            "high_level": high_level.name,
            "n_low": len(initial),
            "high_indices": chosen,
            "n_test_high": len(test),
            "oracle_calls_now": {"initial_high": c_high, "test_high": c_test},
            "oracle_seconds": {"initial_high": s_high, "test_high": s_test},
        },
    )


def mf_label_step(
    settings: SettingsDict,
    candidates_path: str | Path,
    index: int,
    store: str | Path,
    out_frame: str | Path,
) -> None:
    """Label selected frame ``index`` at the cheap level, and at the high level too when it is
    among the most uncertain frames of the selection (``multifidelity.al``: fraction, budget).

    The ranking uses every candidate's ``uncertainty`` (the ensemble predicts at the high
    level), so each per-frame job reaches the same choice. Writes one or two frames; a failed
    cheap call is written as an unlabelled frame with ``oracle_error`` (merge skips it), a
    failed high call only loses the high label.
    """
    import math

    from alkappa.multifidelity._al import choose_high_fidelity, label_multifidelity

    mf = MultiFidelitySettings.for_labelling(settings)
    candidates = read_dataset(candidates_path)
    uncertainty = [float(a.info.get("uncertainty", math.nan)) for a in candidates]
    chosen = choose_high_fidelity(uncertainty, fraction=mf.al.fraction, budget=mf.al.budget)
    frame = candidates[index]
    high = index in chosen
    labels = label_multifidelity(
        [frame], [uncertainty[index]], mf.levels, store, fraction=1.0 if high else 0.0
    )
    low_name = mf.names[0]
    frames = labels.frames
    if not any(a.info.get("fidelity") == low_name for a in frames):
        out = frame.copy()
        out.info["oracle_error"] = labels.failures[0]["error"]
        print(f"oracle failed on frame {index}: {out.info['oracle_error']}")
        frames = [out]
    elif labels.failures:
        print(f"high-level oracle failed on frame {index}: {labels.failures[0]['error']}")
    rank = "" if not high else f", rank {chosen.index(index) + 1} of {len(chosen)} high labels"
    print(f"frame {index}: uncertainty {uncertainty[index]:.4g}{rank}")
    write_dataset(out_frame, frames)
