"""Oracle-driven MD: the exploration's MD driver (:func:`alkappa.al.explore.run_exploration`)
with the oracle as the calculator, checkpointed and resumable, and what such runs cost.

The reference MD the test set is drawn from (:mod:`alkappa.reference_data`) and the aiMD-only
baseline (:mod:`alkappa.al.aimd_baseline`) are such runs; they live here, next to the driver
they use, so that the active-learning package needs nothing of the reference-data stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from alkappa.io import read_dataset, read_json

if TYPE_CHECKING:
    from collections.abc import Mapping

    from alkappa.al.explore import MDOptions
    from alkappa.labelling import OracleCost
    from alkappa.settings import SettingsDict


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
    and resumable as :func:`alkappa.reference_data.run_reference_md` describes; ``source``
    names the run's purpose."""
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
