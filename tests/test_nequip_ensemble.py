"""The fast NequIP ensemble calculator against the naive one, its neighbour list, its fallbacks."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet
from helpers import labelled

from alkappa.io.dataset import write_dataset
from alkappa.models._nequip_ensemble import (
    IncompatibleMembersError,
    Member,
    NequIPEnsembleCalculator,
    VerletList,
    compiled_path,
    load_member,
)
from alkappa.models.ensemble import EnsembleCalculator, load_ensemble

# --- the Verlet list against a fresh neighbour search (no torch) -----------------------------


def _fresh_pairs(positions, cell, pbc, cutoff):
    from matscipy.neighbours import neighbour_list

    i, j, s = neighbour_list("ijS", positions=positions, cell=cell, pbc=pbc, cutoff=cutoff)
    return {(a, b, *map(int, c)) for a, b, c in zip(i, j, s, strict=True)}


def _pairs(nl, positions, cell, pbc):
    i, j, s = nl.pairs(positions, cell, pbc)
    assert s.dtype == float and i.dtype == np.int64
    return {(a, b, *map(int, c)) for a, b, c in zip(i, j, np.rint(s), strict=True)}


@pytest.mark.parametrize("pbc", [(True, True, True), (True, False, True)])
def test_verlet_list_equals_fresh_search(pbc):
    rng = np.random.default_rng(0)
    cell = np.array([[7.0, 0.0, 0.0], [1.5, 6.5, 0.0], [0.5, -1.0, 8.0]])  # triclinic
    positions = rng.uniform(0, 1, size=(40, 3)) @ cell
    pbc = np.array(pbc)
    cutoff, skin = 3.0, 1.0
    nl = VerletList(cutoff, skin)
    builds = []
    # small moves reuse the list, a large one or a new cell forces a rebuild
    for amplitude in (0.0, 0.02, 0.02, 0.02, 0.8, 0.02, 0.0):
        positions = positions + rng.normal(scale=amplitude, size=positions.shape)
        if len(builds) == 5:
            cell = cell * 1.02
        assert _pairs(nl, positions, cell, pbc) == _fresh_pairs(positions, cell, pbc, cutoff)
        builds.append(nl.builds)
    assert builds[0] == 1
    assert builds[3] == 1  # three small moves: still within skin / 2
    assert builds[4] == 2  # rattled by 0.8 Å
    assert builds[5] == 3  # strained cell
    assert builds[6] == 3


def test_verlet_list_rebuilds_when_one_atom_moves_past_half_skin():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    cutoff, skin = 3.0, 0.4
    nl = VerletList(cutoff, skin)
    positions, cell, pbc = atoms.positions.copy(), atoms.cell.array, atoms.pbc
    nl.pairs(positions, cell, pbc)
    positions[5, 0] += 0.19  # < skin / 2: reuse
    assert _pairs(nl, positions, cell, pbc) == _fresh_pairs(positions, cell, pbc, cutoff)
    assert nl.builds == 1
    positions[5, 0] += 0.5  # now 0.69 Å from the reference: pairs may have entered
    assert _pairs(nl, positions, cell, pbc) == _fresh_pairs(positions, cell, pbc, cutoff)
    assert nl.builds == 2
    # skin 0: a new search every time
    nl0 = VerletList(cutoff, 0.0)
    for _ in range(3):
        assert _pairs(nl0, positions, cell, pbc) == _fresh_pairs(positions, cell, pbc, cutoff)
    assert nl0.builds == 3


def test_compiled_path_naming(tmp_path):
    assert compiled_path(tmp_path / "model.nequip.zip") == tmp_path / "model.nequip.pt2"
    assert compiled_path(tmp_path / "member_0.nequip.zip") == tmp_path / "member_0.nequip.pt2"


# --- members that cannot share an input (stand-in members, no torch model) -------------------


def _stub(names, r_max=4.0):
    return Member(path=None, model=None, kind="eager", r_max=r_max, type_names=names)


def test_incompatible_members_rejected():
    with pytest.raises(IncompatibleMembersError, match="type names or r_max"):
        NequIPEnsembleCalculator([_stub(["Ag", "Cu"]), _stub(["Cu", "Ag"])])
    with pytest.raises(IncompatibleMembersError, match="type names or r_max"):
        NequIPEnsembleCalculator([_stub(["Cu"]), _stub(["Cu"], r_max=5.0)])
    with pytest.raises(IncompatibleMembersError, match="not a chemical symbol"):
        NequIPEnsembleCalculator([_stub(["CuA"])])
    with pytest.raises(ValueError, match="at least one"):
        NequIPEnsembleCalculator([])


# --- real (tiny) NequIP members ---------------------------------------------------------------

TINY = {
    "num_layers": 2,
    "l_max": 1,
    "num_features": 8,
    "radial_mlp_width": 8,
    "r_max": 4.0,
    "max_epochs": 1,
    "batch_size": 2,
}
SPECIES = ["Ag", "Cu"]


def _alloy(seed: int, rattle: float = 0.08) -> Atoms:
    """32-atom fcc Cu cell with a third of the atoms Ag (two species: type mapping matters)."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat(2)
    symbols = np.array(atoms.get_chemical_symbols())
    symbols[rng.choice(len(atoms), size=len(atoms) // 3, replace=False)] = "Ag"
    atoms.set_chemical_symbols(symbols)
    atoms.positions += rng.normal(scale=rattle, size=atoms.positions.shape)
    return atoms


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    from alkappa.models.nequip import NequIPModel

    root = tmp_path_factory.mktemp("nequip_ensemble")
    write_dataset(root / "train.xyz", [labelled(_alloy(s), EMT()) for s in range(4)])
    write_dataset(root / "val.xyz", [labelled(_alloy(s), EMT()) for s in range(10, 12)])
    model = NequIPModel(**TINY)
    paths = []
    for m in range(3):
        result = model.train(
            root / "train.xyz", root / "val.xyz", root / f"member_{m}", species=SPECIES, seed=m
        )
        paths.append(result.model_path)
    return paths


def _compare(fast, naive, rtol=1e-10):
    f, n = fast.results, naive.results
    assert f.keys() == n.keys()
    assert f["energy"] == pytest.approx(n["energy"], rel=rtol, abs=1e-10)
    assert f["free_energy"] == pytest.approx(n["free_energy"], rel=rtol, abs=1e-10)
    np.testing.assert_allclose(f["energy_members"], n["energy_members"], rtol=rtol, atol=1e-10)
    for key in ("forces", "forces_members", "stress", "stress_members"):
        np.testing.assert_allclose(f[key], n[key], rtol=rtol, atol=1e-12, err_msg=key)
    assert f["uncertainty"] == pytest.approx(n["uncertainty"], rel=1e-8, abs=1e-12)


@pytest.mark.slow
def test_fast_equals_naive(members):
    naive = load_ensemble(members, fast=False)
    fast = load_ensemble(members, skin=0.5)
    assert isinstance(fast, NequIPEnsembleCalculator) and isinstance(fast, EnsembleCalculator)
    assert type(naive) is EnsembleCalculator
    assert fast.size == naive.size == 3 and fast.kinds == ["eager"] * 3
    rng = np.random.default_rng(5)
    atoms = _alloy(7)
    builds = []
    # small steps (list reused), a large one (rebuilt), a strained cell (rebuilt)
    for k, amplitude in enumerate((0.0, 0.02, 0.02, 0.4, 0.02, 0.0)):
        atoms.positions += rng.normal(scale=amplitude, size=atoms.positions.shape)
        if k == 5:
            atoms.set_cell(atoms.cell.array * 1.01, scale_atoms=True)
        for calc in (fast, naive):
            work = atoms.copy()
            work.calc = calc
            work.get_forces()
            work.get_stress()
        _compare(fast, naive)
        builds.append(fast.neighbours.builds)
    assert builds == [1, 1, 1, 2, 2, 3]
    # the members differ, so the uncertainty comparison means something
    assert fast.results["uncertainty"]["force_max"] > 1e-4
    # species the models do not know
    with pytest.raises(ValueError, match=r"\['Au'\] are not among"):
        bad = atoms.copy()
        bad[0].symbol = "Au"
        bad.calc = fast
        bad.get_forces()


@pytest.mark.slow
def test_parallel_members_and_threads(members):
    import torch

    previous = torch.get_num_threads()
    try:
        naive = load_ensemble(members, fast=False, threads=1)
        serial = load_ensemble(members, threads=1)
        assert serial.workers == 1 and torch.get_num_threads() == 1
        parallel = load_ensemble(members, threads=2)
        # two members at a time, one torch thread each: the job's 2 cores, no more
        assert parallel.workers == 2 and torch.get_num_threads() == 1
        atoms = _alloy(3, rattle=0.15)
        for calc in (naive, serial, parallel):
            work = atoms.copy()
            work.calc = calc
            work.get_stress()
        _compare(serial, naive)
        _compare(parallel, naive)
        parallel.close()
    finally:
        torch.set_num_threads(previous)


def test_compiled_members_run_one_after_the_other_by_default(members):
    """Threads pay off for eager members only (benchmarks/ensemble_md.py); an explicit
    ``parallel=True`` still wins."""
    import dataclasses

    import torch

    previous = torch.get_num_threads()
    try:
        eager = [load_member(p, compiled=False) for p in members]
        compiled = [dataclasses.replace(m, kind="compiled") for m in eager]
        assert NequIPEnsembleCalculator(eager, threads=2).workers == 2
        sequential = NequIPEnsembleCalculator(compiled, threads=2)
        assert sequential.workers == 1 and torch.get_num_threads() == 2
        forced = NequIPEnsembleCalculator(compiled, threads=2, parallel=True)
        assert forced.workers == 2
        forced.close()
    finally:
        torch.set_num_threads(previous)


@pytest.mark.slow
def test_uncertainty_every(members):
    naive = load_ensemble(members, fast=False)
    fast = load_ensemble(members, uncertainty_every=3)
    atoms = _alloy(4)
    present = []
    for k in range(4):
        atoms.positions[0, 0] += 0.01
        for calc in (naive, fast):
            work = atoms.copy()
            work.calc = calc
            work.get_forces()
        present.append("uncertainty" in fast.results)
        # on demand it is always there, and equal to the naive one
        assert fast.uncertainty == pytest.approx(naive.uncertainty, rel=1e-8, abs=1e-12), k
    assert present == [True, False, False, True]


def _nve_drift(atoms: Atoms, calc, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Total energy per atom along a velocity-Verlet run, and the final positions."""
    work = atoms.copy()
    work.calc = calc
    dyn = VelocityVerlet(work, timestep=2.0 * units.fs)
    energies = []

    def record():
        energies.append(work.get_total_energy() / len(work))

    dyn.attach(record, interval=1)
    dyn.run(steps)
    return np.array(energies), work.positions.copy()


@pytest.mark.slow
def test_nve_energy_conservation_as_naive(members):
    atoms = _alloy(9, rattle=0.0)
    rng = np.random.default_rng(2)
    # 1000 K worth of momenta, no net momentum
    masses = atoms.get_masses()[:, None]
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * units.kB * 1000.0))
    Stationary(atoms)
    naive = load_ensemble(members, fast=False)
    # a small skin so that the list is rebuilt several times along the run
    fast = load_ensemble(members, skin=0.1)
    e_naive, x_naive = _nve_drift(atoms, naive, 150)
    e_fast, x_fast = _nve_drift(atoms, fast, 150)
    assert fast.neighbours.builds > 2
    drift_naive = np.abs(e_naive - e_naive[0]).max()
    drift_fast = np.abs(e_fast - e_fast[0]).max()
    # same trajectory up to rounding, hence the same energy conservation
    np.testing.assert_allclose(x_fast, x_naive, atol=1e-8)
    np.testing.assert_allclose(e_fast, e_naive, atol=1e-9)
    assert drift_fast <= 1.01 * drift_naive + 1e-9
    # and the conservation itself is good (a broken neighbour list shows up as jumps)
    assert drift_fast < 2e-3, drift_fast


# --- compiled companions: fallbacks (cheap) and one real compilation (opt-in) ----------------


@pytest.mark.slow
def test_unusable_or_stale_compiled_model_falls_back_to_eager(members, tmp_path):
    path = tmp_path / "model.nequip.zip"
    shutil.copyfile(members[0], path)
    pt2 = compiled_path(path)
    pt2.write_bytes(b"not a model")
    with pytest.warns(UserWarning, match="not usable"):
        member = load_member(path)
    assert member.kind == "eager"
    os.utime(pt2, (1, 1))  # older than the package
    with pytest.warns(UserWarning, match="older than"):
        assert load_member(path).kind == "eager"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_member(path, compiled=False).kind == "eager"


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("ALKAPPA_TEST_COMPILE"),
    reason="compiling takes about a minute of CPU; set ALKAPPA_TEST_COMPILE=1",
)
def test_compiled_member_equals_eager(members, tmp_path):
    from alkappa.models.nequip import compile_nequip_model

    paths = []
    for k, src in enumerate(members[:2]):
        (tmp_path / str(k)).mkdir()
        paths.append(tmp_path / str(k) / "model.nequip.zip")
        shutil.copyfile(src, paths[-1])
    compile_nequip_model(paths[0])
    naive = load_ensemble(paths, fast=False)
    fast = load_ensemble(paths)
    assert fast.kinds == ["compiled", "eager"]
    atoms = _alloy(8, rattle=0.12)
    for calc in (naive, fast):
        work = atoms.copy()
        work.calc = calc
        work.get_stress()
    _compare(fast, naive, rtol=1e-9)


# --- LLPR: one member with its last-layer uncertainty ----------------------------------------


@pytest.mark.slow
def test_llpr_calculator_on_a_trained_member(members, tmp_path):
    import torch

    from alkappa.io.dataset import read_dataset
    from alkappa.models._nequip_llpr import (
        NequIPLLPRCalculator,
        evaluate_with_features,
        llpr_path,
        write_llpr,
    )
    from alkappa.models.llpr import LLPR
    from alkappa.models.uncertainty import STATISTICS

    root = members[0].parent.parent
    path = tmp_path / "member_0" / "model.nequip.zip"
    path.parent.mkdir()
    shutil.copyfile(members[0], path)
    written = write_llpr(path, root / "train.xyz", root / "val.xyz")
    assert written == llpr_path(path) and written.is_file()
    llpr = LLPR.load(written)
    assert llpr.info["n_train_atoms"] == 4 * 32 and llpr.info["n_val_atoms"] == 2 * 32
    assert llpr.force_scale2 > 0 and llpr.regulariser > 0
    # the force-uncertainty variant with the smaller validation NLL was kept
    nll = {
        v: llpr.info[f"val_force_nll_{k}"]
        for v, k in ((True, "neighbour_sum"), (False, "own_atom"))
    }
    assert llpr.neighbours == (nll[True] < nll[False])
    assert llpr.info["val_force_nll"] == min(nll.values())

    # f_i are the readout's features: E_i = w . f_i + (per-type shift)
    member = load_member(path, compiled=False)
    single = NequIPEnsembleCalculator([member])
    atoms = read_dataset(root / "val.xyz")[0]
    data = single.model_input(atoms)
    inputs = {k: data[k] for k in member.input_keys}
    with torch.enable_grad():
        out = member.model({**inputs, "pos": inputs["pos"].clone()})
    types = data["atom_types"].numpy()
    f = llpr.features(out["node_features"].detach().numpy(), types)
    shift = out["atomic_energy"].detach().numpy().ravel() - f @ llpr.weights
    for t in np.unique(types):
        assert np.ptp(shift[types == t]) < 1e-10

    # the model option picks the LLPR calculator: the first member's predictions
    calc = load_ensemble([path, members[1]], model={"name": "nequip", "uncertainty": "llpr"})
    assert isinstance(calc, NequIPLLPRCalculator) and calc.kinds == ["eager"]
    naive = load_ensemble([members[0]], fast=False)
    for c in (calc, naive):
        work = atoms.copy()
        work.calc = c
        work.get_stress()
    np.testing.assert_allclose(calc.results["forces"], naive.results["forces"], atol=1e-10)
    assert calc.results["energy"] == pytest.approx(naive.results["energy"], abs=1e-10)
    np.testing.assert_allclose(calc.results["stress"], naive.results["stress"], atol=1e-12)
    assert calc.results["forces_members"].shape == (1, len(atoms), 3)
    stats = calc.results["uncertainty"]
    assert set(stats) == set(STATISTICS) and stats["force_max"] > 0
    u = calc.results["atom_force_uncertainty"]
    assert stats["force_max"] == pytest.approx(u.max())
    _, _, _, h = evaluate_with_features(member, data)
    edges = data["edge_index"].numpy()
    np.testing.assert_allclose(u, llpr.atom_force_uncertainty(llpr.features(h, types), edges))

    # far from the training frames (a compressed, strongly rattled cell) it is larger
    far = atoms.copy()
    far.set_cell(far.cell.array * 0.9, scale_atoms=True)
    far.rattle(0.3, seed=1)
    far.calc = calc
    far.get_forces()
    assert calc.results["uncertainty"]["force_max"] > stats["force_max"]

    # uncertainty_every: skipped statistics come on demand
    skipping = load_ensemble(
        [path], model={"name": "nequip", "uncertainty": "llpr"}, uncertainty_every=0
    )
    work = atoms.copy()
    work.calc = skipping
    work.get_forces()
    assert "uncertainty" not in skipping.results
    assert skipping.uncertainty == pytest.approx(stats, rel=1e-10)
    with pytest.raises(FileNotFoundError, match="no LLPR file"):
        load_ensemble([members[2]], model={"name": "nequip", "uncertainty": "llpr"})

    # an ensemble of one (ensemble.size 1): the evaluation calibrates the LLPR sigma, not the
    # zero spread of one member
    from alkappa.al.metrics import evaluate_ensemble

    one = load_ensemble([path], model={"name": "nequip", "uncertainty": "llpr"})
    frames = read_dataset(root / "val.xyz") + read_dataset(root / "train.xyz")[:2]
    metrics = evaluate_ensemble(frames, one, detailed=True)
    assert metrics["calibration_sigma"] == "model"
    sigma = np.array(metrics["calibration"]["atom"]["bin_sigma_rms"])
    assert np.isfinite(sigma).all() and (sigma > 0).all()
    assert metrics["calibration"]["atom"]["miscalibration_area"] is not None
    assert min(metrics["calibration"]["energy"]["bin_sigma_rms"]) > 0
    assert metrics["recalibration"]["before"]["rms_sigma_atom"] > 0
    assert metrics["recalibration"]["scale"]["map"]["scale"] > 0
    assert metrics["uncertainty"]["force_max"]["mean"] > 0


@pytest.mark.slow
def test_training_with_llpr_writes_the_llpr_file(members, tmp_path):
    from alkappa.models.nequip import NequIPModel

    root = members[0].parent.parent
    model = NequIPModel(**TINY, uncertainty="llpr", llpr_covariance="structures")
    result = model.train(
        root / "train.xyz", root / "val.xyz", tmp_path / "m", species=SPECIES, seed=0
    )
    npz = result.model_path.with_name("model.llpr.npz")
    assert npz in result.companions and result.info["llpr_seconds"] > 0
    from alkappa.models.llpr import LLPR

    assert LLPR.load(npz).per == "structures"
    with pytest.raises(ValueError, match="uncertainty must be"):
        NequIPModel(uncertainty="mc-dropout")


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("ALKAPPA_TEST_COMPILE"),
    reason="compiling takes about a minute of CPU; set ALKAPPA_TEST_COMPILE=1",
)
def test_compiled_llpr_model_equals_eager(members, tmp_path):
    from alkappa.models._nequip_llpr import load_llpr_calculator, write_llpr
    from alkappa.models.nequip import compile_llpr_model

    root = members[0].parent.parent
    path = tmp_path / "model.nequip.zip"
    shutil.copyfile(members[0], path)
    write_llpr(path, root / "train.xyz", root / "val.xyz")
    compile_llpr_model(path)
    eager = load_llpr_calculator(path, compiled=False)
    compiled = load_llpr_calculator(path)
    assert (eager.kinds, compiled.kinds) == (["eager"], ["compiled"])
    atoms = _alloy(8, rattle=0.12)
    for calc in (eager, compiled):
        work = atoms.copy()
        work.calc = calc
        work.get_stress()
    np.testing.assert_allclose(compiled.results["forces"], eager.results["forces"], atol=1e-9)
    assert compiled.results["uncertainty"] == pytest.approx(eager.results["uncertainty"], rel=1e-8)
