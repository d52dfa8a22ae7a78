"""Multi-material campaign summary: one row per material from its output files."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import pytest

from alkappa.campaign import (
    SUMMARY_COLUMNS,
    material_summary,
    read_summary_csv,
)
from alkappa.campaign.steps import campaign_summary_step
from alkappa.io import write_json


def write_al_summary(path, rows):
    fields = [
        "iteration",
        "oracle_calls_cumulative",
        "energy_rmse_meV_per_atom",
        "force_rmse_eV_per_A",
        "reliability",
        "decision",
    ]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for i, (calls, e, f, decision) in enumerate(rows):
            writer.writerow(
                {
                    "iteration": i,
                    "oracle_calls_cumulative": calls,
                    "energy_rmse_meV_per_atom": e,
                    "force_rmse_eV_per_A": f,
                    "reliability": 0.9,
                    "decision": decision,
                }
            )


@pytest.fixture
def material_files(tmp_path):
    """Two materials: A with every stage, B with the AL loop only."""
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    write_al_summary(
        a / "summary.csv",
        [(40, 5.0, 0.2, "continue"), (52, 3.0, 0.1, "continue"), (61, 2.5, 0.08, "converged")],
    )
    write_al_summary(b / "summary.csv", [(10, 9.0, 0.5, "stopped")])
    write_json(
        a / "anharmonicity.json",
        {
            "force_constants": "x",
            "reference 300 K": {"sigma_A": 0.9},
            "MLIP 900 K": {"sigma_A": 0.5},
            "MLIP 300 K": {"sigma_A": 0.3},
        },
    )
    write_json(
        a / "comparison.json",
        {
            "mlip": {"temperatures_K": [100.0, 300.0], "kappa_rta_W_per_mK": [9.0, 3.0]},
            "oracle": {"temperatures_K": [100.0, 300.0], "kappa_rta_W_per_mK": [8.0, 2.5]},
        },
    )
    write_json(
        a / "greenkubo.json",
        {
            "temperatures": {
                "600": {"kappa_W_per_mK": 1.0, "kappa_error_W_per_mK": 0.1},
                "300": {"kappa_W_per_mK": 2.0, "kappa_error_W_per_mK": 0.4},
            }
        },
    )
    write_json(a / "diagnosis.json", {"missing_events": [{"t": 1}, {"t": 2}], "false_events": 0})
    return {
        "A": {
            "al_summary": a / "summary.csv",
            "anharmonicity": a / "anharmonicity.json",
            "conductivity": a / "comparison.json",
            "greenkubo": a / "greenkubo.json",
            "events": a / "diagnosis.json",
        },
        "B": {"al_summary": b / "summary.csv"},
    }


def test_material_summary_reads_the_final_iteration_and_300K(material_files):
    row = material_summary("A", **material_files["A"])
    assert row.al_iterations == 3 and row.decision == "converged"
    assert row.oracle_calls == 61  # cumulative count of the last iteration, not a sum of rows
    assert (row.energy_rmse_meV_per_atom, row.force_rmse_eV_per_A) == (2.5, 0.08)
    # the MLIP exploration at the lowest temperature, not the reference MD
    assert row.sigma_A == 0.3 and row.sigma_A_trajectory == "MLIP 300 K"
    assert row.kappa_phono3py_mlip_W_per_mK == 3.0
    assert row.kappa_phono3py_oracle_W_per_mK == 2.5
    assert (row.kappa_GK_W_per_mK, row.kappa_GK_error_W_per_mK) == (2.0, 0.4)
    assert (row.missing_events, row.false_events) == (2, 0)


def test_stages_not_run_are_nan(material_files):
    row = material_summary("B", **material_files["B"])
    assert row.al_iterations == 1 and row.oracle_calls == 10
    for key in ("sigma_A", "kappa_GK_W_per_mK", "kappa_phono3py_mlip_W_per_mK", "false_events"):
        assert math.isnan(getattr(row, key))


def test_summary_csv_and_figure(material_files, tmp_path):
    out_csv, out_png = tmp_path / "summary.csv", tmp_path / "summary.png"
    campaign_summary_step(["B", "A"], material_files, out_csv, out_png)
    with open(out_csv, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == SUMMARY_COLUMNS
    rows = read_summary_csv(out_csv)
    assert [r.material for r in rows] == ["B", "A"]  # campaign order
    assert rows[1] == material_summary("A", **material_files["A"])
    assert out_png.stat().st_size > 10_000


def test_a_material_without_its_al_summary_is_named(material_files, tmp_path):
    with pytest.raises(ValueError, match=r"no AL summary for material\(s\) \['C'\]"):
        campaign_summary_step(["A", "C"], material_files, tmp_path / "s.csv", tmp_path / "s.png")
    assert not (tmp_path / "s.csv").exists()


def test_status_reads_the_results_and_snakemakes_records(tmp_path):
    import base64
    import json
    import time

    from alkappa.campaign import campaign_status, estimate_time_left, format_status, status_line

    results = tmp_path / "results"
    cu = results / "Cu"
    write_json(cu / "structure/relax.json", {"oracle_calls": 7})
    (cu / "structure/relaxed.extxyz").write_text("")
    write_json(cu / "data/initial.json", {"n_initial": 6, "failures": [{"key": "k"}]})
    write_json(cu / "data/test.json", {"n_test": 3, "failures": []})
    write_json(
        cu / "al/iter_0/decision.json",
        {"stop": False, "reason": "continue: x", "settings": {"max_iterations": 5}},
    )
    (cu / "al/iter_1").mkdir(parents=True)
    (cu / "oracle").mkdir()
    import xarray as xr

    (cu / "reference").mkdir()
    xr.Dataset(attrs={"force_evaluations": 400}).to_netcdf(cu / "reference/md_T300.nc")
    xr.Dataset(attrs={"force_evaluations": 99}).to_netcdf(cu / "reference/md_T600.partial.nc")
    smk = tmp_path / ".snakemake"
    (smk / "metadata").mkdir(parents=True)
    (smk / "incomplete").mkdir()
    (smk / "locks").mkdir()
    (smk / "locks/0.input.lock").write_text("")
    (smk / "log").mkdir()

    def name(path):
        return base64.urlsafe_b64encode(path.encode()).decode()

    for k, seconds in enumerate((60.0, 180.0)):  # two finished training jobs, 2 min on average
        out = f"results/Cu/al/iter_0/ensemble/member_{k}/member.json"
        record = {"rule": "train_member", "job_hash": k, "starttime": 0.0, "endtime": seconds}
        (smk / "metadata" / name(out)).write_text(json.dumps({**record, "incomplete": False}))
    running = "results/Cu/al/iter_1/ensemble/member_0/member.json"
    (smk / "incomplete" / name(running)).write_text("")
    # a job a stopped run left unfinished, which the current run has not started again
    stale = "results/Cu/reference/md_T600.nc"
    (smk / "incomplete" / name(stale)).write_text("")
    log = "results/Cu/logs/al/iter_1/train_member_0.log"
    (tmp_path / log).parent.mkdir(parents=True)
    (tmp_path / log).write_text("epoch  12%|#  | 12/100 [00:30<03:40, 0.4it/s]\r")
    started = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(1000.0))
    # an update() output is announced with its flag: a running job all the same
    gk_run = "results/Cu/greenkubo/T300/run_02.nc"
    (smk / "incomplete" / name(gk_run)).write_text("")
    (smk / "log/2026-01-01T000000.000000.snakemake.log").write_text(
        f"[{started}]\nlocalrule train_member:\n    output: {running}\n    log: {log}\n"
        "    jobid: 3\n\n"
        f"[{started}]\nlocalrule gk_run:\n    output: {gk_run} (update)\n    jobid: 4\n\n"
    )
    status = campaign_status(results, tmp_path)
    assert status.locked and not status.alive
    assert status.mean_seconds("train_member") == 120.0
    assert "a killed run left its lock" in format_status(status)
    gk = next(j for j in status.running if j.rule == "gk_run")
    assert gk.output == gk_run and not gk.interrupted
    status.running.remove(gk)
    job, interrupted = sorted(status.running, key=lambda j: j.interrupted)
    assert interrupted.output == stale and interrupted.interrupted
    assert job.rule == "train_member" and job.progress == "12/100, 03:40 left"
    assert job.started == pytest.approx(1000.0)
    status.alive = True  # as if the run were still going
    # a dry run beside the run plans the running job too; explore is timed only by its prior
    planned = {"train_member": 3, "explore": 2, "label": 4}
    estimate = estimate_time_left(
        status, planned, cores=2, now=1300.0, priors={"explore": 30.0}, iterations_left=2
    )
    assert estimate.running_seconds == 220.0  # the progress bar's 03:40
    assert estimate.job_seconds == 2 * 120.0 + 2 * 30.0 and estimate.prior_seconds == 60.0
    assert estimate.wall_seconds == (300.0 + 220.0) / 2
    assert estimate.untimed == {"label": 4} and estimate.iteration_seconds is None
    text = format_status(status, estimate, now=1300.0)
    assert "iteration 1 (the last allowed: 4); decision of iteration 0: continue: x" in text
    assert "D_0 6 frames, 1 failed oracle call(s) listed; test set 3 (harmonic)" in text
    assert "oracle calls" in text and "relax 7" in text
    assert "reference MD 400" in text  # finished runs only: a checkpoint's calls come later
    assert "train_member for 5 min 00 s (finished ones took 2 min 00 s)" in text
    assert "time left: at least 4 min 20 s on 2 core(s)" in text  # label is untimed
    assert "8 job(s) planned, 5 min 00 s of job time (1 min 00 s of it from typical" in text
    assert "running jobs: 3 min 40 s left" in text
    assert f"interrupted by an earlier stop, redone when due: {stale}" in text
    assert "not counted (no duration known): label x4" in text
    assert "up to 2 more iteration(s), not counted until one has finished" in text
    line = status_line(status, estimate)
    assert line.startswith("Cu: active learning: iteration 1 (the last allowed: 4), 407 oracle")
    assert "1 job(s) running | time left at least 4 min 20 s (+4 untimed jobs)" in line
    # once iteration 0 has finished (decided, and D_1 merged), its job time counts per
    # further iteration: the two training jobs, 4 min
    (cu / "al/iter_1/dataset.extxyz").write_text("")
    status = campaign_status(results, tmp_path)
    estimate = estimate_time_left(status, planned, cores=2, now=1300.0, iterations_left=2)
    assert estimate.iteration_seconds == 240.0
    assert estimate.wall_seconds_max == estimate.wall_seconds + 2 * 240.0 / 2
    assert "up to 2 more iteration(s) of 4 min 00 s job time each" in format_status(
        status, estimate
    )


def test_iterations_beyond_the_plan_and_the_cores_of_the_run(tmp_path):
    import subprocess
    import sys
    import time

    from alkappa.campaign import iterations_beyond_plan, run_cores, snakemake_processes

    results = tmp_path / "results"
    # no decision yet: the plan holds iteration 0, a cap of 6 allows 5 more
    assert iterations_beyond_plan(results, {"A": 6}) == 5
    write_json(results / "A/al/iter_0/decision.json", {"stop": False})
    write_json(results / "A/al/iter_1/decision.json", {"stop": False})
    write_json(results / "B/al/iter_2/decision.json", {"stop": True})
    # A: decided up to 1, the plan holds 2, the cap 6 allows 3..5; B has stopped
    assert iterations_beyond_plan(results, {"A": 6, "B": 6}) == 3
    fake = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "snakemake", "--cores", "3"],
        cwd=tmp_path,
    )
    try:
        deadline = time.time() + 30  # until the process is visible in /proc (a loaded machine)
        while fake.pid not in snakemake_processes(tmp_path) and time.time() < deadline:
            time.sleep(0.1)
        assert run_cores(tmp_path) == 3
    finally:
        fake.kill()
        fake.wait()


def test_green_kubo_runs_beyond_the_plan_count_in_the_upper_end(tmp_path):
    from alkappa.campaign import (
        CampaignStatus,
        estimate_time_left,
        format_status,
        gk_runs_beyond_plan,
    )

    results = tmp_path / "results"
    gk = {"runs": 3, "max_runs": 10, "temperatures": ["300", "600"]}
    budgets = {"A": {**gk, "directories": ["greenkubo", "greenkubo_2x2x2"]}}
    # nothing decided: the plan holds the first 3 runs of each of the 4 productions
    assert gk_runs_beyond_plan(results, budgets) == 4 * 7
    t300 = results / "A/greenkubo/T300"
    write_json(t300 / "round_0.json", {"stop": False, "runs": [0, 1, 2], "next_runs": [3, 4]})
    assert gk_runs_beyond_plan(results, budgets) == 3 * 7 + 5
    write_json(t300 / "round_1.json", {"stop": True, "runs": [0, 1, 2, 3, 4], "next_runs": []})
    (results / "A/greenkubo/T600").mkdir(parents=True)
    write_json(results / "A/greenkubo/T600/production.json", {})
    assert gk_runs_beyond_plan(results, budgets) == 2 * 7
    assert gk_runs_beyond_plan(results, {"A": {**budgets["A"], "max_runs": None}}) == 0
    # the upper end: those runs at the typical duration of a run, spread over the cores
    status = CampaignStatus(results, [], locked=False, alive=False, running=[], rule_seconds={})
    estimate = estimate_time_left(
        status, {"gk_run": 2}, cores=2, now=0.0, priors={"gk_run": 60.0}, gk_runs_left=14
    )
    assert estimate.wall_seconds == 60.0
    assert estimate.wall_seconds_max == 60.0 + 14 * 60.0 / 2
    text = format_status(status, estimate)
    assert "up to 14 more NVE run(s) of 1 min 00 s job time each" in text


def test_unlock_removes_only_a_stale_lock(tmp_path, capsys):
    import subprocess
    import sys

    from alkappa.cli import main

    locks = tmp_path / ".snakemake/locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("")
    # a process that looks like Snakemake, running in that directory: the lock is not stale
    fake = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "snakemake"], cwd=tmp_path
    )
    try:
        # until the child has exec'd, /proc shows the forked test process (a race under load)
        cmdline = Path(f"/proc/{fake.pid}/cmdline")
        for _ in range(200):
            if b"snakemake" in cmdline.read_bytes():
                break
            time.sleep(0.05)
        assert main(["unlock", "--workdir", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert f"pid {fake.pid}" in err and len(err.strip().splitlines()) == 1
        assert (locks / "0.input.lock").exists()
    finally:
        fake.kill()
        fake.wait()
    assert main(["unlock", "--workdir", str(tmp_path)]) == 0
    assert not list(locks.iterdir())


SLOW_SNAKEFILE = """
rule all:
    input: "a.txt", "b.txt"

rule slow:
    output: "{name}.txt"
    shell: "sleep 120 && touch {output}"
"""


def _start(command, cwd, ignore_sigint=False):
    """Start ``command`` as a background start from a script would: SIGINT ignored or not."""
    import signal
    import subprocess

    def ignore():
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=ignore if ignore_sigint else None,
    )


def _wait_for_jobs(workdir, n=2, timeout=60.0):
    """Until Snakemake has started ``n`` jobs (their ``sleep`` processes exist)."""
    import time
    from pathlib import Path

    deadline = time.time() + timeout
    while time.time() < deadline:
        sleeps = 0
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if (proc / "cwd").resolve() == workdir and b"sleep\x00120" in (
                    proc / "cmdline"
                ).read_bytes():
                    sleeps += 1
            except OSError:
                continue
        if sleeps >= n:
            return
        time.sleep(0.2)
    raise AssertionError("Snakemake did not start its jobs")


def _sleeps_left(workdir):
    from pathlib import Path

    left = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "cwd").resolve() == workdir and b"sleep" in (proc / "cmdline").read_bytes():
                left.append(int(proc.name))
        except OSError:
            continue
    return left


@pytest.mark.parametrize(
    ("signum", "ignore_sigint"), [("SIGTERM", False), ("SIGTERM", True), ("SIGINT", False)]
)
def test_a_signal_to_alkappa_run_stops_snakemake_and_its_jobs_without_a_lock(
    tmp_path, signum, ignore_sigint
):
    """SIGTERM (what `kill` and a batch system send) or SIGINT (Ctrl-C) to `alkappa run`,
    started in the background (SIGINT ignored, as `make run &` does) or not: Snakemake and its
    running jobs stop within seconds, not after the jobs' two minutes, and no lock is left."""
    import signal
    import sys
    import time
    from pathlib import Path

    (tmp_path / "Snakefile").write_text(SLOW_SNAKEFILE)
    alkappa = str(Path(sys.executable).parent / "alkappa")
    run = _start([alkappa, "run", "--cores", "2"], tmp_path.resolve(), ignore_sigint)
    _wait_for_jobs(tmp_path.resolve())
    start = time.monotonic()
    run.send_signal(getattr(signal, signum))
    _, err = run.communicate(timeout=90)
    assert time.monotonic() - start < 30
    assert run.returncode != 0 and "stopped" in err
    assert not _sleeps_left(tmp_path.resolve()), "a job outlived the stop"
    assert not list((tmp_path / ".snakemake/locks").glob("*"))
    assert not (tmp_path / "a.txt").exists()


def test_alkappa_stop_stops_a_plain_background_snakemake_and_unlocks(tmp_path, capsys):
    """A Snakemake started without `alkappa run`, in the background (SIGINT ignored: Ctrl-C's
    signal cannot stop it), is stopped by `alkappa stop` after its grace, and unlocked."""
    import sys
    from pathlib import Path

    from alkappa.cli import main

    (tmp_path / "Snakefile").write_text(SLOW_SNAKEFILE)
    snakemake = str(Path(sys.executable).parent / "snakemake")
    run = _start([snakemake, "--cores", "2"], tmp_path.resolve(), ignore_sigint=True)
    _wait_for_jobs(tmp_path.resolve())
    assert list((tmp_path / ".snakemake/locks").glob("*")), "Snakemake holds a lock"
    assert main(["stop", "--workdir", str(tmp_path), "--grace", "3"]) == 0
    assert f"pid {run.pid}" in capsys.readouterr().out
    run.wait(timeout=30)
    assert not _sleeps_left(tmp_path.resolve()), "a job outlived the stop"
    assert not list((tmp_path / ".snakemake/locks").glob("*"))
    assert main(["stop", "--workdir", str(tmp_path)]) == 0
    assert "no Snakemake runs" in capsys.readouterr().out


def test_a_run_prints_its_status_line_as_it_goes(tmp_path, capfd):
    from alkappa.campaign import run_snakemake

    (tmp_path / "Snakefile").write_text(SLOW_SNAKEFILE.replace("sleep 120", "sleep 3"))
    lines = iter(range(1000))
    rc = run_snakemake(
        ["--cores", "2"], tmp_path, report=lambda: f"line {next(lines)}", report_every=0.5
    )
    assert rc == 0 and (tmp_path / "a.txt").exists()
    out = capfd.readouterr().out
    assert "alkappa status: line 0" in out and "alkappa status: line 2" in out


def test_training_progress_from_the_trainers_epochs_and_its_time_cap(tmp_path):
    import os

    from alkappa.campaign._status import training_progress

    work = tmp_path / "work"
    assert training_progress(work) is None
    (work / "csv/version_0").mkdir(parents=True)
    (work / "config.yaml").write_text("trainer:\n  max_epochs: 100\n  max_time: '00:00:03:00'\n")
    os.utime(work / "config.yaml", (1000.0, 1000.0))  # training started at t = 1000 s
    rows = ["epoch,step,val_loss"] + [f"{e},{e},0.1" for e in range(10)]
    (work / "csv/version_0/metrics.csv").write_text("\n".join(rows) + "\n")
    # 10 epochs in 30 s: 90 epochs left take 270 s, but the 3-minute cap leaves 150 s
    assert training_progress(work, now=1030.0) == "epoch 10/100, 02:30 left"
    # 10 epochs in 5 s: 45 s at this pace, within the cap
    assert training_progress(work, now=1005.0) == "epoch 10/100, 00:45 left"
