"""Reference data steps: oracle-driven MD and the held-out test set drawn from reference frames.

The first seed paper measures MLIPs against ab initio MD ("aiMD"); here the oracle plays that
role, or existing trajectories (FHI-vibes, extxyz, anything ASE reads) are imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from alkappa.io import read_dataset, read_json, write_dataset, write_json

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from alkappa.al.explore import MDOptions
    from alkappa.labelling import OracleCost
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


def oracle_md_settings(
    settings: SettingsDict, md: Mapping[str, Any], temperature: float
) -> MDOptions:
    """The MD settings of :func:`alkappa.al.explore.run_exploration` for an MD like the
    reference MD: ``md`` (``steps``, ``timestep``, ``friction``, ``log_interval``, ``seed``)
    with the exploration's blow-up limits and the seed offset by the temperature."""
    from alkappa.settings import ExploreSettings

    explore = ExploreSettings.from_settings(settings)
    return {
        **md,
        # the blow-up limits of the exploration also guard the reference run
        "max_force": explore.max_force,
        "min_distance_fraction": explore.min_distance_fraction,
        "max_temperature_factor": explore.max_temperature_factor,
        "seed": md["seed"] + int(temperature),
    }


def run_oracle_md(
    settings: SettingsDict,
    structure_path: str | Path,
    record_path: str | Path,
    out_trajectory: str | Path,
    *,
    temperature: float,
    md: Mapping[str, Any],
    source: str,
) -> None:
    """Langevin NVT driven by the oracle with the MD settings ``md`` (``steps``, ``timestep``,
    ``friction``, ``log_interval``, ``seed``; the seed is offset by the temperature), checkpointed
    and resumable as :func:`run_reference_md` describes; ``source`` names the run's purpose."""
    from alkappa.al.explore import run_exploration
    from alkappa.oracles import OracleSpec, get_oracle

    atoms = read_dataset(structure_path)[0]
    atoms.calc = None
    oracle = get_oracle(OracleSpec.from_settings(settings))
    md_settings = oracle_md_settings(settings, md, temperature)
    result = run_exploration(
        atoms,
        oracle.make_calculator(),
        Path(out_trajectory),
        temperature=temperature,
        settings=md_settings,
        nn_distance=float(read_json(record_path)["nearest_neighbour_distance"]),
        attrs={
            "material": settings["name"],
            "oracle": oracle.describe(),
            "fidelity": oracle.fidelity,
            "source": source,
        },
        checkpoint=checkpoint_path(out_trajectory),
        flush_every=5,
    )
    if result.blew_up:
        print(f"{source} at {temperature:g} K stopped: {result.reason}")


def checkpoint_path(trajectory: str | Path) -> Path:
    """Checkpoint of an unfinished reference MD: ``md_T300.nc`` gives ``md_T300.partial.nc``."""
    path = Path(trajectory)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def reference_md_cost(directory: str | Path, pattern: str = "md_T*.nc") -> OracleCost:
    """Oracle single points, and their time, spent on the finished reference MD runs in
    ``results/<m>/reference`` (an unfinished run's checkpoint counts once it has finished);
    ``pattern`` picks the trajectories (the aiMD baseline's are in ``results/<m>/aimd``).

    A run made before times were recorded counts its calls as untimed; one resumed from such
    a checkpoint leaves the calls of the earlier part untimed.
    """
    import xarray as xr

    from alkappa.labelling import OracleCost

    total = OracleCost()
    for path in sorted(Path(directory).glob(pattern)):
        if path.name.endswith(".partial.nc"):
            continue
        with xr.open_dataset(path) as ds:
            attrs = dict(ds.attrs)
        # trajectories written before the checkpointing carry ``oracle_calls``
        calls = int(attrs.get("force_evaluations", attrs.get("oracle_calls", 0)))
        timed = min(int(attrs.get("timed_force_evaluations", 0)), calls)
        total += OracleCost.of(timed, attrs.get("wall_seconds"), attrs.get("cpu_seconds"))
        total += OracleCost.of(calls - timed, None, None)
    return total


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
