"""The physical gate: frames far above the thermal range keep forces, lose energy/stress weight."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from alkappa.al.gate import (
    LABEL_WEIGHT_KEY,
    apply_gate,
    check_gate,
    gate_limits,
    thermal_energy_per_atom,
    thermal_upper_multiple,
)
from alkappa.io import read_dataset, read_json, write_dataset, write_json
from alkappa.settings import GateSettings, section_defaults

KB = 8.617333262e-5  # eV/K (CODATA 2018)
GATE = GateSettings(enabled=True, multiple=5.0, action="downweight", weight=0.1)


def _frame(excess_per_atom: float, temperature: float | None, e_min: float = -3.0):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    n = len(atoms)
    atoms.calc = SinglePointCalculator(
        atoms, energy=(e_min + excess_per_atom) * n, forces=np.zeros((n, 3)), stress=np.zeros(6)
    )
    if temperature is not None:
        atoms.info["temperature"] = temperature
    return atoms


def test_equipartition_energy():
    assert thermal_energy_per_atom(300.0) == pytest.approx(1.5 * KB * 300.0, rel=1e-6)
    assert thermal_energy_per_atom(300.0) == pytest.approx(0.038778, abs=1e-6)


def test_thermal_range_bound_holds_for_harmonic_potential_energy():
    """Harmonic potential energy of N atoms at T: Gamma(3N/2, k_B T); the bound of the check
    (mean + 3 std) leaves out under 1 % of them (the Gamma tail is a little heavier than a
    Gaussian 3-sigma tail, 0.13 %)."""
    rng = np.random.default_rng(0)
    for n in (8, 64):
        t = 300.0
        excess = rng.gamma(1.5 * n, KB * t, size=200_000) / n
        bound = thermal_upper_multiple(n) * thermal_energy_per_atom(t)
        assert np.mean(excess) == pytest.approx(thermal_energy_per_atom(t), rel=0.01)
        assert np.mean(excess > bound) < 0.01
        # the default multiple never gates a thermal frame
        assert np.mean(excess > 5.0 * thermal_energy_per_atom(t)) == 0.0


def test_gate_below_the_thermal_range_is_refused():
    with pytest.raises(ValueError, match=r"multiple: 1\.2 .* thermal range of a 64-atom cell"):
        check_gate(replace(GATE, multiple=1.2), 64)
    check_gate(replace(GATE, multiple=1.5), 64)  # above 1 + 3 sqrt(2/192) = 1.306
    with pytest.raises(ValueError, match=r"above 3\.449"):
        check_gate(replace(GATE, multiple=3.0), 1)


@pytest.mark.parametrize(("action", "weight"), [("downweight", 0.1), ("drop", 0.0)])
def test_frames_above_the_limit_and_only_they_are_gated(action, weight):
    record = gate_limits(replace(GATE, action=action), -3.0, [300.0, 900.0], natoms=64)
    assert record["limits_eV_per_atom"]["300"] == pytest.approx(5 * 1.5 * KB * 300, rel=1e-6)
    lim300 = record["limits_eV_per_atom"]["300"]
    lim900 = record["limits_eV_per_atom"]["900"]
    frames = [
        _frame(0.9 * lim300, 300.0),  # thermal at 300 K
        _frame(1.1 * lim300, 300.0),  # above the 300 K gate
        _frame(1.1 * lim300, 900.0),  # the same energy is thermal at 900 K
        _frame(0.44, 300.0),  # the CuI iteration-0 case: 0.44 eV/atom above
        _frame(1.1 * lim900, None),  # no temperature: judged at the highest
    ]
    gated = apply_gate(frames, record)
    assert [g["index"] for g in gated] == [1, 3, 4]
    assert [LABEL_WEIGHT_KEY in f.info for f in frames] == [False, True, False, True, True]
    assert all(frames[g["index"]].info[LABEL_WEIGHT_KEY] == weight for g in gated)
    assert gated[1]["excess_eV_per_atom"] == pytest.approx(0.44)
    assert gated[2]["temperature"] == 900.0


def test_merge_records_gated_frames_and_carries_weights(tmp_path):
    from alkappa.al.steps import gate_step, merge_step

    relaxed = _frame(0.0, None)
    relaxed.info["fidelity"] = "emt"
    write_dataset(tmp_path / "relaxed.extxyz", [relaxed])
    explore = {**section_defaults("explore"), "temperatures": [300.0]}
    settings = {"gate": GATE.to_dict(), "explore": explore}
    gate_step(settings, tmp_path / "relaxed.extxyz", tmp_path / "gate.json")
    record = read_json(tmp_path / "gate.json")
    assert record["e_min_per_atom"] == pytest.approx(-3.0)
    assert record["natoms"] == 4 and record["fidelity"] == "emt"

    write_dataset(tmp_path / "d0.extxyz", [_frame(0.01, 300.0), _frame(0.02, 300.0)])
    labels = []
    for k, excess in enumerate((0.01, 0.5)):
        frame = _frame(excess, 300.0)
        frame.info["fidelity"] = "emt"
        write_dataset(tmp_path / f"f{k}.extxyz", [frame])
        labels.append(tmp_path / f"f{k}.extxyz")
    merge_step(
        tmp_path / "d0.extxyz",
        labels,
        tmp_path / "d1.extxyz",
        tmp_path / "merge.json",
        iteration=1,
        gate_path=tmp_path / "gate.json",
    )
    merged = read_json(tmp_path / "merge.json")
    assert [g["file"] for g in merged["gated"]] == [str(labels[1])]
    assert merged["gate"]["multiple"] == 5.0
    data = read_dataset(tmp_path / "d1.extxyz")
    assert [f.info.get(LABEL_WEIGHT_KEY) for f in data] == [None, None, None, 0.1]
    # without the gate, nothing is marked and the record has no gate entries
    merge_step(
        tmp_path / "d0.extxyz", labels, tmp_path / "d2.extxyz", tmp_path / "m2.json", iteration=1
    )
    assert "gated" not in read_json(tmp_path / "m2.json")
    assert all(LABEL_WEIGHT_KEY not in f.info for f in read_dataset(tmp_path / "d2.extxyz"))


def test_other_fidelity_is_not_compared(tmp_path):
    record = gate_limits(GATE, -3.0, [300.0], natoms=64)
    record["fidelity"] = "low"
    frame = _frame(1.0, 300.0)
    frame.info["fidelity"] = "high"
    assert apply_gate([frame], record) == []
    write_json(tmp_path / "x.json", record)  # the record is plain JSON
