"""Oracle plugins: registry, analytic potentials, tblite, ASE calculators, TorchScript NequIP.

Every numerical check compares against something independent of the code under test: ASE's
own calculators called directly, analytic formulas, finite differences of the energy.
"""

from __future__ import annotations

import ctypes
import os
import sys
import types
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

from alkappa.oracles import (
    Oracle,
    OracleError,
    OracleInputError,
    available_oracles,
    get_oracle,
)
from alkappa.testing import OracleContract

# shared/ lies beside the repository (in CI too); ALKAPPA_REFERENCE_DIR points elsewhere
REFERENCE_MODEL = (
    Path(
        os.environ.get(
            "ALKAPPA_REFERENCE_DIR", Path(__file__).resolve().parents[2] / "shared/reference"
        )
    )
    / "cui_nequip-0.5.6_almomd-tutorial.pth"
)


def cui(a: float = 6.05, repeat: int = 1) -> Atoms:
    """Zincblende CuI, cubic 8-atom cell (repeated)."""
    return bulk("CuI", "zincblende", a=a, cubic=True).repeat(repeat)


def rattled(atoms: Atoms, stdev: float = 0.05, seed: int = 0) -> Atoms:
    atoms = atoms.copy()
    atoms.rattle(stdev, seed=seed)
    return atoms


# -- registry / get_oracle ---------------------------------------------------------------------


def test_builtin_oracles_are_registered_as_entry_points():
    names = available_oracles()
    for name in ("tblite", "emt", "lj", "ase", "torchscript-nequip"):
        assert name in names


def test_unknown_oracle_name_lists_the_available_ones():
    with pytest.raises(OracleInputError) as err:
        get_oracle({"name": "castep-magic"})
    msg = str(err.value)
    assert "castep-magic" in msg
    for name in ("tblite", "emt", "lj", "ase", "torchscript-nequip"):
        assert name in msg


def test_missing_oracle_name_is_a_clear_error():
    with pytest.raises(OracleInputError, match="needs a 'name'"):
        get_oracle({"fidelity": "pbe"})


def test_unknown_option_is_named_together_with_the_valid_ones():
    with pytest.raises(OracleInputError) as err:
        get_oracle({"name": "tblite", "methd": "GFN2-xTB"})
    msg = str(err.value)
    assert "methd" in msg and "method" in msg and "max_iterations" in msg


def test_get_oracle_passes_fidelity_and_options():
    oracle = get_oracle({"name": "lj", "fidelity": "toy", "sigma": 2.0})
    assert isinstance(oracle, Oracle)
    assert oracle.fidelity == "toy"
    assert oracle.options["sigma"] == 2.0
    assert get_oracle({"name": "lj"}).fidelity == "lj"


# -- the plugin contract (alkappa.testing) -----------------------------------------------------


class TestEMTContract(OracleContract):
    oracle_spec: ClassVar[dict] = {"name": "emt"}
    # EMT's finite differences agree to ~1e-8 eV/Å: the default tolerances are far looser
    force_tolerance = 1e-6
    stress_tolerance = 1e-7

    def oracle_structure(self) -> Atoms:
        return rattled(bulk("Cu", "fcc", a=3.6, cubic=True), seed=1)


class TestLennardJonesContract(OracleContract):
    """A molecule (no stress) and an oracle for any element (no check to fail)."""

    oracle_spec: ClassVar[dict] = {"name": "lj", "sigma": 2.3, "epsilon": 0.05, "rc": 6.0}
    force_tolerance = 1e-6

    def oracle_structure(self) -> Atoms:
        from ase.cluster import Icosahedron

        return rattled(Icosahedron("Ar", 1, latticeconstant=3.7), seed=2)


class TestTBLiteContract(OracleContract):
    """GFN1-xTB on the 2-atom Si cell (a Γ-point toy, but a real SCF: fast enough)."""

    oracle_spec: ClassVar[dict] = {"name": "tblite", "min_cell_width": 0, "threads": 1}
    force_tolerance = 1e-5  # measured: 3e-7
    stress_tolerance = 2e-6  # measured: 3e-7
    # a rigid shift moves the energy by ~1.5e-6 eV whatever the SCF accuracy (tblite's
    # real-space lattice sums)
    energy_tolerance = 1e-5

    def oracle_structure(self) -> Atoms:
        return rattled(bulk("Si", "diamond", a=5.43), stdev=0.03, seed=1)


class TestASECalculatorContract(OracleContract):
    """The ``ase`` oracle with an in-process calculator and a list of supported elements."""

    oracle_spec: ClassVar[dict] = {
        "name": "ase",
        "calculator": "ase.calculators.emt.EMT",
        "fidelity": "emt-via-ase",
        "supported_elements": ["Cu", "Ag"],
    }
    force_tolerance = 1e-6
    stress_tolerance = 1e-7

    def oracle_structure(self) -> Atoms:
        atoms = bulk("Cu", "fcc", a=3.65, cubic=True)
        atoms.symbols[0] = "Ag"
        return rattled(atoms, seed=3)


# -- analytic ----------------------------------------------------------------------------------


def test_emt_label_matches_ase_emt_and_carries_provenance():
    atoms = rattled(bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2), seed=1)
    out = get_oracle({"name": "emt"}).label(atoms)

    ref = atoms.copy()
    ref.calc = EMT()
    assert out.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-12)
    np.testing.assert_allclose(out.get_forces(), ref.get_forces(), atol=1e-12)
    np.testing.assert_allclose(out.get_stress(), ref.get_stress(), atol=1e-12)
    assert out.info["fidelity"] == "emt"
    assert out.info["oracle"] == "ASE EMT"
    # oracle_seconds and an unchanged input: TestEMTContract


def test_emt_supported_elements_come_from_ase_parameters():
    from ase.calculators import emt

    oracle = get_oracle({"name": "emt"})
    assert oracle.supported_elements == set(emt.parameters)
    assert {"Cu", "Al", "Au"} <= oracle.supported_elements


def test_check_rejects_an_unsupported_element_by_name():
    atoms = Atoms("CuSi", positions=[[0, 0, 0], [2.3, 0, 0]])
    with pytest.raises(OracleInputError, match=r"element\(s\) Si$"):
        get_oracle({"name": "emt"}).check(atoms)
    # label checks before computing
    with pytest.raises(OracleInputError, match="Si"):
        get_oracle({"name": "emt"}).label(atoms)


def test_lennard_jones_dimer_matches_the_analytic_formula():
    sigma, epsilon, r = 1.3, 0.7, 1.6
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, r]])
    out = get_oracle({"name": "lj", "sigma": sigma, "epsilon": epsilon, "rc": 1000.0}).label(dimer)
    x6 = (sigma / r) ** 6
    energy = 4 * epsilon * (x6**2 - x6)
    force_on_2 = 24 * epsilon / r * (2 * x6**2 - x6)  # along +z (repulsive if positive)
    assert out.get_potential_energy() == pytest.approx(energy, rel=1e-9)
    np.testing.assert_allclose(out.get_forces()[1], [0, 0, force_on_2], atol=1e-10)
    np.testing.assert_allclose(out.get_forces()[0], [0, 0, -force_on_2], atol=1e-10)
    # a molecule has no stress: TestLennardJonesContract
    assert get_oracle({"name": "lj"}).supported_elements is None


def test_lennard_jones_rejects_nonsense_parameters():
    with pytest.raises(OracleInputError, match="sigma"):
        get_oracle({"name": "lj", "sigma": -1.0})


# -- failures of the calculation are OracleError -----------------------------------------------


class _RaisingCalculator(Calculator):
    implemented_properties = ("energy", "forces", "stress")

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        raise RuntimeError("the DFT code segfaulted")


class _NaNCalculator(Calculator):
    implemented_properties = ("energy", "forces", "stress")

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        n = len(self.atoms)
        self.results = {"energy": 0.0, "forces": np.full((n, 3), np.nan), "stress": np.zeros(6)}


@pytest.fixture
def fake_calculators(monkeypatch):
    """A module ``alkappa_fake_calcs`` with failing calculators, importable by dotted path."""
    module = types.ModuleType("alkappa_fake_calcs")
    module.Raising = _RaisingCalculator
    module.NaN = _NaNCalculator
    monkeypatch.setitem(sys.modules, "alkappa_fake_calcs", module)
    return module


def test_a_crashing_calculator_gives_oracle_error(fake_calculators, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    oracle = get_oracle({"name": "ase", "calculator": "alkappa_fake_calcs.Raising"})
    with pytest.raises(OracleError, match="segfaulted") as err:
        oracle.label(cui())
    assert "ASE _RaisingCalculator" in str(err.value)
    # the run directory of a failed call is kept for inspection and named in the message
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("alkappa-")]
    assert len(kept) == 1 and str(kept[0]) in str(err.value)


def test_non_finite_forces_give_oracle_error(fake_calculators, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    oracle = get_oracle({"name": "ase", "calculator": "alkappa_fake_calcs.NaN"})
    with pytest.raises(OracleError, match="non-finite"):
        oracle.label(cui())


# -- tblite ------------------------------------------------------------------------------------


def test_tblite_supports_exactly_what_tblite_itself_accepts():
    from tblite.interface import Calculator as TBCalculator

    oracle = get_oracle({"name": "tblite"})
    assert "Rn" in oracle.supported_elements and "Fr" not in oracle.supported_elements
    assert len(oracle.supported_elements) == 86

    def accepted(z: int) -> bool:
        try:
            TBCalculator("GFN1-xTB", np.array([z]), np.zeros((1, 3)), 0, z % 2)
        except Exception:
            return False
        return True

    assert accepted(86) and accepted(1) and not accepted(87)
    with pytest.raises(OracleInputError, match=r"element\(s\) Fr"):
        oracle.check(Atoms("FrI", positions=[[0, 0, 0], [3, 0, 0]]))


def test_tblite_fidelity_and_description_follow_the_method():
    assert get_oracle({"name": "tblite"}).fidelity == "gfn1"
    gfn2 = get_oracle({"name": "tblite", "method": "GFN2-xTB"})
    assert gfn2.fidelity == "gfn2" and gfn2.describe() == "tblite GFN2-xTB"
    assert get_oracle({"name": "tblite", "fidelity": "low"}).fidelity == "low"
    with pytest.raises(OracleInputError, match="GFN3"):
        get_oracle({"name": "tblite", "method": "GFN3-xTB"})


@pytest.mark.parametrize("method", ["GFN1-xTB", "GFN2-xTB"])
def test_tblite_label_matches_tblite_directly(method):
    from tblite.ase import TBLite

    from alkappa.oracles.tblite import openmp_threads

    atoms = rattled(cui(), seed=2)
    oracle = get_oracle({"name": "tblite", "method": method, "min_cell_width": 0, "threads": 1})
    out = oracle.label(atoms)
    ref = atoms.copy()
    ref.calc = TBLite(method=method, verbosity=0)
    with openmp_threads(1):  # oversubscribed OpenMP threads crawl on a busy machine
        ref.get_potential_energy()
    assert out.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-6)
    np.testing.assert_allclose(out.get_forces(), ref.get_forces(), atol=1e-5)
    np.testing.assert_allclose(out.get_stress(), ref.get_stress(), atol=1e-6)
    assert out.info["fidelity"] == {"GFN1-xTB": "gfn1", "GFN2-xTB": "gfn2"}[method]
    assert out.info["oracle"] == f"tblite {method}"


def test_tblite_forces_and_stress_are_energy_derivatives():
    atoms = rattled(cui(), seed=3)
    oracle = get_oracle({"name": "tblite", "accuracy": 0.01, "min_cell_width": 0, "threads": 1})
    calc = oracle.make_calculator()
    atoms.calc = calc
    forces = atoms.get_forces()
    stress = atoms.get_stress()
    h = 1e-3
    atom, axis = 5, 1
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[atom, axis] += sign * h
        moved.calc = oracle.make_calculator()
        energies.append(moved.get_potential_energy())
    fd_force = -(energies[0] - energies[1]) / (2 * h)
    assert forces[atom, axis] == pytest.approx(fd_force, abs=2e-4)
    numerical = calculate_numerical_stress(atoms, eps=1e-5, force_consistent=False)
    np.testing.assert_allclose(stress, numerical, atol=2e-5)


def test_tblite_scf_non_convergence_is_an_oracle_error():
    oracle = get_oracle({"name": "tblite", "max_iterations": 2, "min_cell_width": 0})
    with pytest.raises(OracleError, match="SCF not converged"):
        oracle.label(rattled(cui(), seed=4))


def test_tblite_warns_about_cells_too_small_for_gamma_point_sampling():
    oracle = get_oracle({"name": "tblite"})
    with pytest.warns(UserWarning, match="Γ point"):
        oracle.check(cui())  # 6.05 Å wide
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        oracle.check(cui(repeat=2))  # 12.1 Å wide
        oracle.check(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]))  # no cell at all


def test_tblite_thread_limit_is_applied_during_the_call_and_restored():
    from alkappa.oracles.tblite import _loaded_openmp_runtime, openmp_threads

    lib = _loaded_openmp_runtime()
    if lib is None:
        pytest.skip("no OpenMP runtime found in this process")
    before = lib.omp_get_max_threads()
    with openmp_threads(1):
        assert lib.omp_get_max_threads() == 1
    assert lib.omp_get_max_threads() == before

    seen = []
    from tblite.ase import TBLite

    original = TBLite.calculate

    def spy(self, *args, **kwargs):
        seen.append(lib.omp_get_max_threads())
        return original(self, *args, **kwargs)

    atoms = rattled(cui(), seed=5)
    try:
        TBLite.calculate = spy
        one = get_oracle({"name": "tblite", "threads": 1, "min_cell_width": 0}).label(atoms)
    finally:
        TBLite.calculate = original
    assert seen == [1]
    default = get_oracle({"name": "tblite", "min_cell_width": 0}).label(atoms)
    assert one.get_potential_energy() == pytest.approx(default.get_potential_energy(), abs=1e-8)
    assert isinstance(lib, ctypes.CDLL)


# -- any ASE calculator ------------------------------------------------------------------------


def test_ase_oracle_unknown_import_path_is_one_clear_error():
    for path in ("ase.calculators.nonexistent.Foo", "ase.calculators.emt.Foo", "Foo"):
        with pytest.raises(OracleInputError, match=path.replace(".", r"\.")):
            get_oracle({"name": "ase", "calculator": path})
    with pytest.raises(OracleInputError, match="'calculator'"):
        get_oracle({"name": "ase"})


def test_ase_oracle_vasp_gets_command_directory_and_settings(tmp_path):
    from ase.calculators.vasp import Vasp

    oracle = get_oracle(
        {
            "name": "ase",
            "fidelity": "pbe",
            "calculator": "ase.calculators.vasp.Vasp",
            "command": "srun --ntasks=32 vasp_std",
            "kwargs": {"xc": "PBE", "encut": 450, "kpts": [2, 2, 2]},
        }
    )
    calc = oracle.make_calculator(tmp_path / "run")
    assert isinstance(calc, Vasp)
    assert calc.command == "srun --ntasks=32 vasp_std"
    assert Path(calc.directory) == tmp_path / "run"
    assert calc.float_params["encut"] == 450
    assert oracle.command_line() == ["srun", "--ntasks=32", "vasp_std"]
    assert oracle.fidelity == "pbe" and oracle.describe() == "ASE Vasp"


def test_ase_oracle_vasp_pseudo_dir_is_vasp_pp_path_during_the_call_only(tmp_path, monkeypatch):
    from ase.calculators.vasp import Vasp

    monkeypatch.delenv("VASP_PP_PATH", raising=False)
    seen = {}

    def fake_calculate(self, atoms=None, properties=None, system_changes=all_changes):
        # stands in for running VASP: record what it would see, return plausible results
        seen["VASP_PP_PATH"] = os.environ.get("VASP_PP_PATH")
        seen["directory"] = self.directory
        self.atoms = atoms.copy()
        n = len(atoms)
        self.results = {"energy": -1.0, "forces": np.zeros((n, 3)), "stress": np.zeros(6)}

    monkeypatch.setattr(Vasp, "calculate", fake_calculate)
    oracle = get_oracle(
        {
            "name": "ase",
            "calculator": "ase.calculators.vasp.Vasp",
            "command": "vasp_std",
            "pseudo_dir": str(tmp_path / "potentials"),
            "directory": str(tmp_path / "runs"),
        }
    )
    atoms = cui()
    out = oracle.label(atoms)
    assert seen["VASP_PP_PATH"] == str(tmp_path / "potentials")
    assert "VASP_PP_PATH" not in os.environ
    assert out.get_potential_energy() == -1.0
    run_dir = Path(out.info["oracle_directory"])
    assert Path(seen["directory"]) == run_dir and run_dir.parent == tmp_path / "runs"
    assert run_dir.is_dir()


def test_ase_oracle_aims_builds_a_profile_that_reaches_the_input_files(tmp_path):
    from ase.calculators.aims import Aims, AimsProfile

    species = tmp_path / "species"
    species.mkdir()
    (species / "29_Cu_default").write_text("  species Cu  # fake basis\n")
    (species / "53_I_default").write_text("  species I  # fake basis\n")
    oracle = get_oracle(
        {
            "name": "ase",
            "calculator": "ase.calculators.aims.Aims",
            "command": "mpirun -n 64 aims.x",
            "species_dir": str(species),
            "kwargs": {"xc": "pbe", "k_grid": [2, 2, 2], "compute_forces": True},
        }
    )
    assert oracle.command_line() == ["mpirun", "-n", "64", "aims.x"]
    calc = oracle.make_calculator(tmp_path / "run")
    assert isinstance(calc, Aims) and isinstance(calc.profile, AimsProfile)
    assert calc.profile.command == "mpirun -n 64 aims.x"
    assert calc.profile.default_species_directory == str(species)
    assert calc.directory == tmp_path / "run"
    # writing the inputs (not running) shows the species directory is really used
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # ASE: aims IO moving to a plugin
        calc.write_inputfiles(cui(), ["energy", "forces"])
    control = (tmp_path / "run" / "control.in").read_text()
    assert "species Cu  # fake basis" in control and "species I  # fake basis" in control
    assert "k_grid" in control


def test_ase_oracle_espresso_builds_a_profile_with_pseudo_dir(tmp_path):
    from ase.calculators.espresso import Espresso, EspressoProfile

    oracle = get_oracle(
        {
            "name": "ase",
            "calculator": "ase.calculators.espresso.Espresso",
            "command": "mpirun -n 8 pw.x -nk 2",
            "pseudo_dir": str(tmp_path / "pseudo"),
            "kwargs": {"pseudopotentials": {"Cu": "Cu.upf", "I": "I.upf"}, "tstress": True},
        }
    )
    assert oracle.command_line() == ["mpirun", "-n", "8", "pw.x", "-nk", "2", "-in", "espresso.pwi"]
    calc = oracle.make_calculator(tmp_path / "run")
    assert isinstance(calc, Espresso) and isinstance(calc.profile, EspressoProfile)
    assert calc.profile.pseudo_dir == str(tmp_path / "pseudo")
    calc.write_inputfiles(cui(), ["energy", "forces"])
    pwi = (tmp_path / "run" / "espresso.pwi").read_text()
    assert f"pseudo_dir       = '{tmp_path / 'pseudo'}'" in pwi


def test_ase_oracle_espresso_without_pseudo_dir_says_so():
    oracle = get_oracle(
        {"name": "ase", "calculator": "ase.calculators.espresso.Espresso", "command": "pw.x"}
    )
    # nothing is constructed while the config is read; the first calculator says it
    with pytest.raises(OracleInputError, match="pseudo_dir"):
        oracle.make_calculator()


def test_ase_oracle_names_only_calculator_classes_and_calls_nothing_when_read(
    tmp_path, monkeypatch
):
    """A config is data: the ase oracle accepts an ASE calculator class, never other code,
    and reading (validating) it constructs nothing."""
    marker = tmp_path / "FILE"
    for path in ("subprocess.call", "os.system", "builtins.exec", "ase.build.bulk"):
        with pytest.raises(OracleInputError, match=r"not an ASE calculator class"):
            get_oracle(
                {
                    "name": "ase",
                    "calculator": path,
                    "kwargs": {"args": f"touch {marker}", "shell": True},
                }
            )
    assert not marker.exists()
    # a calculator class is constructed at the first calculation, not when the config is read
    built = []

    class Recording(EMT):
        def __init__(self, **kwargs):
            built.append(kwargs)
            super().__init__()

    module = types.ModuleType("alkappa_recording_calcs")
    module.Recording = Recording
    monkeypatch.setitem(sys.modules, "alkappa_recording_calcs", module)
    oracle = get_oracle(
        {"name": "ase", "calculator": "alkappa_recording_calcs.Recording", "kwargs": {"x": 1}}
    )
    oracle.check(Atoms("Cu", cell=[3, 3, 3], pbc=True))
    assert built == []
    oracle.make_calculator()
    assert built == [{"x": 1}]


def test_ase_oracle_gpaw_runs_in_process():
    pytest.importorskip("gpaw", reason="GPAW is not installed here")
    oracle = get_oracle(
        {"name": "ase", "calculator": "gpaw.GPAW", "kwargs": {"mode": "pw", "txt": None}}
    )
    assert oracle.command_line() is None
    # gpaw.GPAW is a class in older GPAW, a factory of gpaw's ASECalculator in newer ones
    assert type(oracle.make_calculator()).__module__.split(".")[0] == "gpaw"


def test_ase_oracle_gpaw_forces_match_finite_differences():
    """A real GPAW (PW, LDA, 2-atom Si) label: the force equals -dE/dx by central differences."""
    pytest.importorskip("gpaw", reason="GPAW is not installed here")
    spec = {
        "name": "ase",
        "calculator": "gpaw.GPAW",
        "fidelity": "lda",
        "kwargs": {
            "mode": {"name": "pw", "ecut": 250},
            "xc": "LDA",
            "kpts": [2, 2, 2],
            "txt": None,
            "convergence": {"energy": 1e-7, "forces": 1e-5},
        },
    }
    oracle = get_oracle(spec)
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.positions[0] += [0.05, -0.03, 0.02]
    out = oracle.label(atoms)
    assert out.info["fidelity"] == "lda" and out.get_stress().shape == (6,)
    h = 0.01
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[0, 0] += sign * h
        energies.append(oracle.label(moved).get_potential_energy())
    fd = -(energies[0] - energies[1]) / (2 * h)
    assert out.get_forces()[0, 0] == pytest.approx(fd, abs=5e-3)
    np.testing.assert_allclose(out.get_forces().sum(axis=0), 0.0, atol=5e-3)


def test_ase_oracle_in_process_calculator_matches_and_cleans_up(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    atoms = rattled(bulk("Cu", "fcc", a=3.6, cubic=True), seed=6)
    out = get_oracle({"name": "ase", "calculator": "ase.calculators.emt.EMT"}).label(atoms)
    ref = get_oracle({"name": "emt"}).label(atoms)
    assert out.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-12)
    np.testing.assert_allclose(out.get_stress(), ref.get_stress(), atol=1e-12)
    assert out.info["fidelity"] == "emt" and out.info["oracle"] == "ASE EMT"
    # the temporary run directory of a successful call is gone
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("alkappa-")]
    with pytest.raises(OracleInputError, match="no 'command'"):
        get_oracle({"name": "ase", "calculator": "ase.calculators.emt.EMT", "command": "x"})


def test_ase_oracle_run_directories_are_per_structure(tmp_path):
    oracle = get_oracle(
        {"name": "ase", "calculator": "ase.calculators.emt.EMT", "directory": str(tmp_path)}
    )
    a, b = rattled(cui(), seed=7), rattled(cui(), seed=8)
    assert oracle.run_directory(a) != oracle.run_directory(b)
    assert oracle.run_directory(a) == oracle.run_directory(a.copy())
    assert oracle.run_directory(a).name.startswith("Cu4I4-")
    with pytest.raises(OracleInputError, match="directory_template"):
        get_oracle(
            {"name": "ase", "calculator": "ase.calculators.emt.EMT", "directory_template": "{x}"}
        )


def test_ase_oracle_supported_elements_option():
    oracle = get_oracle(
        {"name": "ase", "calculator": "ase.calculators.emt.EMT", "supported_elements": ["Cu"]}
    )
    with pytest.raises(OracleInputError, match=r"element\(s\) I$"):
        oracle.check(cui())
    with pytest.raises(OracleInputError, match="Xx"):
        get_oracle(
            {"name": "ase", "calculator": "ase.calculators.emt.EMT", "supported_elements": ["Xx"]}
        )


# -- TorchScript NequIP: a small scripted stand-in model with a stress output ---------------------


def _pair_model():
    """A smooth pair potential with NequIP 0.5.x's TorchScript interface and a stress output."""

    class PairModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shift = torch.nn.Parameter(torch.tensor([-1.0, -2.5], dtype=torch.float64))
            self.r_max = 3.5

        def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            pos = data["pos"].requires_grad_(True)
            cell = data["cell"]
            strain = torch.zeros((3, 3), dtype=pos.dtype).requires_grad_(True)
            deform = torch.eye(3, dtype=pos.dtype) + 0.5 * (strain + strain.transpose(0, 1))
            pos_s = pos @ deform
            cell_s = cell @ deform
            i = data["edge_index"][0]
            j = data["edge_index"][1]
            vec = pos_s[j] - pos_s[i] + data["edge_cell_shift"] @ cell_s
            x = 1.0 - torch.linalg.norm(vec, dim=1) / self.r_max
            pair = 0.5 * (3.0 * x**4 - 2.0 * x**2)  # halved: each pair appears twice
            atomic = self.shift[data["atom_types"]].clone()
            atomic = atomic.index_add(0, i, pair)
            energy = atomic.sum()
            grads = torch.autograd.grad([energy], [pos, strain])
            g_pos = grads[0]
            g_strain = grads[1]
            assert g_pos is not None and g_strain is not None
            volume = torch.abs(torch.linalg.det(cell))
            return {
                "total_energy": energy.reshape(1, 1),
                "atomic_energy": atomic.unsqueeze(-1),
                "forces": -g_pos,
                "stress": (g_strain / volume).unsqueeze(0),
            }

    return torch.jit.script(PairModel())


@pytest.fixture(scope="module")
def pair_model_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    scripted = _pair_model()
    with_meta = root / "pair_with_metadata.pth"
    torch.jit.save(
        scripted,
        str(with_meta),
        _extra_files={
            "type_names": "Cu I",
            "r_max": "3.5",
            "nequip_version": "0.5.6",
            "config": "model_builders:\n- EnergyModel\n- StressForceOutput\n",
        },
    )
    bare = root / "pair_bare.pth"
    torch.jit.save(scripted, str(bare))
    return with_meta, bare


def test_torchscript_metadata_gives_species_and_cutoff(pair_model_files):
    with_meta, bare = pair_model_files
    oracle = get_oracle({"name": "torchscript-nequip", "model": str(with_meta)})
    assert oracle.species == ["Cu", "I"] and oracle.r_max == 3.5
    assert oracle.supported_elements == {"Cu", "I"}
    assert oracle.fidelity == "pair_with_metadata"
    assert oracle.describe() == "TorchScript NequIP 0.5.6 (pair_with_metadata.pth)"
    with pytest.raises(OracleInputError, match="species"):
        get_oracle({"name": "torchscript-nequip", "model": str(bare)})
    with pytest.raises(OracleInputError, match="r_max"):
        get_oracle({"name": "torchscript-nequip", "model": str(bare), "species": ["Cu", "I"]})
    with pytest.raises(OracleInputError, match="differ"):
        get_oracle({"name": "torchscript-nequip", "model": str(with_meta), "species": ["I", "Cu"]})
    with pytest.raises(OracleInputError, match="below"):
        get_oracle({"name": "torchscript-nequip", "model": str(with_meta), "r_max": 3.0})
    with pytest.raises(OracleInputError, match="not found"):
        get_oracle({"name": "torchscript-nequip", "model": str(with_meta.parent / "nope.pth")})


def test_torchscript_stress_output_is_passed_in_ase_convention(pair_model_files):
    _, bare = pair_model_files
    oracle = get_oracle(
        {"name": "torchscript-nequip", "model": str(bare), "species": ["Cu", "I"], "r_max": 3.5}
    )
    # the bare file has no config metadata, so no stress is advertised ...
    assert "stress" not in oracle.make_calculator().implemented_properties
    with_meta, _ = pair_model_files
    oracle = get_oracle({"name": "torchscript-nequip", "model": str(with_meta), "threads": 1})
    atoms = rattled(cui(), stdev=0.1, seed=9)
    threads_before = torch.get_num_threads()
    out = oracle.label(atoms)
    assert torch.get_num_threads() == threads_before  # the thread limit is scoped to the call
    # ... the one built with StressForceOutput does, and it is (1/V) dE/d(strain) like ASE's
    probe = atoms.copy()
    probe.calc = oracle.make_calculator()
    numerical = calculate_numerical_stress(probe, eps=1e-6, force_consistent=False)
    np.testing.assert_allclose(out.get_stress(), numerical, atol=1e-7)
    numerical_forces = calculate_numerical_forces(probe, eps=1e-4)
    np.testing.assert_allclose(out.get_forces(), numerical_forces, atol=1e-6)
    # per-atom energies carry the per-species shifts (Cu -1.0, I -2.5): the type mapping is right
    per_atom = oracle.make_calculator().get_potential_energies(atoms)
    for index, shift in ((0, -1.0), (1, -2.5)):
        assert atoms[index].symbol == {-1.0: "Cu", -2.5: "I"}[shift]
        expected = shift + _pair_energy_of_atom(atoms, index, 3.5)
        assert per_atom[index] == pytest.approx(expected, abs=1e-10)


def _pair_energy_of_atom(atoms: Atoms, index: int, r_max: float) -> float:
    """Half the pair energy of atom ``index`` with all neighbours, computed with ASE."""
    from ase.neighborlist import neighbor_list

    i, d = neighbor_list("id", atoms, r_max)
    x = 1.0 - d[i == index] / r_max
    return float(np.sum(0.5 * (3.0 * x**4 - 2.0 * x**2)))


# -- TorchScript NequIP: the real CuI model of shared/reference ---------------------------------

needs_reference_model = pytest.mark.skipif(
    not REFERENCE_MODEL.is_file(), reason=f"{REFERENCE_MODEL} not present"
)


@pytest.fixture(scope="module")
def cui_oracle():
    # one thread: correctness tests must not depend on how busy the machine is
    return get_oracle({"name": "torchscript-nequip", "model": str(REFERENCE_MODEL), "threads": 1})


@needs_reference_model
def test_cui_model_metadata(cui_oracle):
    assert cui_oracle.species == ["Cu", "I"]
    assert cui_oracle.r_max == 5.0
    assert "0.5.6" in cui_oracle.describe()
    assert "stress" not in cui_oracle.make_calculator().implemented_properties


@needs_reference_model
def test_cui_model_ideal_supercell_energy_and_symmetry(cui_oracle):
    atoms = cui(6.05, repeat=2)
    atoms.calc = cui_oracle.make_calculator()
    energy = atoms.get_potential_energy()
    # README: the tutorial's 64-atom supercell has -0.14261 eV; the ideal cell at a = 6.05 Å
    # is within 10 meV of it (the exact value depends on the tutorial's own cell)
    assert energy == pytest.approx(-0.14261, abs=0.02)
    # every atom sits on an inversion-free but T_d-symmetric site: forces vanish
    assert np.abs(atoms.get_forces()).max() < 1e-8


@needs_reference_model
def test_cui_model_forces_are_minus_energy_gradient_and_invariant(cui_oracle):
    atoms = rattled(cui(6.05, repeat=2), stdev=0.08, seed=10)
    atoms.calc = cui_oracle.make_calculator()
    forces = atoms.get_forces()
    energy = atoms.get_potential_energy()
    assert np.all(np.isfinite(forces)) and np.abs(forces).max() > 0.1
    # no net force (translation invariance)
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-8)

    h = 1e-3
    atom, axis = 17, 2
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[atom, axis] += sign * h
        moved.calc = cui_oracle.make_calculator()
        energies.append(moved.get_potential_energy())
    fd_force = -(energies[0] - energies[1]) / (2 * h)
    assert forces[atom, axis] == pytest.approx(fd_force, rel=1e-4, abs=1e-4)

    shifted = atoms.copy()
    shifted.translate([0.37, -1.21, 2.9])
    shifted.wrap()
    shifted.calc = cui_oracle.make_calculator()
    assert shifted.get_potential_energy() == pytest.approx(energy, abs=1e-8)
    np.testing.assert_allclose(shifted.get_forces(), forces, atol=1e-8)


@needs_reference_model
def test_cui_model_label_gives_energy_and_forces_without_stress(cui_oracle):
    out = cui_oracle.label(rattled(cui(6.05, repeat=2), seed=11))
    assert np.isfinite(out.get_potential_energy())
    assert "stress" not in out.calc.results
    assert out.info["fidelity"] == "cui_nequip-0.5.6_almomd-tutorial"
