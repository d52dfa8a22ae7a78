"""Exploration MD with the ensemble: Langevin NVT, uncertainty logging, clean blow-up stops.

Two options help the exploration reach rare configurations early: a linear ramp of the
thermostat's target temperature within a run (``explore.ramp``), and the uncertainty-driven
bias of :mod:`alkappa.al.bias` (``explore.uncertainty_bias``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import numpy as np
from ase import units
from ase.constraints import FixCom
from ase.geometry import get_distances
from ase.md import velocitydistribution
from ase.md.langevin import Langevin
from tqdm import tqdm

from alkappa.al.bias import UncertaintyBias
from alkappa.io.trajectory import TrajectoryWriter
from alkappa.models.uncertainty import uncertainty_statistics
from alkappa.structure import has_stress

if TYPE_CHECKING:
    from pathlib import Path

    from ase import Atoms
    from ase.calculators.calculator import Calculator

    from alkappa.io import AttrValue, NetCDFAttrs


class RampOptions(TypedDict, total=False):
    """``explore.ramp`` (:class:`alkappa.settings.RampSettings` as a dictionary)."""

    start: float
    end: float
    steps: int | None


class BiasOptions(TypedDict, total=False):
    """``explore.uncertainty_bias`` (:class:`alkappa.settings.UncertaintyBiasSettings` as a
    dictionary)."""

    strength: float
    width: float
    viability: bool
    energy_shift: float


class MDOptions(TypedDict):
    """The settings of one :func:`run_exploration` MD, as a dictionary: its fingerprint (a
    checkpoint continues only the same MD) is the hash of exactly these keys and values.

    The exploration gives :meth:`alkappa.settings.ExploreSettings.to_dict` (its seed offset
    per iteration and temperature), oracle MD the reference MD's settings with the
    exploration's blow-up limits (:func:`alkappa.al.oracle_md.oracle_md_settings`).
    """

    steps: int
    timestep: float
    friction: float
    log_interval: int
    seed: int
    max_force: float
    min_distance_fraction: float
    max_temperature_factor: float
    ramp: NotRequired[RampOptions]
    uncertainty_bias: NotRequired[BiasOptions]
    #: the section's temperatures (part of the fingerprint, not read)
    temperatures: NotRequired[list[float]]


@dataclass(frozen=True)
class ExplorationResult:
    """How an exploration run ended."""

    path: Path
    temperature: float
    steps_done: int
    frames: int
    blew_up: bool
    reason: str
    seconds: float


def blow_up_reason(
    atoms: Atoms,
    forces: np.ndarray,
    *,
    target_temperature: float,
    max_force: float,
    min_distance: float,
    max_temperature_factor: float,
    check_distances: bool = True,
) -> str:
    """Why this MD state counts as blown up, or ``''`` if it does not."""
    fmax = float(np.linalg.norm(forces, axis=1).max()) if len(forces) else 0.0
    if not np.isfinite(fmax):
        return "non-finite forces"
    if fmax > max_force:
        return f"force {fmax:.1f} eV/Å exceeds {max_force} eV/Å"
    temperature = atoms.get_temperature()
    if not np.isfinite(temperature) or temperature > max_temperature_factor * target_temperature:
        return f"temperature {temperature:.0f} K exceeds {max_temperature_factor} x target"
    if check_distances and len(atoms) > 1:
        _, dist = get_distances(atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        dist[np.diag_indices_from(dist)] = np.inf
        dmin = float(dist.min())
        if dmin < min_distance:
            return f"atoms {dmin:.2f} Å apart (limit {min_distance:.2f} Å)"
    return ""


def thermalize(atoms: Atoms, temperature: float, rng: np.random.Generator) -> None:
    """Maxwell-Boltzmann velocities at ``temperature`` (K) with zero total momentum."""
    # ASE >= 3.29 names it thermalize_momenta; older releases MaxwellBoltzmannDistribution
    draw = getattr(
        velocitydistribution,
        "thermalize_momenta",
        velocitydistribution.MaxwellBoltzmannDistribution,
    )
    draw(atoms, temperature_K=temperature, rng=rng)
    velocitydistribution.Stationary(atoms)


def ramp_active(ramp: RampOptions | None) -> bool:
    """Whether ``explore.ramp`` changes the thermostat target during a run."""
    return bool(ramp) and not (ramp.get("start", 1.0) == 1.0 and ramp.get("end", 1.0) == 1.0)


def thermostat_temperature(
    step: int, temperature: float, ramp: RampOptions | None, n_steps: int
) -> float:
    """The thermostat target (K) for the MD step from ``step`` to ``step + 1``.

    Linear from ``ramp['start'] * temperature`` at step 0 to ``ramp['end'] * temperature`` at
    step ``ramp['steps']`` (default: the run's ``n_steps``), constant after; ``temperature``
    throughout without a ramp.
    """
    if not ramp_active(ramp):
        return float(temperature)
    assert ramp is not None
    length = ramp.get("steps") or n_steps
    fraction = min(max(step / length, 0.0), 1.0)
    factor = ramp["start"] + (ramp["end"] - ramp["start"]) * fraction
    return float(factor * temperature)


def bias_active(bias: BiasOptions | None) -> bool:
    """Whether ``explore.uncertainty_bias`` biases the MD."""
    return bool(bias) and float(bias.get("strength", 0.0)) > 0


def frame_uncertainty(calc: Calculator) -> dict[str, float]:
    """The uncertainty statistics of the last calculation of an ensemble-like calculator.

    Calculators with an uncertainty model (the ensemble, Bayesian models) put a dict
    ``uncertainty`` into ``results``; where a calculation skipped it (``uncertainty_every``),
    the calculator's ``uncertainty`` property computes it on demand (a one-model uncertainty
    such as LLPR has no members' spread to fall back on); otherwise it is computed from
    ``energy_members`` (M,) and ``forces_members`` (M, N, 3) if present.
    """
    res = calc.results
    if "uncertainty" not in res and isinstance(getattr(type(calc), "uncertainty", None), property):
        stats = calc.uncertainty  # type: ignore[attr-defined]
        if stats:
            return {k: float(v) for k, v in stats.items()}
    if "uncertainty" in res:
        return {k: float(v) for k, v in res["uncertainty"].items()}
    if "energy_members" in res and "forces_members" in res:
        return uncertainty_statistics(
            np.asarray(res["energy_members"]), np.asarray(res["forces_members"])
        )
    return {}


def run_exploration(
    atoms: Atoms,
    calculator: Calculator,
    path: Path,
    *,
    temperature: float,
    settings: MDOptions,
    nn_distance: float,
    attrs: NetCDFAttrs | None = None,
    progress: bool = True,
    checkpoint: Path | None = None,
    flush_every: int = 50,
) -> ExplorationResult:
    """Langevin NVT at ``temperature`` driven by ``calculator`` (the ensemble mean force).

    Every ``log_interval`` steps the frame (positions, velocities, forces, energies, stress,
    temperature) and the ensemble uncertainty statistics (``uncertainty_<name>``) are appended
    to an FHI-vibes-style netCDF file. An MD that blows up stops cleanly; the reason is
    written into the file's attributes (``blew_up``, ``stop_reason``) and returned.

    With ``checkpoint``, the frames so far are written there (atomically) every
    ``flush_every`` frames, and a run that finds a checkpoint of the same MD (same settings,
    temperature and reference structure) continues from its last frame instead of starting
    again; ``path`` is written at the end and the checkpoint removed. The attributes
    ``wall_seconds`` and ``cpu_seconds`` hold the time of all runs that made the trajectory,
    ``timed_force_evaluations`` the force evaluations that time covers. The continuation starts
    from the saved positions and velocities with a fresh, seeded thermostat noise stream: it is
    statistically, not bitwise, the run that was interrupted. Worth it for oracle-driven MD,
    where every step is a single point.

    ``settings['ramp']`` (``start``, ``end``, ``steps``) ramps the thermostat target linearly
    (:func:`thermostat_temperature`); the velocities start at the first target, and the
    temperature limit of a blow-up is taken from the larger of the current target and
    ``temperature``. ``settings['uncertainty_bias']`` (``strength`` > 0, ``width``,
    ``viability``, ``energy_shift``) drives the MD with :class:`alkappa.al.bias.UncertaintyBias`
    around ``calculator``, its viability anchored at the ensemble energy of ``atoms`` and the
    current target; the frames then hold the unbiased energy, forces and stress, the bias
    in ``energy_bias`` and (with the viability factor) the factor in ``bias_viability``. With
    either option, ``thermostat_temperature`` is logged per frame.
    """
    import time

    from alkappa._timing import cpu_seconds

    start, cpu_start = time.perf_counter(), cpu_seconds()
    n_steps = settings["steps"]
    ramp = settings.get("ramp")
    ramp = ramp if ramp_active(ramp) else None
    bias = settings.get("uncertainty_bias")
    bias = bias if bias_active(bias) else None

    def target(at: int) -> float:
        return thermostat_temperature(at, temperature, ramp, n_steps)

    work = atoms.copy()
    biased = _biased(calculator, bias, atoms, target(0)) if bias is not None else None
    if biased is not None:
        calculator = biased
    work.calc = calculator
    fingerprint = _fingerprint(settings, temperature)
    resumed = _load_checkpoint(checkpoint, atoms, fingerprint) if checkpoint else None
    if resumed is None:
        rng = np.random.default_rng(settings["seed"])
        thermalize(work, target(0), rng)
        step = 0
    else:
        work.positions = resumed["positions"].values[-1]
        work.set_velocities(resumed["velocities"].values[-1])
        step = round(float(resumed["time"].values[-1]) / settings["timestep"])
        rng = np.random.default_rng([settings["seed"], step])
        print(f"resuming the {temperature:g} K run at step {step} from {checkpoint}")
    work.set_constraint(FixCom())
    dyn = Langevin(
        work,
        timestep=settings["timestep"] * units.fs,
        temperature_K=target(step),
        friction=settings["friction"] / units.fs,
        rng=rng,
        fixcm=False,
    )
    extra_attrs: dict[str, AttrValue] = {}
    if ramp is not None:
        extra_attrs["thermostat_ramp"] = json.dumps(ramp, sort_keys=True)
    if bias is not None:
        extra_attrs["uncertainty_bias"] = json.dumps(bias, sort_keys=True)
    writer = TrajectoryWriter(
        checkpoint or path,
        reference=atoms,
        attrs={
            "temperature_target": temperature,
            "timestep": settings["timestep"],
            "ensemble": "NVT Langevin",
            "friction": settings["friction"],
            "run_fingerprint": fingerprint,
            **extra_attrs,
            **(attrs or {}),
        },
    )
    restarts: list[int] = []
    # the time of the runs before a restart, and how many force evaluations it covers (a
    # checkpoint written before times were recorded covers none)
    before = {"wall_seconds": 0.0, "cpu_seconds": 0.0, "timed_force_evaluations": 0}
    if resumed is not None:
        writer.load(resumed)
        restarts = [int(x) for x in np.atleast_1d(resumed.attrs.get("restarted_at_steps", []))]
        restarts.append(step)
        writer.attrs["restarted_at_steps"] = restarts
        before = {k: type(v)(resumed.attrs.get(k, v)) for k, v in before.items()}
    first_step = step

    def timing() -> None:
        # one evaluation per step of this run and its first one, as force_evaluations counts
        writer.attrs["wall_seconds"] = before["wall_seconds"] + time.perf_counter() - start
        writer.attrs["cpu_seconds"] = before["cpu_seconds"] + cpu_seconds() - cpu_start
        evaluations = before["timed_force_evaluations"] + step - first_step + 1
        writer.attrs["timed_force_evaluations"] = evaluations

    limits = {
        "target_temperature": temperature,
        "max_force": settings["max_force"],
        "min_distance": settings["min_distance_fraction"] * nn_distance,
        "max_temperature_factor": settings["max_temperature_factor"],
    }
    interval = settings["log_interval"]
    reason = ""
    bar = tqdm(
        total=n_steps,
        initial=step,
        desc=f"MD {temperature:g} K",
        disable=not progress,
        unit="step",
    )

    def log() -> None:
        forces = work.get_forces()
        nan33 = np.full((3, 3), np.nan)
        # NaN where the calculator has no stress (e.g. a legacy-model oracle's reference MD)
        periodic = work.pbc.all() and has_stress(calculator)
        values = {
            "positions": work.positions,
            # ASE units (Å per ASE time unit), as FHI-vibes stores atoms.get_velocities()
            "velocities": work.get_velocities(),
            "forces": forces,
            "energy_potential": work.get_potential_energy(),
            "energy_kinetic": work.get_kinetic_energy(),
            "temperature": work.get_temperature(),
            # FHI-vibes: `stress` is kinetic + potential, the calculator's label is
            # `stress_potential`
            "stress_potential": work.get_stress(voigt=False) if periodic else nan33,
            "stress": work.get_stress(voigt=False, include_ideal_gas=True) if periodic else nan33,
            "cell": np.asarray(work.cell),
        }
        if biased is not None:
            # a frame's labels are the model's own prediction; the bias is logged on its own
            values.update(_unbiased(biased.results, values, periodic))
            if biased.viability_shift is not None:
                # the selection's P_E of this frame (see alkappa.al.selection.Candidate)
                values["bias_viability"] = biased.results["bias_viability"]
        if ramp is not None or bias is not None:
            values["thermostat_temperature"] = target(step)
        for key, value in frame_uncertainty(calculator).items():
            values[f"uncertainty_{key}"] = value
        writer.append(step * settings["timestep"], **values)

    try:
        if resumed is None:
            log()
        while step < n_steps:
            if ramp is not None:
                dyn.set_temperature(temperature_K=target(step))
                if biased is not None:  # the thermal range follows the ramp
                    biased.temperature = target(step)
                # a ramp below the exploration temperature keeps its limit
                limits["target_temperature"] = max(temperature, target(step))
            dyn.run(1)
            step += 1
            bar.update(1)
            check_distances = step % interval == 0
            reason = blow_up_reason(
                work, work.get_forces(), check_distances=check_distances, **limits
            )
            if reason:
                log()
                break
            if step % interval == 0:
                log()
                if len(writer) % flush_every == 0:
                    timing()
                    writer.flush()
    finally:
        bar.close()
    writer.attrs.update(
        {
            "blew_up": bool(reason),
            "stop_reason": reason,
            "steps_done": step,
            # one evaluation per step, plus the initial one of the run and of every restart
            # (steps lost between the last checkpoint and a crash are not counted)
            "force_evaluations": step + 1 + len(restarts),
        }
    )
    timing()
    writer.path = path
    writer.flush()
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return ExplorationResult(
        path=path,
        temperature=temperature,
        steps_done=step,
        frames=len(writer),
        blew_up=bool(reason),
        reason=reason,
        seconds=time.perf_counter() - start,
    )


def _biased(
    calculator: Calculator, bias: BiasOptions, reference: Atoms, temperature: float
) -> UncertaintyBias:
    """``calculator`` with the uncertainty bias, its viability anchored at ``reference``."""
    biased = UncertaintyBias(
        calculator,
        strength=bias["strength"],
        width=bias["width"],
        viability_shift=bias.get("energy_shift", 3.0) if bias.get("viability", True) else None,
    )
    ref = reference.copy()
    ref.calc = calculator
    biased.set_thermal_range(ref.get_potential_energy(), temperature)
    return biased


def _unbiased(results: dict[str, Any], values: dict[str, Any], periodic: bool) -> dict[str, Any]:
    """The logged energy, forces and stress without the bias, and the bias energy."""
    out = {
        "forces": results["forces_unbiased"],
        "energy_potential": results["energy_unbiased"],
        "energy_bias": results["energy_bias"],
    }
    if periodic and "stress_unbiased" in results:
        from ase.stress import voigt_6_to_full_3x3_stress

        unbiased = voigt_6_to_full_3x3_stress(results["stress_unbiased"])
        kinetic = values["stress"] - values["stress_potential"]
        out["stress_potential"] = unbiased
        out["stress"] = unbiased + kinetic
    return out


def _fingerprint(settings: MDOptions, temperature: float) -> str:
    """What makes two MD runs the same run (for continuing from a checkpoint)."""
    import hashlib

    # options left at their inert defaults do not change the run (nor older checkpoints)
    kept = dict(settings)
    if not ramp_active(settings.get("ramp")):
        kept.pop("ramp", None)
    if not bias_active(settings.get("uncertainty_bias")):
        kept.pop("uncertainty_bias", None)
    text = json.dumps({"settings": kept, "temperature": temperature}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _load_checkpoint(checkpoint: Path, reference: Atoms, fingerprint: str) -> Any:
    """The checkpointed trajectory if it continues this run, else None (a stale one is removed)."""
    from alkappa.io.trajectory import read_trajectory

    if not checkpoint.is_file():
        return None
    try:
        ds = read_trajectory(checkpoint)
    except (OSError, ValueError) as exc:
        print(f"ignoring unreadable checkpoint {checkpoint}: {exc}")
        checkpoint.unlink()
        return None
    same = (
        ds.attrs.get("run_fingerprint") == fingerprint
        and ds.sizes.get("time", 0) > 0
        and "velocities" in ds
        and list(np.atleast_1d(ds.attrs.get("symbols", []))) == reference.get_chemical_symbols()
        and np.allclose(ds["positions_reference"].values, reference.positions)
    )
    if not same:
        print(f"ignoring checkpoint {checkpoint}: it belongs to another run")
        checkpoint.unlink()
        return None
    return ds
