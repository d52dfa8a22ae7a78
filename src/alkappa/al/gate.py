"""Physical gate on labelled frames: energy and stress of frames far above the thermal range.

An exploration that wandered into an unphysical region (a bad early ensemble, a hot spot)
can hand the oracle frames whose energy lies far above anything the MD at the exploration
temperature visits. Their forces still teach the model where not to go, but their energies
and stresses, a few of them hundreds of meV/atom above the rest, pull the fitted energy
zero and leave a near-constant offset on every later prediction. The gate keeps such frames
for their forces and gives their energy and stress a smaller weight in the loss (or none).

The thermal range is defined from equipartition: in the harmonic limit the mean potential
energy per atom above the relaxed minimum at temperature T is ``(3/2) k_B T`` and its
standard deviation in an N-atom cell is ``(3/2) k_B T sqrt(2 / (3 N))`` (the potential
energy of 3N harmonic modes is Gamma-distributed with shape 3N/2). A frame is gated when

    E/N - E_min/N > multiple * (3/2) k_B T,

with T the exploration temperature the frame came from. The gate must lie above the
thermal range, i.e. ``multiple > 1 + 3 sqrt(2 / (3 N))`` (the mean plus three standard
deviations); a lower one would gate ordinary thermal frames and is refused
(:func:`check_gate`). Anharmonic crystals sit above the harmonic mean, hence the default
multiple of a few.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NotRequired, TypedDict

from ase import units

from alkappa.io.dataset import labels
from alkappa.models import LABEL_WEIGHT_KEY

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ase import Atoms

    from alkappa.settings import GateSettings

__all__ = ["LABEL_WEIGHT_KEY", "GateRecord", "apply_gate", "check_gate", "gate_limits"]


class GateRecord(TypedDict):
    """The gate's record (``gate.json``): what :func:`gate_limits` returns, with the relaxed
    structure's ``fidelity`` added by the step."""

    multiple: float
    action: str
    weight: float
    natoms: int
    e_min_per_atom: float
    default_temperature: float
    limits_eV_per_atom: dict[str, float]
    fidelity: NotRequired[str | None]


def thermal_energy_per_atom(temperature: float) -> float:
    """Equipartition potential energy per atom above the minimum, ``(3/2) k_B T`` (eV)."""
    return 1.5 * units.kB * float(temperature)


def thermal_upper_multiple(natoms: int) -> float:
    """Top of the thermal range in units of ``(3/2) k_B T``: mean plus three standard
    deviations of the harmonic potential energy per atom of an ``natoms`` cell."""
    return 1.0 + 3.0 * math.sqrt(2.0 / (3.0 * max(int(natoms), 1)))


def check_gate(gate: GateSettings, natoms: int) -> None:
    """Raise ``ValueError`` (one line, naming ``multiple``) for a gate below the thermal range."""
    low = thermal_upper_multiple(natoms)
    if gate.multiple <= low:
        raise ValueError(
            f"multiple: {gate.multiple:g} x (3/2) k_B T lies inside the thermal range of a "
            f"{natoms}-atom cell (mean + 3 std = {low:.3f} x (3/2) k_B T): it would gate "
            f"ordinary thermal frames; use a multiple above {low:.3f}"
        )


def gate_limits(
    gate: GateSettings, e_min_per_atom: float, temperatures: Sequence[float], natoms: int
) -> GateRecord:
    """The gate's record: the reference energy and the limit per exploration temperature.

    Parameters
    ----------
    gate
        The ``gate`` section (``multiple``, ``action``, ``weight``).
    e_min_per_atom
        Oracle energy per atom of the relaxed structure (eV/atom).
    temperatures
        Exploration temperatures (K); a frame without a temperature is judged at the highest.
    natoms
        Atoms in the cell (for the check that the gate lies above the thermal range).
    """
    check_gate(gate, natoms)
    return {
        "multiple": float(gate.multiple),
        "action": gate.action,
        "weight": gate.label_weight,
        "natoms": int(natoms),
        "e_min_per_atom": float(e_min_per_atom),
        "default_temperature": float(max(temperatures)),
        "limits_eV_per_atom": {
            f"{t:g}": float(gate.multiple) * thermal_energy_per_atom(t) for t in temperatures
        },
    }


class GatedFrame(TypedDict):
    """A frame above the gate (:func:`apply_gate`; the AL merge names its ``file``)."""

    index: int
    temperature: float
    excess_eV_per_atom: float
    limit_eV_per_atom: float
    weight: float
    file: NotRequired[str]


def apply_gate(frames: Sequence[Atoms], record: GateRecord) -> list[GatedFrame]:
    """Set :data:`LABEL_WEIGHT_KEY` on the frames above the gate; return one entry per gated frame.

    ``record`` is what :func:`gate_limits` returns. A frame's excess energy is its oracle
    energy per atom minus ``e_min_per_atom``, its limit ``multiple * (3/2) k_B T`` at
    ``info['temperature']`` (else the highest exploration temperature). Frames of another
    fidelity than the relaxed structure's have another energy zero and are left alone.
    """
    gated: list[GatedFrame] = []
    for k, atoms in enumerate(frames):
        if record.get("fidelity") is not None and atoms.info.get("fidelity") not in (
            None,
            record["fidelity"],
        ):
            continue
        t = float(atoms.info.get("temperature", record["default_temperature"]))
        limit = record["multiple"] * thermal_energy_per_atom(t)
        excess = float(labels(atoms)["energy"]) / len(atoms) - record["e_min_per_atom"]
        if excess > limit:
            atoms.info[LABEL_WEIGHT_KEY] = record["weight"]
            gated.append(
                {
                    "index": k,
                    "temperature": t,
                    "excess_eV_per_atom": excess,
                    "limit_eV_per_atom": limit,
                    "weight": record["weight"],
                }
            )
    return gated
