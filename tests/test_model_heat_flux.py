"""The heat flux as part of the model contract: a model plugin provides its own flux
(:meth:`alkappa.models.Model.heat_flux_method`) or says it cannot, and the Green-Kubo steps
ask the plugin, not NequIP. The test plugin is the Lennard-Jones model of alkappa.testing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import xarray as xr
from ase.build import bulk
from ase.calculators.lj import LennardJones
from test_gk_production import SMALL, crystal
from test_heat_flux import EPSILON, RC, RO, SIGMA, analytic_pair_flux, lj_crystal, rel_close

from alkappa._plugins import _runtime, register
from alkappa.config import ConfigError, load_config
from alkappa.greenkubo import VirialHeatFlux, make_heat_flux
from alkappa.greenkubo.steps import (
    equilibration_step,
    extend_step,
    green_kubo_step,
    make_flux,
    nve_step,
    production_step,
    round_step,
)
from alkappa.io import read_json, write_dataset, write_json
from alkappa.io.trajectory import read_trajectory
from alkappa.models import Model, TrainResult, get_model
from alkappa.models.heat_flux import HeatFluxMethod, HeatFluxNotAvailable
from alkappa.settings import GreenKuboSettings
from alkappa.testing import LennardJonesModel, ModelContract, PairHeatFlux

ROOT = Path(__file__).resolve().parents[1]
PARAMETERS = {"sigma": SIGMA, "epsilon": EPSILON, "rc": RC, "ro": RO, "smooth": True}


class _NoFluxModel(Model):
    """A model plugin that provides no heat flux (the base class's default)."""

    def train(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def load_calculator(self, model_path, device="cpu"):  # type: ignore[no-untyped-def]
        return LennardJones(**PARAMETERS)


@pytest.fixture
def plugins():
    """``lj-test`` (a flux of its own) and ``no-flux`` (none), registered at run time."""
    register("alkappa.models", "lj-test", LennardJonesModel)
    register("alkappa.models", "no-flux", _NoFluxModel)
    yield
    for name in ("lj-test", "no-flux"):
        _runtime["alkappa.models"].pop(name, None)


def _member_file(path: Path, **changes: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**PARAMETERS, **changes}))
    return path


class TestLennardJonesModelContract(ModelContract):
    """The test plugin meets the model contract, heat flux included (on EMT Cu frames)."""

    model_class = LennardJonesModel
    model_spec: ClassVar[dict] = {"name": "lj-contract", "sigma": 2.3, "epsilon": 0.05}
    force_tolerance = 1e-5
    stress_tolerance = 1e-7


# --- the plugin's flux against references ---------------------------------------------------


def test_lj_model_flux_equals_the_analytic_pair_flux(tmp_path):
    atoms = lj_crystal(0)
    path = _member_file(tmp_path / "m0/model.lj.json")
    model = LennardJonesModel(**PARAMETERS)
    assert model.provides_heat_flux()
    flux = model.heat_flux_method([path], convective=True)
    assert isinstance(flux, HeatFluxMethod)
    j = flux.heat_flux(atoms)
    potential, convective = analytic_pair_flux(atoms)  # by hand, from the pair forces
    rel_close(flux.results["heat_flux_potential"], potential, 1e-10)
    rel_close(flux.results["heat_flux_convective"], convective, 1e-10)
    rel_close(j, potential + convective, 1e-10)
    # the energy and forces that come with it are the model's
    atoms.calc = model.load_calculator(path)
    assert flux.results["energy"] == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(flux.results["forces"], atoms.get_forces(), atol=1e-12)
    # sum of the atomic virials = -V stress^T (module alkappa.models.heat_flux)
    virials = flux.atomic_virials(atoms)
    np.testing.assert_allclose(
        -virials.sum(axis=0).T / atoms.get_volume(), atoms.get_stress(voigt=False), atol=1e-12
    )
    # flux linear in the velocities (no convective term): reversed velocities, reversed flux
    plain = model.heat_flux_method([path])
    j0 = plain.heat_flux(atoms)
    back = atoms.copy()
    back.set_velocities(-atoms.get_velocities())
    rel_close(plain.heat_flux(back), -j0, 1e-12)


def test_lj_model_flux_equals_the_unfolded_flux_of_the_same_potential(tmp_path):
    # the NequIP machinery (autodiff on the unfolded system) on a torch LJ with one layer
    from test_heat_flux import lj_member

    from alkappa.models.nequip import UnfoldedHeatFlux

    atoms = lj_crystal(3)
    path = _member_file(tmp_path / "m0/model.lj.json")
    ours = LennardJonesModel(**PARAMETERS).heat_flux_method([path]).heat_flux(atoms)
    rel_close(ours, UnfoldedHeatFlux([lj_member()], num_layers=1).heat_flux(atoms), 1e-8)


def test_lj_model_flux_equals_the_validation_flux(tmp_path):
    """The exact-LJ route of the Green-Kubo validation (validation/lj_argon_md.py): the virial
    flux of its pair-list Lennard-Jones with FHI-vibes' argon parameters."""
    sys.path.insert(0, str(ROOT / "validation"))
    try:
        from _lj import ARGON, PairListLennardJones
    finally:
        sys.path.remove(str(ROOT / "validation"))
    from test_heat_flux import thermal

    atoms = thermal(bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2), 4, rattle=0.05)
    argon = {**ARGON, "rc": 8.5, "smooth": False}
    path = _member_file(tmp_path / "m0/model.lj.json", **argon)
    ours = LennardJonesModel(**argon).heat_flux_method([path]).heat_flux(atoms)
    atoms.calc = PairListLennardJones(sigma=ARGON["sigma"], epsilon=ARGON["epsilon"], rc=8.5)
    rel_close(ours, VirialHeatFlux().heat_flux(atoms), 1e-10)


def test_ensemble_flux_is_the_member_mean(tmp_path):
    atoms = lj_crystal(5)
    paths = [
        _member_file(tmp_path / f"m{k}/model.lj.json", epsilon=eps)
        for k, eps in enumerate((0.04, 0.06))
    ]
    model = LennardJonesModel(**PARAMETERS)
    flux = model.heat_flux_method(paths)
    j = flux.heat_flux(atoms)
    members = flux.results["heat_flux_members"]
    assert members.shape == (2, 3)
    rel_close(j, members.mean(axis=0), 1e-12)
    # the flux is linear in the potential: the members' mean is the flux of epsilon 0.05
    mean = model.heat_flux_method([_member_file(tmp_path / "mean.lj.json", epsilon=0.05)])
    rel_close(j, mean.heat_flux(atoms), 1e-10)
    with pytest.raises(ValueError, match="float64"):
        model.heat_flux_method(paths, precision="float32")


# --- the contract: provided, or refused in one line ------------------------------------------


def test_a_model_without_a_flux_says_so(plugins, tmp_path):
    model = get_model({"name": "no-flux"})
    assert not model.provides_heat_flux()
    with pytest.raises(HeatFluxNotAvailable, match="_NoFluxModel provides no heat flux"):
        model.heat_flux_method([tmp_path / "m.json"])
    # the Green-Kubo step: one line that names the key and the model
    (tmp_path / "member_0.json").write_text("{}")
    write_json(
        tmp_path / "ensemble.json", {"model": {"name": "no-flux"}, "members": ["member_0.json"]}
    )
    gk = GreenKuboSettings.with_defaults(flux="unfolded", convective=False)
    with pytest.raises(ValueError) as info:
        make_flux(gk, model_dir=tmp_path, structure=crystal())
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("greenkubo.flux: unfolded needs the model's own heat flux")
    assert "'no-flux'" in message and "virial" in message


def test_config_refuses_unfolded_for_a_model_without_a_flux(plugins):
    cfg = {
        "materials": {
            "Cu": {"structure": {"build": {"name": "Cu", "crystalstructure": "fcc", "a": 3.6}}}
        },
        "oracle": {"name": "emt"},
        "model": {"name": "no-flux"},
    }
    with pytest.raises(
        ConfigError, match=r"^materials\.Cu\.greenkubo\.flux: unfolded needs .*'no-flux'"
    ):
        load_config(cfg)
    # the other fluxes, or no Green-Kubo, are fine; so is a model with its own flux
    load_config({**cfg, "greenkubo": {"flux": "virial"}})
    load_config({**cfg, "greenkubo": {"enabled": False}})
    load_config({**cfg, "model": {"name": "lj-test"}})


def test_make_heat_flux_asks_the_plugin(plugins, tmp_path):
    _member_file(tmp_path / "member_0/model.lj.json")
    write_json(
        tmp_path / "ensemble.json",
        {"model": {"name": "lj-test", **PARAMETERS}, "members": ["member_0/model.lj.json"]},
    )
    # the directory's ensemble.json names the plugin
    flux = make_heat_flux("unfolded", model_paths=tmp_path)
    assert isinstance(flux, PairHeatFlux)
    atoms = lj_crystal(6)
    rel_close(flux.heat_flux(atoms), analytic_pair_flux(atoms)[0], 1e-10)


def test_the_flux_label_names_the_flux_in_every_production_job(plugins, tmp_path):
    def label(flux: str, precision: str) -> str:
        return GreenKuboSettings.with_defaults(flux=flux, flux_precision=precision).flux_label

    # the round and production jobs build no flux: their fingerprint takes this name, which
    # must be the runs' (float32 runs are never mixed with float64 ones)
    assert label("unfolded", "float64") == "unfolded"
    assert label("unfolded", "float32") == "unfolded-float32"
    assert label("virial", "float32") == "virial"
    # the plugin's flux is named after the config, whatever it calls itself
    _member_file(tmp_path / "member_0/model.lj.json")
    write_json(
        tmp_path / "ensemble.json",
        {"model": {"name": "lj-test"}, "members": ["member_0/model.lj.json"]},
    )
    gk = GreenKuboSettings.with_defaults(flux="unfolded", convective=False)
    flux = make_flux(gk, model_dir=tmp_path, structure=crystal())
    assert isinstance(flux, PairHeatFlux) and flux.name == "unfolded"


# --- Green-Kubo through the pipeline's steps with a non-NequIP model ------------------------


def _trained_ensemble(model_dir: Path, spec: dict) -> None:
    """Two LJ members trained on LJ-labelled frames (as the AL stage leaves the final model)."""
    from test_heat_flux import thermal

    frames = []
    for seed in range(6):
        frame = thermal(crystal(), seed, rattle=0.05)
        # another sigma: the fitted epsilon depends on the (bootstrap) sample
        frame.calc = LennardJones(**{**PARAMETERS, "epsilon": 1.1 * EPSILON, "sigma": 2.35})
        frame.get_forces()
        frames.append(frame)
    data = model_dir.parent / "data"
    data.mkdir(parents=True)
    write_dataset(data / "train.extxyz", frames[:5])
    write_dataset(data / "val.extxyz", frames[5:])
    model = get_model(spec)
    members = []
    for seed in range(2):
        result: TrainResult = model.train(
            data / "train.extxyz", data / "val.extxyz", model_dir / f"member_{seed}",
            species=["Ar"], seed=seed,
        )  # fmt: skip
        members.append(str(result.model_path.relative_to(model_dir)))
    write_json(model_dir / "ensemble.json", {"material": "Ar", "model": spec, "members": members})


@pytest.mark.filterwarnings(
    "ignore:no zero crossing", "ignore:.*kappa's relative error", "ignore:no cepstral estimate"
)
def test_green_kubo_steps_with_a_non_nequip_model(plugins, tmp_path):
    spec = {"name": "lj-test", **PARAMETERS}
    model_dir = tmp_path / "Ar/model"
    _trained_ensemble(model_dir, spec)
    structure = tmp_path / "Ar/structure.extxyz"
    write_dataset(structure, [crystal()])
    gk = GreenKuboSettings.with_defaults(
        **SMALL, flux="unfolded", convective=False, flux_precision="float64", window_fs=20.0
    )
    settings = {"name": "Ar", "model": spec, "greenkubo": gk}
    prod = tmp_path / "Ar/greenkubo/T60"
    common = {"temperature": 60.0, "threads": 1}
    # the jobs in the order the rules run them (the gk_* steps of alkappa.steps)
    equilibration_step(
        settings, structure, model_dir, prod / "equilibration.nc", progress=False, **common
    )
    for k in range(SMALL["runs"]):
        nve_step(
            settings, structure, model_dir, prod / f"run_{k:02d}.nc", index=k, progress=False,
            **common,
        )  # fmt: skip
    round_step(
        settings, structure, model_dir, prod / "round_0.json", round_index=0, previous=None,
        progress=False, **common,
    )  # fmt: skip
    assert read_json(prod / "round_0.json")["stop"]
    production_step(
        settings, structure, model_dir, [prod / "round_0.json"], prod / "production.json",
        **common,
    )  # fmt: skip
    green_kubo_step(
        settings,
        prod / "production.json",
        prod / "greenkubo.nc",
        prod / "greenkubo.png",
        temperature=60.0,
    )
    record = read_json(prod / "production.json")
    assert record["flux"] == gk.flux_label == "unfolded"
    assert len(record["runs"]) == SMALL["runs"]
    members = [model_dir / name for name in read_json(model_dir / "ensemble.json")["members"]]
    epsilons = [json.loads(p.read_text())["epsilon"] for p in members]
    assert epsilons[0] != pytest.approx(epsilons[1], rel=1e-6)  # bootstrap: members differ
    for k in range(SMALL["runs"]):
        ds = read_trajectory(prod / f"run_{k:02d}.nc")
        assert ds.attrs["heat_flux_method"] == "unfolded" and int(ds.attrs["completed"]) == 1
        assert not int(ds.attrs["blew_up"])
        assert ds["heat_flux_members"].shape == (ds.sizes["time"], 2, 3)
        # the flux model is the MD model (same energies)
        assert ds.attrs["flux_energy_mismatch_per_atom"] < 1e-10
        # a logged frame's flux is the exact pair flux of the ensemble-mean potential, less
        # the average virial's part (heat_flux_aux)
        frame = crystal()
        frame.positions = ds["positions"].values[-1]
        frame.set_velocities(ds["velocities"].values[-1])  # ASE units, as written
        mean_epsilon = float(np.mean(epsilons))
        reference = LennardJonesModel(**{**PARAMETERS, "epsilon": mean_epsilon})
        expected = reference.heat_flux_method(
            [_member_file(tmp_path / "mean.lj.json", epsilon=mean_epsilon)]
        ).heat_flux(frame)
        logged = ds["heat_flux"].values[-1] + ds["heat_flux_aux"].values[-1]
        rel_close(logged, expected, 1e-8)
    with xr.open_dataset(prod / "greenkubo.nc") as ds:
        assert ds.attrs["heat_flux_method"] == "unfolded"
        assert np.isfinite(float(ds["kappa_scalar"]))


@pytest.mark.filterwarnings(
    "ignore:no zero crossing", "ignore:.*kappa's relative error", "ignore:no cepstral estimate"
)
def test_green_kubo_steps_extend_the_runs(plugins, tmp_path, monkeypatch):
    """The per-round jobs with max_run_steps: round 0 extends the runs (the autocorrelation
    counts as decayed from a longest lag of 100 fs on, which runs of 120 steps reach); run 0's
    segment is made by its own job (extend_step), run 1's by the next round's job, which
    finds it missing; the record and the analysis have the runs at 120 steps."""
    from alkappa.greenkubo import _rounds
    from alkappa.greenkubo._production import read_run, segment_path

    original = _rounds._analyse

    def analyse(runs, analysis):
        entry = original(runs, analysis)
        if "max_lag_fs" in entry:
            entry["cutoff_found"] = entry["max_lag_fs"] >= 100.0
        return entry

    monkeypatch.setattr(_rounds, "_analyse", analyse)
    spec = {"name": "lj-test", **PARAMETERS}
    model_dir = tmp_path / "Ar/model"
    _trained_ensemble(model_dir, spec)
    structure = tmp_path / "Ar/structure.extxyz"
    write_dataset(structure, [crystal()])
    gk = GreenKuboSettings.with_defaults(
        **{**SMALL, "target_error": 1e-6, "max_runs": 2, "max_run_steps": 120},
        flux="unfolded", convective=False, flux_precision="float64", window_fs=20.0,
    )  # fmt: skip
    settings = {"name": "Ar", "model": spec, "greenkubo": gk}
    prod = tmp_path / "Ar/greenkubo/T60"
    common = {"temperature": 60.0, "threads": 1}
    args = (settings, structure, model_dir)
    equilibration_step(*args, prod / "equilibration.nc", progress=False, **common)
    for k in range(2):
        nve_step(*args, prod / f"run_{k:02d}.nc", index=k, progress=False, **common)
    rounds = [prod / "round_0.json", prod / "round_1.json"]
    round_step(*args, rounds[0], round_index=0, previous=None, progress=False, **common)
    first = read_json(rounds[0])
    assert first["action"] == "extend" and first["next_run_steps"] == 120
    assert not first["stop"] and first["next_runs"] == []
    made = extend_step(*args, prod / "run_00.nc", index=0, steps=120, progress=False, **common)
    assert made == segment_path(prod / "run_00.nc", 1) and made.is_file()
    assert not segment_path(prod / "run_01.nc", 1).exists()
    round_step(*args, rounds[1], round_index=1, previous=rounds[0], progress=False, **common)
    second = read_json(rounds[1])
    assert segment_path(prod / "run_01.nc", 1).is_file()  # made by the round's job
    assert second["run_steps"] == 120 and second["stopped_by"] == "max_runs"
    production_step(*args, rounds, prod / "production.json", **common)
    record = read_json(prod / "production.json")
    assert record["run_steps"] == 120 and record["run_ps"] == pytest.approx(0.24)
    assert [r["segments"] for r in record["runs"]] == [1, 1]
    assert [r["steps_done"] for r in record["runs"]] == [120, 120]
    assert record["simulated_ps"] == pytest.approx(2 * 0.24)
    green_kubo_step(
        settings, prod / "production.json", prod / "greenkubo.nc", prod / "greenkubo.png",
        temperature=60.0,
    )  # fmt: skip
    with xr.open_dataset(prod / "greenkubo.nc") as ds:
        assert float(ds["time"].values[-1]) == second["max_lag_fs"] == 110.0
        assert float(ds["kappa_scalar"]) == pytest.approx(second["kappa"], rel=1e-10)
    assert read_run(prod / "run_01.nc").sizes["time"] == 120 // SMALL["sample_interval"] + 1


def _plugin_path(tmp_path: Path) -> Path:
    """A directory that, on PYTHONPATH, registers ``lj-test`` as an installed package would
    (an entry point in a dist-info): Snakemake and its jobs run in other processes."""
    info = tmp_path / "plugins" / "alkappa_lj_test-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: alkappa-lj-test\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(
        "[alkappa.models]\nlj-test = alkappa.testing:LennardJonesModel\n"
    )
    return info.parent


@pytest.mark.slow
def test_pipeline_extends_green_kubo_runs_of_a_non_nequip_model(plugins, tmp_path):
    """Snakemake's Green-Kubo stage with the LJ model plugin (no NequIP): runs of 60 steps
    never see the flux autocorrelation cross zero, so round 0 extends both runs to
    max_run_steps (one gk_extend job per run), and round 1, at that length, stops with
    runs_too_short; the analysis reads the runs with their segments."""
    import os
    import subprocess

    from alkappa.greenkubo._production import read_run, segment_path

    spec = {"name": "lj-test", **PARAMETERS}
    results = tmp_path / "results"
    _trained_ensemble(results / "Ar/model", spec)
    write_dataset(results / "Ar/structure/relaxed.extxyz", [crystal()])
    gk = {
        **{k: v for k, v in SMALL.items() if k != "target_error"},
        "temperatures": [60],
        "target_error": 0.1,
        "max_run_steps": 120,
        "flux": "unfolded",
        "convective": False,
        "flux_precision": "float64",
        "window_fs": 20.0,
        "lifetimes": False,
    }
    config = {
        "results": str(results),
        "materials": {"Ar": {"structure": {"build": {"name": "Ar", "crystalstructure": "fcc",
                                                     "a": 2 ** (2 / 3) * SIGMA, "cubic": True}},
                             "supercell": [2, 2, 2]}},
        "oracle": {"name": "lj", "sigma": SIGMA, "epsilon": EPSILON, "rc": RC},
        "model": spec,
        "greenkubo": gk,
        "events": {"enabled": False},
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(_plugin_path(tmp_path)), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    target = results / "Ar/greenkubo/T60/greenkubo.nc"
    rules = ["gk_equilibrate", "gk_run", "gk_extend", "gk_round", "production", "green_kubo"]
    cmd = [
        sys.executable, "-m", "snakemake", str(target), "--cores", "2",
        "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
        "--configfile", str(tmp_path / "config.yaml"), "--allowed-rules", *rules,
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    prod = results / "Ar/greenkubo/T60"
    first, second = (read_json(prod / f"round_{r}.json") for r in range(2))
    assert first["action"] == "extend" and first["extend_runs"] == [0, 1]
    assert second["stopped_by"] == "runs_too_short" and second["run_steps"] == 120
    for k in range(2):
        assert segment_path(prod / f"run_{k:02d}.nc", 1).is_file()
        assert "gk_extend" in done.stderr or "localrule gk_extend" in done.stdout
        assert read_run(prod / f"run_{k:02d}.nc").sizes["time"] == 120 // 5 + 1
    record = read_json(prod / "production.json")
    assert record["run_steps"] == 120 and record["stopped_by"] == "runs_too_short"
    assert [r["segments"] for r in record["runs"]] == [1, 1]
    with xr.open_dataset(target) as ds:
        assert float(ds["time"].values[-1]) == second["max_lag_fs"] > 60 * 2.0 / 2
        assert np.isfinite(float(ds["kappa_scalar"]))
