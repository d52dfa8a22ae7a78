"""The aiMD-only and harmonic-only baselines at equal oracle cost: their plan, their data and
their cost, on a small campaign made by the real steps with EMT (see test_cost.py)."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest
import yaml
from test_cost import ROOT, _label_iteration, _metrics

from alkappa.al.aimd_baseline import (
    MIN_FRAMES,
    plan_points,
    run_aimd_dataset,
    run_aimd_md,
    run_aimd_plan,
)
from alkappa.al.cost import baseline_reach, campaign_cost, oracle_totals
from alkappa.al.harmonic_baseline import PURPOSE, run_harmonic_dataset
from alkappa.al.steps import (
    harmonic_test_set_step,
    initial_data_step,
    merge_step,
    prepare_structure_step,
)
from alkappa.config import ConfigError, load_config, material_settings
from alkappa.io import read_dataset, read_json, read_trajectory, write_json
from alkappa.labelling import count_oracle_calls


def _config(**baselines) -> dict:
    cfg = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    cfg["initial"]["n_frames"] = 4
    cfg["test"]["n_frames"] = 2  # at each of the two exploration temperatures
    cfg["baselines"] = baselines
    return cfg


def test_plan_spends_each_al_total_on_md_steps():
    # AL's data cost 30, 45 and 60 calls; relaxation and test set 10 of them; two MD runs
    points = plan_points([30, 45, 60], 10, runs=2, every=3)
    # per run (total - 10) / 2 calls: its first evaluation and the steps
    assert [p["steps"] for p in points] == [9, 16, 24]
    assert [p["frames"] for p in points] == [2 * 3, 2 * 5, 2 * 8]
    assert [p["calls"] for p in points] == [30, 44, 60]
    assert [p["al_iteration"] for p in points] == [0, 1, 2]
    for p, target in zip(points, (30, 45, 60), strict=True):
        assert 0 <= target - p["calls"] < 2  # never more than AL, less by the rounding only
    # a stated budget beyond AL's: one more point there; one below AL's last: the end
    beyond = plan_points([30, 45, 60], 10, runs=2, every=3, budget=100)
    assert [p["al_iteration"] for p in beyond] == [0, 1, 2, None]
    assert beyond[-1]["steps"] == 44 and beyond[-1]["calls"] == 100
    below = plan_points([30, 45, 60], 10, runs=2, every=3, budget=50)
    assert [p["target_calls"] for p in below] == [30, 45, 50]
    # points with too few frames to train on are left out
    assert plan_points([14, 30], 10, runs=1, every=1)[0]["al_iteration"] == 1
    assert plan_points([30], 10, runs=2, every=20) == []
    assert MIN_FRAMES >= 2


@pytest.mark.parametrize(
    ("baselines", "message"),
    [
        ({"aimd": {"enabled": True, "every": 0}}, "baselines.aimd.every: 0 is less than"),
        ({"aimd": {"budget": "lots"}}, "baselines.aimd.budget: 'lots' is not allowed"),
        (
            {"harmonic": {"enabled": True, "seed": 2}},
            "baselines.harmonic.seed: 2 is test.seed: the baseline would draw the same",
        ),
        ({"harmonic": {"enabled": True, "temperatures": [-5]}}, "harmonic.temperatures.0"),
        ({"aimd": {"enabled": True, "window": 3}}, "unknown key 'window' in baselines.aimd"),
    ],
)
def test_a_bad_baseline_option_is_one_line_naming_it(baselines, message):
    with pytest.raises(ConfigError) as info:
        load_config(_config(**baselines))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_aimd_seed_of_the_reference_md_and_rattled_d0_are_refused():
    cfg = _config(aimd={"enabled": True, "seed": 5})
    cfg["reference"] = {"md": {"temperatures": [900]}}
    with pytest.raises(ConfigError, match=r"baselines\.aimd\.seed: 5 is reference\.md\.seed"):
        load_config(cfg)
    cfg["reference"] = {"md": {"temperatures": [1200]}}  # another run: allowed
    load_config(cfg)
    cfg = _config(harmonic={"enabled": True})
    cfg["initial"]["method"] = "rattle"
    with pytest.raises(ConfigError, match=r"baselines\.harmonic: needs initial\.method: harmonic"):
        load_config(cfg)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """results/Cu after the pre-loop steps and two AL iterations (2 labels, then 3), with
    both baselines enabled; the aiMD baseline at one temperature, on every step."""
    cfg = _config(
        aimd={"enabled": True, "every": 1, "temperatures": [300]},
        harmonic={"enabled": True},
    )
    cfg["reference"] = {"md": {"timestep": 2.0}}
    settings = material_settings(load_config(cfg), "Cu")
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


def _aimd(settings, m, budget="al"):
    settings = copy.deepcopy(settings)
    settings["baselines"]["aimd"]["budget"] = budget
    run_aimd_plan(settings, m, m / "aimd/plan.json")
    plan = read_json(m / "aimd/plan.json")
    run_aimd_md(
        settings,
        m / "structure/relaxed.extxyz",
        m / "structure/relax.json",
        m / "aimd/plan.json",
        m / "aimd/md_T300.nc",
        temperature=300.0,
    )
    for p in plan["points"]:
        out = m / f"aimd/iter_{p['point']}/dataset.extxyz"
        run_aimd_dataset(m / "aimd/plan.json", [m / "aimd/md_T300.nc"], out, point=p["point"])
    return plan


def test_aimd_baseline_pays_one_call_per_md_step_and_matches_al_cost(campaign, tmp_path):
    settings, m0 = campaign
    m = tmp_path / "Cu"
    shutil.copytree(m0, m)
    al = campaign_cost(m).curve("al")
    plan = _aimd(settings, m, budget=al[-1].total.calls + 20)
    relax = read_json(m / "structure/relax.json")["oracle_calls"]
    store = count_oracle_calls(m / "oracle")
    assert plan["shared_calls"] == relax + store["test"]  # no D_0 for aiMD
    # AL's totals: relaxation, fc2 and D_0, test set, the labels before
    assert plan["al_total_calls"] == [
        relax + store["fc2"] + store["initial"] + store["test"] + k for k in (0, 2, 5)
    ]
    points = plan["points"]
    assert [p["al_iteration"] for p in points][-1] is None  # the stated budget
    md = read_trajectory(m / "aimd/md_T300.nc")
    # the run is as long as the last point needs: every step one oracle call, and the first
    assert int(md.attrs["force_evaluations"]) == points[-1]["steps"] + 1
    assert md.attrs["source"] == "aimd-baseline" and md.attrs["timestep"] == 2.0
    for p in points:
        frames = read_dataset(m / f"aimd/iter_{p['point']}/dataset.extxyz")
        times = [f.info["time"] for f in frames]
        assert len(frames) == p["steps"] == p["frames"]  # every step, t = 0 left out
        assert min(times) == 2.0 and max(times) == pytest.approx(2.0 * p["steps"])
        assert all(f.info["source"] == "aimd" for f in frames)
        write_json(m / f"aimd/iter_{p['point']}/test_metrics.json", _metrics(0.15))
    cost = campaign_cost(m)
    curve = cost.curve("aimd")
    assert [c.iteration for c in curve] == [p["point"] for p in points]
    for c, p in zip(curve, points, strict=True):
        assert c.cost["aimd_md"].calls == p["steps"] + 1
        assert c.cost["initial"].calls == 0 and c.cost["labels"].calls == 0
        assert c.total.calls == p["calls"] == relax + store["test"] + p["steps"] + 1
        assert c.total.calls <= p["target_calls"]
        if p["al_iteration"] is not None:  # equal cost, to the rounding
            assert c.total.calls == al[p["al_iteration"]].total.calls
    assert cost.purposes["aimd_md"].calls == points[-1]["steps"] + 1
    # status counts the MD too, and every call once
    totals = oracle_totals(m)
    assert totals["aimd-md"].calls == points[-1]["steps"] + 1
    assert cost.total.calls == sum(c.calls for c in totals.values())
    # AL (0.1 at iteration 2) reaches aiMD's final 0.15 eV/Å at its iteration 2's cost
    reach = baseline_reach(cost, "aimd")
    assert reach.al.iteration == 2 and reach.baseline.iteration == points[-1]["point"]
    assert reach.ratio("calls") == pytest.approx(al[2].total.calls / points[-1]["calls"])


def test_aimd_budget_too_small_stops_with_a_clear_message(campaign, tmp_path):
    settings, m0 = campaign
    m = tmp_path / "Cu"
    shutil.copytree(m0, m)
    settings = copy.deepcopy(settings)
    settings["baselines"]["aimd"].update(budget=1, every=1)
    with pytest.raises(RuntimeError, match=r"baselines\.aimd: a budget of 1 oracle calls leaves"):
        run_aimd_plan(settings, m, m / "aimd/plan.json")


def test_harmonic_baseline_labels_each_sample_once_at_al_sizes(campaign, tmp_path):
    settings, m0 = campaign
    m = tmp_path / "Cu"
    shutil.copytree(m0, m)
    before = count_oracle_calls(m / "oracle")

    def make(i):
        run_harmonic_dataset(
            settings,
            m / "structure/relaxed.extxyz",
            m / "data/initial.extxyz",
            m / f"al/iter_{i}/dataset.extxyz",
            m / "al/iter_2/dataset.extxyz",
            m / "oracle",
            m / f"harmonic/iter_{i}/dataset.extxyz",
            m / f"harmonic/iter_{i}/record.json",
            iteration=i,
        )
        return read_dataset(m / f"harmonic/iter_{i}/dataset.extxyz")

    sets = {i: make(i) for i in (1, 2)}
    initial = read_dataset(m / "data/initial.extxyz")
    for i, frames in sets.items():
        assert len(frames) == len(read_dataset(m / f"al/iter_{i}/dataset.extxyz"))
        assert np.allclose(frames[0].positions, initial[0].positions)  # D_0 first
    extra = [f for f in sets[2] if f.info.get("purpose") == PURPOSE]
    assert len(extra) == 5
    # in turn from the exploration temperatures, nested: iteration 1's are the first two
    assert [f.info["temperature"] for f in extra] == [300, 900, 300, 900, 300]
    for a, b in zip(sets[1][len(initial) :], extra[:2], strict=True):
        assert np.allclose(a.positions, b.positions)
    # none of them is a test or D_0 structure
    seen = {f.positions.round(5).tobytes() for f in initial + read_dataset(m / "data/test.extxyz")}
    assert not {f.positions.round(5).tobytes() for f in extra} & seen
    # 5 new calls (the force constants are D_0's), and a rerun pays none
    after = count_oracle_calls(m / "oracle")
    assert after[PURPOSE] == 5 and after["fc2"] == before["fc2"]
    (m / "harmonic/iter_2/dataset.extxyz").unlink()
    make(2)
    assert count_oracle_calls(m / "oracle") == after
    # its cost is AL's at every dataset size: D_0 and the same number of labels
    for i in (1, 2):
        write_json(m / f"harmonic/iter_{i}/test_metrics.json", _metrics(0.25))
    cost = campaign_cost(m)
    al, harmonic = cost.curve("al"), cost.curve("harmonic")
    assert [p.iteration for p in harmonic] == [0, 1, 2]
    assert [p.cost["labels"].calls for p in harmonic] == [0, 2, 5]
    assert [p.total.calls for p in harmonic] == [p.total.calls for p in al]
    assert [p.dataset_size for p in harmonic] == [p.dataset_size for p in al]
    assert cost.purposes["harmonic_labels"].calls == 5
    assert cost.total.calls == sum(c.calls for c in oracle_totals(m).values())
    reach = baseline_reach(cost, "harmonic")  # AL's 0.2 at iteration 1 beats 0.25
    assert reach.al.iteration == 1 and reach.ratio("labels") == pytest.approx(6 / 9)


@pytest.mark.slow
def test_pipeline_runs_both_baselines_at_the_al_cost(tmp_path):
    """config/test.yaml with reference MD, both baselines, the gate and the calibrated
    selection (its lattice-dynamics stages off): the baselines are planned after the AL loop,
    run, evaluated on AL's test set, counted, compared; planned again alike, the aiMD is not
    paid again. The reference-MD and gate checks are test_pipeline's
    assert_reference_md_gives_the_test_set_and_never_trains_on_it and
    assert_gate_and_calibration (one campaign for all: each AL loop costs minutes)."""
    import csv
    import os
    import subprocess
    import sys

    from test_pipeline import (
        GATE_AND_CALIBRATION,
        REFERENCE_MD,
        assert_gate_and_calibration,
        assert_reference_md_gives_the_test_set_and_never_trains_on_it,
        snakemake,
    )

    cfg = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    cfg["results"] = str(tmp_path / "results")
    for stage in ("phonons", "conductivity", "greenkubo"):
        cfg[stage] = {"enabled": False}
    cfg["baselines"] = {"aimd": {"enabled": True, "every": 1}, "harmonic": {"enabled": True}}
    cfg.update(GATE_AND_CALIBRATION)
    cfg["reference"] = REFERENCE_MD
    cfgfile = tmp_path / "baselines.yaml"
    cfgfile.write_text(yaml.safe_dump(cfg))
    proc = snakemake("--configfile", str(cfgfile))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "results/Cu"
    assert_gate_and_calibration(out)
    assert_reference_md_gives_the_test_set_and_never_trains_on_it(out)
    plan = read_json(out / "aimd/plan.json")
    assert plan["temperatures"] == [300.0, 900.0] and plan["points"]
    for t in (300, 900):  # every step one oracle call, and the run's first
        md = read_trajectory(out / f"aimd/md_T{t}.nc")
        assert int(md.attrs["force_evaluations"]) == plan["steps"] + 1
    with open(out / "al/oracle_cost.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by = {m: [r for r in rows if r["method"] == m] for m in ("al", "aimd", "harmonic")}
    al = {int(r["iteration"]): r for r in by["al"]}
    assert len(by["aimd"]) == len(plan["points"])
    for row, p in zip(by["aimd"], plan["points"], strict=True):
        assert int(row["aimd_md_calls"]) == 2 * (p["steps"] + 1)
        assert int(row["initial_calls"]) == int(row["labels_calls"]) == 0
        assert int(row["total_calls"]) == p["calls"]
        target = int(al[p["al_iteration"]]["total_calls"])
        assert 0 <= target - int(row["total_calls"]) < 2  # two runs: rounding only
        n = len(read_dataset(out / f"aimd/iter_{p['point']}/dataset.extxyz"))
        assert int(row["dataset_size"]) == n == p["frames"]
        assert float(row["force_rmse_eV_per_A"]) > 0
    # harmonic only: AL's dataset sizes and AL's cost at each, its own labels
    assert [int(r["iteration"]) for r in by["harmonic"]] == sorted(al)
    for row in by["harmonic"]:
        assert row["total_calls"] == al[int(row["iteration"])]["total_calls"]
        assert row["dataset_size"] == al[int(row["iteration"])]["dataset_size"]
        assert float(row["force_rmse_eV_per_A"]) > 0
    last = max(al)
    added = int(al[last]["dataset_size"]) - int(al[0]["dataset_size"])
    assert count_oracle_calls(out / "oracle")[PURPOSE] == added
    assert (out / "al/learning_curve_cost.png").stat().st_size > 10_000
    bench = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/al_efficiency.py"), str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert bench.returncode == 0, bench.stderr
    assert "aiMD only: force RMSE" in bench.stdout
    assert "harmonic sampling only: force RMSE" in bench.stdout
    # planned again (as after a rerun of the AL summary), the same plan: no MD paid again
    stamps = {t: (out / f"aimd/md_T{t}.nc").stat().st_mtime_ns for t in (300, 900)}
    calls = count_oracle_calls(out / "oracle")
    proc = snakemake("--configfile", str(cfgfile), "--forcerun", "aimd_plan")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "checkpoint aimd_plan:" in log and "rule aimd_md:" not in log
    assert {t: (out / f"aimd/md_T{t}.nc").stat().st_mtime_ns for t in (300, 900)} == stamps
    assert count_oracle_calls(out / "oracle") == calls
    proc = snakemake("--configfile", str(cfgfile), "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr
