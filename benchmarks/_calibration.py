"""Calibration of the 4-member ensemble against the LLPR (``ensemble_md.py --calibration``)."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    from ase import Atoms

MEMBERS = 4
SPECIES = ["Ag", "Cu"]
MODEL = {
    "num_layers": 2,
    "l_max": 1,
    "num_features": 16,
    "radial_mlp_width": 16,
    "r_max": 4.0,
    "max_epochs": 15,
    "batch_size": 4,
}


def _cell(rng: np.random.Generator, rattle: float, strain: float) -> Atoms:
    """32-atom fcc Cu cell, a third Ag, strained by ``strain`` and rattled by ``rattle`` Å."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat(2)
    symbols = np.array(atoms.get_chemical_symbols())
    symbols[rng.choice(len(atoms), size=len(atoms) // 3, replace=False)] = "Ag"
    atoms.set_chemical_symbols(symbols)
    atoms.set_cell(atoms.cell.array * (1.0 + strain), scale_atoms=True)
    atoms.positions += rng.normal(scale=rattle, size=atoms.positions.shape)
    return atoms


def _labelled(atoms: Atoms) -> Atoms:
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = EMT()
    labels = {
        "energy": atoms.get_potential_energy(),
        "forces": atoms.get_forces(),
        "stress": atoms.get_stress(),
    }
    atoms.calc = SinglePointCalculator(atoms, **labels)
    return atoms


def make_data(directory: Path, seed: int = 0) -> dict[str, Path]:
    """train (40 frames), val (10), test (15 like the training frames + 15 further out)."""
    from alkappa.io.dataset import write_dataset

    rng = np.random.default_rng(7 + 1000 * seed)

    def frames(n: int, rattles: tuple[float, float], strains: tuple[float, float]) -> list:
        return [
            _labelled(_cell(rng, rng.uniform(*rattles), rng.uniform(*strains))) for _ in range(n)
        ]

    inside = ((0.03, 0.12), (-0.01, 0.01))
    sets = {
        "train": frames(40, *inside),
        "val": frames(10, *inside),
        "test": frames(15, *inside) + frames(15, (0.15, 0.25), (-0.03, 0.03)),
    }
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in sets.items():
        paths[name] = directory / f"{name}.xyz"
        write_dataset(paths[name], data)
    return paths


def train(directory: Path, data: dict[str, Path], threads: int, seed: int = 0) -> list[Path]:
    """4 members on bootstrap resamples of the training set (cached)."""
    from alkappa.io.dataset import read_dataset, write_dataset
    from alkappa.models.nequip import NequIPModel

    stamp = directory / "settings.json"
    paths = [directory / f"member_{m}" / "model.nequip.zip" for m in range(MEMBERS)]
    if (
        stamp.is_file()
        and json.loads(stamp.read_text()) == MODEL
        and all(p.is_file() for p in paths)
    ):
        return paths
    train_frames = read_dataset(data["train"])
    model = NequIPModel(**MODEL)
    for m, path in enumerate(paths):
        rng = np.random.default_rng(100 + m + 1000 * seed)
        boot = directory / f"train_boot_{m}.xyz"
        pick = rng.integers(0, len(train_frames), size=len(train_frames))
        write_dataset(boot, [train_frames[i] for i in pick])
        start = time.perf_counter()
        model.train(
            boot, data["val"], path.parent, species=SPECIES, seed=m + 10 * seed, threads=threads
        )
        print(f"member {m} trained in {time.perf_counter() - start:.0f} s", flush=True)
    stamp.write_text(json.dumps(MODEL))
    return paths


def _predict(calc: Any, frames: list) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per frame: force errors (N, 3) of the calculator's forces, per-atom uncertainty (N,)."""
    errors, sigmas = [], []
    for atoms in frames:
        ref = atoms.calc.results["forces"]
        work = atoms.copy()
        work.calc = calc
        forces = work.get_forces()
        errors.append(forces - ref)
        res = calc.results
        if "atom_force_uncertainty" in res:
            sigmas.append(np.asarray(res["atom_force_uncertainty"]))
        else:  # the ensemble's per-atom deviation u_i (alkappa.models.uncertainty)
            f = res["forces_members"]
            sigmas.append(np.sqrt(((f - f.mean(axis=0)) ** 2).sum(axis=2).mean(axis=0)))
    return errors, sigmas


def _metrics(errors: list[np.ndarray], sigmas: list[np.ndarray], scale: float) -> dict:
    from alkappa.models.uncertainty import miscalibration_area, spearman

    e = np.concatenate(errors)
    u = scale * np.concatenate(sigmas)
    err_atom = np.linalg.norm(e, axis=1)
    comp_sigma = np.repeat(u[:, None] / np.sqrt(3.0), 3, axis=1)
    frame_err = [np.linalg.norm(x, axis=1).max() for x in errors]
    frame_u = [scale * s.max() for s in sigmas]
    return {
        "spearman_atoms": spearman(u, err_atom),
        "spearman_frames": spearman(frame_u, frame_err),
        "miscalibration_area": miscalibration_area(e, comp_sigma),
        "rmse": float(np.sqrt(np.mean(e**2))),
        "mean_u_over_rms_error": float(np.mean(u) / np.sqrt(np.mean(err_atom**2))),
    }


def main(directory: Path, threads: int, seed: int = 0) -> int:
    from alkappa.io.dataset import read_dataset
    from alkappa.models._nequip_llpr import llpr_path, load_llpr_calculator, write_llpr
    from alkappa.models.ensemble import load_ensemble

    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if seed:
        directory = directory.with_name(f"{directory.name}_seed{seed}")
    data = make_data(directory, seed)
    paths = train(directory, data, threads, seed)
    val, test = read_dataset(data["val"]), read_dataset(data["test"])
    halves = {"test, like training": test[:15], "test, further out": test[15:], "test, all": test}
    ensemble = load_ensemble(paths, threads=threads, compiled=False)
    # one scale for the ensemble spread, fitted on the validation set (maximum likelihood of
    # |dF_i|^2 with mean s^2 u_i^2, as the LLPR's alpha)
    ev, uv = _predict(ensemble, val)
    e2 = np.concatenate([np.sum(x**2, axis=1) for x in ev])
    ens_scale = float(np.sqrt(np.mean(e2 / np.concatenate(uv) ** 2)))
    rows: list[tuple[str, str, dict]] = []
    ens_test = {name: _predict(ensemble, frames) for name, frames in halves.items()}
    for name, (e, u) in ens_test.items():
        rows.append((name, "ensemble of 4, raw spread", _metrics(e, u, 1.0)))
        rows.append((name, f"ensemble of 4, x{ens_scale:.2f}", _metrics(e, u, ens_scale)))
    for per, neighbours in (("atoms", True), ("atoms", False), ("structures", True)):
        write_llpr(
            paths[0], directory / "train_boot_0.xyz", data["val"], per=per, neighbours=neighbours
        )
        calc = load_llpr_calculator(paths[0], compiled=False)
        label = f"LLPR member 0, per {per}, " + ("neighbour sum" if neighbours else "own atom")
        print(f"{label}: {json.dumps(calc.llpr.info)}", flush=True)
        for name, frames in halves.items():
            e, u = _predict(calc, frames)
            rows.append((name, label, _metrics(e, u, 1.0)))
    llpr_path(paths[0]).unlink()
    print()
    print(
        "| test frames | uncertainty | Spearman (atoms) | Spearman (frames) | "
        "miscalibration area | force RMSE (eV/Å) | mean u / RMS error |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, label, m in rows:
        print(
            f"| {name} | {label} | {m['spearman_atoms']:.2f} | {m['spearman_frames']:.2f} | "
            f"{m['miscalibration_area']:.3f} | {m['rmse']:.3f} | {m['mean_u_over_rms_error']:.2f} |"
        )
    return 0
