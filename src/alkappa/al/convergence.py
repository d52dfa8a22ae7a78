"""When to stop the AL loop (design section 1.2, step 7)."""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

if TYPE_CHECKING:
    from collections.abc import Sequence

    from alkappa.settings import ConvergenceSettings


class DecisionRecord(TypedDict):
    """The stop/continue decision of an iteration (``decision.json``)."""

    iteration: int
    stop: bool
    converged: bool
    reason: str
    uncertain_fraction: float
    n_selected: int
    test_uncertainty_history: list[float]
    relative_changes: list[float]
    plateau: bool
    quiet: bool
    blowups: int
    #: the ``convergence`` section
    settings: dict[str, Any]
    #: candidate frames the exploration logged (added by the step)
    frames_explored: NotRequired[int]


def decide(
    iteration: int,
    uncertain_fraction: float,
    n_selected: int,
    test_uncertainty_history: Sequence[float],
    settings: ConvergenceSettings,
    *,
    blowups: int = 0,
    frames_explored: int | None = None,
) -> DecisionRecord:
    """The stop/continue decision after exploring with iteration ``iteration``'s ensemble.

    Converged when (a) at most ``max_uncertain_fraction`` of the explored frames are uncertain
    (P_U > 1/2) or nothing was selected, and (b) the mean test-set uncertainty has plateaued:
    over the last ``plateau_window`` + 1 iterations its largest relative change between
    consecutive iterations is at most ``plateau_tolerance``. If no frame at all was selected
    the loop stops as converged even without a plateau, since the next dataset would equal
    this one. The loop also stops at
    ``max_iterations`` ensembles, reported as not converged.

    An exploration that blew up (``blowups`` trajectories) or logged no frame
    (``frames_explored`` 0) is never quiet: the model failed where it was tested, or was not
    tested at all.

    Parameters
    ----------
    settings
        The ``convergence`` section; the record holds it as a dictionary (``settings``).
    test_uncertainty_history
        Mean test-set uncertainty of iterations 0..``iteration`` in order.
    blowups, frames_explored
        Exploration trajectories of this iteration that blew up; candidate frames they logged
        (None: not known).
    """
    window = settings.plateau_window
    history = list(test_uncertainty_history)
    changes = [abs(b - a) / max(abs(a), 1e-12) for a, b in pairwise(history)]
    recent = changes[-window:] if len(changes) >= window else []
    plateau = bool(recent) and max(recent) <= settings.plateau_tolerance
    explored = blowups == 0 and frames_explored != 0
    quiet = explored and (uncertain_fraction <= settings.max_uncertain_fraction or n_selected == 0)
    # with nothing selected the next dataset would equal this one: nothing left to learn
    converged = quiet and (plateau or n_selected == 0)
    if iteration + 1 < settings.min_iterations:
        converged = False
    at_cap = iteration + 1 >= settings.max_iterations
    if converged and not plateau:
        reason = "converged: exploration selected no frame to label"
    elif converged:
        reason = "converged: exploration quiet and test uncertainty plateaued"
    elif at_cap:
        reason = f"stopped at max_iterations={settings.max_iterations} without convergence"
    else:
        missing = []
        if blowups:
            missing.append(f"exploration blew up in {blowups} trajectories")
        elif frames_explored == 0:
            missing.append("exploration logged no frame")
        elif not quiet:
            missing.append(
                f"uncertain fraction {uncertain_fraction:.3f} > {settings.max_uncertain_fraction}"
            )
        if iteration + 1 < settings.min_iterations:
            missing.append(f"min_iterations={settings.min_iterations} not reached")
        if not plateau:
            missing.append(
                "test uncertainty not plateaued"
                + (
                    f" (largest recent change {max(recent):.3f})"
                    if recent
                    else " (too few iterations)"
                )
            )
        reason = "continue: " + "; ".join(missing)
    return {
        "iteration": iteration,
        "stop": converged or at_cap,
        "converged": converged,
        "reason": reason,
        "uncertain_fraction": uncertain_fraction,
        "n_selected": n_selected,
        "test_uncertainty_history": history,
        "relative_changes": changes,
        "plateau": plateau,
        "quiet": quiet,
        "blowups": blowups,
        "settings": settings.to_dict(),
    }
