"""Event rates with Poisson intervals, reference vs MLIP classification, oracle spot checks.

Event counts in a trajectory of fixed length are Poisson distributed; their confidence
interval is the exact (Garwood 1936, Biometrika 28, 437) interval from chi-squared quantiles,
``[chi2(a/2; 2n)/2, chi2(1 - a/2; 2n + 2)/2]`` with ``a = 1 - confidence``.

Following the first seed paper, events of a reference trajectory (the oracle's MD) and of an
MLIP trajectory at the same temperature and duration are compared per (species, kind):

* *missing genuine events*: categories the reference shows and the MLIP does not;
* *false events*: events of the MLIP that an oracle spot check of the event frame rejects,
  because the oracle's energy lies far above the reference MD's thermal range (more than
  ``energy_sigma`` standard deviations of its potential energy above its mean) and/or the
  MLIP's forces deviate from the oracle's far beyond the test-set RMSE (``force_factor`` x).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import xarray as xr
    from ase import Atoms

    from alkappa.events._detector import EventDetection


class EventRate(TypedDict):
    """Events of one category per ps of the whole cell, with the Poisson interval."""

    count: int
    rate_per_ps: float
    rate_low: float
    rate_high: float


class EventComparison(TypedDict):
    """Reference against MLIP event rates (:func:`compare_events`)."""

    reference: dict[str, EventRate]
    mlip: dict[str, EventRate]
    reference_duration_fs: float
    mlip_duration_fs: float
    missing_categories: list[str]
    missing_events: int
    extra_categories: list[str]
    different_rates: list[str]


class FalseEventCheck(TypedDict, total=False):
    """The oracle's verdict on one MLIP event frame (:func:`spot_check`)."""

    #: the event's row in the detection table
    event: int
    time: float
    oracle_failed: bool
    oracle_energy: float
    energy_z: float
    force_rmse: float
    force_rmse_ratio: float
    false: bool


class LifetimeRatios(TypedDict):
    """MLIP over reference phonon lifetimes (:func:`lifetime_ratios`)."""

    temperature: float
    n_modes: int
    median_ratio: float
    weighted_mean_log_ratio: float
    frequency: np.ndarray
    ratio: np.ndarray


def poisson_interval(count: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) two-sided confidence interval of a Poisson mean given ``count``."""
    from scipy.stats import chi2

    if count < 0 or int(count) != count:
        raise ValueError(f"count must be a non-negative integer, got {count}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = 1.0 - confidence
    lower = 0.0 if count == 0 else float(chi2.ppf(alpha / 2, 2 * count) / 2)
    upper = float(chi2.ppf(1 - alpha / 2, 2 * count + 2) / 2)
    return lower, upper


def event_rates(detection: EventDetection, *, confidence: float = 0.95) -> dict[str, EventRate]:
    """Events per ps of the whole cell, per category ``"<species>:<kind>"`` and ``"all"``,
    with their Poisson interval (``rate_low``, ``rate_high``)."""
    ps = detection.duration / 1000.0
    table = detection.events
    groups: dict[str, int] = {"all": len(table)}
    for (species, kind), rows in table.groupby(["species", "kind"]):
        groups[f"{species}:{kind}"] = len(rows)
    out: dict[str, EventRate] = {}
    for key, n in groups.items():
        low, high = poisson_interval(n, confidence)
        out[key] = {
            "count": int(n),
            "rate_per_ps": n / ps if ps > 0 else float("nan"),
            "rate_low": low / ps if ps > 0 else float("nan"),
            "rate_high": high / ps if ps > 0 else float("nan"),
        }
    return out


def compare_events(
    reference: EventDetection, mlip: EventDetection, *, confidence: float = 0.95
) -> EventComparison:
    """Reference vs MLIP event rates per category; missing genuine events.

    Returns the rates of both (:func:`event_rates`), the categories the reference has and the
    MLIP lacks (``missing_categories``) with the number of reference events in them
    (``missing_events``), and the categories only the MLIP has (``extra_categories``). A
    category whose rate intervals do not overlap is listed in ``different_rates``.
    """
    ref = event_rates(reference, confidence=confidence)
    ml = event_rates(mlip, confidence=confidence)
    cats = sorted((set(ref) | set(ml)) - {"all"})
    missing = [c for c in cats if ref.get(c, {}).get("count", 0) > 0 and c not in ml]
    extra = [c for c in cats if ml.get(c, {}).get("count", 0) > 0 and c not in ref]
    different = []
    for c in cats:
        a, b = ref.get(c), ml.get(c)
        lo_a, hi_a = (a["rate_low"], a["rate_high"]) if a else (0.0, _empty_high(reference))
        lo_b, hi_b = (b["rate_low"], b["rate_high"]) if b else (0.0, _empty_high(mlip))
        if hi_a < lo_b or hi_b < lo_a:
            different.append(c)
    return {
        "reference": ref,
        "mlip": ml,
        "reference_duration_fs": reference.duration,
        "mlip_duration_fs": mlip.duration,
        "missing_categories": missing,
        "missing_events": int(sum(ref[c]["count"] for c in missing)),
        "extra_categories": extra,
        "different_rates": different,
    }


def _empty_high(detection: EventDetection) -> float:
    ps = detection.duration / 1000.0
    return poisson_interval(0)[1] / ps if ps > 0 else float("inf")


def thermal_energy_range(
    trajectory: xr.Dataset, discard_fraction: float = 0.1
) -> tuple[float, float]:
    """Mean and standard deviation of the potential energy (eV, whole cell) of a trajectory,
    after the first ``discard_fraction`` of frames (equilibration)."""
    energy = np.asarray(trajectory["energy_potential"].values, dtype=float)
    energy = energy[np.isfinite(energy)]
    energy = energy[int(discard_fraction * len(energy)) :]
    if len(energy) < 2:
        raise ValueError("the reference trajectory has too few potential energies")
    return float(energy.mean()), float(energy.std(ddof=1))


def event_frames(
    trajectory: xr.Dataset, detection: EventDetection, max_frames: int
) -> list[tuple[int, Atoms]]:
    """The frame of largest displacement of up to ``max_frames`` events (largest excursions
    first), as (event row, Atoms with the trajectory's positions and the MLIP's forces in
    ``arrays['mlip_forces']``)."""
    from ase import Atoms

    table = detection.events
    if table.empty or max_frames <= 0:
        return []
    order = table.sort_values("max_displacement", ascending=False).index[:max_frames]
    times = np.asarray(trajectory["time"].values, dtype=float)
    symbols = list(np.atleast_1d(trajectory.attrs["symbols"]))
    cell = trajectory["lattice_reference"].values
    frames = []
    for row in order:
        event = table.loc[row]
        window = (detection.times >= event["time"]) & (detection.times < event["end_time"])
        if not window.any():
            window = detection.times == event["time"]
        local = np.flatnonzero(window)
        peak = local[np.argmax(detection.displacement[local, int(event["atom"])])]
        frame = int(np.argmin(np.abs(times - detection.times[peak])))
        atoms = Atoms(symbols, positions=trajectory["positions"].values[frame], cell=cell, pbc=True)
        if "forces" in trajectory:
            atoms.arrays["mlip_forces"] = np.asarray(trajectory["forces"].values[frame])
        atoms.info.update({"time": float(times[frame]), "frame_index": frame, "source": "events"})
        frames.append((int(row), atoms))
    return frames


def spot_check(
    frames: Sequence[tuple[int, Atoms]],
    label: Callable[[list[Atoms]], list[Atoms | None]],
    *,
    energy_mean: float,
    energy_std: float,
    test_force_rmse: float,
    energy_sigma: float = 4.0,
    force_factor: float = 3.0,
) -> list[FalseEventCheck]:
    """Oracle verdict on MLIP event frames (see the module docstring).

    ``label`` returns the oracle-labelled frames (``None`` for a failed single point, which
    counts as false: the oracle itself cannot handle the structure). One record per frame:
    the event row, oracle energy and its distance from the thermal mean in standard
    deviations (``energy_z``), force RMSE MLIP vs oracle and its ratio to the test RMSE, and
    the verdict ``false``.
    """
    from alkappa.io.dataset import labels

    if not frames:
        return []
    labelled = label([atoms for _, atoms in frames])
    records: list[FalseEventCheck] = []
    for (row, atoms), done in zip(frames, labelled, strict=True):
        record: FalseEventCheck = {"event": row, "time": atoms.info["time"]}
        if done is None:
            record.update({"oracle_failed": True, "false": True})
            records.append(record)
            continue
        values = labels(done)
        energy = float(values["energy"])
        z = (energy - energy_mean) / energy_std if energy_std > 0 else float("inf")
        rmse = float("nan")
        if "mlip_forces" in atoms.arrays:
            diff = np.asarray(atoms.arrays["mlip_forces"]) - np.asarray(values["forces"])
            rmse = float(np.sqrt(np.mean(diff**2)))
        ratio = rmse / test_force_rmse if test_force_rmse > 0 else float("nan")
        record.update(
            {
                "oracle_failed": False,
                "oracle_energy": energy,
                "energy_z": float(z),
                "force_rmse": rmse,
                "force_rmse_ratio": float(ratio),
                "false": bool(z > energy_sigma or (np.isfinite(ratio) and ratio > force_factor)),
            }
        )
        records.append(record)
    return records


def lifetime_ratios(mlip: xr.Dataset, reference: xr.Dataset, temperature: float) -> LifetimeRatios:
    """Per-mode phonon lifetime ratio MLIP / reference (phono3py ``kappa.nc`` datasets on the
    same mesh) at ``temperature``, with the median over the modes where both are finite and
    positive (the acoustic modes at Gamma have none).

    A median ratio above 1 means the MLIP over-estimates the lifetimes (too harmonic, as a
    model missing the reference's events would be), below 1 that it under-estimates them.
    """
    for name, ds in (("MLIP", mlip), ("reference", reference)):
        temps = np.asarray(ds["temperature"].values, dtype=float)
        if not np.any(np.isclose(temps, temperature)):
            raise ValueError(f"the {name} lifetimes lack T = {temperature:g} K ({temps.tolist()})")
    if mlip["tau"].shape[1:] != reference["tau"].shape[1:]:
        raise ValueError(
            f"lifetimes on different meshes: {mlip['tau'].shape[1:]} vs "
            f"{reference['tau'].shape[1:]}"
        )
    tau_m = mlip["tau"].sel(temperature=temperature, method="nearest").values
    tau_r = reference["tau"].sel(temperature=temperature, method="nearest").values
    ok = np.isfinite(tau_m) & np.isfinite(tau_r) & (tau_m > 0) & (tau_r > 0)
    ratio = np.where(ok, tau_m / np.where(ok, tau_r, 1.0), np.nan)
    weights = np.broadcast_to(np.asarray(reference["weight"].values)[:, None], ratio.shape)
    return {
        "temperature": float(temperature),
        "n_modes": int(ok.sum()),
        "median_ratio": float(np.median(ratio[ok])) if ok.any() else float("nan"),
        "weighted_mean_log_ratio": (
            float(np.average(np.log(ratio[ok]), weights=weights[ok])) if ok.any() else float("nan")
        ),
        "frequency": np.asarray(reference["frequency"].values)[ok],
        "ratio": ratio[ok],
    }
