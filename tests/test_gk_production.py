"""Green-Kubo production MD: files, units, attributes, energy drift, restarts, and production
until kappa's error reaches a target or a budget is spent."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.lj import LennardJones

from alkappa.greenkubo import run_green_kubo
from alkappa.greenkubo._flux import HEAT_FLUX_UNIT, VirialHeatFlux
from alkappa.greenkubo._production import (
    DEFAULT_PRODUCTION_SETTINGS,
    energy_drift,
    resolve_production_settings,
    run_files,
)
from alkappa.greenkubo._rounds import run_production
from alkappa.io.trajectory import read_trajectory
from alkappa.settings import ProductionSettings

SIGMA, EPSILON, RC, RO = 2.3, 0.05, 5.0, 4.0


def lj() -> LennardJones:
    return LennardJones(sigma=SIGMA, epsilon=EPSILON, rc=RC, ro=RO, smooth=True)


def crystal() -> Atoms:
    """32-atom fcc cell near the LJ minimum (a = 2^(2/3) sigma), relaxed by symmetry."""
    return bulk("Ar", "fcc", a=2 ** (2 / 3) * SIGMA, cubic=True).repeat(2)


SMALL = {
    "timestep": 2.0,
    "friction": 0.05,
    "equilibration_steps": 40,
    "runs": 2,
    "steps": 60,
    "snapshot_spacing": 20,
    "sample_interval": 5,
    "average_virial_frames": 3,
    "log_interval": 10,
    "seed": 1,
    "target_error": None,  # exactly `runs` runs
}


def test_settings_and_drift_helpers():
    assert resolve_production_settings({}).runs == DEFAULT_PRODUCTION_SETTINGS["runs"]
    assert resolve_production_settings(None) == ProductionSettings()
    with pytest.raises(ValueError, match="unknown production setting"):
        resolve_production_settings({"stepz": 3})
    with pytest.raises(ValueError, match="sample_interval"):
        resolve_production_settings({"sample_interval": 0})
    t = np.arange(0.0, 2000.0, 10.0)  # fs
    slope, deviation = energy_drift(t, 0.5 + 3e-4 * t / 1000)
    assert slope == pytest.approx(3e-4) and deviation == pytest.approx(3e-4 * 1.99)
    assert energy_drift(t[:1], np.ones(1)) == (0.0, 0.0)
    assert energy_drift(t[:2], np.array([1.0, np.nan]))[0] == float("inf")


def test_production_files_units_and_drift(tmp_path):
    atoms = crystal()
    flux = VirialHeatFlux()
    result = run_production(
        atoms, lj(), flux, tmp_path, temperature=60.0, settings=SMALL, progress=False
    )
    assert result.equilibrated and not result.drift_flagged
    assert result.paths == run_files(tmp_path, 2)
    assert (tmp_path / "equilibration.nc").is_file()
    starts = []
    for run in result.runs:
        assert run.steps_done == 60 and run.frames == 13 and not run.blew_up
        assert abs(run.drift) < 1e-4 and run.max_deviation < 1e-3 and not run.drift_flagged
        ds = read_trajectory(run.path)
        assert ds["heat_flux"].dims == ("time", "a") and ds["heat_flux"].shape == (13, 3)
        assert ds["heat_flux_aux"].dims == ("time", "a")
        assert ds["positions"].dims == ("time", "I", "a")
        for name in ("velocities", "forces", "energy_potential", "energy_kinetic", "temperature"):
            assert name in ds, name
        np.testing.assert_allclose(ds["time"].values, 10.0 * np.arange(13))  # fs
        a = ds.attrs
        assert a["volume"] == pytest.approx(atoms.get_volume())
        assert a["heat_flux_unit"] == HEAT_FLUX_UNIT and a["heat_flux_method"] == "virial"
        assert a["ensemble"] == "NVE" and a["timestep"] == 2.0 and a["sample_interval"] == 5
        assert int(a["completed"]) == 1 and int(a["drift_flagged"]) == 0
        assert a["energy_drift"] == pytest.approx(run.drift)
        assert int(a["average_virial_subtracted"]) == 1
        starts.append(int(a["start_step"]))
        # the stored flux is the virial flux of the stored frame, in eV/Å^2/fs
        frame = atoms.copy()
        frame.positions = ds["positions"].values[7]
        frame.set_velocities(ds["velocities"].values[7])
        frame.calc = lj()
        check = VirialHeatFlux()
        check.average_virials = flux.average_virials
        np.testing.assert_allclose(check.heat_flux(frame), ds["heat_flux"].values[7], rtol=1e-10)
        sigma = -flux.average_virials.transpose(0, 2, 1) / atoms.get_volume()
        v = frame.get_velocities() * units.fs
        np.testing.assert_allclose(
            ds["heat_flux_aux"].values[7], -np.einsum("iba,ib->a", sigma, v), rtol=1e-10
        )
    assert starts == [40, 60]
    # a second call reuses everything
    again = run_production(
        atoms, lj(), VirialHeatFlux(), tmp_path, temperature=60.0, settings=SMALL, progress=False
    )
    assert all(r.reused for r in again.runs)
    assert [r.drift for r in again.runs] == pytest.approx([r.drift for r in result.runs])


def test_absurd_timestep_is_flagged(tmp_path):
    settings = {**SMALL, "timestep": 40.0, "runs": 1, "equilibration_steps": 5, "steps": 40}
    result = run_production(
        crystal(),
        lj(),
        VirialHeatFlux(),
        tmp_path,
        temperature=60.0,
        settings=settings,
        progress=False,
    )
    # five NVT steps survive; the NVE run heats up until the blow-up checks stop it
    assert result.equilibrated and result.drift_flagged
    run = result.runs[0]
    assert run.drift_flagged and run.steps_done < 40
    assert abs(run.drift) > 1e-3 or run.max_deviation > 5e-3
    assert int(read_trajectory(run.path).attrs["drift_flagged"]) == 1


def test_production_with_unfolded_ensemble_flux(tmp_path):
    """Two tiny NequIP members: member fluxes, uncertainty, flux energy = MD energy."""
    from test_heat_flux import tiny_nequip

    from alkappa.models._nequip_ensemble import NequIPEnsembleCalculator
    from alkappa.models.nequip import UnfoldedHeatFlux

    members = [tiny_nequip(0), tiny_nequip(1)]
    atoms = bulk("CuI", "zincblende", a=6.05, cubic=True)
    settings = {**SMALL, "timestep": 1.0, "equilibration_steps": 20, "steps": 30}
    settings.update(snapshot_spacing=10, max_force=100.0)
    result = run_production(
        atoms,
        NequIPEnsembleCalculator(members),
        UnfoldedHeatFlux(members),
        tmp_path,
        temperature=50.0,
        settings=settings,
        progress=False,
    )
    assert result.equilibrated and not result.drift_flagged
    ds = read_trajectory(result.runs[0].path)
    assert ds["heat_flux_members"].dims == ("time", "member", "a")
    np.testing.assert_allclose(ds["heat_flux_members"].mean("member"), ds["heat_flux"], rtol=1e-12)
    assert "uncertainty_force_max" in ds
    assert ds.attrs["heat_flux_method"] == "unfolded"
    assert ds.attrs["flux_energy_mismatch_per_atom"] < 1e-10


# --- production until a target error or a budget -------------------------------------------

#: the analysis that decides when to stop (a fixed window: the runs are too short for a VDOS)
ANALYSIS = {"window_fs": 20.0}


def _loop(path, **changes):
    # runs of 0.12 ps hold no zero of the autocorrelation: require_decay off to reach the
    # target and budget rules (test_truncated_integral_stops_production has it on)
    settings = {**SMALL, "target_error": 1e-6, "max_runs": 4, "require_decay": False, **changes}
    return run_production(
        crystal(),
        lj(),
        VirialHeatFlux(),
        path,
        temperature=60.0,
        settings=settings,
        analysis=ANALYSIS,
        progress=False,
    )


def _relative_error(paths) -> float:
    """The second route: the public analysis on the run files themselves."""
    ds = run_green_kubo([str(p) for p in paths], **ANALYSIS)
    return float(ds["kappa_scalar_error"]) / abs(float(ds["kappa_scalar"]))


@pytest.mark.filterwarnings("ignore:no zero crossing", "ignore:.*kappa's relative error")
def test_production_stops_at_the_target_or_max_runs(tmp_path):
    # an unreachable target: the budget of 4 runs ends it, with a warning that says so
    with pytest.warns(UserWarning, match=r"needs about \d+ runs .* more than the budget"):
        result = _loop(tmp_path)
    assert result.stopped_by == "max_runs" and len(result.runs) == 4
    # rounds: the first two runs, then as many again (the projection is far beyond the
    # budget; a round at most doubles the runs), then the budget is spent
    assert [h["n_runs"] for h in result.history] == [2, 4]
    assert [h["new_runs"] for h in result.history] == [2, 0]
    errors = [h["relative_error"] for h in result.history]
    for n, err in zip((2, 4), errors, strict=True):
        assert err == pytest.approx(_relative_error(result.paths[:n]), rel=1e-12)
    # the runs after the first two start from new snapshots further along one NVT chain
    eq = read_trajectory(tmp_path / "equilibration.nc")
    chain = read_trajectory(tmp_path / "chain_1.nc")
    assert [r.start_step for r in result.runs] == [40, 60, 80, 100]
    assert list(np.atleast_1d(eq.attrs["snapshot_steps"])) == [40, 60]
    assert list(np.atleast_1d(chain.attrs["snapshot_steps"])) == [80, 100]
    assert chain["time"].values[0] > eq["time"].values[-1]
    assert np.all(np.diff(chain["time"].values) > 0)
    record = result.to_dict()
    assert record["stopped_by"] == "max_runs" and not record["converged"]
    assert record["relative_error"] == errors[-1] and record["n_runs"] == 4
    assert record["simulated_ps"] == pytest.approx(4 * 60 * 2.0 / 1000)
    # a rerun whose target is the smallest error seen stops where that error was reached,
    # reusing the runs (the stopping keys are not part of the fingerprint)
    first = int(np.argmin(errors))
    again = _loop(tmp_path, target_error=errors[first])
    assert again.stopped_by == "target_error" and again.converged
    assert len(again.runs) == (2, 4)[first] and all(r.reused for r in again.runs)
    assert again.relative_error == pytest.approx(errors[first])


@pytest.mark.filterwarnings("ignore:no zero crossing", "ignore:.*kappa's relative error")
def test_truncated_integral_stops_production(tmp_path):
    """No zero of the autocorrelation within half a run: kappa is a truncated integral, more
    runs of the same length cannot fix it, so production stops after the first analysis and
    says to make the runs longer; it is never called converged, even at its target."""
    with pytest.warns(
        UserWarning, match=r"does not cross zero within 0\.05 ps .*greenkubo\.steps, now 60"
    ):
        result = _loop(tmp_path, require_decay=True, target_error=10.0)
    assert result.stopped_by == "runs_too_short" and not result.converged
    assert len(result.runs) == 2 and result.history[-1]["cutoff_found"] is False
    assert result.to_dict()["stopped_by"] == "runs_too_short"
    # the switch is a stopping rule, not part of the runs' fingerprint: a rerun without it
    # reuses both runs and stops at the (loose) target
    again = _loop(tmp_path, require_decay=False, target_error=10.0)
    assert again.stopped_by == "target_error" and all(r.reused for r in again.runs)


@pytest.mark.filterwarnings("ignore:no zero crossing", "ignore:.*kappa's relative error")
def test_production_stops_by_simulated_time_and_wall_time(tmp_path):
    # 0.12 ps per run: 0.4 ps allows three runs, not four
    by_time = _loop(tmp_path / "ps", max_runs=None, max_simulated_ps=0.4)
    assert by_time.stopped_by == "max_simulated_ps" and len(by_time.runs) == 3
    assert by_time.simulated_ps == pytest.approx(0.36)
    # no time for a third run (the NVT and NVE seconds so far exceed it already)
    by_wall = _loop(tmp_path / "wall", max_runs=None, max_wall_hours=1e-9)
    assert by_wall.stopped_by == "max_wall_hours" and len(by_wall.runs) == 2
    assert by_wall.wall_seconds > 0
    # a fixed number of runs: analysed once (with `analysis`), never extended
    fixed = _loop(tmp_path / "fixed", target_error=None)
    assert fixed.stopped_by == "fixed_runs" and len(fixed.runs) == 2
    assert [h["n_runs"] for h in fixed.history] == [2]
    assert fixed.relative_error == pytest.approx(_relative_error(fixed.paths), rel=1e-12)


@pytest.mark.filterwarnings("ignore:no zero crossing", "ignore:.*kappa's relative error")
def test_interrupted_production_resumes_without_redoing_runs(tmp_path, monkeypatch):
    from alkappa.greenkubo import _production

    whole = _loop(tmp_path / "whole")
    original = _production._nve_run

    def killed_in_run_3(index, *args, **kwargs):
        if index == 3:
            raise KeyboardInterrupt
        return original(index, *args, **kwargs)

    monkeypatch.setattr(_production, "_nve_run", killed_in_run_3)
    with pytest.raises(KeyboardInterrupt):
        _loop(tmp_path / "killed")
    monkeypatch.setattr(_production, "_nve_run", original)
    chain = (tmp_path / "killed/chain_1.nc").read_bytes()
    resumed = _loop(tmp_path / "killed")
    assert [r.reused for r in resumed.runs] == [True, True, True, False]
    # the chain's fourth snapshot was made before the kill: reused, not redone
    assert (tmp_path / "killed/chain_1.nc").read_bytes() == chain
    # the same production as the uninterrupted one
    assert resumed.stopped_by == whole.stopped_by
    # (to rounding: the resumed process's arithmetic may differ in the last bit)
    assert [h["kappa"] for h in resumed.history] == pytest.approx(
        [h["kappa"] for h in whole.history], rel=1e-10
    )
    for a, b in zip(resumed.paths, whole.paths, strict=True):
        np.testing.assert_allclose(
            read_trajectory(a)["heat_flux"].values,
            read_trajectory(b)["heat_flux"].values,
            rtol=1e-10,
            atol=1e-16,
        )


@pytest.mark.filterwarnings("ignore:no zero crossing", "ignore:.*kappa's relative error")
def test_a_run_is_the_same_however_the_runs_are_grouped_in_rounds(tmp_path, monkeypatch):
    """Run k starts from snapshot k of one NVT chain whatever the rounds: two rounds of one
    run each give the same third and fourth runs as one round of two."""
    from alkappa.greenkubo import _rounds

    together = _loop(tmp_path / "together")
    original = _rounds._next_round

    def one_at_a_time(*args, **kwargs):
        stopped_by, n = original(*args, **kwargs)
        return stopped_by, min(n, 1)

    monkeypatch.setattr(_rounds, "_next_round", one_at_a_time)
    single = _loop(tmp_path / "single")
    assert [h["n_runs"] for h in together.history] == [2, 4]
    assert [h["n_runs"] for h in single.history] == [2, 3, 4]
    assert (tmp_path / "single/chain_2.nc").is_file()
    for a, b in zip(together.paths, single.paths, strict=True):
        np.testing.assert_array_equal(
            read_trajectory(a)["heat_flux"].values, read_trajectory(b)["heat_flux"].values
        )


@pytest.mark.filterwarnings("ignore:no zero crossing", "ignore:.*kappa's relative error")
def test_a_chain_that_blows_up_ends_production_after_its_snapshots(tmp_path, monkeypatch):
    from alkappa.greenkubo import _production

    original = _production._chain_segment

    def blows_up_at_run_3(writer, begin, index, *args, **kwargs):
        if index == 3:
            return begin, "temperature runaway"
        return original(writer, begin, index, *args, **kwargs)

    monkeypatch.setattr(_production, "_chain_segment", blows_up_at_run_3)
    result = _loop(tmp_path)
    # round 1 asked for runs 2 and 3; only run 2 got a snapshot, and the next decision stops
    assert [r.index for r in result.runs] == [0, 1, 2]
    assert result.stopped_by == "nvt_blew_up" and [h["n_runs"] for h in result.history] == [2, 3]
    assert result.history[0]["chain_stop"] == "temperature runaway"
    chain = read_trajectory(tmp_path / "chain_1.nc")
    assert int(chain.attrs["blew_up"]) == 1 and int(chain.attrs["n_snapshots"]) == 1


def test_round_sizes_follow_the_projection_within_the_budgets():
    from alkappa.greenkubo._production import RunResult
    from alkappa.greenkubo._rounds import _next_round, _projected_runs

    settings = resolve_production_settings({**SMALL, "target_error": 0.1, "max_runs": 20})
    # four runs of 10 s each
    runs = [
        RunResult(k, Path(f"run_{k}.nc"), 0, 60, 13, False, "", 0.0, 0.0, False, 60.0, 10.0)
        for k in range(4)
    ]

    def entry(error, **more):
        return {
            "relative_error": error,
            "projected_runs": _projected_runs(4, error, 0.1),
            "cutoff_found": True,
            "simulated_ps": 0.48,
            "wall_seconds": 50.0,
            **more,
        }

    assert _next_round(entry(0.12), runs, settings, "") == ("", 2)  # 4 x 1.44 -> 6 runs
    assert _next_round(entry(0.3), runs, settings, "") == ("", 4)  # 36 projected: doubled
    assert _next_round(entry(0.09), runs, settings, "") == ("target_error", 0)
    assert _next_round(entry(0.3), runs, settings, "blew up") == ("nvt_blew_up", 0)
    assert _next_round(entry(0.3, cutoff_found=False), runs, settings, "") == (
        "runs_too_short",
        0,
    )
    assert _next_round(entry(float("inf")), runs, settings, "") == ("", 1)
    capped = replace(settings, max_runs=5)
    assert _next_round(entry(0.3), runs, capped, "") == ("", 1)
    assert _next_round(entry(0.3), runs, replace(settings, max_runs=4), "") == ("max_runs", 0)
    # 12 s per further run (10 s NVE + a third for its NVT segment), 30 s left: two runs
    hours = replace(settings, max_wall_hours=80.0 / 3600)
    assert _next_round(entry(0.3), runs, hours, "") == ("", 2)
    spent = replace(settings, max_wall_hours=55.0 / 3600)
    assert _next_round(entry(0.3), runs, spent, "") == ("max_wall_hours", 0)


def test_impossible_budgets_are_refused_before_any_md():
    with pytest.raises(ValueError, match=r"greenkubo\.max_runs: 3 is fewer than the 4"):
        resolve_production_settings({"runs": 4, "max_runs": 3})
    with pytest.raises(ValueError, match=r"greenkubo\.max_simulated_ps: 0\.1 ps is less"):
        resolve_production_settings({"runs": 2, "steps": 100, "max_simulated_ps": 0.1})
    with pytest.raises(ValueError, match=r"greenkubo\.target_error: a target needs a budget"):
        resolve_production_settings({"max_runs": None})
    with pytest.raises(ValueError, match="max_wall_hours must be positive"):
        resolve_production_settings({"max_wall_hours": 0})
    # no target: no budget needed
    assert resolve_production_settings({"target_error": None, "max_runs": None}).runs == 4
