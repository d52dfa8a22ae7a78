"""The contract every model plugin meets, as a pytest mixin."""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pytest

from alkappa import _plugins
from alkappa.models import Model, TrainResult, get_model
from alkappa.models.ensemble import EnsembleCalculator
from alkappa.models.heat_flux import HeatFluxMethod, HeatFluxNotAvailable
from alkappa.models.uncertainty import uncertainty_statistics
from alkappa.testing._common import (
    entry_point_names,
    numerical_forces,
    numerical_stress,
    pick_components,
    provided,
    registered,
    voigt,
)
from alkappa.testing._frames import emt_frames

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from ase import Atoms
    from ase.calculators.calculator import Calculator

_GROUP = "alkappa.models"

#: the statistics every ensemble calculator reports under ``results["uncertainty"]``
UNCERTAINTY_KEYS = tuple(uncertainty_statistics(np.zeros(1), np.zeros((1, 1, 3))))


@dataclass
class TrainedModel:
    """The model the contract trained once for its class.

    Attributes
    ----------
    model
        The plugin instance (from :func:`alkappa.models.get_model`) that trained it.
    result
        What :meth:`~alkappa.models.Model.train` returned.
    train_file, val_file
        The extxyz files it was trained and validated on.
    validation
        The validation frames (labelled).
    species
        The ``species`` passed to ``train``.
    """

    model: Model
    result: TrainResult
    train_file: Path
    val_file: Path
    validation: list[Atoms]
    species: list[str]

    def frame(self) -> Atoms:
        """The first validation frame, without its labels: where the tests evaluate."""
        atoms = self.validation[0].copy()
        atoms.calc = None
        return atoms


def _energy_with(calc: Calculator) -> Callable[[Atoms], float]:
    def energy(atoms: Atoms) -> float:
        work = atoms.copy()
        work.calc = calc
        return float(work.get_potential_energy())

    return energy


class ModelContract:
    """Tests every model plugin must pass; subclass it in a ``Test...`` class.

    One model is trained once per class (in a temporary directory) and shared by the tests.
    The subclass provides, as a class attribute or a method without arguments:

    ``model_spec``
        The config's ``model`` block, ``{"name": ..., **options}``, with settings that train
        in seconds (a tiny network, one or two epochs).

    and may provide ``model_frames`` (labelled :class:`ase.Atoms`; the last ``n_validation``
    validate, the rest train; default: :func:`emt_frames`, eight EMT-labelled rattled Cu fcc
    cells) and change the class attributes below (absolute tolerances, in eV, eV/Å, eV/Å³).

    Attributes
    ----------
    model_class
        Register this class under the spec's name while the tests run, for a plugin that is
        not installed (yet); ``None`` (default) uses the installed entry point.
    n_validation
        How many of the frames are the validation set.
    seed
        The training seed.
    fd_step, strain_step, fd_components, force_tolerance, stress_tolerance
        As in :class:`OracleContract`: finite-difference steps, how many force components are
        checked (``None``: all), and the tolerances.
    check_stress
        Compare the stress (when the calculator gives one) with the strain derivative of the
        energy. ``False`` for a model whose stress is another quantity (e.g. a model of one
        fixed supercell that cannot evaluate a strained cell).
    reload_tolerance
        Allowed difference between a calculator and one loaded again from a copy of the file.
    ensemble_options
        Keyword arguments for :meth:`~alkappa.models.Model.load_ensemble_calculator`.
    ensemble_tolerance
        Allowed difference between identical members, and between their mean and the single
        calculator.
    uncertainty_is_spread
        The ensemble's ``uncertainty`` is the members' spread, so identical members give zero
        (``False`` for a model with its own error estimate, e.g. a Bayesian posterior).
    heat_flux_options
        Keyword arguments for :meth:`~alkappa.models.Model.heat_flux_method`.
    heat_flux_tolerance
        Relative tolerance of the heat-flux checks (reversed velocities, identical members).
    """

    model_class: ClassVar[type[Model] | None] = None
    n_validation: ClassVar[int] = 2
    seed: ClassVar[int] = 0
    fd_step: ClassVar[float] = 1e-3
    strain_step: ClassVar[float] = 1e-4
    fd_components: ClassVar[int | None] = 3
    force_tolerance: ClassVar[float] = 1e-3
    stress_tolerance: ClassVar[float] = 1e-5
    check_stress: ClassVar[bool] = True
    reload_tolerance: ClassVar[float] = 1e-8
    ensemble_options: ClassVar[Mapping[str, object]] = {}
    ensemble_tolerance: ClassVar[float] = 1e-6
    uncertainty_is_spread: ClassVar[bool] = True
    heat_flux_options: ClassVar[Mapping[str, object]] = {}
    heat_flux_tolerance: ClassVar[float] = 1e-8

    def model_frames(self) -> list[Atoms]:
        """The labelled frames to train and validate on (default: :func:`emt_frames`)."""
        return emt_frames()

    # -- fixtures ------------------------------------------------------------------------------

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _model_registered(cls) -> Iterator[None]:
        with registered(_GROUP, provided(cls, "model_spec")["name"], cls.model_class):
            yield

    @pytest.fixture(scope="class")
    @classmethod
    def trained_model(
        cls, _model_registered: None, tmp_path_factory: pytest.TempPathFactory
    ) -> TrainedModel:
        """The model trained once for the class (see :meth:`train_contract_model`)."""
        return cls.train_contract_model(tmp_path_factory.mktemp("contract-model"))

    @pytest.fixture(scope="class")
    @classmethod
    def model_calculator(cls, trained_model: TrainedModel) -> Calculator:
        """The trained model's ASE calculator, loaded once for the class."""
        return trained_model.model.load_calculator(trained_model.result.model_path)

    @classmethod
    def train_contract_model(cls, root: Path) -> TrainedModel:
        """Write the frames to ``root`` and train one model in ``root/member_0``.

        The tests take this as their ``trained_model`` fixture; call it directly to run a test
        method outside pytest's collection (the plugin must then be registered).
        """
        from alkappa.io import write_dataset

        frames = provided(cls, "model_frames")
        n_val = cls.n_validation
        if not 0 < n_val < len(frames):
            raise ValueError(f"need more than n_validation={n_val} frames, got {len(frames)}")
        train, validation = frames[:-n_val], frames[-n_val:]
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        write_dataset(root / "train.extxyz", train)
        write_dataset(root / "val.extxyz", validation)
        species = sorted({s for atoms in frames for s in atoms.get_chemical_symbols()})
        model = get_model(provided(cls, "model_spec"))
        result = model.train(
            root / "train.extxyz",
            root / "val.extxyz",
            root / "member_0",
            species=species,
            seed=cls.seed,
            threads=1,
        )
        return TrainedModel(
            model, result, root / "train.extxyz", root / "val.extxyz", validation, species
        )

    # -- the contract --------------------------------------------------------------------------

    def test_get_model_builds_the_plugin(self) -> None:
        spec = provided(type(self), "model_spec")
        name = spec["name"]
        assert name in _plugins.available(_GROUP), f"model '{name}' is not installed"
        if self.model_class is None:  # not registered at run time: an installed entry point
            assert name in entry_point_names(_GROUP), f"no entry point '{name}' in {_GROUP}"
        model = get_model(spec)
        assert isinstance(model, Model)
        factory = _plugins.load(_GROUP, name)
        if isinstance(factory, type):
            assert isinstance(model, factory), f"get_model gave a {type(model).__name__}"

    def test_train_result_points_to_its_files(self, trained_model: TrainedModel) -> None:
        result = trained_model.result
        assert isinstance(result, TrainResult), f"train() returned a {type(result).__name__}"
        model_path = Path(result.model_path)
        assert model_path.is_file(), f"no model file at {model_path}"
        assert model_path.stat().st_size > 0, f"empty model file {model_path}"
        assert Path(result.curve_path).is_file(), f"no training curve at {result.curve_path}"
        if result.checkpoint_path is not None:
            assert Path(result.checkpoint_path).exists(), f"no {result.checkpoint_path}"
        for companion in result.companions:
            assert Path(companion).is_file(), f"no companion file {companion}"
        assert isinstance(result.info, dict)

    def test_calculator_gives_energy_and_forces(
        self, trained_model: TrainedModel, model_calculator: Calculator
    ) -> None:
        atoms = trained_model.frame()
        atoms.calc = model_calculator
        energy = atoms.get_potential_energy()
        assert np.ndim(energy) == 0 and np.isfinite(energy), f"energy {energy!r}"
        forces = atoms.get_forces()
        assert forces.shape == (len(atoms), 3), f"forces of shape {forces.shape}"
        assert np.all(np.isfinite(forces)), "non-finite forces"
        if atoms.pbc.all() and "stress" in model_calculator.implemented_properties:
            stress = voigt(atoms.get_stress())
            assert np.all(np.isfinite(stress)), f"stress {stress}"

    def test_forces_are_minus_the_energy_gradient(
        self, trained_model: TrainedModel, model_calculator: Calculator
    ) -> None:
        atoms = trained_model.frame()
        components = pick_components(len(atoms), self.fd_components)
        numerical = numerical_forces(
            _energy_with(model_calculator), atoms, components, self.fd_step
        )
        atoms.calc = model_calculator
        forces = atoms.get_forces()
        np.testing.assert_allclose(
            np.array([forces[i, axis] for i, axis in components]),
            numerical,
            rtol=0,
            atol=self.force_tolerance,
            err_msg=f"forces against -dE/dx (finite differences) at (atom, axis) {components}",
        )

    def test_stress_is_the_strain_derivative(
        self, trained_model: TrainedModel, model_calculator: Calculator
    ) -> None:
        atoms = trained_model.frame()
        if not self.check_stress:
            pytest.skip("check_stress is off for this model")
        if not atoms.pbc.all() or "stress" not in model_calculator.implemented_properties:
            pytest.skip("the calculator gives no stress for this frame")
        numerical = numerical_stress(_energy_with(model_calculator), atoms, self.strain_step)
        atoms.calc = model_calculator
        np.testing.assert_allclose(
            voigt(atoms.get_stress()),
            numerical,
            rtol=0,
            atol=self.stress_tolerance,
            err_msg="stress against (1/V) dE/d(strain) (finite differences, Voigt order)",
        )

    def test_ensemble_of_identical_members(
        self, trained_model: TrainedModel, model_calculator: Calculator
    ) -> None:
        path = trained_model.result.model_path
        calc = trained_model.model.load_ensemble_calculator(
            [path, path], **copy.deepcopy(self.ensemble_options)
        )
        assert isinstance(calc, EnsembleCalculator), f"a {type(calc).__name__}"
        atoms = trained_model.frame()
        n = len(atoms)
        atoms.calc = calc
        atoms.get_forces()
        res = calc.results
        for key in ("energy", "free_energy", "forces", "energy_members", "forces_members"):
            assert key in res, f"the ensemble's results lack '{key}'"
        energies = np.asarray(res["energy_members"], dtype=float)
        forces = np.asarray(res["forces_members"], dtype=float)
        m = energies.shape[0] if energies.ndim == 1 else -1
        assert m >= 1 and energies.shape == (m,), f"energy_members of shape {energies.shape}"
        assert forces.shape == (m, n, 3), f"forces_members of shape {forces.shape}"
        tol = self.ensemble_tolerance
        assert res["energy"] == pytest.approx(energies.mean(), abs=tol), "energy is not the mean"
        np.testing.assert_allclose(res["forces"], forces.mean(axis=0), rtol=0, atol=tol)
        # identical members agree with each other and with the single calculator
        np.testing.assert_allclose(energies, energies[0], rtol=0, atol=tol)
        np.testing.assert_allclose(forces, np.broadcast_to(forces[0], forces.shape), atol=tol)
        single = trained_model.frame()
        single.calc = model_calculator
        assert res["energy"] == pytest.approx(single.get_potential_energy(), abs=tol)
        np.testing.assert_allclose(res["forces"], single.get_forces(), rtol=0, atol=tol)
        if atoms.pbc.all() and "stress" in model_calculator.implemented_properties:
            assert "stress" in res and "stress_members" in res, "the ensemble lacks the stress"
        if "stress" in res:
            stresses = np.asarray(res["stress_members"], dtype=float)
            assert stresses.shape == (m, 6), f"stress_members of shape {stresses.shape}"
            assert voigt(res["stress"]).shape == (6,)
        uncertainty = res.get("uncertainty")
        assert isinstance(uncertainty, dict), "the ensemble's results lack 'uncertainty'"
        missing = sorted(set(UNCERTAINTY_KEYS) - set(uncertainty))
        assert not missing, f"uncertainty lacks {missing}"
        for key in UNCERTAINTY_KEYS:
            assert np.isfinite(uncertainty[key]), f"uncertainty {key} = {uncertainty[key]!r}"
        if self.uncertainty_is_spread:
            for key in ("force_max", "force_mean", "energy_std_per_atom"):
                assert uncertainty[key] == pytest.approx(0.0, abs=tol), (
                    f"identical members, but uncertainty {key} = {uncertainty[key]}"
                )

    def test_model_survives_a_reload(
        self, trained_model: TrainedModel, model_calculator: Calculator, tmp_path: Path
    ) -> None:
        # elsewhere, as the pipeline moves a member's file (and its companions) after training
        result = trained_model.result
        for source in (result.model_path, *result.companions):
            shutil.copy2(source, tmp_path / Path(source).name)
        fresh = get_model(provided(type(self), "model_spec"))
        reloaded = fresh.load_calculator(tmp_path / Path(result.model_path).name)
        first, again = trained_model.frame(), trained_model.frame()
        first.calc, again.calc = model_calculator, reloaded
        tol = self.reload_tolerance
        assert again.get_potential_energy() == pytest.approx(
            first.get_potential_energy(), abs=tol
        ), "the reloaded model gives another energy"
        np.testing.assert_allclose(again.get_forces(), first.get_forces(), rtol=0, atol=tol)

    def test_heat_flux_is_provided_or_refused(
        self, trained_model: TrainedModel, model_calculator: Calculator
    ) -> None:
        model, path = trained_model.model, trained_model.result.model_path
        if not model.provides_heat_flux():
            # the refusal the pipeline turns into one line (greenkubo.flux: unfolded)
            with pytest.raises(HeatFluxNotAvailable):
                model.heat_flux_method([path], **copy.deepcopy(self.heat_flux_options))
            return
        try:
            flux = model.heat_flux_method([path, path], **copy.deepcopy(self.heat_flux_options))
        except HeatFluxNotAvailable as exc:
            raise AssertionError(f"provides_heat_flux() is true, but: {exc}") from exc
        assert isinstance(flux, HeatFluxMethod), f"heat_flux_method gave a {type(flux).__name__}"
        atoms = trained_model.frame()
        rng = np.random.default_rng(self.seed)
        atoms.set_velocities(rng.normal(scale=0.01, size=(len(atoms), 3)))  # Å per ASE time
        atoms.calc = model_calculator
        j = np.asarray(flux.heat_flux(atoms), dtype=float)
        assert j.shape == (3,) and np.all(np.isfinite(j)), f"heat flux {j!r}"
        np.testing.assert_array_equal(flux.results["heat_flux"], j, "results['heat_flux']")
        assert np.linalg.norm(j) > 0, "zero heat flux at finite velocities"
        tol = self.heat_flux_tolerance * np.linalg.norm(j)
        members = flux.results.get("heat_flux_members")
        if members is not None:
            members = np.asarray(members, dtype=float)
            assert members.shape == (2, 3), f"heat_flux_members of shape {members.shape}"
            np.testing.assert_allclose(members, [j, j], rtol=0, atol=tol, err_msg="members")
        if "energy" in flux.results:
            assert flux.results["energy"] == pytest.approx(
                atoms.get_potential_energy(), abs=self.ensemble_tolerance
            ), "the flux's energy is not the model's"
        # the potential flux is linear in the velocities (the convective term, if asked
        # for, is not: leave it out of heat_flux_options)
        backwards = atoms.copy()
        backwards.set_velocities(-atoms.get_velocities())
        backwards.calc = model_calculator
        np.testing.assert_allclose(
            flux.heat_flux(backwards), -j, rtol=0, atol=tol, err_msg="flux of reversed velocities"
        )
