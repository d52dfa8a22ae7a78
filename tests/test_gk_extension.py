"""Green-Kubo production that makes its runs longer while the heat-flux autocorrelation has
not decayed: an extended run is the run made in one go, production extends and then ends by
its target or a budget, a killed extension is redone alone, and runs at the longest length
still stop production (``runs_too_short``)."""

from __future__ import annotations

import numpy as np
import pytest
from test_gk_production import ANALYSIS, SMALL, crystal, lj

from alkappa.greenkubo import _rounds, run_green_kubo
from alkappa.greenkubo._flux import VirialHeatFlux
from alkappa.greenkubo._production import (
    extend_run,
    read_run,
    run_equilibration,
    run_nve,
    run_path,
    segment_path,
)
from alkappa.greenkubo._rounds import run_production, run_round
from alkappa.io.trajectory import read_trajectory

T = 60.0


def _equilibrated(path, settings):
    run_equilibration(
        crystal(), lj(), VirialHeatFlux(), path, temperature=T, settings=settings, progress=False
    )


def test_an_extended_run_is_the_run_made_in_one_go(tmp_path):
    """Run 0 made in 60 steps and extended twice (to 120, then 180 steps) against run 0 made
    in 180 steps at once: the same velocity-Verlet trajectory, frame by frame."""
    one, pieces = tmp_path / "one", tmp_path / "pieces"
    for path in (one, pieces):
        _equilibrated(path, SMALL)
    common = {"temperature": T, "settings": SMALL, "progress": False}
    whole = run_nve(0, crystal(), lj(), VirialHeatFlux(), one, steps=180, **common)
    first = run_nve(0, crystal(), lj(), VirialHeatFlux(), pieces, **common)
    assert first.steps_done == 60 and first.segments == 0
    base = run_path(pieces, 0).read_bytes()
    extend_run(0, crystal(), lj(), VirialHeatFlux(), pieces, steps=120, **common)
    seg1 = segment_path(run_path(pieces, 0), 1).read_bytes()
    run = extend_run(0, crystal(), lj(), VirialHeatFlux(), pieces, steps=180, **common)
    # finished files are never rewritten: each extension is a file of its own
    assert run_path(pieces, 0).read_bytes() == base
    assert segment_path(run_path(pieces, 0), 1).read_bytes() == seg1
    assert run.steps_done == 180 and run.segments == 2 and not run.reused
    assert run.frames == whole.frames == 180 // 5 + 1
    a, b = read_trajectory(run_path(one, 0)), read_run(run_path(pieces, 0))
    np.testing.assert_array_equal(a["time"].values, b["time"].values)
    for name in ("positions", "velocities", "heat_flux", "energy_potential"):
        np.testing.assert_allclose(b[name].values, a[name].values, rtol=1e-10, atol=1e-14)
    # the segment's first frame is the run's last (dropped when they are joined)
    seg = read_trajectory(segment_path(run_path(pieces, 0), 1))
    assert seg["time"].values[0] == 60 * SMALL["timestep"]
    np.testing.assert_array_equal(
        seg["positions"].values[0], read_trajectory(run_path(pieces, 0))["positions"].values[-1]
    )
    assert int(b.attrs["steps_done"]) == 180 and int(b.attrs["segments"]) == 2
    assert float(b.attrs["seconds"]) > float(read_trajectory(run_path(pieces, 0)).attrs["seconds"])
    # the whole run up to a length, and again: an extension that is there is reused
    assert read_run(run_path(pieces, 0), steps=120).sizes["time"] == 120 // 5 + 1
    again = extend_run(0, crystal(), lj(), VirialHeatFlux(), pieces, steps=180, **common)
    assert again.reused and again.segments == 2
    # a segment that does not continue the run (here: another run's) is not joined
    _equilibrated(tmp_path / "other", SMALL)
    run_nve(1, crystal(), lj(), VirialHeatFlux(), tmp_path / "other", **common)
    extend_run(1, crystal(), lj(), VirialHeatFlux(), tmp_path / "other", steps=120, **common)
    other = segment_path(run_path(tmp_path / "other", 1), 1)
    other.rename(segment_path(run_path(tmp_path / "other", 0), 1))
    run_nve(0, crystal(), lj(), VirialHeatFlux(), tmp_path / "other", **common)
    joined = read_run(run_path(tmp_path / "other", 0))
    assert joined.attrs.get("segments", 0) == 0 and joined.sizes["time"] == 60 // 5 + 1


def _decays_after(monkeypatch, lag_fs: float) -> None:
    """The real analysis, except that the autocorrelation counts as decayed only from a
    longest lag of ``lag_fs`` on (runs of 0.12 ps of this LJ crystal hold no zero)."""
    original = _rounds._analyse

    def analyse(runs, analysis):
        entry = original(runs, analysis)
        if "max_lag_fs" in entry:
            entry["cutoff_found"] = entry["max_lag_fs"] >= lag_fs
        return entry

    monkeypatch.setattr(_rounds, "_analyse", analyse)


def _production(path, **changes):
    settings = {
        **SMALL,
        "target_error": 1e-6,
        "max_runs": 4,
        "require_decay": True,
        "max_run_steps": 8 * SMALL["steps"],
        **changes,
    }
    return run_production(
        crystal(),
        lj(),
        VirialHeatFlux(),
        path,
        temperature=T,
        settings=settings,
        analysis=ANALYSIS,
        progress=False,
    )


@pytest.mark.filterwarnings("ignore:no zero crossing", "ignore:.*kappa's relative error")
def test_production_extends_the_runs_then_adds_runs_to_a_budget(tmp_path, monkeypatch):
    # decayed from runs of 240 steps (0.48 ps: lags up to 0.24 ps) on
    _decays_after(monkeypatch, 230.0)
    result = _production(tmp_path)
    history = result.history
    assert [h["action"] for h in history] == ["extend", "extend", "add_runs", ""]
    assert [h["run_steps"] for h in history] == [60, 120, 240, 240]
    assert [h["n_runs"] for h in history] == [2, 2, 2, 4]
    assert [h["cutoff_found"] for h in history] == [False, False, True, True]
    assert result.stopped_by == "max_runs" and result.stopped_by != "runs_too_short"
    assert result.run_steps == 240 and result.run_ps == pytest.approx(0.48)
    assert result.to_dict()["run_ps"] == pytest.approx(0.48)
    # the first runs were extended twice; the runs added later were made at 240 steps at once
    assert [r.segments for r in result.runs] == [2, 2, 0, 0]
    assert [r.steps_done for r in result.runs] == [240] * 4
    assert result.simulated_ps == pytest.approx(4 * 240 * 2.0 / 1000)
    # the extension steps count (simulated time over the rounds: 2 runs of 60, 120, 240 steps)
    assert [h["simulated_ps"] for h in history] == pytest.approx([0.24, 0.48, 0.96, 1.92])
    # each round's error is the public analysis of the joined runs at that length
    for h in history:
        n, steps = h["n_runs"], h["run_steps"]
        ds = run_green_kubo([read_run(p, steps=steps) for p in result.paths[:n]], **ANALYSIS)
        assert h["kappa"] == pytest.approx(float(ds["kappa_scalar"]), rel=1e-12)
    # and of the files as the pipeline's analysis reads them (paths: joined with segments)
    ds = run_green_kubo([str(p) for p in result.paths], **ANALYSIS)
    assert float(ds["kappa_scalar"]) == pytest.approx(history[-1]["kappa"], rel=1e-12)
    # lags up to half a run of 240 steps (0.48 ps)
    assert float(ds["time"].values[-1]) == history[-1]["max_lag_fs"] == 230.0

    # the same production from its parts, as the pipeline's jobs make it: runs, rounds, and
    # the extension segments made one per run (extend_run) before the round that needs them
    parts = tmp_path / "parts"
    settings = {**SMALL, "target_error": 1e-6, "max_runs": 4, "max_run_steps": 480}
    common = {"temperature": T, "settings": settings, "progress": False}
    _equilibrated(parts, settings)
    records, todo = [], [0, 1]
    while True:
        steps = records[-1]["next_run_steps"] if records else 60
        for k in todo:
            run_nve(k, crystal(), lj(), VirialHeatFlux(), parts, steps=steps, **common)
            extend_run(k, crystal(), lj(), VirialHeatFlux(), parts, steps=steps, **common)
        previous = records[-1] if records else None
        record = run_round(
            parts, len(records), previous, atoms=crystal(), calculator=lj,
            flux_name="virial", analysis=ANALYSIS, **common,
        )  # fmt: skip
        records.append(record)
        if record["stop"]:
            break
        todo = record["runs"] if record["action"] == "extend" else record["next_runs"]
    assert [r["action"] for r in records] == [h["action"] for h in history]
    assert [r["kappa"] for r in records] == pytest.approx([h["kappa"] for h in history])


@pytest.mark.filterwarnings("ignore:no zero crossing", "ignore:.*kappa's relative error")
def test_a_round_without_the_segments_extends_the_runs_or_says_they_are_missing(
    tmp_path, monkeypatch
):
    _decays_after(monkeypatch, 100.0)
    settings = {**SMALL, "target_error": 1e-6, "max_runs": 4, "max_run_steps": 480}
    common = {"temperature": T, "settings": settings, "progress": False}
    _equilibrated(tmp_path, settings)
    for k in (0, 1):
        run_nve(k, crystal(), lj(), VirialHeatFlux(), tmp_path, **common)
    kw = {"atoms": crystal(), "calculator": lj, "flux_name": "virial", "analysis": ANALYSIS}
    first = run_round(tmp_path, 0, None, **kw, **common)
    assert first["action"] == "extend" and first["next_run_steps"] == 120
    assert first["next_runs"] == [] and first["extend_runs"] == [0, 1] and not first["stop"]
    with pytest.raises(FileNotFoundError, match=r"run 0 has 60 steps, not yet extended to 120"):
        run_round(tmp_path, 1, first, **kw, **common)
    # given the flux (or a function that makes it), the round extends the runs itself
    second = run_round(tmp_path, 1, first, **kw, flux=VirialHeatFlux, **common)
    assert second["run_steps"] == 120 and second["action"] == "add_runs"
    assert segment_path(run_path(tmp_path, 1), 1).is_file()


@pytest.mark.filterwarnings("ignore:no zero crossing", "ignore:.*kappa's relative error")
def test_a_budget_cuts_the_extension_and_then_ends_production(tmp_path, monkeypatch):
    _decays_after(monkeypatch, 1e9)  # never decays
    # 2 runs of 60 steps are 0.24 ps; 0.4 ps leave 0.16 ps: 40 more steps per run, not 60
    with pytest.warns(UserWarning, match=r"the budget max_simulated_ps leaves no time"):
        result = _production(tmp_path, max_simulated_ps=0.4)
    assert [h["action"] for h in result.history] == ["extend", ""]
    assert [h["run_steps"] for h in result.history] == [60, 100]
    assert result.stopped_by == "max_simulated_ps" and result.run_steps == 100
    assert result.simulated_ps == pytest.approx(0.4)


@pytest.mark.filterwarnings("ignore:no zero crossing", "ignore:.*kappa's relative error")
def test_runs_at_the_longest_length_stop_production(tmp_path, monkeypatch):
    _decays_after(monkeypatch, 1e9)  # never decays
    with pytest.warns(UserWarning, match=r"greenkubo\.max_run_steps, now 120 steps"):
        result = _production(tmp_path, max_run_steps=120)
    assert result.stopped_by == "runs_too_short" and not result.converged
    assert [h["action"] for h in result.history] == ["extend", ""]
    assert [h["run_steps"] for h in result.history] == [60, 120]
    assert len(result.runs) == 2 and result.run_steps == 120
    # the longest length is a stopping key: raised, a rerun reuses the runs and their
    # segments and extends them once more (to 240 steps), then stops again
    again = _production(tmp_path, max_run_steps=240)
    assert again.stopped_by == "runs_too_short" and again.run_steps == 240
    assert [h["run_steps"] for h in again.history] == [60, 120, 240]
    assert [r.segments for r in again.runs] == [2, 2]
    assert not any(r.reused for r in again.runs)  # their second segments are new


@pytest.mark.filterwarnings("ignore:no zero crossing", "ignore:.*kappa's relative error")
def test_without_max_run_steps_runs_are_not_extended(tmp_path, monkeypatch):
    _decays_after(monkeypatch, 100.0)  # runs of 120 steps would do
    with pytest.warns(UserWarning, match=r"set greenkubo\.max_run_steps"):
        result = _production(tmp_path, max_run_steps=None)
    assert result.stopped_by == "runs_too_short" and result.run_steps == 60
    assert [h["action"] for h in result.history] == [""]
    assert not list(tmp_path.glob("run_*.seg*.nc"))


def test_max_run_steps_is_checked():
    from alkappa.greenkubo._production import max_run_steps, resolve_production_settings

    with pytest.raises(ValueError, match=r"greenkubo\.max_run_steps: 50 is fewer than the steps"):
        resolve_production_settings({**SMALL, "max_run_steps": 50})
    with pytest.raises(ValueError, match=r"steps \(61\) must be a multiple of sample_interval"):
        resolve_production_settings({**SMALL, "steps": 61, "max_run_steps": 200})
    assert max_run_steps(resolve_production_settings({**SMALL, "max_run_steps": 482})) == 480
    assert max_run_steps(resolve_production_settings(SMALL)) == 60


@pytest.mark.filterwarnings("ignore:no zero crossing", "ignore:.*kappa's relative error")
def test_a_killed_extension_is_redone_alone(tmp_path, monkeypatch):
    from alkappa.greenkubo import _production as production

    _decays_after(monkeypatch, 100.0)
    whole = _production(tmp_path / "whole", flush_every=2)
    original = production._nve_run

    class Killed(Exception):
        pass

    def killed_in_segment_of_run_1(index, path, snapshot, atoms, calculator, flux, *a, **kw):
        if index == 1 and kw.get("segment") == 1:  # killed at its fifth frame
            calls, real = iter(range(4)), flux

            class Dying:
                name = real.name
                results = real.results

                def heat_flux(self, work):
                    if next(calls, None) is None:
                        raise Killed
                    out = real.heat_flux(work)
                    Dying.results = real.results
                    return out

            flux = Dying()
        return original(index, path, snapshot, atoms, calculator, flux, *a, **kw)

    monkeypatch.setattr(production, "_nve_run", killed_in_segment_of_run_1)
    with pytest.raises(Killed):
        _production(tmp_path / "killed", flush_every=2)
    monkeypatch.setattr(production, "_nve_run", original)
    killed = tmp_path / "killed"
    unfinished = segment_path(run_path(killed, 1), 1)
    assert unfinished.is_file() and not int(read_trajectory(unfinished).attrs["completed"])
    finished = {
        p: p.read_bytes()
        for p in (run_path(killed, 0), run_path(killed, 1), segment_path(run_path(killed, 0), 1))
    }
    resumed = _production(killed, flush_every=2)
    # only the killed segment was made again; everything finished was kept as it was
    for path, data in finished.items():
        assert path.read_bytes() == data, path
    assert [r.reused for r in resumed.runs][:2] == [True, False]
    assert int(read_trajectory(unfinished).attrs["completed"])
    assert resumed.stopped_by == whole.stopped_by
    assert [h["action"] for h in resumed.history] == [h["action"] for h in whole.history]
    assert [h["kappa"] for h in resumed.history] == pytest.approx(
        [h["kappa"] for h in whole.history], rel=1e-10
    )
    for a, b in zip(resumed.paths, whole.paths, strict=True):
        np.testing.assert_allclose(
            read_run(a)["heat_flux"].values, read_run(b)["heat_flux"].values, rtol=1e-10
        )
