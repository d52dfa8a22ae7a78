"""The NequIP model plugin: options, generated config, curve parsing, and real (tiny) trainings."""

from __future__ import annotations

import csv
import math
from typing import ClassVar

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from helpers import write_emt_dataset

from alkappa.models import get_model
from alkappa.models._nequip_config import MONITOR, build_config, resolve_options
from alkappa.models.ensemble import load_ensemble
from alkappa.models.nequip import NequIPModel, NequIPTrainingError, read_lightning_csv
from alkappa.testing import ModelContract, emt_frames

# --- options and config (fast) ---------------------------------------------------------------


def test_options_validated():
    with pytest.raises(ValueError, match=r"unknown nequip model option.*num_feature"):
        NequIPModel(num_feature=8)
    with pytest.raises(ValueError, match=r"unknown loss_coeffs key.*virial"):
        NequIPModel(loss_coeffs={"virial": 1.0})
    with pytest.raises(ValueError, match="model_dtype"):
        NequIPModel(model_dtype="float16")
    opts = resolve_options({"loss_coeffs": {"forces": 10.0}})
    assert opts["loss_coeffs"] == {"energy": 1.0, "forces": 10.0, "stress": 1.0}


def test_get_model_loads_nequip_plugin():
    model = get_model({"name": "nequip", "num_features": 8})
    assert isinstance(model, NequIPModel)
    assert model.resolved["num_features"] == 8


def _config(tmp_path, with_stress=True, init=None, **options):
    return build_config(
        resolve_options(options),
        train_file=tmp_path / "train.xyz",
        val_file=tmp_path / "val.xyz",
        workdir=tmp_path,
        species=["Cu", "I"],
        seed=3,
        with_stress=with_stress,
        init_model=init,
    )


def test_config_contents(tmp_path):
    cfg = _config(tmp_path, num_features=24, loss_coeffs={"forces": 5.0}, max_minutes=2)
    model = cfg["training_module"]["model"]
    assert model["_target_"] == "nequip.model.NequIPGNNModel"
    assert model["num_features"] == 24 and model["seed"] == 3
    assert cfg["model_type_names"] == ["Cu", "I"]
    assert cfg["data"]["train_dataset"]["file_path"] == str(tmp_path / "train.xyz")
    assert cfg["data"]["val_dataset"]["file_path"] == str(tmp_path / "val.xyz")
    loss = cfg["training_module"]["loss"]
    assert loss["_target_"] == "nequip.train.EnergyForceStressLoss"
    assert loss["coeffs"] == {"total_energy": 1.0, "forces": 5.0, "stress": 1.0}
    # validation weighted sum = the loss terms with the loss coefficients
    metrics = cfg["training_module"]["val_metrics"]["metrics"]
    weighted = {m["name"]: m["coeff"] for m in metrics if "coeff" in m}
    assert weighted == {"per_atom_energy_mse": 1.0, "forces_mse": 5.0, "stress_mse": 1.0}
    assert cfg["trainer"]["max_time"] == "00:00:02:00"
    monitors = [c.get("monitor") for c in cfg["trainer"]["callbacks"]]
    assert monitors.count(MONITOR) == 2  # checkpoint + early stopping


def test_config_without_stress_and_extra(tmp_path):
    cfg = _config(
        tmp_path,
        with_stress=False,
        early_stopping_patience=None,
        extra={"trainer": {"max_epochs": 7, "accelerator": "cpu"}, "training_module": {"x": 1}},
    )
    assert cfg["training_module"]["loss"]["_target_"] == "nequip.train.EnergyForceLoss"
    names = [m["name"] for m in cfg["training_module"]["val_metrics"]["metrics"]]
    assert not any("stress" in n for n in names)
    # deep merge: overridden and added keys, the rest kept
    assert cfg["trainer"]["max_epochs"] == 7 and cfg["trainer"]["accelerator"] == "cpu"
    assert cfg["training_module"]["x"] == 1 and "loss" in cfg["training_module"]
    assert not any("EarlyStopping" in c["_target_"] for c in cfg["trainer"]["callbacks"])


def test_config_warm_start_targets(tmp_path):
    pkg = _config(tmp_path, init=tmp_path / "a" / "model.nequip.zip")["training_module"]["model"]
    assert pkg == {
        "_target_": "nequip.model.ModelFromPackage",
        "package_path": str(tmp_path / "a" / "model.nequip.zip"),
        "compile_mode": "eager",
    }
    ckpt = _config(tmp_path, init=tmp_path / "best.ckpt")["training_module"]["model"]
    assert ckpt["_target_"] == "nequip.model.ModelFromCheckpoint"


def test_read_lightning_csv_merges_lines(tmp_path):
    # Lightning's layout: LR line without epoch, then train-epoch and validation lines
    path = tmp_path / "metrics.csv"
    path.write_text(
        "epoch,lr-Adam,step,train_loss_epoch/weighted_sum,val0_epoch/weighted_sum,"
        "val0_epoch/forces_rmse,epoch_seconds\n"
        ",0.01,0,,,,\n"
        "0,,3,,0.5,0.7,1.5\n"
        "0,,3,0.6,,,\n"
        ",0.005,3,,,,\n"
        "1,,7,0.4,,,\n"
        "1,,7,,0.3,0.55,1.25\n"
        ",0.005,7,,,,\n"
        "2,,9,0.35,,,\n"  # interrupted: no validation -> not a curve point
    )
    rows = read_lightning_csv(path)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[0] == {
        "epoch": 0,
        "lr": 0.01,
        "train_loss": 0.6,
        "val_loss": 0.5,
        "val_forces_rmse": 0.7,
        "epoch_seconds": 1.5,
    }
    assert rows[1]["lr"] == 0.005 and rows[1]["val_loss"] == 0.3
    assert read_lightning_csv(tmp_path / "missing.csv") == []


def test_empty_or_unlabelled_sets_rejected_before_training(tmp_path):
    write_emt_dataset(tmp_path / "train.xyz", 3)
    (tmp_path / "val.xyz").write_text("")
    model = NequIPModel()
    val, work = tmp_path / "val.xyz", tmp_path / "w"
    with pytest.raises(ValueError, match=r"validation set .* is empty"):
        model.train(tmp_path / "train.xyz", val, work, species=["Cu"], seed=0)
    with pytest.raises(FileNotFoundError, match="training set"):
        model.train(tmp_path / "nope.xyz", val, work, species=["Cu"], seed=0)
    ase.io.write(val, bulk("Cu", "fcc", cubic=True), format="extxyz")  # no labels
    with pytest.raises(ValueError, match="no energy/forces labels"):
        model.train(tmp_path / "train.xyz", val, work, species=["Cu"], seed=0)
    assert not (tmp_path / "w" / "config.yaml").exists()


def test_nequip_reads_our_extxyz_without_conversion(tmp_path):
    """Key mapping and stress convention: nequip sees ASE's energy/forces/stress unchanged."""
    from ase.stress import voigt_6_to_full_3x3_stress
    from nequip.data import AtomicDataDict
    from nequip.data.dataset import ASEDataset

    frames = write_emt_dataset(tmp_path / "d.xyz", 2, seed=4)
    data = ASEDataset(file_path=str(tmp_path / "d.xyz"), ase_args={"format": "extxyz"})
    for k, atoms in enumerate(frames):
        item = data[k]
        ref_e = atoms.get_potential_energy()
        ref_s = voigt_6_to_full_3x3_stress(atoms.get_stress())
        assert float(item[AtomicDataDict.TOTAL_ENERGY_KEY].reshape(())) == pytest.approx(ref_e)
        np.testing.assert_allclose(item[AtomicDataDict.FORCE_KEY].numpy(), atoms.get_forces())
        np.testing.assert_allclose(item[AtomicDataDict.STRESS_KEY].numpy()[0], ref_s, atol=1e-12)
        assert np.abs(ref_s).max() > 1e-4  # the strained frames carry a real stress


def test_config_with_label_weights(tmp_path):
    plain = _config(tmp_path)
    cfg = build_config(
        resolve_options({}),
        train_file=tmp_path / "train.xyz",
        val_file=tmp_path / "val.xyz",
        workdir=tmp_path,
        species=["Cu"],
        seed=3,
        with_stress=True,
        label_weights=True,
    )
    weights = "alkappa.models._nequip_weights"
    assert cfg["data"]["train_dataset"]["_target_"] == f"{weights}.weighted_ase_dataset"
    loss = {m["name"]: m for m in cfg["training_module"]["loss"]["metrics"]}
    assert loss["per_atom_energy_mse"]["field"] is None
    assert loss["per_atom_energy_mse"]["metric"]["_target_"].startswith(weights)
    assert loss["forces_mse"]["field"] == "forces"
    # validation loss: the same weighted terms and coefficients as the loss
    val = cfg["training_module"]["val_metrics"]["metrics"]
    assert {m["name"]: m["coeff"] for m in val if "coeff" in m} == {
        "per_atom_energy_mse": 1.0,
        "forces_mse": 1.0,
        "stress_mse": 1.0,
    }
    assert len(val) == len(plain["training_module"]["val_metrics"]["metrics"])
    stats = {m["name"] for m in cfg["data"]["stats_manager"]["metrics"]}
    assert stats == {"num_neighbors_mean", "per_atom_energy_mean", "forces_rms"}


def _batch(energies, n_atoms, weights=None):
    import torch
    from nequip.data import AtomicDataDict

    out = {
        AtomicDataDict.TOTAL_ENERGY_KEY: torch.tensor(energies, dtype=torch.float64)[:, None],
        AtomicDataDict.NUM_NODES_KEY: torch.tensor(n_atoms),
    }
    if weights is not None:
        out["label_weight"] = torch.tensor(weights, dtype=torch.float64)[:, None]
    return out


def test_weighted_energy_loss_is_nequips_mse_at_unit_weights_and_never_nan():
    from nequip.train import MeanSquaredError

    from alkappa.models._nequip_weights import FullWeightPerAtomEnergy, WeightedPerAtomEnergyMSE

    pred = _batch([1.0, 4.0, -2.0], [2, 4, 1])
    ref = _batch([0.0, 2.0, -1.0], [2, 4, 1], weights=[1.0, 1.0, 1.0])
    per_atom = np.array([0.5, 0.5, -1.0])
    metric = WeightedPerAtomEnergyMSE()
    assert float(metric(pred, ref)) == pytest.approx(np.mean(per_atom**2))
    import torch

    nequip = MeanSquaredError()(torch.tensor([0.5, 1.0, -2.0]), torch.tensor([0.0, 0.5, -1.0]))
    assert float(nequip) == pytest.approx(np.mean(per_atom**2))
    # weights: (0.5^2 * 1 + 0.5^2 * 0.1 + 1^2 * 0) / 1.1
    ref = _batch([0.0, 2.0, -1.0], [2, 4, 1], weights=[1.0, 0.1, 0.0])
    assert float(WeightedPerAtomEnergyMSE()(pred, ref)) == pytest.approx(0.275 / 1.1)
    # a batch of weight-zero frames adds nothing, and is not NaN
    ref = _batch([0.0, 2.0, -1.0], [2, 4, 1], weights=[0.0, 0.0, 0.0])
    assert float(WeightedPerAtomEnergyMSE()(pred, ref)) == 0.0
    # the energy statistics see full-weight frames only
    ref = _batch([0.0, 2.0, -1.0], [2, 4, 1], weights=[1.0, 0.1, 0.0])
    stat = FullWeightPerAtomEnergy()(ref).numpy()
    assert stat[0] == 0.0 and np.isnan(stat[1:]).all()


# --- real trainings (slow) -------------------------------------------------------------------

TINY = {
    "num_layers": 1,
    "num_features": 8,
    "radial_mlp_width": 8,
    "r_max": 4.0,
    "max_epochs": 2,
    "batch_size": 2,
}


class TestNequIPContract(ModelContract):
    """The plugin meets the model contract; its one tiny training serves the checks below too.

    Forces and stress are checked against finite differences in every component, and tighter
    than the contract's defaults: the model runs in float64.
    """

    pytestmark = pytest.mark.slow
    # max_minutes exercises Lightning's wall-time cap, as the default campaign uses it
    model_spec: ClassVar[dict] = {"name": "nequip", **TINY, "max_minutes": 5}
    n_validation = 3
    seed = 1
    fd_step = 1e-4
    fd_components = None
    force_tolerance = 1e-6
    # stress: same sign convention and units as ASE (positive = cell wants to shrink)
    strain_step = 1e-5
    stress_tolerance = 1e-7

    def model_frames(self) -> list:
        return emt_frames(11, seed=1)

    def test_training_outputs(self, trained_model):
        result = trained_model.result
        member = trained_model.train_file.parent / "member_0"
        assert result.model_path == member / "model.nequip.zip"
        assert result.checkpoint_path.is_file()
        assert (member / "config.yaml").is_file()
        with result.curve_path.open() as fh:
            rows = list(csv.DictReader(fh))
        assert [int(r["epoch"]) for r in rows] == [0, 1]
        for row in rows:
            for key in ("train_loss", "val_loss", "val_energy_mae", "val_forces_rmse", "lr"):
                assert math.isfinite(float(row[key])), key
        info = result.info
        assert info["epochs"] == 2 and info["n_train"] == 8 and info["n_val"] == 3
        assert info["stress_in_loss"] is True
        assert info["wall_seconds"] >= info["train_seconds"] > 0

    def test_warm_start_loads_weights(self, trained_model, tmp_path):
        first = trained_model.result
        # a learning rate of ~0 leaves the loaded weights as they were: predictions must agree
        model = NequIPModel(**{**TINY, "max_epochs": 1, "learning_rate": 1e-12})
        result = model.train(
            trained_model.train_file,
            trained_model.val_file,
            tmp_path / "warm",
            species=["Cu"],
            seed=2,
            init_checkpoint=first.model_path,
        )
        assert result.info["warm_start"] == str(first.model_path)
        atoms = trained_model.validation[1].copy()
        ensemble = load_ensemble([first.model_path, result.model_path])
        atoms.calc = ensemble
        atoms.get_forces()
        e0, e1 = ensemble.results["energy_members"]
        assert e1 == pytest.approx(e0, abs=1e-7)
        np.testing.assert_allclose(*ensemble.results["forces_members"], atol=1e-7)

    def test_warm_start_species_mismatch(self, trained_model, tmp_path):
        with pytest.raises(ValueError, match="type names"):
            trained_model.model.train(
                trained_model.train_file,
                trained_model.val_file,
                tmp_path / "bad",
                species=["Cu", "Ag"],
                seed=0,
                init_checkpoint=trained_model.result.model_path,
            )


@pytest.mark.slow
def test_training_error_carries_log_tail(tmp_path):
    write_emt_dataset(tmp_path / "train.xyz", 3)
    write_emt_dataset(tmp_path / "val.xyz", 2, seed=5)
    # the data hold Cu, the model only knows Ag: nequip-train fails while building the data
    with pytest.raises(NequIPTrainingError, match="nequip-train failed") as err:
        NequIPModel(**TINY).train(
            tmp_path / "train.xyz", tmp_path / "val.xyz", tmp_path / "w", species=["Ag"], seed=0
        )
    assert "Error" in str(err.value)
    assert (tmp_path / "w" / "train.log").is_file()


@pytest.mark.slow
def test_weight_zero_frames_change_neither_loss_nor_energy_shift(tmp_path):
    """The training set plus copies of its frames with energies 1000 eV/atom too high and
    weight 0 must give the same losses as the training set alone (same forces, counted twice;
    no energy term; an energy shift from the full-weight frames). A learning rate of ~0 keeps
    the weights at their seeded start, so both runs are compared at equal parameters."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from alkappa.io import write_dataset

    train = write_emt_dataset(tmp_path / "train.xyz", 4, seed=1)
    write_emt_dataset(tmp_path / "val.xyz", 2, seed=2)
    gated = []
    for atoms in train:
        copy = atoms.copy()
        results = dict(atoms.calc.results)
        results["energy"] += 1000.0 * len(atoms)
        copy.calc = SinglePointCalculator(copy, **results)
        copy.info["label_weight"] = 0.0
        gated.append(copy)
    write_dataset(tmp_path / "gated.xyz", train + gated)
    opts = {**TINY, "max_epochs": 1, "learning_rate": 1e-12}
    runs = {}
    for name in ("train", "gated"):
        runs[name] = NequIPModel(**opts).train(
            tmp_path / f"{name}.xyz", tmp_path / "val.xyz", tmp_path / name, species=["Cu"], seed=0
        )
    assert runs["gated"].info["label_weights"] and not runs["train"].info["label_weights"]
    for key in ("val_loss", "train_loss", "val_energy_mae"):
        assert runs["gated"].info["final"][key] == pytest.approx(
            runs["train"].info["final"][key], rel=1e-8
        ), key
