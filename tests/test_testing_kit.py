"""The plugin test kit itself (:mod:`alkappa.testing`): every contract test can fail.

Toy plugins, each broken in one way, are run through the contract's test methods directly
(as pytest would, with the fixture values made by the kit's own helpers): the test for the
broken clause raises ``AssertionError``, and an honest toy passes every test. One broken
oracle also goes through pytest's own collection, to show the mixin fails there as well.
"""

from __future__ import annotations

import functools
import inspect
import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones

from alkappa._plugins import _runtime
from alkappa.models import Model, TrainResult
from alkappa.models.ensemble import EnsembleCalculator
from alkappa.oracles import Oracle
from alkappa.testing import ModelContract, OracleContract, PairHeatFlux, emt_frames

if TYPE_CHECKING:
    from ase import Atoms

pytest_plugins = ["pytester"]

ORACLE_TESTS = sorted(name for name in dir(OracleContract) if name.startswith("test_"))
MODEL_TESTS = sorted(name for name in dir(ModelContract) if name.startswith("test_"))


def _run(contract: type, name: str, values: dict[str, Any]) -> None:
    """Call test method ``name`` of ``contract`` with the fixture values it asks for (a
    callable value is called first, only if the test asks for it)."""
    method = getattr(contract(), name)
    wanted = inspect.signature(method).parameters
    method(**{p: values[p]() if callable(values[p]) else values[p] for p in wanted})


# -- oracles ------------------------------------------------------------------------------------


class _TweakedEMT(Calculator):
    """EMT whose results pass through ``tweak(atoms, results)`` (which changes them in place)."""

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, tweak: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tweak = tweak

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = EMT()
        results = {
            "energy": work.get_potential_energy(),
            "forces": work.get_forces(),
            "stress": work.get_stress(),
        }
        if self.tweak is not None:
            self.tweak(self.atoms, results)
        results["free_energy"] = results["energy"]
        self.results = results


class _ToyOracle(Oracle):
    """An honest oracle (EMT) that the broken ones below derive from."""

    default_fidelity = "toy"
    tweak: Any = None

    @property
    def supported_elements(self) -> set[str]:
        return {"Cu", "Ag"}

    def make_calculator(self) -> Calculator:
        return _TweakedEMT(type(self).tweak)

    def describe(self) -> str:
        return "toy EMT"


def _flip_forces(atoms: Atoms, results: dict) -> None:
    results["forces"] = -results["forces"]


def _flip_stress(atoms: Atoms, results: dict) -> None:
    results["stress"] = -results["stress"]


def _tilt(atoms: Atoms, results: dict) -> None:
    # a uniform field along x: forces consistent with the energy, but not translation invariant
    results["energy"] += 0.01 * atoms.positions[:, 0].sum()
    results["forces"] = results["forces"] - [0.01, 0.0, 0.0]


_calls = itertools.count()


def _drift(atoms: Atoms, results: dict) -> None:
    results["energy"] += 1e-4 * next(_calls)


class _WrongForceSign(_ToyOracle):
    tweak = staticmethod(_flip_forces)


class _WrongStressSign(_ToyOracle):
    tweak = staticmethod(_flip_stress)


class _NotTranslationInvariant(_ToyOracle):
    tweak = staticmethod(_tilt)


class _NotReproducible(_ToyOracle):
    tweak = staticmethod(_drift)


class _DropsStress(_ToyOracle):
    def label(self, atoms: Atoms) -> Atoms:
        out = super().label(atoms)
        out.calc.results.pop("stress")
        return out


class _NoTiming(_ToyOracle):
    def label(self, atoms: Atoms) -> Atoms:
        out = super().label(atoms)
        del out.info["oracle_seconds"]
        return out


class _ChangesItsInput(_ToyOracle):
    def label(self, atoms: Atoms) -> Atoms:
        atoms.info["labelled"] = True
        return super().label(atoms)


class _ChecksNothing(_ToyOracle):
    def check(self, atoms: Atoms) -> None:
        return None


class _Nameless(_ToyOracle):
    def describe(self) -> str:
        return ""


class _IgnoresFidelity(_ToyOracle):
    def __init__(self, fidelity: str | None = None) -> None:
        super().__init__(None)


class _ToyOracleContract(OracleContract):
    """Not collected (no ``Test`` prefix): the tests below run its methods directly."""

    oracle_class = _ToyOracle  # no entry point: registered (by the toy_oracle fixture here)
    oracle_spec: ClassVar[dict] = {"name": "toy-oracle", "fidelity": "toy-label"}
    force_tolerance = 1e-6
    stress_tolerance = 1e-7

    def oracle_structure(self) -> Atoms:
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.05, seed=4)
        return atoms


@pytest.fixture
def toy_oracle(monkeypatch):
    """Register an oracle class as ``toy-oracle`` for one test; returns the registering call."""

    def use(cls: type[Oracle]) -> None:
        monkeypatch.setitem(_runtime["alkappa.oracles"], "toy-oracle", cls)

    return use


@pytest.mark.parametrize("name", ORACLE_TESTS)
def test_an_honest_oracle_passes_every_contract_test(name, toy_oracle):
    toy_oracle(_ToyOracle)
    _run(_ToyOracleContract, name, {"oracle_case": _ToyOracleContract.make_oracle_case()})


BROKEN_ORACLES = [
    (_WrongForceSign, "test_forces_are_minus_the_energy_gradient"),
    (_WrongStressSign, "test_stress_is_the_strain_derivative"),
    (_NotTranslationInvariant, "test_energy_is_translation_invariant"),
    (_NotReproducible, "test_labelling_is_reproducible"),
    (_DropsStress, "test_label_returns_a_labelled_copy"),
    (_NoTiming, "test_label_returns_a_labelled_copy"),
    (_ChangesItsInput, "test_label_leaves_its_input_unchanged"),
    (_ChecksNothing, "test_check_names_an_unsupported_element"),
    (_Nameless, "test_describe_is_a_non_empty_string"),
    (_IgnoresFidelity, "test_get_oracle_builds_the_plugin"),
]


def test_every_oracle_contract_test_has_a_broken_oracle_that_fails_it():
    assert {name for _, name in BROKEN_ORACLES} == set(ORACLE_TESTS)


@pytest.mark.parametrize(
    ("broken", "name"), BROKEN_ORACLES, ids=[cls.__name__.lstrip("_") for cls, _ in BROKEN_ORACLES]
)
def test_a_broken_oracle_fails_its_contract_test(broken, name, toy_oracle):
    toy_oracle(broken)
    with pytest.raises(AssertionError):
        _run(_ToyOracleContract, name, {"oracle_case": _ToyOracleContract.make_oracle_case()})


def test_a_plugin_must_be_installed_unless_the_contract_registers_it(toy_oracle):
    class Unregistered(_ToyOracleContract):
        oracle_class = None

    toy_oracle(_ToyOracle)  # registered at run time, but the contract expects an entry point
    with pytest.raises(AssertionError, match="no entry point 'toy-oracle'"):
        _run(Unregistered, "test_get_oracle_builds_the_plugin", {})


def test_the_mixin_fails_under_pytest_collection_too(pytester):
    """A plugin's test file, as an author writes it, run by pytest: one clause fails."""
    pytester.makepyfile(
        test_plugin="""
        from ase.build import bulk

        from alkappa.testing import OracleContract
        from test_testing_kit import _WrongForceSign

        class TestWrongForceSign(OracleContract):
            oracle_class = _WrongForceSign
            oracle_spec = {"name": "wrong-force-sign"}

            def oracle_structure(self):
                atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
                atoms.rattle(0.05, seed=4)
                return atoms
        """
    )
    pytester.syspathinsert(Path(__file__).parent)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=len(ORACLE_TESTS) - 1, failed=1)
    result.stdout.fnmatch_lines(["*test_forces_are_minus_the_energy_gradient*"])
    # the run-time registration ended with the class
    assert "wrong-force-sign" not in _runtime["alkappa.oracles"]


# -- models -------------------------------------------------------------------------------------


def _lj(sigma: float) -> LennardJones:
    return LennardJones(sigma=sigma, epsilon=0.01, rc=6.0, smooth=True)


class _FlippedLJ(LennardJones):
    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results["forces"] = -self.results["forces"]
        self.results["stress"] = -self.results["stress"]


class _ToyModel(Model):
    """An honest toy model: the 'file' holds an LJ sigma."""

    def train(self, train_file, val_file, workdir, *, species, seed, init_checkpoint=None,
              threads=1):  # fmt: skip
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "model.toy").write_text("2.3")
        (workdir / "curve.csv").write_text("epoch\n0\n")
        return TrainResult(model_path=workdir / "model.toy", curve_path=workdir / "curve.csv")

    def load_calculator(self, model_path, device="cpu"):
        return _lj(float(Path(model_path).read_text()))


class _WrongForces(_ToyModel):
    def load_calculator(self, model_path, device="cpu"):
        return _FlippedLJ(sigma=2.3, epsilon=0.01, rc=6.0, smooth=True)


class _ForgetsOnReload(_ToyModel):
    loads = itertools.count()

    def load_calculator(self, model_path, device="cpu"):
        return _lj(2.3 + 1e-3 * next(self.loads))


class _LosesItsFile(_ToyModel):
    def train(self, *args, **kwargs):
        result = super().train(*args, **kwargs)
        return TrainResult(result.model_path.with_suffix(".gone"), result.curve_path)


class _QuietEnsemble(_ToyModel):
    def load_ensemble_calculator(self, model_paths, device="cpu", *, threads=None, **options):
        members = [self.load_calculator(p) for p in model_paths]
        return EnsembleCalculator(members, uncertainty_every=0)


class _NaNForces(_ToyModel):
    def load_calculator(self, model_path, device="cpu"):
        return _TweakedEMT(lambda atoms, results: results["forces"].fill(np.nan))


class _WithFlux(_ToyModel):
    """An honest toy with its own heat flux (the exact pair flux of its LJ members)."""

    def heat_flux_method(self, model_paths, **options):
        return PairHeatFlux([self.load_calculator(p) for p in model_paths])


class _EvenFlux(_ToyModel):
    """A heat flux that does not reverse with the velocities."""

    def heat_flux_method(self, model_paths, **options):
        flux = PairHeatFlux([self.load_calculator(p) for p in model_paths])
        honest = flux.heat_flux

        def even(atoms):
            flux.results["heat_flux"] = np.abs(honest(atoms))
            return flux.results["heat_flux"]

        flux.heat_flux = even
        return flux


class _ClaimsAFlux(_ToyModel):
    """Says it provides a heat flux, but has none."""

    def provides_heat_flux(self) -> bool:
        return True


def _not_a_model(**options: Any) -> object:
    return object()


class _ToyModelContract(ModelContract):
    model_class = _ToyModel
    model_spec: ClassVar[dict] = {"name": "toy-model"}
    force_tolerance = 1e-5
    stress_tolerance = 1e-7

    def model_frames(self) -> list[Atoms]:
        return emt_frames(3, seed=5)


@pytest.fixture
def toy_model(monkeypatch, tmp_path):
    """Register a model class as ``toy-model``, train it, return the fixture values."""

    def use(cls: Any) -> dict[str, Any]:
        monkeypatch.setitem(_runtime["alkappa.models"], "toy-model", cls)
        trained = functools.cache(
            lambda: _ToyModelContract.train_contract_model(tmp_path / "trained")
        )

        def calculator() -> Calculator:
            return trained().model.load_calculator(trained().result.model_path)

        def reload_directory() -> Path:
            (tmp_path / "reload").mkdir()
            return tmp_path / "reload"

        # made only when the test asks for them (see _run)
        return {
            "trained_model": trained,
            "model_calculator": calculator,
            "tmp_path": reload_directory,
        }

    return use


@pytest.mark.parametrize("name", MODEL_TESTS)
def test_an_honest_model_passes_every_contract_test(name, toy_model):
    _run(_ToyModelContract, name, toy_model(_ToyModel))


def test_an_honest_model_with_a_heat_flux_passes_the_heat_flux_test(toy_model):
    _run(_ToyModelContract, "test_heat_flux_is_provided_or_refused", toy_model(_WithFlux))


BROKEN_MODELS = [
    (_not_a_model, "test_get_model_builds_the_plugin"),
    (_NaNForces, "test_calculator_gives_energy_and_forces"),
    (_WrongForces, "test_forces_are_minus_the_energy_gradient"),
    (_WrongForces, "test_stress_is_the_strain_derivative"),
    (_ForgetsOnReload, "test_model_survives_a_reload"),
    (_ForgetsOnReload, "test_ensemble_of_identical_members"),
    (_LosesItsFile, "test_train_result_points_to_its_files"),
    (_QuietEnsemble, "test_ensemble_of_identical_members"),
    (_EvenFlux, "test_heat_flux_is_provided_or_refused"),
    (_ClaimsAFlux, "test_heat_flux_is_provided_or_refused"),
]


def test_every_model_contract_test_has_a_broken_model_that_fails_it():
    assert {name for _, name in BROKEN_MODELS} == set(MODEL_TESTS)


@pytest.mark.parametrize(
    ("broken", "name"),
    BROKEN_MODELS,
    ids=[f"{cls.__name__.lstrip('_')}-{name[5:]}" for cls, name in BROKEN_MODELS],
)
def test_a_broken_model_fails_its_contract_test(broken, name, toy_model):
    values = toy_model(broken)
    with pytest.raises(AssertionError):
        _run(_ToyModelContract, name, values)


def test_model_contract_needs_a_spec_and_enough_frames(tmp_path):
    class NoSpec(ModelContract):
        pass

    with pytest.raises(NotImplementedError, match="model_spec"):
        NoSpec.train_contract_model(tmp_path)

    class TooFewFrames(_ToyModelContract):
        def model_frames(self) -> list[Atoms]:
            return emt_frames(2)

    with pytest.raises(ValueError, match="more than n_validation=2"):
        TooFewFrames.train_contract_model(tmp_path)


def test_emt_frames_are_labelled_and_reproducible():
    frames = emt_frames(2, repeat=2, strain=0.0, seed=7)
    assert [len(f) for f in frames] == [32, 32]
    np.testing.assert_array_equal(frames[0].cell.array, frames[1].cell.array)
    assert frames[0].info["fidelity"] == "emt" and frames[0].get_stress().shape == (6,)
    again = emt_frames(2, repeat=2, strain=0.0, seed=7)
    np.testing.assert_array_equal(again[1].get_forces(), frames[1].get_forces())
