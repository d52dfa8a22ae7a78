"""Unit cells, supercells, geometry checks and relaxation."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from helpers import NoStressEMT

from alkappa.structure import (
    build_supercell,
    check_geometry,
    nearest_neighbour_distance,
    read_unit_cell,
    relax_structure,
    resize_supercell,
)


def test_build_and_file_specs_agree(tmp_path):
    built = read_unit_cell({"build": {"name": "CuI", "crystalstructure": "zincblende", "a": 6.05}})
    path = tmp_path / "cui.cif"
    built.write(path)
    read = read_unit_cell({"file": str(path)})
    assert read.get_chemical_formula() == built.get_chemical_formula()
    np.testing.assert_allclose(read.cell.cellpar(), built.cell.cellpar(), atol=1e-6)


def test_missing_file_and_bad_build():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_unit_cell({"file": "no/such/file.cif"})
    with pytest.raises(ValueError, match=r"ase\.build\.bulk"):
        read_unit_cell({"build": {"name": "CuI", "crystalstructure": "nonsense"}})


def test_supercell_sizes():
    unit = bulk("CuI", "zincblende", a=6.05, cubic=True)
    assert len(build_supercell(unit, [2, 2, 2])) == 64
    assert len(build_supercell(unit, [[2, 0, 0], [0, 1, 0], [0, 0, 1]])) == 16
    with pytest.raises(ValueError, match="non-singular"):
        build_supercell(unit, [[1, 0, 0], [1, 0, 0], [0, 0, 1]])


def test_nearest_neighbour_distance_zincblende():
    atoms = bulk("CuI", "zincblende", a=6.05, cubic=True).repeat(2)
    assert nearest_neighbour_distance(atoms) == pytest.approx(6.05 * np.sqrt(3) / 4)


def test_overlapping_atoms_rejected():
    atoms = bulk("Cu", cubic=True)
    atoms.positions[1] = atoms.positions[0] + [0.1, 0, 0]
    with pytest.raises(ValueError, match=r"atoms 0 \(Cu\) and 1 \(Cu\) are 0.100 Å apart"):
        check_geometry(atoms)


def test_relaxation_finds_emt_lattice_constant():
    # independent reference: the EMT energy minimum over the lattice constant by a scan
    scan = np.linspace(3.55, 3.65, 41)
    energies = []
    for a in scan:
        atoms = bulk("Cu", "fcc", a=a, cubic=True)
        atoms.calc = EMT()
        energies.append(atoms.get_potential_energy())
    a_scan = scan[int(np.argmin(energies))]
    start = bulk("Cu", "fcc", a=3.7, cubic=True)
    result = relax_structure(start, EMT(), cell=True, fmax=1e-4, max_steps=200)
    assert result.converged
    a_relaxed = result.atoms.cell.cellpar()[0]
    assert a_relaxed == pytest.approx(a_scan, abs=0.003)
    assert result.oracle_calls >= result.steps
    assert result.max_stress < 1e-4


def test_relaxation_with_an_oracle_without_stress():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    atoms.positions[0] += [0.05, 0.02, 0.0]
    with pytest.raises(ValueError, match="cell relaxation needs the stress"):
        relax_structure(atoms, NoStressEMT(), cell=True)
    result = relax_structure(atoms, NoStressEMT(), cell=False, keep_symmetry=False, fmax=0.005)
    assert result.converged and result.max_force < 0.005
    assert result.max_stress == 0.0  # not computed, not invented
    np.testing.assert_allclose(result.cell_after, result.cell_before)


def test_resized_supercell_keeps_the_relaxed_lattice():
    unit = bulk("Cu", "fcc", a=3.61, cubic=True)
    relaxed = build_supercell(unit, [2, 1, 1])
    relaxed.set_cell(relaxed.cell * 1.013, scale_atoms=True)
    big = resize_supercell(unit, relaxed, [2, 1, 1], [3, 3, 3])
    # the same crystal built directly at the relaxed lattice constant
    expected = bulk("Cu", "fcc", a=3.61 * 1.013, cubic=True).repeat((3, 3, 3))
    assert len(big) == len(expected) == 108
    np.testing.assert_allclose(big.cell[:], expected.cell[:], atol=1e-10)
    assert nearest_neighbour_distance(big) == pytest.approx(3.61 * 1.013 / np.sqrt(2))
    # a matrix supercell of the primitive cell
    prim = bulk("Cu", "fcc", a=3.61)
    matrix = [[-1, 1, 1], [1, -1, 1], [1, 1, -1]]  # the conventional cube
    cube = build_supercell(prim, matrix)
    cube.set_cell(cube.cell * 0.99, scale_atoms=True)
    resized = resize_supercell(prim, cube, matrix, [2, 2, 2])
    assert len(resized) == 8
    np.testing.assert_allclose(resized.cell[:], prim.cell[:] * 0.99 * 2, atol=1e-10)
