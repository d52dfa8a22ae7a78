"""What active learning and its baselines cost in oracle calls and oracle seconds.

Every oracle call of a material counts, once, under the purpose it served:

``relaxation``
    the structure's relaxation (``structure/relax.json``);
``initial``
    the initial dataset D_0 with the force-constant (fc2) single points of harmonic sampling;
``test``
    the test set: harmonic samples (their own calls; the fc2 calls shared with D_0 count under
    ``initial``), or, drawn from reference MD, ``n_test`` MD single points at the run's mean
    time per step;
``reference_md``
    the reference MD the random baseline draws its pool from (the rest of the reference MD:
    the test frames count under ``test``);
``aimd_md``
    the oracle MD of the aiMD-only baseline (:mod:`alkappa.al.aimd_baseline`);
``labels``
    the AL loop's labels, per iteration; for the harmonic-only baseline
    (:mod:`alkappa.al.harmonic_baseline`) its harmonic samples beyond D_0.

A call is counted by its structure's key in the oracle store, so a result reused after a
restart (or shared by two jobs) counts once, with the time of the call that made it. The
learning curves pair, per iteration, the test errors of an ensemble with the cumulative cost
of the data it was trained and tested on: for AL relaxation, D_0, the test set and the labels
of the iterations before; for the random baseline the same without labels and, from its first
draw on, with the whole reference MD it draws from (the pool is paid before the first draw);
for the aiMD-only baseline relaxation, test set and its MD up to the point's last step (no
D_0; a harmonic test set's force-constant calls count under D_0, so with a reference-MD test
set the aiMD comparison is exact, with a harmonic one it spares aiMD those few calls); for the
harmonic-only baseline relaxation, D_0, test set and its samples.
Calls recorded without a time (older records) are counted as calls and as ``untimed``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alkappa.al.oracle_md import reference_md_cost
from alkappa.io import atomic_path, read_dataset, read_json, write_json
from alkappa.labelling import FAILED_KEYS, OracleCost, oracle_ledger

if TYPE_CHECKING:
    from collections.abc import Iterable

#: the purposes of the learning-curve accounting, in the order their calls are attributed
PURPOSES = ("relaxation", "initial", "test", "reference_md", "aimd_md", "labels")

#: the learning curves: AL and its baselines
METHODS = ("al", "random", "aimd", "harmonic")

#: test errors of each point (the ensemble mean on the whole test set) and the reliability
#: figure (fraction of test frames with a force error above 3x the median)
ERROR_FIELDS = (
    "force_rmse_eV_per_A",
    "energy_rmse_meV_per_atom",
    "stress_rmse_GPa",
    "reliability",
)


@dataclass(frozen=True)
class CostPoint:
    """One ensemble of a learning curve: its test errors and the cumulative oracle cost of
    its data, per purpose (see :data:`PURPOSES`)."""

    method: str  # one of METHODS
    iteration: int
    dataset_size: int | None
    cost: dict[str, OracleCost]
    errors: dict[str, float]  # NaN where not evaluated (yet)

    @property
    def total(self) -> OracleCost:
        return sum(self.cost.values(), OracleCost())


@dataclass(frozen=True)
class CampaignCost:
    """The oracle cost of one material's campaign and the learning curves against it."""

    material: str
    test_source: str  # "harmonic", "reference" (reference MD) or "none" (not made yet)
    purposes: dict[str, OracleCost]  # every call of the AL route and baselines, per purpose
    other: dict[str, OracleCost]  # the store's other calls (phonons, fc3, events, ...)
    points: list[CostPoint]
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> OracleCost:
        """Every oracle call of the material (what ``alkappa status`` counts)."""
        return sum([*self.purposes.values(), *self.other.values()], OracleCost())

    def curve(self, method: str) -> list[CostPoint]:
        """The points of ``method`` (one of :data:`METHODS`) by iteration."""
        return sorted((p for p in self.points if p.method == method), key=lambda p: p.iteration)

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per point (the CSV's)."""
        rows = []
        for p in self.points:
            row: dict[str, Any] = {
                "method": p.method,
                "iteration": p.iteration,
                "dataset_size": p.dataset_size,
                **p.errors,
            }
            for purpose in PURPOSES:
                c = p.cost[purpose]
                row[f"{purpose}_calls"] = c.calls
                row[f"{purpose}_cpu_seconds"] = c.cpu_seconds
                row[f"{purpose}_wall_seconds"] = c.wall_seconds
            t = p.total
            row.update(
                total_calls=t.calls,
                total_cpu_seconds=t.cpu_seconds,
                total_wall_seconds=t.wall_seconds,
                untimed_cpu_calls=t.untimed_cpu,
                untimed_wall_calls=t.untimed_wall,
            )
            rows.append(row)
        return rows


COST_FIELDS = (
    "method",
    "iteration",
    "dataset_size",
    *ERROR_FIELDS,
    *(f"{p}_{q}" for p in PURPOSES for q in ("calls", "cpu_seconds", "wall_seconds")),
    "total_calls",
    "total_cpu_seconds",
    "total_wall_seconds",
    "untimed_cpu_calls",
    "untimed_wall_calls",
)


def relaxation_cost(record: str | Path) -> OracleCost:
    """The oracle calls of the relaxation and their time (``structure/relax.json``; its wall
    time includes the optimiser's own, small next to the single points)."""
    path = Path(record)
    rec = read_json(path) if path.is_file() else {}
    return OracleCost.of(
        int(rec.get("oracle_calls", 0)), rec.get("seconds"), rec.get("cpu_seconds")
    )


def oracle_totals(directory: str | Path) -> dict[str, OracleCost]:
    """Every oracle call of a material's results directory, per recorded purpose: ``relax``,
    the oracle store's purposes (``fc2``, ``initial``, ``test``, ``al``, ``phonons``, ...),
    ``reference-md`` and ``aimd-md`` (finished runs). Zero entries are left out."""
    directory = Path(directory)
    totals = {"relax": relaxation_cost(directory / "structure" / "relax.json")}
    for entry in oracle_ledger(directory / "oracle").values():
        totals[entry.purpose] = totals.get(entry.purpose, OracleCost()) + entry.cost
    totals["reference-md"] = reference_md_cost(directory / "reference")
    totals["aimd-md"] = reference_md_cost(directory / "aimd")
    order = ["relax", "fc2", "initial", "test", "al"]
    md = ["reference-md", "aimd-md"]
    order += [*sorted(set(totals) - {*order, *md}), *md]
    return {k: totals[k] for k in order if k in totals and totals[k].calls}


class _Attribution:
    """Attributes the store's calls to purposes, each structure's calls once."""

    def __init__(self, directory: Path) -> None:
        self.ledger = oracle_ledger(directory / "oracle")
        self.seen: set[str] = set()

    def keys(self, keys: Iterable[str]) -> OracleCost:
        total = OracleCost()
        for key in keys:
            if key in self.seen:
                continue
            self.seen.add(key)
            entry = self.ledger.get(key)
            # a call whose record is gone from the store: a call of unknown time
            total += entry.cost if entry is not None else OracleCost.of(1, None, None)
        return total

    def record(self, path: Path, skip: Iterable[str] = ()) -> OracleCost:
        """The calls of a harmonic-sampling record (``data/initial.json``, ``test.json``)."""
        if not path.is_file():
            return OracleCost()
        rec = read_json(path)
        if "oracle_keys" in rec:
            return self.keys(k for keys in rec["oracle_keys"].values() for k in keys)
        # an older record has counts only: the time of its purpose's calls in the store
        total = OracleCost()
        for purpose, n in rec.get("oracle_calls", {}).items():
            if purpose in skip:
                continue
            same = [e for e in self.ledger.values() if e.purpose == purpose]
            self.seen.update(e.key for e in same)
            paid = sum((e.cost for e in same), OracleCost())
            total += paid.scaled(int(n)) if same else OracleCost.of(int(n), None, None)
        return total

    def of(self, keys: Iterable[str]) -> OracleCost:
        """The calls of ``keys`` (each once), without attributing them."""
        total = OracleCost()
        for key in set(keys):
            entry = self.ledger.get(key)
            total += entry.cost if entry is not None else OracleCost.of(1, None, None)
        return total

    def rest(self) -> dict[str, OracleCost]:
        out: dict[str, OracleCost] = {}
        for entry in self.ledger.values():
            if entry.key not in self.seen:
                out[entry.purpose] = out.get(entry.purpose, OracleCost()) + entry.cost
        return out


def _label_keys(iteration_dir: Path) -> list[str]:
    """Store keys of the frames labelled for an AL iteration (failed ones included)."""
    keys = []
    for path in sorted(iteration_dir.glob("labels/frame_*.extxyz")):
        for frame in read_dataset(path):
            if "oracle_key" in frame.info:
                keys.append(str(frame.info["oracle_key"]))
            keys.extend(str(frame.info.get(FAILED_KEYS, "")).split())
    return keys


def _minus(a: OracleCost, b: OracleCost) -> OracleCost:
    return OracleCost(
        max(a.calls - b.calls, 0),
        max(a.wall_seconds - b.wall_seconds, 0.0),
        max(a.cpu_seconds - b.cpu_seconds, 0.0),
        max(a.untimed_wall - b.untimed_wall, 0),
        max(a.untimed_cpu - b.untimed_cpu, 0),
    )


def _errors(metrics: Path) -> dict[str, float]:
    out = dict.fromkeys(ERROR_FIELDS, math.nan)
    if not metrics.is_file():
        return out
    mean = read_json(metrics)["per_member"]["all"]["mean"]
    values = {
        "force_rmse_eV_per_A": mean["forces_eV_per_A"]["rmse"],
        "energy_rmse_meV_per_atom": mean["energy_per_atom_meV"]["rmse"],
        "stress_rmse_GPa": mean["stress_GPa"]["rmse"],
        "reliability": mean["reliability"]["fraction"],
    }
    out.update({k: math.nan if v is None else float(v) for k, v in values.items()})
    return out


def _count_frames(path: Path) -> int:
    """Frames of an extxyz file, from its atom counts (without parsing the frames)."""
    n = 0
    with path.open() as handle:
        while line := handle.readline():
            if not line.strip():
                continue
            for _ in range(int(line) + 1):
                handle.readline()
            n += 1
    return n


def _iterations(directory: Path, kind: str) -> list[int]:
    found = []
    for path in directory.glob(f"{kind}/iter_*"):
        suffix = path.name.removeprefix("iter_")
        if suffix.isdigit():
            found.append(int(suffix))
    return sorted(found)


def campaign_cost(directory: str | Path) -> CampaignCost:
    """Oracle cost and learning curves of the campaign in ``results/<material>``.

    Works on a finished or a running campaign: an iteration counts once its dataset exists
    (D_0, or the ``merge.json`` of ``al/iter_<i>``), errors not evaluated yet are NaN, and the
    labels of an iteration still labelling count in :attr:`CampaignCost.purposes` only.

    Returns
    -------
    CampaignCost
        ``points``: per AL iteration the cumulative cost of its ensemble's data (relaxation,
        D_0, test set, the labels of earlier iterations); per random-baseline iteration the
        same without labels and, from iteration 1 on, with the whole reference-MD pool
        (iteration 0 is D_0, the AL ensemble); per aiMD-only point relaxation, test set and
        its MD so far; per harmonic-only iteration as AL with its samples for labels.
        ``purposes``: the whole campaign's calls of each purpose (and ``harmonic_labels``);
        ``other``: the remaining calls of the oracle store (phonons, fc3, ...).
    """
    directory = Path(directory)
    attribution = _Attribution(directory)
    notes: list[str] = []
    relax = relaxation_cost(directory / "structure" / "relax.json")
    initial_record = directory / "data" / "initial.json"
    initial = attribution.record(initial_record)
    initial_purposes = read_json(initial_record)["oracle_calls"] if initial_record.is_file() else {}
    reference = reference_md_cost(directory / "reference")
    split = directory / "reference" / "split.json"
    if split.is_file():
        test_source = "reference"
        record = read_json(split)
        n_test = min(int(record.get("n_test", 0)), reference.calls)
        test = reference.scaled(n_test) if n_test else OracleCost()
        pool = _minus(reference, test)
        if any(not Path(s).name.startswith("md_T") for s in record.get("sources", [])):
            notes.append(
                "reference data imported from files: its oracle cost was paid elsewhere and "
                "is not counted"
            )
    else:
        harmonic = directory / "data" / "test.json"
        test_source = "harmonic" if harmonic.is_file() else "none"
        # the fc2 single points of the test set are D_0's (one set of force constants)
        test = attribution.record(harmonic, skip=initial_purposes)
        pool = reference
    zero = OracleCost()
    labels: dict[int, OracleCost] = {}
    for i in _iterations(directory, "al"):
        iteration_dir = directory / "al" / f"iter_{i}"
        keys = _label_keys(iteration_dir)
        # paid but not in a label file yet (a labelling job still running or killed)
        keys += [
            e.key
            for e in attribution.ledger.values()
            if e.purpose == "al" and e.iteration == i and e.key not in keys
        ]
        labels[i] = attribution.keys(keys)
    before = {"relaxation": relax, "initial": initial, "test": test}
    points = []
    if initial_record.is_file():
        n_initial = read_json(initial_record).get("n_initial")
        for i in sorted({0, *labels}):
            merge = directory / "al" / f"iter_{i}" / "merge.json"
            if i > 0 and not merge.is_file():
                break  # D_i not made yet
            spent = sum((labels.get(j, zero) for j in range(i)), zero)
            points.append(
                CostPoint(
                    "al",
                    i,
                    n_initial if i == 0 else read_json(merge).get("size_after"),
                    {**before, "reference_md": zero, "aimd_md": zero, "labels": spent},
                    _errors(directory / "al" / f"iter_{i}" / "test_metrics.json"),
                )
            )
    drawn = [
        i
        for i in _iterations(directory, "random")
        if i > 0 and (directory / "random" / f"iter_{i}" / "dataset.extxyz").is_file()
    ]
    if drawn and points:
        al0 = points[0]
        points.append(CostPoint("random", 0, al0.dataset_size, dict(al0.cost), al0.errors))
        for i in drawn:
            iteration_dir = directory / "random" / f"iter_{i}"
            points.append(
                CostPoint(
                    "random",
                    i,
                    _count_frames(iteration_dir / "dataset.extxyz"),
                    {**before, "reference_md": pool, "aimd_md": zero, "labels": zero},
                    _errors(iteration_dir / "test_metrics.json"),
                )
            )
    aimd_points, aimd_md = _aimd_points(directory, before)
    points += aimd_points
    harmonic_points, harmonic_labels = _harmonic_points(directory, attribution, before, points)
    points += harmonic_points
    purposes = {
        **before,
        "reference_md": pool,
        "aimd_md": aimd_md,
        "labels": sum(labels.values(), zero),
        "harmonic_labels": harmonic_labels,
    }
    other = attribution.rest()
    untimed = sum([*purposes.values(), *other.values()], zero).untimed_cpu
    if untimed:
        notes.append(f"{untimed} oracle call(s) recorded without a CPU time (older records)")
    return CampaignCost(directory.name, test_source, purposes, other, points, notes)


def _aimd_points(
    directory: Path, before: dict[str, OracleCost]
) -> tuple[list[CostPoint], OracleCost]:
    """The aiMD-only baseline's points (relaxation, test set, its MD up to each point's last
    step) and the cost of all its MD."""
    from alkappa.al.aimd_baseline import prefix_cost

    zero = OracleCost()
    spent = reference_md_cost(directory / "aimd")
    plan_path = directory / "aimd" / "plan.json"
    if not plan_path.is_file():
        return [], spent
    plan = read_json(plan_path)
    runs = [directory / "aimd" / f"md_T{t:g}.nc" for t in plan["temperatures"]]
    points = []
    for entry in plan["points"]:
        iteration_dir = directory / "aimd" / f"iter_{entry['point']}"
        dataset = iteration_dir / "dataset.extxyz"
        if not dataset.is_file():
            continue  # not made yet
        md = sum((prefix_cost(run, entry["steps"]) for run in runs), zero)
        cost = {**before, "initial": zero, "reference_md": zero, "aimd_md": md, "labels": zero}
        points.append(
            CostPoint(
                "aimd",
                entry["point"],
                _count_frames(dataset),
                cost,
                _errors(iteration_dir / "test_metrics.json"),
            )
        )
    return points, spent


def _harmonic_points(
    directory: Path,
    attribution: _Attribution,
    before: dict[str, OracleCost],
    points: list[CostPoint],
) -> tuple[list[CostPoint], OracleCost]:
    """The harmonic-only baseline's points (D_0's cost and its samples' labels; iteration 0 is
    the shared D_0 ensemble) and the cost of all its labels."""
    from alkappa.al.harmonic_baseline import PURPOSE

    zero = OracleCost()
    records = {
        i: directory / "harmonic" / f"iter_{i}" / "record.json"
        for i in _iterations(directory, "harmonic")
        if i > 0 and (directory / "harmonic" / f"iter_{i}" / "record.json").is_file()
    }
    al0 = next((p for p in points if p.method == "al" and p.iteration == 0), None)
    if not records or al0 is None:
        return [], zero
    out = [CostPoint("harmonic", 0, al0.dataset_size, dict(al0.cost), al0.errors)]
    keys: set[str] = set()
    for i, record in records.items():
        own = read_json(record)["oracle_keys"].get(PURPOSE, [])
        keys.update(own)
        iteration_dir = record.parent
        out.append(
            CostPoint(
                "harmonic",
                i,
                _count_frames(iteration_dir / "dataset.extxyz"),
                {**before, "reference_md": zero, "aimd_md": zero, "labels": attribution.of(own)},
                _errors(iteration_dir / "test_metrics.json"),
            )
        )
    return out, attribution.keys(keys)


@dataclass(frozen=True)
class BaselineReach:
    """What AL spent to reach a baseline's final test force RMSE."""

    method: str  # the baseline: "random", "aimd" or "harmonic"
    target_force_rmse: float
    baseline: CostPoint  # the baseline's final point
    al: CostPoint | None  # the first AL iteration at or below the target; None: not reached
    best_al: CostPoint  # AL's lowest force RMSE

    def ratio(self, what: str = "calls") -> float | None:
        """AL's cost over the baseline's in ``calls`` or ``cpu_seconds``, or AL's training
        frames over the baseline's (``labels``; D_0 included) (None: AL did not reach the
        target, or a time is unknown)."""
        if self.al is None:
            return None
        if what == "labels":
            a_n, b_n = self.al.dataset_size, self.baseline.dataset_size
            return a_n / b_n if a_n is not None and b_n else None
        a, r = self.al.total, self.baseline.total
        if what == "calls":
            return a.calls / r.calls if r.calls else None
        if a.untimed_cpu or r.untimed_cpu or not r.cpu_seconds:
            return None
        return a.cpu_seconds / r.cpu_seconds


def baseline_reach(cost: CampaignCost, method: str = "random") -> BaselineReach | None:
    """AL's cost to reach the final force RMSE of baseline ``method`` (None without that
    baseline or before both have been evaluated). Iteration 0 of the random and harmonic
    baselines is AL's own D_0 ensemble, not theirs."""
    own = [p for p in cost.curve(method) if p.iteration > 0 or method == "aimd"]
    al = [p for p in cost.curve("al") if not math.isnan(p.errors["force_rmse_eV_per_A"])]
    if not own or not al or math.isnan(own[-1].errors["force_rmse_eV_per_A"]):
        return None
    target = own[-1].errors["force_rmse_eV_per_A"]
    reached = [p for p in al if p.errors["force_rmse_eV_per_A"] <= target]
    best = min(al, key=lambda p: p.errors["force_rmse_eV_per_A"])
    return BaselineReach(method, target, own[-1], reached[0] if reached else None, best)


def write_cost(cost: CampaignCost, table: str | Path, record: str | Path) -> None:
    """The learning-curve points as CSV (:data:`COST_FIELDS`), and as JSON with the calls of
    each purpose (:data:`PURPOSES`) over the whole campaign."""
    rows = cost.rows()
    with atomic_path(table) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COST_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    write_json(
        record,
        {
            "material": cost.material,
            "test_source": cost.test_source,
            "notes": cost.notes,
            "purposes": {k: v.as_dict() for k, v in cost.purposes.items()},
            # not the store's other calls (phonons, ...): a rule may still be making them
            "purposes_total": sum(cost.purposes.values(), OracleCost()).as_dict(),
            "points": rows,
        },
    )


def plot_cost_curves(cost: CampaignCost, path: str | Path, title: str) -> None:
    """Test errors of AL and its baselines against cumulative oracle calls (top row) and
    oracle CPU hours (bottom row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = {
        "force_rmse_eV_per_A": "force RMSE (eV/Å)",
        "energy_rmse_meV_per_atom": "energy RMSE (meV/atom)",
        "stress_rmse_GPa": "stress RMSE (GPa)",
        "reliability": "frames with force error > 3x median",
    }
    fig, axes = plt.subplots(
        2, len(panels), figsize=(3.4 * len(panels), 6.4), squeeze=False, constrained_layout=True
    )
    styles = {
        "al": ("o-", "active learning"),
        "random": ("s--", "random from reference MD"),
        "aimd": ("^-.", "aiMD only"),
        "harmonic": ("d:", "harmonic sampling only"),
    }
    for method, (fmt, name) in styles.items():
        curve = cost.curve(method)
        if not curve:
            continue
        calls = [p.total.calls for p in curve]
        untimed = max(p.total.untimed_cpu for p in curve)
        hours = [p.total.cpu_seconds / 3600.0 for p in curve]
        for col, key in enumerate(panels):
            values = [p.errors[key] for p in curve]
            axes[0, col].plot(calls, values, fmt, label=name)
            label = name + (f" ({untimed} calls untimed)" if untimed else "")
            axes[1, col].plot(hours, values, fmt, label=label)
    for col, ylabel in enumerate(panels.values()):
        for row, xlabel in enumerate(("oracle calls (cumulative)", "oracle CPU hours")):
            ax = axes[row, col]
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_xlim(left=0)  # from nothing spent: the baseline's pool shows as a jump
            ax.xaxis.set_major_locator(MaxNLocator(5))
    for ax in axes[:, -1]:
        ax.set_ylim(bottom=0)
    axes[0, 0].legend(frameon=False)
    axes[1, 0].legend(frameon=False)
    fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, format="png")
    plt.close(fig)


def run_oracle_cost(
    directory: str | Path,
    out_table: str | Path,
    out_record: str | Path,
    out_figure: str | Path,
) -> None:
    """The cost accounting of ``results/<material>``: table, JSON and learning-curve figure."""
    cost = campaign_cost(directory)
    write_cost(cost, out_table, out_record)
    plot_cost_curves(cost, out_figure, f"{cost.material}: test error against oracle cost")
    total = cost.total
    print(f"{cost.material}: {total.calls} oracle calls, {total.cpu_seconds / 3600:.3g} CPU h")
    for purpose, spent in cost.purposes.items():
        print(f"  {purpose}: {spent.calls} calls, {spent.cpu_seconds:.3g} CPU s")
    for note in cost.notes:
        print(f"  note: {note}")
