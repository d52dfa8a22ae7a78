"""The stop/continue decision of the AL loop."""

from __future__ import annotations

from dataclasses import replace

from alkappa.al.convergence import decide
from alkappa.settings import ConvergenceSettings, section_defaults

CONVERGENCE = {
    "max_iterations": 5,
    "min_iterations": 1,
    "max_uncertain_fraction": 0.02,
    "plateau_window": 2,
    "plateau_tolerance": 0.1,
}
S = ConvergenceSettings.from_dict(CONVERGENCE)


def test_needs_plateau_and_quiet_exploration():
    # quiet but test uncertainty still falling fast: continue
    d = decide(2, 0.0, 3, [1.0, 0.5, 0.25], S)
    assert not d["stop"] and not d["plateau"] and d["quiet"]
    # plateaued but exploration noisy: continue
    d = decide(2, 0.2, 5, [1.0, 0.98, 0.97], S)
    assert not d["stop"] and d["plateau"] and not d["quiet"]
    assert "uncertain fraction" in d["reason"]
    # both: converged
    d = decide(2, 0.01, 1, [1.0, 0.98, 0.97], S)
    assert d["stop"] and d["converged"]
    assert (
        d["relative_changes"][0] == 0.020000000000000018
        or abs(d["relative_changes"][0] - 0.02) < 1e-12
    )


def test_plateau_needs_a_full_window():
    d = decide(1, 0.0, 2, [1.0, 1.0], S)  # one change only, window 2
    assert not d["plateau"] and not d["stop"]


def test_cap_stops_without_convergence():
    d = decide(4, 0.5, 10, [1, 0.5, 0.3, 0.2, 0.1], S)
    assert d["stop"] and not d["converged"]
    assert "max_iterations" in d["reason"]


def test_nothing_selected_stops_when_quiet_but_not_before_min_iterations():
    d = decide(0, 0.0, 0, [1.0], S)
    assert d["stop"] and d["converged"]
    d = decide(0, 0.0, 0, [1.0], replace(S, min_iterations=2))
    assert not d["stop"]
    assert "min_iterations" in d["reason"]


def test_blown_up_or_empty_exploration_is_never_convergence():
    # everything else says converged (quiet, plateau; or nothing selected) ...
    assert decide(2, 0.0, 0, [1.0, 0.98, 0.97], S)["converged"]
    # ... but a trajectory blew up: the model failed where it was tested
    d = decide(2, 0.0, 0, [1.0, 0.98, 0.97], S, blowups=1, frames_explored=40)
    assert not d["stop"] and not d["quiet"] and d["blowups"] == 1
    assert "blew up in 1 trajectories" in d["reason"]
    # ... or it blew up before its first logged frame: nothing was explored
    d = decide(2, 0.0, 0, [1.0, 0.98, 0.97], S, frames_explored=0)
    assert not d["stop"] and "logged no frame" in d["reason"]
    # the cap still ends the loop, not converged
    d = decide(4, 0.0, 0, [1, 0.5, 0.3, 0.2, 0.1], S, blowups=2)
    assert d["stop"] and not d["converged"]


def test_decide_step_reads_the_blow_ups_of_this_iterations_exploration(tmp_path):
    import csv

    import xarray as xr

    from alkappa.al.steps import SELECTION_FIELDS, decide_step
    from alkappa.io import read_json, write_json

    iteration = tmp_path / "iter_1"
    (iteration / "explore").mkdir(parents=True)
    for name, blew_up in (("T300", 0), ("T600", 1)):
        xr.Dataset(attrs={"blew_up": blew_up}).to_netcdf(iteration / f"explore/{name}.nc")
    with open(iteration / "selection.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SELECTION_FIELDS)
        writer.writeheader()
        row = dict.fromkeys(SELECTION_FIELDS, 0)
        writer.writerow({**row, "trajectory": "T300", "P_U": 0.0, "accepted": "False"})
    metrics = []
    for k, mean in enumerate((1.0, 0.99)):
        path = tmp_path / f"metrics_{k}.json"
        write_json(path, {"uncertainty": {"force_max": {"mean": mean}}})
        metrics.append(path)
    # the config's key order is kept in the record
    convergence = {"plateau_window": 1, **dict(CONVERGENCE, plateau_window=1)}
    settings = {"select": section_defaults("select"), "convergence": convergence}
    decide_step(settings, 1, iteration / "selection.csv", metrics, tmp_path / "decision.json")
    decision = read_json(tmp_path / "decision.json")
    assert decision["blowups"] == 1 and not decision["stop"]
    assert list(decision["settings"]) == list(convergence)
    # without the blow-up the same iteration converges (quiet, nothing selected, plateau)
    xr.Dataset(attrs={"blew_up": 0}).to_netcdf(iteration / "explore/T600.nc")
    decide_step(settings, 1, iteration / "selection.csv", metrics, tmp_path / "decision.json")
    assert read_json(tmp_path / "decision.json")["converged"]
