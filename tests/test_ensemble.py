"""Uncertainty statistics, the ensemble calculator and ensemble loading (no torch needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.lj import LennardJones

from alkappa._plugins import PluginError, _runtime, register
from alkappa.models import Model, get_model
from alkappa.models.ensemble import EnsembleCalculator, load_ensemble, member_paths
from alkappa.models.uncertainty import uncertainty_statistics
from alkappa.testing import ModelContract

# --- uncertainty_statistics against hand-computed values -------------------------------------


def test_statistics_two_members_two_atoms():
    # member 0: F_0 = (1, 0, 0), F_1 = (0, 0, 0);  member 1: F_0 = (-1, 0, 0), F_1 = (0, 4, 0)
    forces = np.array([[[1.0, 0, 0], [0, 0, 0]], [[-1.0, 0, 0], [0, 4.0, 0]]])
    energies = np.array([1.0, 3.0])
    stats = uncertainty_statistics(energies, forces, eps=0.0)
    # mean forces: Fbar_0 = (0, 0, 0), Fbar_1 = (0, 2, 0)
    # atom 0: |dev|^2 = 1, 1 -> mean 1 -> u_0 = 1;  atom 1: |dev|^2 = 4, 4 -> u_1 = 2
    assert stats["force_max"] == pytest.approx(2.0)
    assert stats["force_mean"] == pytest.approx(1.5)
    # energies 1, 3: mean 2, population std 1; per atom (N = 2): 0.5
    assert stats["energy_std_per_atom"] == pytest.approx(0.5)
    # mean |Fbar_i| = (0 + 2) / 2 = 1 -> U / 1 = 2
    assert stats["force_max_relative"] == pytest.approx(2.0)
    # the default eps regularises the denominator: 2 / (1 + 1e-3)
    assert uncertainty_statistics(energies, forces)["force_max_relative"] == pytest.approx(
        2.0 / 1.001
    )


def test_statistics_three_members_mean_not_sum():
    # one atom, forces (0,0,0), (3,0,0), (0,0,0): Fbar = (1,0,0), |dev|^2 = 1, 4, 1 -> mean 2
    forces = np.array([[[0.0, 0, 0]], [[3.0, 0, 0]], [[0.0, 0, 0]]])
    # energies 0, 0, 3: mean 1, variance (1 + 1 + 4) / 3 = 2 (population, ddof = 0)
    stats = uncertainty_statistics([0.0, 0.0, 3.0], forces, eps=0.0)
    assert stats["force_max"] == pytest.approx(math.sqrt(2.0))
    assert stats["force_mean"] == pytest.approx(math.sqrt(2.0))
    assert stats["energy_std_per_atom"] == pytest.approx(math.sqrt(2.0))
    assert stats["force_max_relative"] == pytest.approx(math.sqrt(2.0) / 1.0)


def test_statistics_single_member_is_zero_and_shapes_checked():
    stats = uncertainty_statistics([5.0], np.ones((1, 4, 3)))
    assert stats["force_max"] == 0.0
    assert stats["force_mean"] == 0.0
    assert stats["energy_std_per_atom"] == 0.0
    with pytest.raises(ValueError, match="forces must have shape"):
        uncertainty_statistics([1.0, 2.0], np.ones((3, 4, 3)))
    with pytest.raises(ValueError, match="forces must have shape"):
        uncertainty_statistics([1.0], np.ones((1, 4)))
    with pytest.raises(ValueError, match="energies must have shape"):
        uncertainty_statistics(np.ones((2, 2)), np.ones((2, 4, 3)))


# --- EnsembleCalculator ----------------------------------------------------------------------


def _lj(sigma: float) -> LennardJones:
    return LennardJones(sigma=sigma, epsilon=0.01, rc=6.0, smooth=True)


def _rattled_cu(seed: int = 0) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=seed)
    return atoms


def _member_results(atoms: Atoms, sigmas: list[float]) -> tuple[np.ndarray, ...]:
    energies, forces, stresses = [], [], []
    for sigma in sigmas:
        work = atoms.copy()
        work.calc = _lj(sigma)
        energies.append(work.get_potential_energy())
        forces.append(work.get_forces())
        stresses.append(work.get_stress())
    return np.array(energies), np.array(forces), np.array(stresses)


def test_ensemble_means_equal_member_means():
    sigmas = [2.2, 2.3, 2.45]
    atoms = _rattled_cu()
    energies, forces, stresses = _member_results(atoms, sigmas)
    # the members really differ, or the test would prove little
    assert np.ptp(energies) > 1e-3

    atoms.calc = EnsembleCalculator([_lj(s) for s in sigmas])
    assert atoms.get_potential_energy() == pytest.approx(energies.mean(), rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), forces.mean(axis=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(atoms.get_stress(), stresses.mean(axis=0), rtol=1e-12, atol=1e-14)

    res = atoms.calc.results
    np.testing.assert_allclose(res["energy_members"], energies, rtol=1e-12)
    np.testing.assert_allclose(res["forces_members"], forces, rtol=1e-12, atol=1e-14)
    assert res["forces_members"].shape == (3, len(atoms), 3)
    assert res["stress_members"].shape == (3, 6)
    expected = uncertainty_statistics(energies, forces)
    assert res["uncertainty"] == pytest.approx(expected)
    assert atoms.calc.uncertainty == pytest.approx(expected)
    assert expected["force_max"] > 0


def test_ensemble_follows_moving_atoms():
    atoms = _rattled_cu()
    atoms.calc = EnsembleCalculator([_lj(2.2), _lj(2.4)])
    first = atoms.get_forces().copy()
    atoms.positions[0] += [0.05, 0.0, 0.0]
    energies, forces, _ = _member_results(atoms, [2.2, 2.4])
    assert not np.allclose(atoms.get_forces(), first)
    np.testing.assert_allclose(atoms.get_forces(), forces.mean(axis=0), rtol=1e-12, atol=1e-14)
    assert atoms.calc.results["energy_members"] == pytest.approx(energies)


def test_identical_members_have_zero_uncertainty():
    atoms = _rattled_cu(1)
    atoms.calc = EnsembleCalculator([_lj(2.3) for _ in range(4)])
    atoms.get_forces()
    assert atoms.calc.uncertainty["force_max"] == pytest.approx(0.0, abs=1e-12)
    assert atoms.calc.uncertainty["energy_std_per_atom"] == pytest.approx(0.0, abs=1e-12)


def test_non_periodic_structure_has_no_stress():
    atoms = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.6, 0.1]])
    atoms.calc = EnsembleCalculator([_lj(2.2), _lj(2.3)])
    atoms.get_forces()
    assert "stress" not in atoms.calc.results
    assert atoms.calc.results["forces_members"].shape == (2, 3, 3)


def test_empty_ensemble_rejected():
    with pytest.raises(ValueError, match="at least one"):
        EnsembleCalculator([])


# --- get_model / load_ensemble with a stand-in plugin ----------------------------------------


class _LJFileModel(Model):
    """A 'model' whose file holds an LJ sigma: enough to test loading without torch.

    Training picks the sigma of a grid whose forces fit the training frames best.
    """

    def train(self, train_file, val_file, workdir, *, species, seed, init_checkpoint=None,
              threads=1):  # fmt: skip
        from alkappa.io import read_dataset
        from alkappa.models import TrainResult

        frames = read_dataset(train_file)

        def force_rmse(sigma: float) -> float:
            errors = []
            for frame in frames:
                work = frame.copy()
                work.calc = _lj(sigma)
                errors.append(work.get_forces() - frame.get_forces())
            return float(np.sqrt(np.mean(np.square(errors))))

        grid = np.linspace(2.0, 2.6, 7)
        rmse = [force_rmse(sigma) for sigma in grid]
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "model.ljfile").write_text(str(grid[int(np.argmin(rmse))]))
        curve = workdir / "curve.csv"
        curve.write_text("epoch,train_forces_rmse\n" + f"0,{min(rmse)}\n")
        return TrainResult(model_path=workdir / "model.ljfile", curve_path=curve)

    def load_calculator(self, model_path, device="cpu"):
        return _lj(float(Path(model_path).read_text()))


class TestLJFileModelContract(ModelContract):
    """The stand-in plugin meets the model contract (trained on the kit's EMT Cu frames)."""

    model_class = _LJFileModel
    model_spec: ClassVar[dict] = {"name": "ljfile-contract"}
    force_tolerance = 1e-5  # the central difference's own error is ~5e-7 here
    stress_tolerance = 1e-7


@pytest.fixture
def lj_plugin():
    register("alkappa.models", "ljfile", _LJFileModel)
    yield "ljfile"
    _runtime["alkappa.models"].pop("ljfile", None)


def _write_members(root: Path, sigmas: dict[str, float]) -> None:
    for name, sigma in sigmas.items():
        (root / name).mkdir(parents=True)
        (root / name / "model.nequip.zip").write_text(str(sigma))


def test_member_paths_sorted_numerically(tmp_path):
    _write_members(tmp_path, {"member_10": 2.5, "member_2": 2.3, "member_0": 2.2})
    (tmp_path / "other").mkdir()
    names = [p.parent.name for p in member_paths(tmp_path)]
    assert names == ["member_0", "member_2", "member_10"]


def test_member_paths_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ensemble members"):
        member_paths(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        member_paths(tmp_path / "missing")


def test_load_ensemble_from_directory_and_list(tmp_path, lj_plugin):
    sigmas = {"member_0": 2.2, "member_1": 2.3, "member_2": 2.45}
    _write_members(tmp_path, sigmas)
    atoms = _rattled_cu(2)
    energies, _, _ = _member_results(atoms, list(sigmas.values()))

    calc = load_ensemble(tmp_path, model={"name": lj_plugin})
    assert calc.size == 3
    atoms.calc = calc
    assert atoms.get_potential_energy() == pytest.approx(energies.mean(), rel=1e-12)

    paths = [tmp_path / "member_2" / "model.nequip.zip", tmp_path / "member_0" / "model.nequip.zip"]
    calc = load_ensemble(paths, model={"name": lj_plugin}, threads=1)
    atoms.calc = calc
    atoms.get_potential_energy()
    assert calc.results["energy_members"] == pytest.approx(energies[[2, 0]])
    import torch

    assert torch.get_num_threads() == 1


def test_get_model_errors():
    with pytest.raises(PluginError, match="unknown model 'no-such-model'"):
        get_model({"name": "no-such-model"})
    with pytest.raises(ValueError, match="'name'"):
        get_model({"num_features": 8})


def test_get_model_passes_options(lj_plugin):
    model = get_model({"name": lj_plugin, "a": 1, "b": "x"})
    assert isinstance(model, _LJFileModel)
    assert model.options == {"a": 1, "b": "x"}


def test_uncertainty_every_and_on_demand():
    atoms = _rattled_cu(3)
    every = EnsembleCalculator([_lj(2.2), _lj(2.4)])
    second = EnsembleCalculator([_lj(2.2), _lj(2.4)], uncertainty_every=2)
    never = EnsembleCalculator([_lj(2.2), _lj(2.4)], uncertainty_every=0)
    present = []
    for _ in range(3):
        atoms.positions[1] += [0.02, 0.0, 0.0]
        for calc in (every, second, never):
            work = atoms.copy()
            work.calc = calc
            work.get_forces()
        present.append(("uncertainty" in second.results, "uncertainty" in never.results))
        assert "uncertainty" in every.results
        # asked for, the statistics are there and the same
        assert second.uncertainty == pytest.approx(every.results["uncertainty"])
        assert never.uncertainty == pytest.approx(every.results["uncertainty"])
    assert present == [(True, False), (False, False), (True, False)]
    assert every.calls == 3
    with pytest.raises(ValueError, match="uncertainty_every"):
        EnsembleCalculator([_lj(2.2)], uncertainty_every=-1)


class _FastLJFileModel(_LJFileModel):
    """A plugin with its own ensemble calculator, which records how it was called."""

    calls: ClassVar[list[dict]] = []

    def load_ensemble_calculator(self, model_paths, device="cpu", *, threads=None, **options):
        self.calls.append({"paths": list(model_paths), "threads": threads, **options})
        calc = super().load_ensemble_calculator(model_paths, device)
        calc.fast = True
        return calc


def test_load_ensemble_uses_the_plugin_ensemble_calculator(tmp_path):
    register("alkappa.models", "fastljfile", _FastLJFileModel)
    try:
        _write_members(tmp_path, {"member_0": 2.2, "member_1": 2.3})
        calc = load_ensemble(tmp_path, model={"name": "fastljfile"}, threads=1, skin=0.5)
        assert calc.fast and calc.size == 2
        assert _FastLJFileModel.calls[-1]["threads"] == 1
        assert _FastLJFileModel.calls[-1]["skin"] == 0.5
        n_calls = len(_FastLJFileModel.calls)
        # fast=False: one plain calculator per member, the plugin's method is not used
        plain = load_ensemble(tmp_path, model={"name": "fastljfile"}, fast=False)
        assert type(plain) is EnsembleCalculator and len(_FastLJFileModel.calls) == n_calls
    finally:
        _runtime["alkappa.models"].pop("fastljfile", None)


class _CompanionModel(_LJFileModel):
    """'Trains' an LJ file and a companion file (as NequIP's compiled model) in ``workdir``."""

    def train(self, train_file, val_file, workdir, *, species, seed, init_checkpoint=None,
              threads=1):  # fmt: skip
        from alkappa.models import TrainResult

        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "model.nequip.zip").write_text("2.3")
        (workdir / "model.nequip.pt2").write_text("compiled")
        (workdir / "model.llpr.npz").write_text("llpr")  # as NequIP's LLPR with its own
        return TrainResult(
            model_path=workdir / "model.nequip.zip",
            curve_path=workdir / "curve.csv",
            companions=(workdir / "model.nequip.pt2", workdir / "model.llpr.npz"),
        )


def test_companions_follow_the_model(tmp_path):
    from helpers import write_emt_dataset

    from alkappa.al.steps import train_member_step
    from alkappa.al.summary import export_ensemble
    from alkappa.io import write_json
    from alkappa.settings import section_defaults

    register("alkappa.models", "companion", _CompanionModel)
    try:
        write_emt_dataset(tmp_path / "data.extxyz", 5)
        settings = {
            "name": "Cu",
            "model": {"name": "companion"},
            "ensemble": {**section_defaults("ensemble"), "seed": 0, "bootstrap": False},
        }
        member = tmp_path / "member_0"
        train_member_step(settings, tmp_path / "data.extxyz", member, iteration=0, member=0)
        assert (member / "model.nequip.zip").is_file()
        assert (member / "model.nequip.pt2").read_text() == "compiled"
        assert not (member / "work" / "model.nequip.pt2").exists()
        write_json(tmp_path / "decision.json", {"iteration": 0, "converged": True, "reason": ""})
        export_ensemble(settings, [member], tmp_path / "decision.json", tmp_path / "model")
        package = tmp_path / "model" / "member_0.nequip.zip"
        companion = tmp_path / "model" / "member_0.nequip.pt2"
        assert package.read_text() == "2.3" and companion.read_text() == "compiled"
        # copied after the package: never older than it (an older one counts as stale)
        assert companion.stat().st_mtime >= package.stat().st_mtime
        # every companion named after the package's stem, renamed alike (the LLPR file is
        # found next to member_0.nequip.zip as member_0.llpr.npz)
        from alkappa.models._nequip_llpr import llpr_path

        assert llpr_path(package).read_text() == "llpr"
        assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
            "ensemble.json",
            "member_0.llpr.npz",
            "member_0.nequip.pt2",
            "member_0.nequip.zip",
        ]
    finally:
        _runtime["alkappa.models"].pop("companion", None)


@pytest.mark.parametrize(("size", "resampled"), [(1, False), (2, True)])
def test_a_lone_member_trains_on_every_frame_without_bootstrap(tmp_path, size, resampled):
    """``ensemble.size: 1`` (a one-model uncertainty): bootstrap resampling would only throw
    frames away, since there are no other members to differ from."""
    from helpers import write_emt_dataset

    from alkappa.al.steps import train_member_step
    from alkappa.io import read_json
    from alkappa.settings import EnsembleSettings

    register("alkappa.models", "companion", _CompanionModel)
    try:
        write_emt_dataset(tmp_path / "data.extxyz", 12)
        settings = {
            "name": "Cu",
            "model": {"name": "companion"},
            "ensemble": EnsembleSettings.with_defaults(
                size=size, seed=0, validation_fraction=0.25, bootstrap=True
            ).to_dict(),
        }
        train_member_step(settings, tmp_path / "data.extxyz", tmp_path / "m", iteration=0, member=0)
        info = read_json(tmp_path / "m" / "member.json")
        train, val = info["train_indices"], info["validation_indices"]
        assert len(val) == 3 and len(train) == 9
        if resampled:
            assert len(set(train)) < len(train)  # drawn with replacement (seed 0: repeats)
        else:
            assert sorted(set(train) | set(val)) == list(range(12))
    finally:
        _runtime["alkappa.models"].pop("companion", None)


def test_summary_row_names_the_summary_columns():
    from alkappa.al.summary import SUMMARY_FIELDS, SummaryRow

    assert tuple(SummaryRow.__annotations__) == SUMMARY_FIELDS
