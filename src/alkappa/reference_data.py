"""Reference data steps: oracle-driven MD and the held-out test set drawn from reference frames.

The first seed paper measures MLIPs against ab initio MD ("aiMD"); here the oracle plays that
role, or existing trajectories (FHI-vibes, extxyz, anything ASE reads) are imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# the oracle MD and its cost are the active-learning package's (the aiMD baseline runs them
# too); they stay importable from here
from alkappa.al.oracle_md import (
    checkpoint_path,
    oracle_md_settings,
    reference_md_cost,
    run_oracle_md,
)
from alkappa.io import write_dataset, write_json

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from alkappa.settings import SettingsDict


def has_reference(settings: SettingsDict) -> bool:
    """Whether the material has reference data (MD to run or files to import)."""
    from alkappa.settings import ReferenceSettings

    return ReferenceSettings.from_settings(settings).present


def run_reference_md(
    settings: SettingsDict,
    structure_path: str | Path,
    record_path: str | Path,
    out_trajectory: str | Path,
    *,
    temperature: float,
) -> None:
    """Langevin NVT driven by the oracle; every MD step is one oracle call.

    The trajectory uses the same netCDF schema as the exploration MD; its attribute
    ``force_evaluations`` counts the single points it cost. Frames are checkpointed to
    ``<trajectory>.partial.nc`` every few frames, and a rerun after a crash continues from there.
    """
    from alkappa.settings import ReferenceSettings

    run_oracle_md(
        settings,
        structure_path,
        record_path,
        out_trajectory,
        temperature=temperature,
        md=ReferenceSettings.from_settings(settings).md.to_dict(),
        source="reference-md",
    )


def count_reference_calls(directory: str | Path) -> int:
    """Oracle single points spent on finished reference MD runs in ``results/<m>/reference``."""
    return reference_md_cost(directory).calls


def run_reference_split(
    settings: SettingsDict,
    md_paths: Sequence[str | Path],
    out_test: str | Path,
    out_pool: str | Path,
    out_record: str | Path,
) -> None:
    """Read all reference frames and split them into a time-decorrelated test set and a pool.

    The test frames are never trained on; the pool (frames at least ``min_separation`` fs
    from every test frame of their trajectory) is what a random-sampling baseline may draw from.
    """
    from alkappa.io.reference import read_reference, time_decorrelated_split
    from alkappa.oracles import OracleSpec, get_oracle
    from alkappa.settings import ReferenceSettings

    ref = ReferenceSettings.from_settings(settings)
    fidelity = get_oracle(OracleSpec.from_settings(settings)).fidelity
    frames = []
    sources = []
    for path in md_paths:
        frames.extend(read_reference(path, format="vibes-netcdf", fidelity=fidelity))
        sources.append(str(path))
    for entry in ref.files:
        frames.extend(
            read_reference(
                entry["path"],
                format=entry.get("format"),
                fidelity=entry.get("fidelity", fidelity),
                temperature=entry.get("temperature"),
            )
        )
        sources.append(entry["path"])
    # the t = 0 frame of our own MD is the ideal lattice: no information for a test set
    frames = [
        f
        for f in frames
        if not (f.info.get("time") == 0.0 and str(f.info.get("trajectory", "")).endswith(".nc"))
    ]
    pool_idx, test_idx = time_decorrelated_split(
        frames, n_test=ref.n_test, min_separation_fs=ref.min_separation, seed=ref.seed
    )
    write_dataset(out_test, [frames[i] for i in test_idx])
    write_dataset(out_pool, [frames[i] for i in pool_idx])
    write_json(
        out_record,
        {
            "sources": sources,
            "n_frames": len(frames),
            "test_indices": test_idx,
            "pool_indices": pool_idx,
            "n_test": len(test_idx),
            "n_pool": len(pool_idx),
            "min_separation_fs": ref.min_separation,
        },
    )


__all__ = [
    "checkpoint_path",
    "count_reference_calls",
    "has_reference",
    "oracle_md_settings",
    "reference_md_cost",
    "run_oracle_md",
    "run_reference_md",
    "run_reference_split",
]
