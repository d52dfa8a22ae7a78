"""The stop/continue decision of the AL loop."""

from __future__ import annotations

from alkappa.al.convergence import decide

S = {
    "max_iterations": 5,
    "min_iterations": 1,
    "max_uncertain_fraction": 0.02,
    "plateau_window": 2,
    "plateau_tolerance": 0.1,
}


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
    d = decide(0, 0.0, 0, [1.0], dict(S, min_iterations=2))
    assert not d["stop"]
    assert "min_iterations" in d["reason"]
