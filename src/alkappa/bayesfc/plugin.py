"""The Bayesian lattice-dynamics force field (:mod:`alkappa.bayesfc`) as a model plugin.

Inside the AL pipeline each ensemble member is one Bayesian fit of its training subset; the
calculator reports the analytic Bayesian error as ``uncertainty`` and posterior draws as
members (:class:`alkappa.bayesfc.BayesianFCCalculator`), so exploration and selection work
unchanged. One member (``ensemble: {size: 1}``) is enough: the posterior is the uncertainty.

Options (the config's ``model`` block):

``cutoffs``
    cluster cutoffs (Å) of orders 2, 3, ... (default ``[5.0, 4.0, 3.0]``).
``symprec``
    symmetry tolerance of the cluster space (Å, default 1e-3).
``reference``
    extxyz file of the ideal supercell. Default: inferred from the training frames (their
    mean positions, symmetrised with spglib at ``reference_symprec``, default 0.1 Å).
``samples``
    posterior draws per member reported as ``forces_members`` (default 4).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alkappa.models import Model, TrainResult

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ase import Atoms

    from alkappa.bayesfc import BayesianFCCalculator

MODEL_FILE = "model.bayesfc.npz"
#: the plugin's options (the config's ``model`` block) and their defaults
DEFAULTS: dict[str, object] = {
    "cutoffs": [5.0, 4.0, 3.0],
    "symprec": 1e-3,
    "reference": None,
    "reference_symprec": 0.1,
    "samples": 4,
}


def infer_reference(frames: Sequence[Atoms], symprec: float = 0.1) -> Atoms:
    """The ideal lattice under thermally displaced ``frames`` of one supercell.

    The mean positions (minimum image relative to the first frame) snapped to the nearest
    symmetric structure by spglib (:func:`ase.spacegroup.symmetrize.refine_symmetry`), at the
    tolerance among ``symprec x (1, 2, 3, 5)`` that finds the most symmetry operations.
    """
    from ase.geometry import find_mic
    from ase.spacegroup.symmetrize import check_symmetry, refine_symmetry

    first = frames[0]
    for k, atoms in enumerate(frames):
        if len(atoms) != len(first) or not np.array_equal(atoms.numbers, first.numbers):
            raise ValueError(f"training frame {k} is not the same supercell as frame 0")
        if np.abs(np.asarray(atoms.cell) - np.asarray(first.cell)).max() > 1e-4:
            raise ValueError(f"training frame {k} has another cell than frame 0")
    shifts = [find_mic(a.positions - first.positions, first.cell, pbc=True)[0] for a in frames]
    mean = first.positions + np.mean(shifts, axis=0)
    cell = np.asarray(first.cell).copy()
    best: tuple[int, Atoms] | None = None
    for factor in (1.0, 2.0, 3.0, 5.0):  # the smallest tolerance that finds the most symmetry
        ref = first.copy()
        ref.calc = None
        ref.positions = mean
        if len(check_symmetry(ref, symprec * factor).rotations) <= 1:
            continue
        refine_symmetry(ref, symprec=symprec * factor, verbose=False)
        ref.set_cell(cell, scale_atoms=True)  # the frames' cell exactly
        n_ops = len(check_symmetry(ref, 1e-5).rotations)
        if best is None or n_ops > best[0]:
            best = (n_ops, ref)
    if best is None:
        raise ValueError(
            "could not find a symmetric reference lattice under the training frames (tried "
            f"symprec up to {5 * symprec} Å); set the model option 'reference' to the ideal "
            "supercell"
        )
    return best[1]


class BayesianFCModel(Model):
    """Bayesian force-constant model (design section 1.3); see the module docstring."""

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise ValueError(
                f"unknown bayesian-fc model option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}"
            )
        super().__init__(**options)
        self.resolved = {**DEFAULTS, **options}
        cutoffs = self.resolved["cutoffs"]
        if not cutoffs or any(float(c) <= 0 for c in cutoffs):
            raise ValueError(f"bayesian-fc cutoffs must be positive numbers, got {cutoffs}")

    def _reference(self, frames: Sequence[Atoms]) -> Atoms:
        from alkappa.io import read_dataset

        if self.resolved["reference"]:
            ref = read_dataset(self.resolved["reference"])[0]
            ref.calc = None
            return ref
        return infer_reference(frames, self.resolved["reference_symprec"])

    def train(
        self,
        train_file: Path,
        val_file: Path,
        workdir: Path,
        *,
        species: list[str],
        seed: int,
        init_checkpoint: Path | None = None,
        threads: int = 1,
    ) -> TrainResult:
        """Fit the force constants to ``train_file``; the validation RMSE goes in the curve.

        ``seed`` and ``init_checkpoint`` are not used: the fit is deterministic and fast.
        """
        from alkappa.bayesfc import FCBasis, fit_model
        from alkappa.io import labels, read_dataset

        start = time.perf_counter()
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        frames = read_dataset(train_file)
        val = read_dataset(val_file) if Path(val_file).exists() else []
        if not frames:
            raise ValueError(f"{train_file} holds no training frames")
        basis = FCBasis(
            self._reference(frames), self.resolved["cutoffs"], symprec=self.resolved["symprec"]
        )
        model = fit_model(basis, frames)
        sq, n = 0.0, 0
        for atoms in val:
            pred = model.predict(atoms)
            sq += float(((pred.forces - labels(atoms)["forces"]) ** 2).sum())
            n += pred.forces.size
        val_rmse = float(np.sqrt(sq / n)) if n else float("nan")
        model_path = workdir / MODEL_FILE
        model.save(model_path)
        curve = workdir / "curve.csv"
        with open(curve, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["epoch", "val_forces_rmse", "noise_std", "alpha", "gamma"])
            post = model.posterior
            writer.writerow([0, val_rmse, post.noise_std, post.alpha, post.gamma])
        return TrainResult(
            model_path=model_path,
            curve_path=curve,
            info={
                "wall_seconds": time.perf_counter() - start,
                "n_train": len(frames),
                "n_val": len(val),
                "n_parameters": basis.n_params,
                "val_forces_rmse": val_rmse,
                "noise_std": model.posterior.noise_std,
                "alpha": model.posterior.alpha,
                "log_evidence": model.posterior.log_evidence,
            },
        )

    def single_model_uncertainty(self) -> bool:
        """The posterior of one fit is its uncertainty (and its draws are the members)."""
        return True

    def load_calculator(self, model_path: Path, device: str = "cpu") -> BayesianFCCalculator:
        """The calculator of one fitted model (``device`` is ignored: numpy on CPU)."""
        return self.load_ensemble_calculator([model_path], device)

    def load_ensemble_calculator(
        self,
        model_paths: Sequence[Path],
        device: str = "cpu",
        *,
        threads: int | None = None,
        **options: Any,
    ) -> BayesianFCCalculator:
        """One calculator over several fits (mean and mixture variance); ``options``:
        ``samples``, ``seed``, ``uncertainty_every``."""
        from alkappa.bayesfc import BayesianFCCalculator, BayesianFCModelFit

        if not model_paths:
            raise ValueError("no model files given")
        first = BayesianFCModelFit.load(model_paths[0])
        models = [first]
        for path in model_paths[1:]:
            try:
                models.append(BayesianFCModelFit.load(path, basis=first.basis))
            except ValueError:  # another supercell: its own basis
                models.append(BayesianFCModelFit.load(path))
        options.setdefault("samples", self.resolved["samples"])
        return BayesianFCCalculator(models, **options)
