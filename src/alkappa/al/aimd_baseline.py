"""The aiMD-only baseline: oracle MD of the AL campaign's total cost, trained on every k-th step.

The conventional route to an MLIP: relax the structure, run MD with the oracle (every step is
one oracle call), train on every k-th frame. The baseline pays the relaxation and the test set
as AL does, and spends the rest of each AL iteration's total oracle calls on MD steps, shared
evenly among its temperatures. Its learning curve has one point per AL iteration (the MD run
up to the step that makes its total cost that of the AL ensemble's data), and one more at a
stated budget beyond AL's; one MD run per temperature, as long as the last point needs, serves
all points. A point with fewer than :data:`MIN_FRAMES` training frames is left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from alkappa.io import read_json, write_dataset, write_json

if TYPE_CHECKING:
    from collections.abc import Sequence

    from alkappa.labelling import OracleCost
    from alkappa.settings import SettingsDict

#: the fewest frames an aiMD point trains on (a member needs training and validation frames)
MIN_FRAMES = 4


class AimdPoint(TypedDict):
    """A learning-curve point of the aiMD baseline (:func:`plan_points`)."""

    point: int
    al_iteration: int | None
    target_calls: int
    steps: int
    md_calls: int
    calls: int
    frames: int


class AimdPlan(TypedDict):
    """The baseline's plan (``plan.json``, :func:`run_aimd_plan`)."""

    temperatures: list[float]
    every: int
    timestep: float
    friction: float
    seed: int
    shared_calls: int
    al_total_calls: list[int]
    budget_calls: int
    steps: int
    points: list[AimdPoint]


def plan_points(
    al_totals: Sequence[int],
    shared: int,
    *,
    runs: int,
    every: int,
    budget: int | None = None,
) -> list[AimdPoint]:
    """The learning-curve points of the aiMD baseline at the AL iterations' total costs.

    Parameters
    ----------
    al_totals
        Cumulative oracle calls of the data of AL's ensembles, by iteration.
    shared
        Calls the baseline pays besides its MD (relaxation and test set).
    runs
        MD runs (temperatures); each gets an equal share of the MD calls.
    every
        A frame is trained on every ``every`` MD steps.
    budget
        Total calls of the last point; None: AL's last total.

    Returns
    -------
    list[AimdPoint]
        Per point: ``point`` (its index), ``al_iteration`` (None for the stated budget beyond
        AL's), ``target_calls``, ``steps`` (per run), ``md_calls`` (all runs: each pays its
        steps and its first evaluation), ``calls`` (shared + MD) and ``frames``. A point's
        calls never exceed its target.
    """
    last = al_totals[-1] if budget is None else budget
    targets: list[tuple[int | None, int]] = [
        (i, int(c)) for i, c in enumerate(al_totals) if c <= last
    ]
    if not targets or last > targets[-1][1]:
        targets.append((None, int(last)))
    points: list[AimdPoint] = []
    for iteration, target in targets:
        steps = (target - shared) // runs - 1
        frames = runs * (steps // every) if steps > 0 else 0
        if frames < MIN_FRAMES or (points and steps == points[-1]["steps"]):
            continue
        md_calls = runs * (steps + 1)
        points.append(
            {
                "point": len(points),
                "al_iteration": iteration,
                "target_calls": target,
                "steps": steps,
                "md_calls": md_calls,
                "calls": shared + md_calls,
                "frames": frames,
            }
        )
    return points


def run_aimd_plan(settings: SettingsDict, directory: str | Path, out_plan: str | Path) -> None:
    """Plan the baseline of ``results/<material>`` from AL's cost (:func:`plan_points`)."""
    from alkappa.al.cost import campaign_cost
    from alkappa.settings import BaselinesSettings, ReferenceSettings, baseline_temperatures

    cost = campaign_cost(directory)
    al = cost.curve("al")
    if not al:
        raise RuntimeError(f"{directory}: no AL iteration to plan the aiMD baseline against")
    aimd = BaselinesSettings.from_settings(settings).aimd
    temperatures = baseline_temperatures(settings, "aimd")
    shared = al[0].cost["relaxation"].calls + al[0].cost["test"].calls
    budget = None if aimd.budget == "al" else int(aimd.budget)
    totals = [p.total.calls for p in al]
    points = plan_points(totals, shared, runs=len(temperatures), every=aimd.every, budget=budget)
    if not points:
        raise RuntimeError(
            f"baselines.aimd: a budget of {budget or totals[-1]} oracle calls leaves too few "
            f"MD steps for {MIN_FRAMES} frames every {aimd.every} steps at "
            f"{len(temperatures)} temperature(s) after the {shared} calls of relaxation and "
            "test set; lower baselines.aimd.every, or state a larger budget"
        )
    md = ReferenceSettings.from_settings(settings).md
    plan: AimdPlan = {
        "temperatures": temperatures,
        "every": aimd.every,
        "timestep": md.timestep,
        "friction": md.friction,
        "seed": aimd.seed,
        "shared_calls": shared,
        "al_total_calls": totals,
        "budget_calls": budget or totals[-1],
        "steps": points[-1]["steps"],
        "points": points,
    }
    write_json(out_plan, plan)
    for p in points:
        print(
            f"point {p['point']}: {p['steps']} MD steps per run, {p['frames']} frames, "
            f"{p['calls']} oracle calls (AL iteration {p['al_iteration']}: {p['target_calls']})"
        )


def md_settings(plan: AimdPlan) -> dict[str, Any]:
    """The MD settings of the baseline's oracle runs (one frame logged every k steps)."""
    keys = ("steps", "timestep", "friction", "seed")
    return {**{k: plan[k] for k in keys}, "log_interval": plan["every"]}


def run_aimd_md(
    settings: SettingsDict,
    structure_path: str | Path,
    record_path: str | Path,
    plan_path: str | Path,
    out_trajectory: str | Path,
    *,
    temperature: float,
) -> None:
    """The baseline's oracle MD at one temperature, as long as its last point needs
    (checkpointed and resumed like the reference MD)."""
    from alkappa.al.oracle_md import run_oracle_md

    run_oracle_md(
        settings,
        structure_path,
        record_path,
        out_trajectory,
        temperature=temperature,
        md=md_settings(read_json(plan_path)),
        source="aimd-baseline",
    )


def run_aimd_dataset(
    plan_path: str | Path,
    trajectories: Sequence[str | Path],
    out_dataset: str | Path,
    *,
    point: int,
    fidelity: str | None = None,
) -> None:
    """The training frames of one point: every logged frame of each run up to its step (the
    t = 0 frame, the ideal lattice, left out)."""
    from alkappa.io.reference import read_reference

    plan = read_json(plan_path)
    entry = plan["points"][point]
    last_time = entry["steps"] * plan["timestep"] + 1e-6
    frames = []
    for path in trajectories:
        for frame in read_reference(path, format="vibes-netcdf", fidelity=fidelity):
            if 0.0 < float(frame.info["time"]) <= last_time:
                frame.info.update({"source": "aimd", "iteration": point})
                frames.append(frame)
    if len(frames) < 2:
        raise RuntimeError(f"aiMD point {point}: {len(frames)} frame(s); the MD stopped early?")
    write_dataset(out_dataset, frames)


def prefix_cost(trajectory: str | Path, steps: int) -> OracleCost:
    """The oracle calls (and their time, pro rata) of a run up to ``steps``: each step and the
    run's first evaluation; a run that stopped earlier costs what it did."""
    from alkappa.al.oracle_md import reference_md_cost

    path = Path(trajectory)
    total = reference_md_cost(path.parent, pattern=path.name)
    return total.scaled(min(steps + 1, total.calls)) if total.calls else total
