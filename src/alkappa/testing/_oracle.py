"""The contract every oracle meets, as a pytest mixin."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pytest
from ase.data import chemical_symbols

from alkappa import _plugins
from alkappa.oracles import Oracle, OracleInputError, available_oracles, get_oracle
from alkappa.testing._common import (
    entry_point_names,
    numerical_forces,
    numerical_stress,
    pick_components,
    provided,
    registered,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ase import Atoms

_GROUP = "alkappa.oracles"


@dataclass
class OracleCase:
    """One labelling of the contract's structure, shared by the tests of a class.

    Attributes
    ----------
    oracle
        The oracle built from the spec by :func:`alkappa.oracles.get_oracle`.
    structure
        The Atoms handed to :meth:`~alkappa.oracles.Oracle.label` (as it is afterwards).
    before
        A copy of ``structure`` made before the call.
    before_calc
        ``structure.calc`` before the call.
    labelled
        What :meth:`~alkappa.oracles.Oracle.label` returned.
    """

    oracle: Oracle
    structure: Atoms
    before: Atoms
    before_calc: Any
    labelled: Atoms

    def energy(self, atoms: Atoms) -> float:
        """The energy the oracle labels ``atoms`` with."""
        return float(self.oracle.label(atoms).get_potential_energy())

    @property
    def expects_stress(self) -> bool:
        """A periodic cell and a calculator that implements stress: the label must have it."""
        if not self.structure.pbc.all():
            return False
        calc = self.oracle.make_calculator()
        return "stress" in getattr(calc, "implemented_properties", ())


class OracleContract:
    """Tests every oracle plugin must pass; subclass it in a ``Test...`` class.

    The subclass provides, each as a class attribute or as a method without arguments:

    ``oracle_spec``
        The config's ``oracle`` block, ``{"name": ..., **options}``; the options should make
        the oracle fast (a few seconds for some 20 labels in all).
    ``oracle_structure``
        A small :class:`ase.Atoms` the oracle supports, not at a symmetric equilibrium
        (rattle it), so that the forces are not all zero.

    and may change the class attributes below (the tolerances are absolute, in eV, eV/Å and
    eV/Å³).

    Attributes
    ----------
    oracle_class
        Register this class under the spec's name while the tests run, for a plugin that is
        not installed (yet); ``None`` (default) uses the installed entry point.
    fd_step, strain_step
        Displacement (Å) and strain of the central finite differences.
    fd_components
        How many force components (atom, axis) to check by finite differences; ``None``: all.
    force_tolerance, stress_tolerance, energy_tolerance
        Allowed differences of forces and stress from their finite differences, and of the
        energy under a rigid translation.
    repeat_tolerance
        Allowed difference between two labellings of the same structure.
    unsupported_element
        A symbol the oracle rejects; default: the heaviest element outside
        ``supported_elements``.
    translation
        The rigid shift (Å) of the translation test.
    """

    oracle_class: ClassVar[type[Oracle] | None] = None
    fd_step: ClassVar[float] = 1e-3
    strain_step: ClassVar[float] = 1e-4
    fd_components: ClassVar[int | None] = 3
    force_tolerance: ClassVar[float] = 1e-3
    stress_tolerance: ClassVar[float] = 1e-5
    energy_tolerance: ClassVar[float] = 1e-6
    repeat_tolerance: ClassVar[float] = 1e-8
    unsupported_element: ClassVar[str | None] = None
    translation: ClassVar[tuple[float, float, float]] = (0.31, -0.17, 0.23)

    # -- fixtures ------------------------------------------------------------------------------

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _oracle_registered(cls) -> Iterator[None]:
        with registered(_GROUP, provided(cls, "oracle_spec")["name"], cls.oracle_class):
            yield

    @pytest.fixture(scope="class")
    @classmethod
    def oracle_case(cls, _oracle_registered: None) -> OracleCase:
        """The structure labelled once by the oracle (see :meth:`make_oracle_case`)."""
        return cls.make_oracle_case()

    @classmethod
    def make_oracle_case(cls) -> OracleCase:
        """Build the oracle from the spec and label the structure once.

        The tests take this as their ``oracle_case`` fixture; call it directly to run a test
        method outside pytest's collection (the plugin must then be registered).
        """
        oracle = get_oracle(provided(cls, "oracle_spec"))
        structure = provided(cls, "oracle_structure")
        before, before_calc = structure.copy(), structure.calc
        labelled = oracle.label(structure)
        return OracleCase(oracle, structure, before, before_calc, labelled)

    # -- the contract --------------------------------------------------------------------------

    def test_get_oracle_builds_the_plugin(self) -> None:
        spec = provided(type(self), "oracle_spec")
        name = spec["name"]
        assert name in available_oracles(), f"oracle '{name}' is not installed"
        if self.oracle_class is None:  # not registered at run time: an installed entry point
            assert name in entry_point_names(_GROUP), f"no entry point '{name}' in {_GROUP}"
        oracle = get_oracle(spec)
        assert isinstance(oracle, Oracle)
        factory = _plugins.load(_GROUP, name)
        if isinstance(factory, type):
            assert isinstance(oracle, factory), f"get_oracle gave a {type(oracle).__name__}"
        if spec.get("fidelity"):
            assert oracle.fidelity == spec["fidelity"], "the spec's fidelity was not applied"
        assert isinstance(oracle.fidelity, str) and oracle.fidelity, "empty fidelity label"

    def test_label_returns_a_labelled_copy(self, oracle_case: OracleCase) -> None:
        case = oracle_case
        out, n = case.labelled, len(case.before)
        assert out is not case.structure, "label() must return a copy, not its input"
        assert out.calc is not None, "the labelled copy carries no calculator"
        np.testing.assert_array_equal(out.numbers, case.before.numbers)
        np.testing.assert_allclose(out.positions, case.before.positions, atol=1e-12)
        energy = out.get_potential_energy()
        assert isinstance(energy, float) and np.isfinite(energy), f"energy {energy!r}"
        forces = out.get_forces()
        assert forces.shape == (n, 3), f"forces of shape {forces.shape}, expected {(n, 3)}"
        assert np.all(np.isfinite(forces)), "non-finite forces"
        if case.expects_stress:
            assert "stress" in out.calc.results, "a periodic cell's label lacks the stress"
        if "stress" in out.calc.results:
            assert case.structure.pbc.all(), "stress on a cell that is not periodic"
            stress = out.get_stress(voigt=True)
            assert stress.shape == (6,) and np.all(np.isfinite(stress)), f"stress {stress}"
        info = out.info
        for key in ("fidelity", "oracle", "oracle_seconds"):
            assert key in info, f"info lacks '{key}'"
        assert info["fidelity"] == case.oracle.fidelity
        assert info["oracle"] == case.oracle.describe()
        seconds = info["oracle_seconds"]
        assert isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
        assert seconds >= 0, f"oracle_seconds {seconds!r}"

    def test_label_leaves_its_input_unchanged(self, oracle_case: OracleCase) -> None:
        atoms, before = oracle_case.structure, oracle_case.before
        assert atoms.calc is oracle_case.before_calc, "label() changed the input's calculator"
        np.testing.assert_array_equal(atoms.numbers, before.numbers)
        np.testing.assert_array_equal(atoms.positions, before.positions)
        np.testing.assert_array_equal(atoms.cell.array, before.cell.array)
        np.testing.assert_array_equal(atoms.pbc, before.pbc)
        assert sorted(atoms.arrays) == sorted(before.arrays), "label() changed the input's arrays"
        assert sorted(atoms.info) == sorted(before.info), "label() changed the input's info"

    def test_forces_are_minus_the_energy_gradient(self, oracle_case: OracleCase) -> None:
        case = oracle_case
        components = pick_components(len(case.before), self.fd_components)
        numerical = numerical_forces(case.energy, case.before, components, self.fd_step)
        forces = case.labelled.get_forces()
        analytic = np.array([forces[i, axis] for i, axis in components])
        np.testing.assert_allclose(
            analytic,
            numerical,
            rtol=0,
            atol=self.force_tolerance,
            err_msg=f"forces against -dE/dx (finite differences) at (atom, axis) {components}",
        )

    def test_stress_is_the_strain_derivative(self, oracle_case: OracleCase) -> None:
        case = oracle_case
        if "stress" not in case.labelled.calc.results:
            pytest.skip("the label has no stress")
        numerical = numerical_stress(case.energy, case.before, self.strain_step)
        np.testing.assert_allclose(
            case.labelled.get_stress(voigt=True),
            numerical,
            rtol=0,
            atol=self.stress_tolerance,
            err_msg="stress against (1/V) dE/d(strain) (finite differences, Voigt order)",
        )

    def test_energy_is_translation_invariant(self, oracle_case: OracleCase) -> None:
        shifted = oracle_case.before.copy()
        shifted.translate(self.translation)
        if shifted.pbc.any():
            shifted.wrap()
        out = oracle_case.oracle.label(shifted)
        reference = oracle_case.labelled
        change = out.get_potential_energy() - reference.get_potential_energy()
        assert abs(change) <= self.energy_tolerance, (
            f"the energy changed by {change:.3g} eV under a rigid translation"
        )
        np.testing.assert_allclose(
            out.get_forces(),
            reference.get_forces(),
            rtol=0,
            atol=self.force_tolerance,
            err_msg="the forces changed under a rigid translation",
        )

    def test_labelling_is_reproducible(self, oracle_case: OracleCase) -> None:
        again = oracle_case.oracle.label(oracle_case.before.copy())
        first = oracle_case.labelled
        tol = self.repeat_tolerance
        change = again.get_potential_energy() - first.get_potential_energy()
        assert abs(change) <= tol, f"labelling the same structure again: energy {change:+.3g} eV"
        np.testing.assert_allclose(again.get_forces(), first.get_forces(), rtol=0, atol=tol)
        if "stress" in first.calc.results:
            np.testing.assert_allclose(again.get_stress(), first.get_stress(), rtol=0, atol=tol)

    def test_check_names_an_unsupported_element(self, oracle_case: OracleCase) -> None:
        oracle = oracle_case.oracle
        oracle.check(oracle_case.before.copy())  # the contract's own structure passes
        supported = oracle.supported_elements
        if supported is None:
            pytest.skip("the oracle supports every element")
        symbol = self.unsupported_element or next(
            (s for s in reversed(chemical_symbols[1:]) if s not in supported), None
        )
        if symbol is None:
            pytest.skip("the oracle supports every element")
        assert symbol not in supported, f"'{symbol}' is among the supported elements"
        bad = oracle_case.before.copy()
        bad.symbols[0] = symbol
        # label() checks too, before anything is computed
        for call in (oracle.check, oracle.label):
            try:
                call(bad)
            except OracleInputError as exc:
                assert re.search(rf"\b{re.escape(symbol)}\b", str(exc)), (
                    f"{call.__name__}() rejected {symbol} without naming it: {exc}"
                )
            else:
                raise AssertionError(f"{call.__name__}() accepted the unsupported element {symbol}")

    def test_describe_is_a_non_empty_string(self, oracle_case: OracleCase) -> None:
        text = oracle_case.oracle.describe()
        assert isinstance(text, str) and text.strip(), f"describe() gave {text!r}"
