"""Exploration MD: logging and clean stops when the MD blows up."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from helpers import NoStressEMT

from alkappa.al.explore import blow_up_reason, run_exploration
from alkappa.io import read_trajectory

SETTINGS = {
    "steps": 40,
    "timestep": 2.0,
    "friction": 0.02,
    "log_interval": 5,
    "seed": 0,
    "max_force": 25.0,
    "min_distance_fraction": 0.6,
    "max_temperature_factor": 3.0,
}


class Exploding(Calculator):
    """EMT until a given number of calls, then forces that grow without bound."""

    implemented_properties = ("energy", "forces", "stress")

    def __init__(self, after: int):
        super().__init__()
        self.after, self.calls, self.emt = after, 0, EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        self.emt.calculate(atoms, ["energy", "forces", "stress"], all_changes)
        self.results = dict(self.emt.results)
        if self.calls > self.after:
            self.results["forces"] = self.results["forces"] * 1e3 + 100.0


def test_blow_up_reasons():
    atoms = bulk("Cu", cubic=True)
    limits = {
        "target_temperature": 300,
        "max_force": 10.0,
        "min_distance": 1.5,
        "max_temperature_factor": 3,
    }
    assert blow_up_reason(atoms, np.zeros((4, 3)), **limits) == ""
    assert "force" in blow_up_reason(atoms, np.full((4, 3), 20.0), **limits)
    assert "non-finite" in blow_up_reason(atoms, np.full((4, 3), np.nan), **limits)
    close = atoms.copy()
    close.positions[1] = close.positions[0] + [1.0, 0, 0]
    assert "apart" in blow_up_reason(close, np.zeros((4, 3)), **limits)
    hot = atoms.copy()
    hot.set_velocities(np.full((4, 3), 1.0))
    assert "temperature" in blow_up_reason(hot, np.zeros((4, 3)), **limits)


def test_exploration_logs_frames(tmp_path):
    atoms = bulk("Cu", cubic=True).repeat(2)
    res = run_exploration(
        atoms,
        EMT(),
        tmp_path / "T300.nc",
        temperature=300.0,
        settings=SETTINGS,
        nn_distance=2.55,
        progress=False,
    )
    assert not res.blew_up and res.steps_done == 40 and res.frames == 9
    ds = read_trajectory(tmp_path / "T300.nc")
    np.testing.assert_allclose(ds.time.values, np.arange(0, 41, 5) * 2.0)
    assert int(ds.attrs["blew_up"]) == 0
    assert 50 < ds.temperature.values[1:].mean() < 900


def test_blow_up_stops_cleanly_and_is_recorded(tmp_path):
    atoms = bulk("Cu", cubic=True).repeat(2)
    res = run_exploration(
        atoms,
        Exploding(after=12),
        tmp_path / "T300.nc",
        temperature=300.0,
        settings=SETTINGS,
        nn_distance=2.55,
        progress=False,
    )
    assert res.blew_up and res.steps_done < 40
    assert "force" in res.reason
    ds = read_trajectory(tmp_path / "T300.nc")
    assert int(ds.attrs["blew_up"]) == 1
    assert "force" in ds.attrs["stop_reason"]
    # the frame where it blew up is logged, the ones before are intact
    assert ds.sizes["time"] >= 2
    assert np.isfinite(ds.positions.values).all()


@pytest.mark.parametrize("interval", [1, 7])
def test_log_interval(tmp_path, interval):
    atoms = bulk("Cu", cubic=True)
    res = run_exploration(
        atoms,
        EMT(),
        tmp_path / "t.nc",
        temperature=100.0,
        settings=dict(SETTINGS, steps=14, log_interval=interval),
        nn_distance=2.55,
        progress=False,
    )
    assert res.frames == 14 // interval + 1


def test_trajectory_reads_back_as_fhi_vibes_reference_data(tmp_path):
    from alkappa.io.reference import read_reference

    atoms = bulk("Cu", cubic=True).repeat(2)
    run_exploration(
        atoms,
        EMT(),
        tmp_path / "T300.nc",
        temperature=300.0,
        settings=SETTINGS,
        nn_distance=2.55,
        progress=False,
    )
    ds = read_trajectory(tmp_path / "T300.nc")
    frames = read_reference(tmp_path / "T300.nc", format="vibes-netcdf")
    assert len(frames) == ds.sizes["time"]
    k = 4
    frame = frames[k]
    # the stored velocities are in ASE units, as FHI-vibes': their kinetic temperature (FixCom
    # leaves 3N - 3 degrees of freedom) is the logged one
    from ase import units

    v = ds.velocities.values[k]
    ekin = 0.5 * np.sum(atoms.get_masses()[:, None] * v**2)
    t_kin = 2 * ekin / ((3 * len(atoms) - 3) * units.kB)
    assert t_kin == pytest.approx(float(ds.temperature.values[k]), rel=1e-6)
    assert frame.get_temperature() == pytest.approx(t_kin, rel=0.05)
    # the stored labels are EMT's at those positions (potential stress, ASE sign)
    check = frame.copy()
    check.calc = EMT()
    np.testing.assert_allclose(frame.get_forces(), check.get_forces(), atol=1e-10)
    np.testing.assert_allclose(frame.get_stress(), check.get_stress(), atol=1e-10)
    assert frame.info["temperature"] == 300.0
    # displacements follow the minimum-image convention and match the positions
    disp = ds.displacements.values[k]
    assert np.abs(disp).max() < 1.0
    # reference + displacement and the position differ by a lattice vector of the supercell
    diff = ds.positions_reference.values + disp - ds.positions.values[k]
    frac = diff @ np.linalg.inv(ds.lattice_reference.values)
    np.testing.assert_allclose(frac, np.round(frac), atol=1e-8)


class Crashing(Calculator):
    """EMT that counts its calls and raises (like a killed job) after ``after`` of them."""

    implemented_properties = ("energy", "forces", "stress")

    def __init__(self, after: int | None = None):
        super().__init__()
        self.after, self.calls, self.emt = after, 0, EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        if self.after is not None and self.calls > self.after:
            raise RuntimeError("node lost")
        self.emt.calculate(atoms, ["energy", "forces", "stress"], all_changes)
        self.results = dict(self.emt.results)


def test_a_crashed_run_continues_from_its_checkpoint(tmp_path):
    atoms = bulk("Cu", cubic=True).repeat(2)
    out, ckpt = tmp_path / "md.nc", tmp_path / "md.partial.nc"
    kwargs = {"temperature": 300.0, "settings": SETTINGS, "nn_distance": 2.55, "progress": False}
    # frames every 5 steps, flushed every 2 frames: the crash after 23 force calls (step 22)
    # leaves frames at steps 0, 5, 10, 15 in the checkpoint
    with pytest.raises(RuntimeError, match="node lost"):
        run_exploration(atoms, Crashing(after=23), out, checkpoint=ckpt, flush_every=2, **kwargs)
    assert not out.exists()
    saved = read_trajectory(ckpt)
    np.testing.assert_allclose(saved.time.values, [0.0, 10.0, 20.0, 30.0])

    calc = Crashing()
    res = run_exploration(atoms, calc, out, checkpoint=ckpt, flush_every=2, **kwargs)
    assert calc.calls == (40 - 15) + 1  # only the missing steps are recomputed
    assert not ckpt.exists() and res.steps_done == 40 and res.frames == 9
    ds = read_trajectory(out)
    np.testing.assert_allclose(ds.time.values, np.arange(0, 41, 5) * 2.0)
    np.testing.assert_array_equal(ds.positions.values[:4], saved.positions.values)
    np.testing.assert_array_equal(ds.velocities.values[:4], saved.velocities.values)
    assert list(np.atleast_1d(ds.attrs["restarted_at_steps"])) == [15]
    assert int(ds.attrs["force_evaluations"]) == 40 + 1 + 1
    # the time of both runs, for every evaluation kept (steps 0..15 of the first run)
    assert int(saved.attrs["timed_force_evaluations"]) == 15 + 1
    assert int(ds.attrs["timed_force_evaluations"]) == 40 + 1 + 1
    assert float(ds.attrs["wall_seconds"]) > float(saved.attrs["wall_seconds"]) > 0
    assert float(ds.attrs["cpu_seconds"]) > float(saved.attrs["cpu_seconds"]) > 0
    # the continuation is real MD: it moves on from the saved state
    assert not np.allclose(ds.positions.values[4], ds.positions.values[3])


def test_a_checkpoint_of_another_run_is_ignored(tmp_path):
    atoms = bulk("Cu", cubic=True).repeat(2)
    out, ckpt = tmp_path / "md.nc", tmp_path / "md.partial.nc"
    kwargs = {"settings": SETTINGS, "nn_distance": 2.55, "progress": False}
    with pytest.raises(RuntimeError):
        run_exploration(
            atoms,
            Crashing(after=23),
            out,
            temperature=300.0,
            checkpoint=ckpt,
            flush_every=2,
            **kwargs,
        )
    calc = Crashing()
    run_exploration(atoms, calc, out, temperature=600.0, checkpoint=ckpt, **kwargs)
    assert calc.calls == 40 + 1  # started again: the checkpoint was of the 300 K run
    ds = read_trajectory(out)
    assert "restarted_at_steps" not in ds.attrs and int(ds.attrs["force_evaluations"]) == 41


def test_md_with_a_calculator_without_stress_reads_back_without_stress_labels(tmp_path):
    from alkappa.io.reference import read_reference

    atoms = bulk("Cu", cubic=True).repeat(2)
    res = run_exploration(
        atoms,
        NoStressEMT(),
        tmp_path / "T300.nc",
        temperature=300.0,
        settings=SETTINGS,
        nn_distance=2.55,
        progress=False,
    )
    assert res.steps_done == 40
    ds = read_trajectory(tmp_path / "T300.nc")
    assert np.isnan(ds.stress_potential.values).all()
    frame = read_reference(tmp_path / "T300.nc", format="vibes-netcdf")[3]
    assert "stress" not in frame.calc.results  # no invented stress label
    check = frame.copy()
    check.calc = EMT()
    np.testing.assert_allclose(frame.get_forces(), check.get_forces(), atol=1e-10)


def test_ramp_schedule():
    from alkappa.al.explore import thermostat_temperature

    ramp = {"start": 0.5, "end": 2.0, "steps": 100}
    # linear from 150 K at step 0 to 600 K at step 100, held after
    for step, expected in [(0, 150.0), (50, 375.0), (100, 600.0), (150, 600.0)]:
        assert thermostat_temperature(step, 300.0, ramp, 1000) == pytest.approx(expected)
    # without its own length the ramp spans the run
    whole = {"start": 0.5, "end": 2.0, "steps": None}
    assert thermostat_temperature(500, 300.0, whole, 1000) == pytest.approx(375.0)
    for inert in (None, {}, {"start": 1.0, "end": 1.0, "steps": 10}):
        assert thermostat_temperature(7, 300.0, inert, 1000) == 300.0


def test_ramp_sets_the_thermostat_target_of_every_step(tmp_path, monkeypatch):
    from ase import units
    from ase.md.langevin import Langevin

    import alkappa.al.explore as explore

    targets = []

    class Recording(Langevin):
        def step(self, *args, **kwargs):
            targets.append(self.temp / units.kB)
            return super().step(*args, **kwargs)

    monkeypatch.setattr(explore, "Langevin", Recording)
    ramp = {"start": 0.5, "end": 1.5, "steps": 20}
    atoms = bulk("Cu", cubic=True).repeat(2)
    res = run_exploration(
        atoms,
        EMT(),
        tmp_path / "T300.nc",
        temperature=300.0,
        settings={**SETTINGS, "ramp": ramp},
        nn_distance=2.55,
        progress=False,
    )
    assert not res.blew_up
    # step s -> s + 1 runs at 150 + 300 s / 20 K up to step 20, then at 450 K
    expected = [150.0 + 15.0 * min(s, 20) for s in range(SETTINGS["steps"])]
    np.testing.assert_allclose(targets, expected)
    ds = read_trajectory(tmp_path / "T300.nc")
    np.testing.assert_allclose(
        ds.thermostat_temperature.values, [150.0 + 15.0 * min(s, 20) for s in range(0, 41, 5)]
    )
    assert ds.attrs["temperature_target"] == 300.0 and "thermostat_ramp" in ds.attrs


def test_inert_options_leave_the_run_as_it_was(tmp_path):
    from alkappa.al.explore import _fingerprint

    inert = {
        **SETTINGS,
        "ramp": {"start": 1.0, "end": 1.0, "steps": None},
        "uncertainty_bias": {"strength": 0.0, "width": 0.01, "viability": True},
    }
    # a checkpoint written before the options existed still continues
    assert _fingerprint(inert, 300.0) == _fingerprint(SETTINGS, 300.0)
    assert _fingerprint({**inert, "ramp": {"start": 1.0, "end": 2.0}}, 300.0) != _fingerprint(
        SETTINGS, 300.0
    )
    atoms = bulk("Cu", cubic=True).repeat(2)
    paths = []
    for name, settings in (("plain", SETTINGS), ("inert", inert)):
        paths.append(tmp_path / f"{name}.nc")
        run_exploration(
            atoms,
            EMT(),
            paths[-1],
            temperature=300.0,
            settings=settings,
            nn_distance=2.55,
            progress=False,
        )
    plain, same = (read_trajectory(p) for p in paths)
    np.testing.assert_array_equal(plain.positions.values, same.positions.values)
    assert "thermostat_temperature" not in same and "energy_bias" not in same
