"""The oracle cost accounting of AL and of the random baseline, on a small campaign made by
the real steps with EMT (relaxation, D_0, test set, labels, reference MD) and known calls."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from alkappa.al.cost import (
    PURPOSES,
    baseline_reach,
    campaign_cost,
    oracle_totals,
    run_oracle_cost,
)
from alkappa.al.steps import (
    harmonic_test_set_step,
    initial_data_step,
    label_step,
    merge_step,
    prepare_structure_step,
)
from alkappa.config import load_config, material_settings
from alkappa.io import read_dataset, write_dataset, write_json
from alkappa.labelling import OracleCost, count_oracle_calls, oracle_ledger

ROOT = Path(__file__).resolve().parents[1]


def _settings() -> dict:
    cfg = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    cfg["initial"]["n_frames"] = 4
    cfg["test"]["n_frames"] = 2  # at each of the two exploration temperatures
    return material_settings(load_config(cfg), "Cu")


def _metrics(force_rmse: float) -> dict:
    mean = {
        "forces_eV_per_A": {"rmse": force_rmse},
        "energy_per_atom_meV": {"rmse": 10 * force_rmse},
        "stress_GPa": {"rmse": None},  # no stress: NaN
        "reliability": {"fraction": 0.25},
    }
    return {"per_member": {"all": {"mean": mean}}}


def _label_iteration(settings, m: Path, i: int, n: int, shift: float) -> list[Path]:
    """Label ``n`` rattled copies of the relaxed cell as AL iteration ``i`` selected them."""
    base = read_dataset(m / "structure/relaxed.extxyz")[0]
    candidates = []
    rng = np.random.default_rng(i)
    for k in range(n):
        atoms = base.copy()
        atoms.calc = None
        atoms.positions += rng.normal(0.0, 0.05 + shift, atoms.positions.shape)
        atoms.info.update({"iteration": i, "source": "al", "frame_index": k})
        candidates.append(atoms)
    path = m / f"al/iter_{i}/candidates.extxyz"
    write_dataset(path, candidates)
    out = [m / f"al/iter_{i}/labels/frame_{k}.extxyz" for k in range(n)]
    for k, frame in enumerate(out):
        label_step(settings, path, k, m / "oracle", frame)
    return out


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """results/Cu after the pre-loop steps and two AL iterations (2 labels, then 3)."""
    settings = _settings()
    m = tmp_path_factory.mktemp("results") / "Cu"
    prepare_structure_step(settings, m / "structure/relaxed.extxyz", m / "structure/relax.json")
    args = (settings, m / "structure/relaxed.extxyz", m / "oracle")
    initial_data_step(*args, m / "data/initial.extxyz", m / "data/initial.json")
    harmonic_test_set_step(*args, m / "data/test.extxyz", m / "data/test.json")
    dataset = m / "data/initial.extxyz"
    for i, (n, rmse) in enumerate(((2, 0.3), (3, 0.2))):
        write_json(m / f"al/iter_{i}/test_metrics.json", _metrics(rmse))
        labels = _label_iteration(settings, m, i, n, 0.01 * i)
        nxt = m / f"al/iter_{i + 1}/dataset.extxyz"
        merge_step(dataset, labels, nxt, m / f"al/iter_{i + 1}/merge.json", iteration=i + 1)
        dataset = nxt
    write_json(m / "al/iter_2/test_metrics.json", _metrics(0.1))
    return settings, m


def _snapshot(cost):
    return [(p.method, p.iteration, p.cost) for p in cost.points], cost.purposes, cost.other


def test_every_call_counts_once_under_its_purpose(campaign):
    _, m = campaign
    cost = campaign_cost(m)
    relax = json.loads((m / "structure/relax.json").read_text())["oracle_calls"]
    store = count_oracle_calls(m / "oracle")
    fc2 = store["fc2"]
    assert fc2 > 0 and store["initial"] == 4 and store["test"] == 4 and store["al"] == 5
    assert cost.test_source == "harmonic"
    assert cost.purposes["relaxation"].calls == relax
    # the fc2 single points serve D_0 and the test set: paid once, counted once
    assert cost.purposes["initial"].calls == fc2 + 4
    assert cost.purposes["test"].calls == 4
    assert cost.purposes["labels"].calls == 5 and cost.purposes["reference_md"].calls == 0
    assert cost.total.calls == sum(c.calls for c in oracle_totals(m).values())
    al = cost.curve("al")
    assert [p.iteration for p in al] == [0, 1, 2]
    assert [p.dataset_size for p in al] == [4, 6, 9]
    assert [p.cost["labels"].calls for p in al] == [0, 2, 5]  # labels made before training
    assert [p.total.calls for p in al] == [relax + fc2 + 8 + k for k in (0, 2, 5)]
    assert [p.errors["force_rmse_eV_per_A"] for p in al] == [0.3, 0.2, 0.1]
    assert np.isnan(al[0].errors["stress_rmse_GPa"])
    assert not cost.curve("random")  # no reference data: no baseline
    # every call was timed, in wall and in CPU seconds, and the times add up to the store's
    total = cost.total
    assert total.untimed_cpu == total.untimed_wall == 0 and not cost.notes
    assert total.wall_seconds > 0 and total.cpu_seconds > 0
    ledger = oracle_ledger(m / "oracle").values()
    store_cpu = sum(e.cost.cpu_seconds for e in ledger)
    relax_cpu = json.loads((m / "structure/relax.json").read_text())["cpu_seconds"]
    assert total.cpu_seconds == pytest.approx(store_cpu + relax_cpu)


def test_resume_reuses_stored_calls_without_counting_them_again(campaign, tmp_path):
    import shutil

    settings, m = campaign
    before = _snapshot(campaign_cost(m))
    copy_ = tmp_path / "Cu"
    shutil.copytree(m, copy_)
    files = sorted((copy_ / "oracle").glob("*.extxyz"))
    # rerun the jobs as after a crash: every result comes from the store
    for name in ("initial", "test"):
        (copy_ / f"data/{name}.json").unlink()
    args = (settings, copy_ / "structure/relaxed.extxyz", copy_ / "oracle")
    initial_data_step(*args, copy_ / "data/initial.extxyz", copy_ / "data/initial.json")
    harmonic_test_set_step(*args, copy_ / "data/test.extxyz", copy_ / "data/test.json")
    labels = copy_ / "al/iter_1/labels/frame_0.extxyz"
    labels.unlink()
    label_step(settings, copy_ / "al/iter_1/candidates.extxyz", 0, copy_ / "oracle", labels)
    assert read_dataset(labels)[0].info["oracle_reused"]
    assert sorted((copy_ / "oracle").glob("*.extxyz")) == [copy_ / "oracle" / f.name for f in files]
    # the reused calls cost nothing new; their first cost still counts, once
    assert _snapshot(campaign_cost(copy_)) == before


def test_old_records_without_times_or_keys_count_calls_as_untimed(campaign, tmp_path):
    import shutil

    _, m = campaign
    old = tmp_path / "Cu"
    shutil.copytree(m, old)
    new = campaign_cost(m)
    # a store entry and the relaxation record from before CPU times were recorded
    path = sorted((old / "oracle").glob("*.extxyz"))[0]
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace("oracle_cpu_seconds=", "old_cpu=")
    path.write_text("".join(lines))
    relax = json.loads((old / "structure/relax.json").read_text())
    relax.pop("cpu_seconds")
    write_json(old / "structure/relax.json", relax)
    # harmonic records from before they listed their keys: counts only
    for name in ("initial", "test"):
        record = json.loads((old / f"data/{name}.json").read_text())
        record.pop("oracle_keys")
        write_json(old / f"data/{name}.json", record)
    cost = campaign_cost(old)
    assert {p: c.calls for p, c in cost.purposes.items()} == {
        p: c.calls for p, c in new.purposes.items()
    }
    assert cost.total.calls == new.total.calls
    assert cost.total.untimed_cpu == 1 + relax["oracle_calls"]
    assert cost.total.untimed_wall == 0
    assert "without a CPU time" in cost.notes[0]


def test_random_baseline_pays_for_the_reference_md_pool(campaign, tmp_path):
    """With reference MD, the test set is n_test of its single points and the rest of the run
    (the pool) is the random baseline's, from its first draw on; AL never pays for it."""
    import shutil

    from alkappa.reference_data import reference_md_cost, run_reference_md

    settings, m = campaign
    ref = tmp_path / "Cu"
    shutil.copytree(m, ref)
    for name in ("test.extxyz", "test.json"):
        (ref / "data" / name).unlink()
    settings = copy.deepcopy(settings)
    settings["reference"]["md"].update(steps=20, timestep=2.0, log_interval=2)
    run_reference_md(
        settings,
        ref / "structure/relaxed.extxyz",
        ref / "structure/relax.json",
        ref / "reference/md_T300.nc",
        temperature=300.0,
    )
    md = reference_md_cost(ref / "reference")
    assert md.calls == 21 and md.untimed_cpu == 0 and md.cpu_seconds > 0
    write_json(
        ref / "reference/split.json",
        {"sources": [str(ref / "reference/md_T300.nc")], "n_test": 3, "n_pool": 7},
    )
    pool = read_dataset(ref / "data/initial.extxyz")
    for i, rmse in ((1, 0.25), (2, 0.05)):
        size = len(read_dataset(ref / f"al/iter_{i}/dataset.extxyz"))
        write_dataset(ref / f"random/iter_{i}/dataset.extxyz", (pool * 3)[:size])
        write_json(ref / f"random/iter_{i}/test_metrics.json", _metrics(rmse))
    cost = campaign_cost(ref)
    assert cost.test_source == "reference"
    assert cost.purposes["test"] == md.scaled(3)
    assert cost.purposes["reference_md"].calls == 21 - 3
    assert cost.purposes["test"].calls + cost.purposes["reference_md"].calls == md.calls
    al, random = cost.curve("al"), cost.curve("random")
    assert all(p.cost["reference_md"].calls == 0 for p in al)
    assert [p.iteration for p in random] == [0, 1, 2]
    assert random[0].cost == al[0].cost  # the shared D_0 ensemble draws nothing
    for p in random[1:]:
        assert p.cost["reference_md"].calls == 18 and p.cost["labels"].calls == 0
        assert p.total.calls == al[0].total.calls + 18
        assert p.dataset_size == len(read_dataset(ref / f"al/iter_{p.iteration}/dataset.extxyz"))
    assert cost.total.calls == sum(c.calls for c in oracle_totals(ref).values())
    # AL reaches the baseline's final 0.05 eV/Å? Not with 0.1 at the end
    reach = baseline_reach(cost)
    assert reach is not None and reach.target_force_rmse == 0.05
    assert reach.al is None and reach.best_al.iteration == 2 and reach.ratio() is None
    # a baseline that ends at 0.2: AL's iteration 1 reaches it
    write_json(ref / "random/iter_2/test_metrics.json", _metrics(0.2))
    reach = baseline_reach(campaign_cost(ref))
    assert reach.al.iteration == 1
    assert reach.ratio("calls") == pytest.approx(reach.al.total.calls / reach.baseline.total.calls)
    assert reach.ratio("cpu_seconds") == pytest.approx(
        reach.al.total.cpu_seconds / reach.baseline.total.cpu_seconds
    )
    # the rule's outputs: table, record and figure
    run_oracle_cost(ref, tmp_path / "cost.csv", tmp_path / "cost.json", tmp_path / "cost.png")
    with open(tmp_path / "cost.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["method"], r["iteration"]) for r in rows] == [
        ("al", "0"),
        ("al", "1"),
        ("al", "2"),
        ("random", "0"),
        ("random", "1"),
        ("random", "2"),
    ]
    assert int(rows[-1]["reference_md_calls"]) == 18
    assert int(rows[-1]["total_calls"]) == sum(int(rows[-1][f"{p}_calls"]) for p in PURPOSES)
    record = json.loads((tmp_path / "cost.json").read_text())
    assert record["purposes_total"]["calls"] == sum(c.calls for c in cost.purposes.values())
    assert record["purposes"]["reference_md"]["calls"] == 18
    assert (tmp_path / "cost.png").stat().st_size > 10_000


def test_oracle_cost_arithmetic():
    a = OracleCost.of(4, 2.0, None)
    assert a.untimed_cpu == 4 and a.untimed_wall == 0
    b = a + OracleCost.of(2, 1.0, 1.0)
    assert (b.calls, b.wall_seconds, b.cpu_seconds, b.untimed_cpu) == (6, 3.0, 1.0, 4)
    share = OracleCost.of(10, 20.0, 40.0).scaled(3)
    assert (share.calls, share.wall_seconds, share.cpu_seconds) == (3, 6.0, 12.0)
    assert OracleCost.of(10, None, None).scaled(3).untimed_wall == 3


def test_status_counts_what_the_accounting_counts(campaign):
    from alkappa.campaign import campaign_status, format_status

    _, m = campaign
    status = campaign_status(m.parent, m.parent)
    (material,) = status.materials
    cost = campaign_cost(m)
    assert material.oracle_cost == cost.total
    assert sum(material.oracle_calls.values()) == cost.total.calls
    text = format_status(status)
    line = next(x for x in text.splitlines() if "oracle calls" in x)
    assert line.split()[2:5] == [
        str(cost.total.calls),
        "(relax",
        f"{material.oracle_calls['relax']},",
    ]
    assert " CPU, " in text and "without a recorded time" not in text
