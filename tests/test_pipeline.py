"""The Snakemake pipeline end to end: config/test.yaml, bad configs, an outside plugin, lint."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import yaml

from alkappa.io import read_dataset, read_json, read_trajectory
from alkappa.labelling import count_oracle_calls

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def snakemake(*args: str, env: dict[str, str] | None = None, timeout: int = 900):
    return subprocess.run(
        [SNAKEMAKE, "--cores", "2", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def test_campaign(tmp_path_factory):
    """config/test.yaml run once through Snakemake into a temporary results directory (into
    $ALKAPPA_TEST_CAMPAIGN/results if set: .ci/run keeps it as the SLURM test's local run)."""
    keep = os.environ.get("ALKAPPA_TEST_CAMPAIGN")
    results = (Path(keep) if keep else tmp_path_factory.mktemp("campaign")) / "results"
    results.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    cfg["results"] = str(results)
    cfgfile = results.parent / "test.yaml"
    cfgfile.write_text(yaml.safe_dump(cfg))
    proc = snakemake("--configfile", str(cfgfile))
    assert proc.returncode == 0, proc.stderr[-5000:]
    return results / "Cu", proc


@pytest.mark.slow
def test_at_least_two_iterations_and_a_decision(test_campaign):
    out, _ = test_campaign
    with open(out / "al/summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 2
    assert rows[-1]["decision"] in {"converged", "stopped"}
    assert all(r["decision"] == "continue" for r in rows[:-1])
    last = len(rows) - 1
    decision = read_json(out / f"al/iter_{last}/decision.json")
    assert decision["stop"] and "reason" in decision
    assert (out / "al/learning_curve.png").stat().st_size > 10_000
    assert (out / "al/learning_curve_cost.png").stat().st_size > 10_000
    assert (out / "al/calibration.png").stat().st_size > 10_000
    for r in rows:
        assert 0.0 <= float(r["reliability"]) <= 1.0
        assert -1.0 <= float(r["spearman_force_atom"]) <= 1.0
        assert 0.0 <= float(r["miscalibration_area_force_atom"]) <= 0.5


@pytest.mark.slow
def test_phonons_conductivity_and_anharmonicity_outputs(test_campaign):
    import xarray as xr

    from alkappa.labelling import count_oracle_calls

    out, _ = test_campaign
    phonons = read_json(out / "phonons/comparison.json")
    assert set(phonons) == {"mlip", "oracle", "mlip_vs_oracle"}
    assert phonons["mlip_vs_oracle"]["rmse"] >= 0.0
    assert phonons["mlip_vs_oracle"]["n_qpoints"] > 0
    kappa = read_json(out / "conductivity/comparison.json")
    # the test config's `oracle: auto` asks for the oracle's fc3 (30 supercells <= 100)
    assert set(kappa) == {"mlip", "oracle", "mlip_vs_oracle"}
    for method in ("mlip", "oracle"):
        with xr.open_dataset(out / f"conductivity/{method}/kappa.nc") as ds:
            assert list(ds["temperature"].values) == [300.0, 600.0]
            assert (ds["kappa_rta_average"].values > 0).all()
            assert {"gamma", "tau", "frequency", "group_velocity", "weight"} <= set(ds)
        assert list((out / f"conductivity/{method}").glob("kappa-m444*.hdf5"))
        convergence = read_json(out / f"conductivity/{method}/mesh_convergence.json")
        assert convergence["meshes"] == [[2, 2, 2], [4, 4, 4]]
        assert len(convergence["kappa_rta_W_per_mK"]) == 2
    # every oracle single point of the force constants is in the ledger, under its purpose
    counts = count_oracle_calls(out / "oracle")
    assert counts["fc3"] == read_json(out / "conductivity/oracle/fc3.json")["n_supercells"]
    # the oracle phonons' displaced supercells are those the harmonic D_0 sampling labels
    # (purpose fc2, same displacement): whichever job ran first paid for them, once
    n_phonons = read_json(out / "phonons/oracle/phonons.json")["n_supercells"]
    assert counts.get("phonons", 0) in (0, n_phonons)
    assert counts.get("phonons", 0) + counts.get("fc2", 0) >= n_phonons
    anharmonic = read_json(out / "phonons/anharmonicity.json")
    assert {"MLIP 300 K", "MLIP 900 K"} <= set(anharmonic)
    assert all(anharmonic[k]["sigma_A"] > 0 for k in ("MLIP 300 K", "MLIP 900 K"))
    for figure in (
        "phonons/bands.png",
        "phonons/anharmonicity.png",
        "conductivity/kappa.png",
        "conductivity/lifetimes.png",
        "al/kappa_curve.png",
    ):
        assert (out / figure).stat().st_size > 10_000
    # which modes carry the MLIP's kappa difference: the breakdown sums to both kappas
    modes = kappa["mlip_vs_oracle"]["modes"]
    assert [b["temperature"] for b in modes] == [300.0, 600.0]
    for b, k_mlip in zip(modes, kappa["mlip"]["kappa_rta_W_per_mK"], strict=True):
        assert b["other"] == pytest.approx(k_mlip, rel=1e-6)
        assert sum(w["other"] for w in b["windows"]) == pytest.approx(k_mlip, rel=1e-6)
    # the kappa curve along the loop (conductivity.track_iterations): one row per iteration
    # of each loop; the last AL iteration's ensemble is the final model, so its kappa is the
    # final MLIP's, computed by other jobs (fc3, kappa) from the packaged model
    curve = list(csv.DictReader((out / "al/kappa_curve.csv").open()))
    al_rows = [r for r in curve if r["kind"] == "al"]
    n_iterations = len(list(csv.DictReader((out / "al/summary.csv").open())))
    assert [int(r["iteration"]) for r in al_rows] == list(range(n_iterations))
    assert {r["kind"] for r in curve} == {"al"}  # no reference data here: no random baseline
    assert all(float(r["ratio"]) > 0 and float(r["temperature_K"]) == 300.0 for r in curve)
    assert float(al_rows[-1]["kappa_W_per_mK"]) == pytest.approx(
        kappa["mlip"]["kappa_rta_300K"], rel=1e-6
    )
    assert float(al_rows[0]["kappa_oracle_W_per_mK"]) == pytest.approx(
        kappa["oracle"]["kappa_rta_300K"], rel=1e-9
    )


@pytest.mark.slow
def test_green_kubo_outputs(test_campaign):
    import math

    import xarray as xr

    from alkappa.io.trajectory import read_trajectory

    out, _ = test_campaign
    settings = yaml.safe_load((ROOT / "config/test.yaml").read_text())["greenkubo"]
    frames = settings["steps"] // settings["sample_interval"] + 1
    t300 = out / "greenkubo/T300"
    assert (t300 / "equilibration.nc").is_file()
    # production went on until the target error or max_runs, or stopped at once because the
    # autocorrelation never crossed zero (runs too short), and says which
    record = read_json(t300 / "production.json")
    runs = record["n_runs"]
    # one history entry per round (one checkpoint job each), the runs growing
    rounds = [h["n_runs"] for h in record["history"]]
    assert len(record["runs"]) == runs and rounds[0] == settings["runs"] and rounds[-1] == runs
    assert rounds == sorted(set(rounds)) and [h["round"] for h in record["history"]] == list(
        range(len(rounds))
    )
    for r, entry in enumerate(record["history"]):
        decision = read_json(t300 / f"round_{r}.json")
        assert decision["n_runs"] == entry["n_runs"] and decision["stop"] == (r == len(rounds) - 1)
    last = record["history"][-1]
    if record["stopped_by"] == "target_error":
        assert record["relative_error"] <= settings["target_error"] and last["cutoff_found"]
    elif record["stopped_by"] == "runs_too_short":
        assert last["cutoff_found"] is False
        assert all(h.get("cutoff_found") is not False for h in record["history"][:-1])
    else:
        assert record["stopped_by"] == "max_runs" and runs == settings["max_runs"]
        assert record["relative_error"] > settings["target_error"]
        assert last.get("cutoff_found") is not False
    # the test model is crude: a run may blow up (recorded, left out of the analysis)
    usable = [r for r in record["runs"] if not r["blew_up"]]
    assert len(usable) >= settings["runs"] - 1
    for k, run in enumerate(record["runs"]):
        ds = read_trajectory(t300 / f"run_{k:02d}.nc")
        assert ds["heat_flux"].shape == (run["frames"], 3)
        assert run["frames"] == frames or (run["blew_up"] and run["reason"])
        assert ds.attrs["heat_flux_method"] == "unfolded" and int(ds.attrs["completed"]) == 1
    # progress bars go to each run's own log, the per-run drift to the record's too
    assert "NVE 1 300 K" in (out / "logs/greenkubo/T300/run_00.log").read_text()
    log = (out / "logs/greenkubo/production_T300.log").read_text()
    assert "run 0:" in log and f"run {runs - 1}:" in log
    # the budget counts the seconds of all jobs: equilibration, chains and runs
    assert record["wall_seconds"] >= sum(r["seconds"] for r in record["runs"]) > 0
    with xr.open_dataset(t300 / "greenkubo.nc") as ds:
        kappa, error = float(ds["kappa_scalar"]), float(ds["kappa_scalar_error"])
        assert int(ds.attrs["n_runs"]) == len(usable) and ds["kappa"].shape == (3, 3)
    assert math.isfinite(kappa) and math.isfinite(error) and error > 0
    summary = read_json(out / "greenkubo/summary.json")
    row = summary["temperatures"]["300"]
    assert row["kappa_W_per_mK"] == kappa and row["kappa_error_W_per_mK"] == error
    assert row["stopped_by"] == record["stopped_by"] == summary["stopped_by"]["300"]
    assert row["relative_error"] == pytest.approx(record["relative_error"], rel=1e-9)
    assert row["converged"] == summary["converged"] == (record["stopped_by"] == "target_error")
    # next to phono3py's RTA kappa at the same temperature, of the MLIP and the oracle
    assert set(row["phono3py"]) == {"mlip", "oracle"}
    for entry in row["phono3py"].values():
        assert entry["how"] == "exact" and entry["kappa_rta_W_per_mK"] > 0
        assert entry["gk_over_rta"] == kappa / entry["kappa_rta_W_per_mK"]
        # and with classical statistics, the like-with-like partner of classical MD
        assert entry["kappa_rta_classical_W_per_mK"] > 0
    # the cepstral estimate of the same integral, and the finite-size correction or the
    # one-line reason it could not be made
    assert math.isfinite(row["kappa_cepstral_W_per_mK"]) or row["kappa_cepstral_W_per_mK"] is None
    fs = row["finite_size"]
    assert ("kappa_corrected_W_per_mK" in fs) != ("failed" in fs)
    with xr.open_dataset(t300 / "finite_size.nc") as ds:
        assert "kappa_corrected" in ds
    drift = row["drift"]
    assert len(drift["runs"]) == runs
    for run in drift["runs"]:
        assert run["blew_up"] or math.isfinite(run["drift_eV_per_atom_per_ps"])
        assert run["blew_up"] or run["max_deviation_eV_per_atom"] >= 0
        assert isinstance(run["flagged"], bool)
    assert summary["drift_flagged"] == drift["flagged"] == any(r["flagged"] for r in drift["runs"])
    # MD lifetimes at all 8 q-points of the 2x1x1 cubic cell, all on phono3py's 4x4x4 mesh
    lifetimes = read_json(t300 / "lifetimes.json")
    assert lifetimes["n_qpoints"] == lifetimes["n_matched_qpoints"] == 8
    assert lifetimes["n_modes_compared"] > 0
    assert row["lifetimes"]["median_ratio_md_over_phono3py"] == lifetimes["median_ratio"] > 0
    with xr.open_dataset(t300 / "lifetimes.nc") as ds:
        assert {"tau", "tau_phono3py", "frequency", "energy_acf"} <= set(ds)
    for figure in (
        "T300/greenkubo.png",
        "T300/lifetimes.png",
        "T300/convergence.png",
        "T300/finite_size.png",
        "kappa_T.png",
    ):
        assert (out / "greenkubo" / figure).stat().st_size > 10_000


@pytest.mark.slow
def test_runs_are_jobs_and_a_lost_run_is_redone_alone(test_campaign, tmp_path):
    """The NVE runs of a round are separate jobs (a dry run plans one per lost run); a run
    lost to a kill is redone alone: the equilibration and the other runs are kept, and the
    redone run is the one lost (same snapshot, same seed)."""
    import shutil

    out, _ = test_campaign
    copy = tmp_path / "results"
    shutil.copytree(out.parent, copy)  # mtimes kept: nothing upstream reruns
    cfg = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    cfg["results"] = str(copy)
    cfgfile = tmp_path / "kill.yaml"
    cfgfile.write_text(yaml.safe_dump(cfg))
    t300 = copy / "Cu/greenkubo/T300"
    before = read_json(t300 / "production.json")
    names = ["equilibration.nc", *(f"run_{k:02d}.nc" for k in range(before["n_runs"]))]
    kept = {name: (t300 / name).read_bytes() for name in names}
    target = str(t300 / "production.json")
    (t300 / "production.json").unlink()  # the jobs died before the record ...
    (t300 / "run_00.nc").unlink()  # ... and with them both runs of round 0
    (t300 / "run_01.nc").unlink()
    proc = snakemake(target, "--configfile", str(cfgfile), "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = {
        line.split()[0]: int(line.split()[1])
        for line in proc.stdout.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert planned["gk_run"] >= 2 and "gk_equilibrate" not in planned, planned
    (t300 / "run_00.nc").write_bytes(kept["run_00.nc"])  # only the second run was lost
    proc = snakemake(target, "--configfile", str(cfgfile))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in names:
        if name != "run_01.nc":
            assert (t300 / name).read_bytes() == kept[name], name
    lost = tmp_path / "lost.nc"
    lost.write_bytes(kept["run_01.nc"])
    np.testing.assert_array_equal(
        read_trajectory(t300 / "run_01.nc")["heat_flux"].values,
        read_trajectory(lost)["heat_flux"].values,
    )
    logs = copy / "Cu/logs/greenkubo/T300"
    lines = [x for x in (logs / "run_01.log").read_text().splitlines() if x.startswith("run 1:")]
    # (Snakemake starts a job's log afresh) computed again, not reused
    assert lines and "reused" not in lines[-1], lines
    # runs of later rounds wait for the redone round's decision; they are reused, not redone
    for k in range(2, before["n_runs"]):
        text = (logs / f"run_{k:02d}.log").read_text()
        last = [x for x in text.splitlines() if x.startswith(f"run {k}:")]
        assert last[-1].endswith("(reused)"), last[-1]
    after = read_json(t300 / "production.json")
    assert after["n_runs"] == before["n_runs"] and after["stopped_by"] == before["stopped_by"]
    assert after["history"][-1]["kappa"] == pytest.approx(before["history"][-1]["kappa"])


@pytest.mark.slow
def test_oracle_calls_equal_dataset_growth(test_campaign):
    out, _ = test_campaign
    with open(out / "al/summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for prev, nxt in pairwise(rows):
        growth = int(nxt["dataset_size"]) - int(prev["dataset_size"])
        assert int(prev["oracle_calls"]) - int(prev["oracle_failures"]) == growth
        assert int(prev["oracle_calls"]) == int(prev["frames_selected"])
    # the labelled frames carry their provenance
    final = read_dataset(out / f"al/iter_{len(rows) - 1}/dataset.extxyz")
    al_frames = [f for f in final if f.info.get("source") == "al"]
    assert len(al_frames) == sum(int(r["oracle_calls"]) for r in rows)
    for f in al_frames:
        assert {"iteration", "trajectory", "time", "temperature", "fidelity", "oracle"} <= set(
            f.info
        )


@pytest.mark.slow
def test_final_model_loads_in_one_line(test_campaign):
    import alkappa

    out, _ = test_campaign
    calc = alkappa.load_model(out / "model")
    atoms = read_dataset(out / "structure/relaxed.extxyz")[0]
    atoms.calc = calc
    assert atoms.get_forces().shape == (len(atoms), 3)
    assert "forces_members" in calc.results


@pytest.mark.slow
def test_rerun_does_nothing(test_campaign):
    out, _ = test_campaign
    cfgfile = out.parent.parent / "test.yaml"
    proc = snakemake("--configfile", str(cfgfile), "-n")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_size_check_cell_plans_only_its_green_kubo_jobs(test_campaign):
    """Adding greenkubo.size_check to a finished campaign plans the Green-Kubo stage in the new
    cell (its own MLIP phonons) and a new main summary, nothing upstream."""
    out, _ = test_campaign
    cfg = yaml.safe_load((out.parent.parent / "test.yaml").read_text())
    cfg["greenkubo"]["size_check"] = [[2, 2, 1]]
    cfgfile = out.parent.parent / "size_check.yaml"
    cfgfile.write_text(yaml.safe_dump(cfg))
    proc = snakemake("--configfile", str(cfgfile), "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = {
        line.split()[0]: int(line.split()[1])
        for line in proc.stdout.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    rules = ("gk_cell", "gk_equilibrate", "gk_round", "production", "green_kubo")
    for rule in (*rules, "mode_lifetimes", "finite_size"):
        assert planned.get(rule) == 1, planned
    # round 0's runs, one job each (later rounds are planned by its checkpoint)
    assert planned["gk_run"] == cfg["greenkubo"]["runs"]
    assert planned["greenkubo_summary"] == 2
    assert not {"train_member", "phonons", "kappa", "label"} & set(planned)


@pytest.mark.slow
def test_campaign_summary_collects_the_material(test_campaign):
    import math

    out, _ = test_campaign
    with open(out.parent / "summary.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    with open(out / "al/summary.csv", newline="") as fh:
        al = list(csv.DictReader(fh))
    assert row["material"] == "Cu" and int(float(row["al_iterations"])) == len(al)
    assert float(row["oracle_calls"]) == float(al[-1]["oracle_calls_cumulative"])
    assert float(row["force_rmse_eV_per_A"]) == float(al[-1]["force_rmse_eV_per_A"])
    gk = read_json(out / "greenkubo/summary.json")["temperatures"]["300"]
    assert float(row["kappa_GK_W_per_mK"]) == gk["kappa_W_per_mK"]
    kappa = read_json(out / "conductivity/comparison.json")
    assert float(row["kappa_phono3py_oracle_W_per_mK"]) == kappa["oracle"]["kappa_rta_300K"]
    sigma = read_json(out / "phonons/anharmonicity.json")["MLIP 300 K"]["sigma_A"]
    assert float(row["sigma_A"]) == sigma
    # no events stage in this workflow: NaN, not zero
    assert math.isnan(float(row["missing_events"]))
    assert (out.parent / "summary.png").stat().st_size > 10_000


@pytest.mark.slow
def test_report_contains_every_figure_and_the_summary_tables(test_campaign, tmp_path):
    import zipfile

    out, _ = test_campaign
    results = out.parent
    cfgfile = results.parent / "test.yaml"
    figures = sorted(str(p.relative_to(results)) for p in results.rglob("*.png"))
    assert len(figures) >= 10
    # the `figures` target asks for every figure the run made
    proc = snakemake("figures", "-n", "--forcerun", "figures", "--configfile", str(cfgfile))
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.split("rule figures:")[1].splitlines() if "input:" in x)
    declared = sorted(
        str(Path(p.strip()).relative_to(results)) for p in line.split("input:")[1].split(",")
    )
    assert declared == figures
    # the report holds each of them once, and the summary tables
    report = tmp_path / "report.zip"
    proc = snakemake("--configfile", str(cfgfile), "--report", str(report))
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = zipfile.ZipFile(report).namelist()
    in_report = [Path(n).name for n in names if n.endswith(".png")]
    assert sorted(in_report) == sorted(Path(f).name for f in figures)
    assert sum(Path(n).name == "summary.csv" for n in names) == 2  # campaign and AL loop
    assert "report/report.html" in names


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"explore": {"temperatur": [300]}}, "unknown key 'temperatur' in explore"),
        ({"ensemble": {"size": "four"}}, "ensemble.size: 'four' is not of type 'integer'"),
        (
            {"baselines": {"aimd": {"enabled": True, "budget": "lots"}}},
            "baselines.aimd.budget: 'lots' is not allowed; expected al",
        ),
        (
            {
                "materials": {
                    "CuI": {
                        "structure": {
                            "build": {"name": "CuI", "crystalstructure": "zincblende", "a": 6.05}
                        }
                    }
                }
            },
            "does not support element(s) I",
        ),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, change, message):
    cfg = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    cfg.update(change)
    cfg["results"] = str(tmp_path / "results")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake("--configfile", str(tmp_path / "bad.yaml"), timeout=120)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "alkappa: invalid config" in line]
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "results").exists()


TOY_PLUGIN = '''
"""A third-party oracle: a Morse potential, registered only through its entry point.

With ``call_log`` set, every single point appends one line (a hash of the structure) to that
file, so a test can see exactly which calculations were made, across processes. While the file
``sick_file`` exists the oracle is flaky, deterministically per structure: one in five
structures fails for good ("SCF not converged", logged as refused:<hash>), another one in five
fails at the first attempt only ("node lost", logged as lost:<hash>).
"""
import hashlib
import os
import time

from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT
from ase.calculators.morse import MorsePotential
from alkappa.oracles import Oracle


class _LoggedMorse(MorsePotential):
    def __init__(self, call_log, delay, sick_file=None, **kwargs):
        super().__init__(**kwargs)
        self.call_log, self.delay, self.sick_file = call_log, delay, sick_file

    def _log(self, line):
        if self.call_log:
            with open(self.call_log, "a") as fh:
                fh.write(line + "\\n")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        digest = hashlib.sha1(atoms.positions.round(6).tobytes()).hexdigest()
        if self.sick_file and os.path.exists(self.sick_file):
            if int(digest, 16) % 5 == 0:
                self._log("refused:" + digest)
                raise RuntimeError("SCF not converged")
            lost = "lost:" + digest
            seen = open(self.call_log).read().split() if os.path.exists(self.call_log) else []
            if int(digest, 16) % 5 == 1 and lost not in seen:
                self._log(lost)
                raise OSError("node lost")
        super().calculate(atoms, properties, system_changes)
        time.sleep(self.delay)  # an oracle takes time: room to kill the run mid-way
        self._log(digest)


class ToyMorseOracle(Oracle):
    default_fidelity = "toy-morse"

    def make_calculator(self):
        return _LoggedMorse(
            self.options.get("call_log"), self.options.get("delay", 0.0),
            self.options.get("sick_file"),
            epsilon=self.options.get("epsilon", 0.4), r0=2.55, rho0=6.0,
        )


class _LoggedEMT(EMT):
    def __init__(self, call_log):
        super().__init__()
        self.call_log = call_log

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        with open(self.call_log, "a") as fh:
            fh.write(hashlib.sha1(atoms.positions.round(6).tobytes()).hexdigest() + "\\n")


class ToyEMTOracle(Oracle):
    """ASE's EMT with every single point logged to ``call_log``."""

    def make_calculator(self):
        return _LoggedEMT(self.options["call_log"])
'''


def install_toy_plugin(site: Path) -> None:
    """Install a package the way pip would leave it: a module plus a dist-info folder."""
    site.mkdir(parents=True)
    (site / "toy_alkappa_plugin.py").write_text(TOY_PLUGIN)
    info = site / "toy_alkappa_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: toy-alkappa-plugin\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[alkappa.oracles]\ntoy-morse = toy_alkappa_plugin:ToyMorseOracle\n"
        "toy-emt = toy_alkappa_plugin:ToyEMTOracle\n"
    )


@pytest.mark.slow
def test_outside_plugin_is_used_in_a_run(tmp_path):
    site = tmp_path / "site"
    install_toy_plugin(site)
    cfg = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    cfg["oracle"] = {"name": "toy-morse", "epsilon": 0.35}
    cfg["results"] = str(tmp_path / "results")
    (tmp_path / "plugin.yaml").write_text(yaml.safe_dump(cfg))
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    target = str(tmp_path / "results/Cu/data/initial.extxyz")
    proc = snakemake(target, "--configfile", str(tmp_path / "plugin.yaml"), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frames = read_dataset(target)
    assert frames and all(f.info["fidelity"] == "toy-morse" for f in frames)
    # the labels are the plugin's Morse forces, not anything built in
    from ase.calculators.morse import MorsePotential

    ref = frames[0].copy()
    ref.calc = MorsePotential(epsilon=0.35, r0=2.55, rho0=6.0)
    assert abs(ref.get_potential_energy() - frames[0].get_potential_energy()) < 1e-8


def test_lint_is_clean():
    proc = subprocess.run(
        [SNAKEMAKE, "--lint", "--configfile", "config/test.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def test_snakefmt_clean():
    snakefmt = str(Path(sys.executable).parent / "snakefmt")
    proc = subprocess.run(
        [snakefmt, "--check", "Snakefile", "workflow/rules"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_stop_during_labelling_then_a_downstream_target_repeats_no_oracle_call(
    test_campaign, tmp_path
):
    """SIGTERM to ``alkappa run`` (what ``make run`` runs) while the frames of AL iteration 1
    are being labelled stops it within seconds and leaves no lock; the rerun, asked for a
    target downstream of the interrupted iteration (the final model), completes the first time
    and calls the oracle only for structures it never finished.

    Iteration 1, not 0: on a resumed run Snakemake marks as done only the checkpoints it meets
    on the way; in iteration 0 its first graph holds them all. To save two iterations of work
    this continues a copy of the finished test campaign: iteration 1 selects again, with
    settings that take six frames, and the campaign goes on to a third iteration. Its labels
    come from EMT (as the campaign's) with every call logged."""
    import shutil
    import signal
    import time

    material, _ = test_campaign
    results = tmp_path / "results"
    shutil.copytree(material.parent, results, symlinks=True)  # copy2: times kept
    cu = results / "Cu"
    for name in ("selection.csv", "candidates.extxyz", "decision.json"):
        (cu / "al/iter_1" / name).unlink()
    shutil.rmtree(cu / "model")
    site = tmp_path / "site"
    install_toy_plugin(site)
    calls = tmp_path / "calls.log"
    cfg = yaml.safe_load((material.parent.parent / "test.yaml").read_text())
    cfg["results"] = str(results)
    cfg["oracle"] = {"name": "toy-emt", "call_log": str(calls)}
    cfg["select"]["max_frames"] = 6
    cfg["select"]["a"] = -5.0  # accept (almost) everything: enough frames to label
    cfg["convergence"].update(min_iterations=3, max_iterations=3)
    cfgfile = tmp_path / "stop.yaml"
    cfgfile.write_text(yaml.safe_dump(cfg))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    alkappa = str(Path(sys.executable).parent / "alkappa")
    final = str(cu / "model/ensemble.json")
    labels = cu / "al/iter_1/labels"
    proc = subprocess.Popen(
        [alkappa, "run", final, "--cores", "1", "--configfile", str(cfgfile)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 600
    while time.time() < deadline and len(list(labels.glob("frame_*.extxyz"))) < 2:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before labelling began: {proc.stderr.read()[-3000:]}")
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stopped_at = time.time()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert time.time() - stopped_at < 30, "the stop took longer than Snakemake's clean stop"
    assert "stopped" in stderr
    locks = ROOT / ".snakemake" / "locks"
    ours = [p for p in locks.glob("*") if str(tmp_path) in p.read_text()] if locks.is_dir() else []
    assert not ours, "the stop left a lock"
    done_before = len(list(labels.glob("frame_*.extxyz")))
    assert 2 <= done_before < 6, "the stop did not land during labelling"
    before = calls.read_text().split()
    # resume with the same target, downstream of the interrupted iteration
    rerun = subprocess.run(
        [alkappa, "run", final, "--cores", "2", "--configfile", str(cfgfile)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = calls.read_text().split()
    assert len(after) > len(before)  # the missing frames were labelled now
    assert len(after) == len(set(after)) == 6, "an oracle call was repeated"
    assert read_json(cu / "al/iter_2/merge.json")["added"] == 6
    assert read_json(final)["iteration"] == 2


#: the physical gate and the calibrated selection as tests/test_baselines.py runs them (one
#: campaign of the test config checks both and the baselines: a second AL loop costs minutes)
GATE_AND_CALIBRATION = {
    "gate": {"enabled": True, "multiple": 1.9, "action": "drop"},
    "calibration": {"select_on": "calibrated", "method": "isotonic"},
}


def assert_gate_and_calibration(out):
    """The test campaign's AL loop with the physical gate and a calibrated selection: gated
    labels are recorded and trained with their weights, the selection's U is the calibrated
    one (the tiny 4-epoch model explores far above the thermal range: its labels get gated)."""
    from alkappa.al.recalibration import CalibrationMap

    limits = read_json(out / "al/gate.json")
    assert limits["limits_eV_per_atom"]["300"] == pytest.approx(1.9 * 1.5 * 8.617333e-5 * 300)
    merge = read_json(out / "al/iter_1/merge.json")
    gated = {g["file"] for g in merge["gated"]}
    weights = [f.info.get("label_weight") for f in read_dataset(out / "al/iter_1/dataset.extxyz")]
    assert weights.count(0.0) == len(gated) and weights.count(None) == len(weights) - len(gated)
    member = read_json(out / "al/iter_1/ensemble/member_0/member.json")
    split = set(member["train_indices"]) | set(member["validation_indices"])
    has_gated = any(weights[i] == 0.0 for i in split)
    assert member["label_weights"] is has_gated
    for it in (0, 1):
        metrics = read_json(out / f"al/iter_{it}/test_metrics.json")
        rec = metrics["recalibration"]
        assert set(rec) >= {"before", "scale", "isotonic"}
        calibrate = CalibrationMap.from_dict(rec["isotonic"]["map"])
        with open(out / f"al/iter_{it}/selection.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        for name in {r["trajectory"] for r in rows}:
            ds = read_trajectory(out / f"al/iter_{it}/explore/{name}.nc")
            raw = ds["uncertainty_force_max"].values
            for r in (r for r in rows if r["trajectory"] == name):
                assert float(r["U"]) == pytest.approx(float(calibrate(raw[int(r["frame"])])))
    with open(out / "al/summary.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    assert float(summary[0]["sigma_scale"]) > 0
    assert int(summary[0]["frames_gated"]) == len(gated)


#: reference MD as tests/test_baselines.py runs it (one campaign of the test config checks the
#: reference data, the random baseline, the events stage, the gate and the other baselines)
REFERENCE_MD = {
    "md": {"temperatures": [900], "steps": 60, "timestep": 4.0, "log_interval": 2},
    "n_test": 6,
    "min_separation": 16.0,
}


def assert_reference_md_gives_the_test_set_and_never_trains_on_it(out):
    """The test set comes from the reference MD and no frame of it is ever trained on; the
    random baseline draws from the pool at AL's sizes and pays for the MD; the events stage
    runs the AL and random models with the reference MD's settings."""
    test = read_dataset(out / "reference/test.extxyz")
    split = read_json(out / "reference/split.json")
    assert len(test) == split["n_test"] == 6
    assert not set(split["test_indices"]) & set(split["pool_indices"])
    times = sorted(f.info["time"] for f in test)
    assert min(b - a for a, b in pairwise(times)) >= 16.0
    # the harmonic test set was not made: reference data replaced it
    assert not (out / "data/test.extxyz").exists()
    metrics = read_json(out / "al/iter_0/test_metrics.json")
    assert metrics["n_frames"] == 6
    # no test frame in any dataset or any member's training set
    keys = {f.positions.round(6).tobytes() for f in test}
    trained = list(out.glob("al/iter_*/dataset.extxyz")) + list(
        out.glob("al/iter_*/ensemble/member_*/train.extxyz")
    )
    trained.append(out / "data/initial.extxyz")
    assert len(trained) > 3
    for path in trained:
        for frame in read_dataset(path):
            assert frame.positions.round(6).tobytes() not in keys, path
    # the random baseline: same sizes as AL, frames from the pool, never a test frame
    random_sets = sorted(out.glob("random/iter_*/dataset.extxyz"))
    assert random_sets
    for path in random_sets:
        it = int(path.parent.name.split("_")[1])
        al_size = len(read_dataset(out / f"al/iter_{it}/dataset.extxyz"))
        frames = read_dataset(path)
        assert len(frames) == al_size
        assert sum(f.info.get("source") == "random" for f in frames) == al_size - 6
        for frame in frames:
            assert frame.positions.round(6).tobytes() not in keys
    with open(out / "al/al_vs_random.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["group"] for r in rows} == {"all"}  # one reference temperature: one panel
    assert all(float(r["random_force_rmse_eV_per_A"]) > 0 for r in rows)
    assert (out / "al/al_vs_random.png").stat().st_size > 10_000
    # the cost accounting: the baseline pays for the reference MD from its first draw, the 6
    # test frames among its single points count as the test set's, AL never pays the pool
    from alkappa.reference_data import count_reference_calls

    md = count_reference_calls(out / "reference")
    assert md == 61  # 60 steps and the first evaluation
    with open(out / "al/oracle_cost.csv", newline="") as fh:
        cost = list(csv.DictReader(fh))
    al = [r for r in cost if r["method"] == "al"]
    drawn = [r for r in cost if r["method"] == "random" and r["iteration"] != "0"]
    assert len(al) == len(drawn) + 1 and drawn
    assert all(int(r["reference_md_calls"]) == 0 for r in al)
    assert all(int(r["reference_md_calls"]) == md - 6 for r in drawn)
    assert all(int(r["test_calls"]) == 6 for r in cost)
    assert all(int(r["untimed_cpu_calls"]) == 0 for r in cost)
    assert all(float(r["total_cpu_seconds"]) > 0 for r in cost)
    assert (out / "al/learning_curve_cost.png").stat().st_size > 10_000
    # event diagnostics (on by default with reference MD): AL model and random baseline MD
    # with the reference MD's settings, compared with it
    diagnosis = read_json(out / "events/diagnosis.json")
    assert {"reference_events", "missing_events", "false_events", "auc"} <= set(diagnosis)
    assert set(diagnosis["models"]) == {"al", "random"}
    for model in ("al", "random"):
        md = read_trajectory(out / f"events/{model}/md_T900.nc")
        ref = read_trajectory(out / "reference/md_T900.nc")
        assert md.attrs["timestep"] == ref.attrs["timestep"]
        assert md.attrs["friction"] == ref.attrs["friction"]
        assert "uncertainty_force_max" in md
    assert (out / "events/timeline.png").stat().st_size > 10_000


@pytest.mark.slow
def test_flaky_oracle_failures_are_listed_and_retried_exactly(tmp_path):
    """A flaky oracle (one structure in five refused for good, one in five lost once) through
    the oracle stages of the test campaign: every refusal is recorded and reported, the lost
    ones are retried at once, and after `alkappa oracle-retry` a run with the oracle healthy
    calls it again for exactly the refused structures, for nothing it had already computed."""
    site = tmp_path / "site"
    install_toy_plugin(site)
    calls, sick = tmp_path / "calls.log", tmp_path / "sick"
    cfg = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    cfg["oracle"] = {
        "name": "toy-morse",
        "epsilon": 0.35,
        "call_log": str(calls),
        "sick_file": str(sick),
        "retries": 1,
        "retry_delay": 0,
    }
    cfg["results"] = str(tmp_path / "results")
    # rattled D_0 (no force constants needed): its refused frames are skipped and listed,
    # while the phonon and fc3 jobs, which need every displaced supercell, stop
    cfg["initial"].update(method="rattle", n_frames=10)
    cfgfile = tmp_path / "flaky.yaml"
    cfgfile.write_text(yaml.safe_dump(cfg))
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    root = tmp_path / "results/Cu"
    targets = [
        str(root / "data/initial.json"),
        str(root / "phonons/oracle/phonons.json"),
        str(root / "conductivity/oracle/fc3.json"),
    ]
    relaxed = snakemake(
        str(root / "structure/relaxed.extxyz"), "--configfile", str(cfgfile), env=env
    )
    assert relaxed.returncode == 0, relaxed.stderr[-3000:]
    n_relax = len(calls.read_text().split())
    sick.touch()
    first = snakemake(*targets, "--keep-going", "--configfile", str(cfgfile), env=env)
    log_a = calls.read_text().split()[n_relax:]
    refused = {x.split(":")[1] for x in log_a if x.startswith("refused:")}
    lost = {x.split(":")[1] for x in log_a if x.startswith("lost:")}
    done_a = {x for x in log_a if ":" not in x}
    assert refused and lost, "the flaky oracle never failed: the test tests nothing"
    assert lost <= done_a  # lost once, retried at once with success
    # every refusal recorded once, never retried within the run
    records = [read_json(p) for p in (root / "oracle").glob("*.failed.json")]
    assert len(records) == len(refused) == sum(x.startswith("refused:") for x in log_a)
    assert all(not r["transient"] and "SCF not converged" in r["error"] for r in records)
    # ... and reported: by the record of the job that went on without it, or by the job that
    # cannot (force constants need every displaced supercell) failing with what to do
    listed = {f["key"] for f in read_json(root / "data/initial.json")["failures"]}
    n_initial = read_json(root / "data/initial.json")["n_initial"]
    assert listed and n_initial == 10 - sum(r["purpose"] == "initial" for r in records)
    displaced = [r for r in records if r["key"] not in listed]
    assert displaced and all(r["purpose"] in {"fc2", "fc3"} for r in displaced)
    assert first.returncode != 0 and "force constants need all" in first.stderr
    # every attempt is in the ledger
    counts = count_oracle_calls(root / "oracle")
    assert sum(counts.values()) == len(log_a)

    retry = subprocess.run(
        [str(Path(sys.executable).parent / "alkappa"), "oracle-retry", str(root)],
        capture_output=True,
        text=True,
    )
    assert retry.returncode == 0 and f"{len(refused)} failed oracle call(s)" in retry.stdout
    assert "initial.json (made without them)" in retry.stdout
    sick.unlink()
    second = snakemake(*targets, "--configfile", str(cfgfile), env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    log_b = calls.read_text().split()[n_relax + len(log_a) :]
    # exactly the refused structures are computed again, each once, nothing else
    assert sorted(log_b) == sorted(refused)
    assert read_json(root / "data/initial.json")["failures"] == []
    assert read_json(root / "data/initial.json")["n_initial"] == 10
    assert (root / "conductivity/oracle/fc3.json").exists()


def test_no_empty_log_or_data_file(test_campaign):
    """Every job's log says something (at least that it finished and what it wrote); no
    placeholder output."""
    material, _ = test_campaign
    empty = [p for p in material.rglob("*") if p.is_file() and p.stat().st_size == 0]
    assert not empty, empty[:10]


def test_status_of_the_finished_campaign(test_campaign, capsys):
    from alkappa.cli import main

    material, _ = test_campaign
    assert main(["status", str(material.parent), "--workdir", str(ROOT)]) == 0
    text = capsys.readouterr().out
    assert "finished after iteration 1: " in text
    calls = count_oracle_calls(material / "oracle")
    assert "oracle calls" in text and f"initial {calls['initial']}" in text
    assert "jobs running" not in text
    finished = int(text.split("finished: ")[1].split(" job")[0])
    assert finished >= 20  # every job of the campaign, timed by Snakemake
    # the time left of a finished campaign, from a dry run: nothing
    config = str(material.parent.parent / "test.yaml")
    assert (
        main(["status", str(material.parent), "--workdir", str(ROOT), "--configfile", config]) == 0
    )
    text = capsys.readouterr().out
    assert "time left: about 0 min 00 s" in text and "0 job(s) planned" in text


@pytest.mark.parametrize(("thresholds_from", "waits"), [("test", True), ("harmonic", False)])
def test_the_first_selection_waits_for_the_reference_md_only_when_it_takes_its_thresholds(
    tmp_path, thresholds_from, waits
):
    """With reference MD the held-out test set comes from it; `select.thresholds_from:
    harmonic` lets the loop's first selection (and so the loop) start without it (a dry run
    of an empty campaign: which jobs iteration 0's selection needs)."""
    cfg = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    cfg["results"] = str(tmp_path / "results")
    cfg["reference"] = {"md": {"temperatures": [900], "steps": 60}, "n_test": 6}
    cfg.setdefault("select", {})["thresholds_from"] = thresholds_from
    cfgfile = tmp_path / "thresholds.yaml"
    cfgfile.write_text(yaml.safe_dump(cfg))
    target = str(tmp_path / "results/Cu/al/iter_0/selection.csv")
    proc = snakemake(target, "--configfile", str(cfgfile), "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = {
        line.split()[0]
        for line in proc.stdout.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert ("reference_md" in planned) is waits, planned
    assert ("evaluate_thresholds" in planned) is not waits, planned
    assert ("harmonic_test_set" in planned) is not waits, planned
    assert "select" in planned
