"""A fitted Bayesian force-constant model: basis + posterior, saved as one ``.npz`` file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ase import Atoms

from alkappa.bayesfc._basis import FCBasis
from alkappa.bayesfc._regression import BayesianRidge, fit_bayesian_ridge
from alkappa.io import atomic_path

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from hiphive.force_constants import ForceConstants
    from numpy.typing import ArrayLike

#: file-format version of :meth:`BayesianFCModelFit.save`
FORMAT_VERSION = 1


@dataclass
class Prediction:
    """Model prediction for one structure, with its Bayesian error.

    Attributes
    ----------
    energy
        Posterior-mean energy (eV).
    forces
        Posterior-mean forces (N, 3), eV/Å.
    force_std
        Epistemic standard deviation of each force component (N, 3), eV/Å.
    noise_std
        Noise standard deviation of one force component (the aleatoric part), eV/Å.
    energy_std
        Epistemic standard deviation of the energy (eV).
    displacements
        Displacements from the reference (N, 3), Å.
    """

    energy: float
    forces: np.ndarray
    force_std: np.ndarray
    noise_std: float
    energy_std: float
    displacements: np.ndarray

    @property
    def atom_std(self) -> np.ndarray:
        """Per-atom epistemic force error ``sqrt(sum_a sigma_ia^2)`` (N,)."""
        return np.sqrt((self.force_std**2).sum(axis=1))


class BayesianFCModelFit:
    """Force constants with a Gaussian posterior from :func:`fit_bayesian_ridge`.

    The regression runs on column-scaled features (each column divided by its RMS over the
    training data, so one isotropic prior suits parameters of all orders); :attr:`parameters`
    are the physical (unscaled) hiphive parameters.

    Parameters
    ----------
    basis
        The force-constant basis.
    posterior
        The regression result in scaled parameters.
    scale
        Column scales (P,).
    e0
        Energy of the reference lattice (eV).
    n_structures
        Number of training structures.
    """

    def __init__(
        self,
        basis: FCBasis,
        posterior: BayesianRidge,
        scale: np.ndarray,
        e0: float,
        n_structures: int,
    ) -> None:
        if posterior.n_params != basis.n_params:
            raise ValueError(
                f"posterior has {posterior.n_params} parameters, the basis {basis.n_params}"
            )
        self.basis = basis
        self.posterior = posterior
        self.scale = np.asarray(scale, dtype=float)
        self.e0 = float(e0)
        self.n_structures = int(n_structures)

    @property
    def parameters(self) -> np.ndarray:
        """Posterior-mean hiphive parameters (physical units)."""
        return self.posterior.mean / self.scale

    def parameter_std(self) -> np.ndarray:
        """Posterior standard deviation of the physical parameters."""
        return self.posterior.parameter_std() / self.scale

    def predict(self, atoms: Atoms) -> Prediction:
        """Energy, forces and their Bayesian errors for ``atoms``."""
        a, erow, u = self.basis.design(atoms)
        return self._predict(a, erow, u)

    def _predict(self, a: np.ndarray, erow: np.ndarray, u: np.ndarray) -> Prediction:
        a_s = a / self.scale
        e_s = erow / self.scale
        post = self.posterior
        forces = (a_s @ post.mean).reshape(-1, 3)
        var = post.predictive_variance(np.vstack([a_s, e_s]))
        return Prediction(
            energy=float(self.e0 + e_s @ post.mean),
            forces=forces,
            force_std=np.sqrt(var[:-1]).reshape(-1, 3),
            noise_std=post.noise_std,
            energy_std=float(np.sqrt(var[-1])),
            displacements=u,
        )

    def sample_forces(
        self, atoms: Atoms, n: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Energies (n,) and forces (n, N, 3) of ``n`` posterior draws of the parameters."""
        a, erow, _ = self.basis.design(atoms)
        theta = self.posterior.sample(n, rng)  # scaled
        forces = (theta @ (a / self.scale).T).reshape(n, -1, 3)
        return self.e0 + theta @ (erow / self.scale), forces

    def force_constants(self, supercell: Atoms | None = None) -> ForceConstants:
        """hiphive ``ForceConstants`` of the posterior mean."""
        return self.basis.force_constants(self.parameters, supercell)

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model to one ``.npz`` file (atomically)."""
        ref = self.basis.reference
        post = self.posterior
        arrays: dict[str, ArrayLike] = {
            "format_version": FORMAT_VERSION,
            "numbers": ref.numbers,
            "positions": ref.positions,
            "cell": np.asarray(ref.cell),
            "cutoffs": np.asarray(self.basis.cutoffs),
            "symprec": self.basis.symprec,
            "mean": post.mean,
            "alpha": post.alpha,
            "beta": post.beta,
            "vt": post.vt,
            "s": post.s,
            "n_data": post.n_data,
            "gamma": post.gamma,
            "log_evidence": post.log_evidence,
            "iterations": post.iterations,
            "converged": post.converged,
            "scale": self.scale,
            "e0": self.e0,
            "n_structures": self.n_structures,
        }
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, basis: FCBasis | None = None
    ) -> BayesianFCModelFit:
        """Read a model written by :meth:`save` (the basis is rebuilt unless given)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Bayesian FC model {path} does not exist")
        with np.load(path) as z:
            if int(z["format_version"]) != FORMAT_VERSION:
                raise ValueError(f"{path}: unknown format version {int(z['format_version'])}")
            if basis is not None and (
                not np.array_equal(basis.reference.numbers, z["numbers"])
                or np.abs(np.asarray(basis.reference.cell) - z["cell"]).max() > 1e-4
            ):
                raise ValueError(f"{path}: the given basis is for another supercell")
            if basis is None:
                ref = Atoms(
                    numbers=z["numbers"], positions=z["positions"], cell=z["cell"], pbc=True
                )
                basis = FCBasis(ref, list(z["cutoffs"]), symprec=float(z["symprec"]))
            post = BayesianRidge(
                mean=z["mean"],
                alpha=float(z["alpha"]),
                beta=float(z["beta"]),
                vt=z["vt"],
                s=z["s"],
                n_data=int(z["n_data"]),
                gamma=float(z["gamma"]),
                log_evidence=float(z["log_evidence"]),
                iterations=int(z["iterations"]),
                converged=bool(z["converged"]),
            )
            return cls(basis, post, z["scale"], float(z["e0"]), int(z["n_structures"]))


def fit_model(
    basis: FCBasis,
    frames: Sequence[Atoms],
    *,
    designs: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> BayesianFCModelFit:
    """Fit the force constants to the forces of labelled ``frames`` (energies set ``E0``).

    Parameters
    ----------
    basis
        The force-constant basis (its reference supercell must match every frame).
    frames
        Structures with forces (and energies, for ``E0``) as single-point results or in
        ``arrays['forces']``/``info['energy']``.
    designs
        Precomputed ``(A, energy_row)`` of the frames (the dynamic training keeps them).

    Returns
    -------
    BayesianFCModelFit
    """
    from alkappa.io.dataset import labels

    if not frames:
        raise ValueError("no training structures")
    rows, targets, energies, erows = [], [], [], []
    for k, atoms in enumerate(frames):
        lab = labels(atoms)
        if "forces" not in lab:
            raise ValueError(f"training structure {k} has no forces")
        if designs is not None:
            a, erow = designs[k]
        else:
            a, erow, _ = basis.design(atoms)
        rows.append(a)
        targets.append(np.asarray(lab["forces"], dtype=float).reshape(-1))
        if "energy" in lab:
            energies.append(float(lab["energy"]))
            erows.append(erow)
    phi = np.vstack(rows)
    y = np.concatenate(targets)
    scale = np.sqrt((phi**2).mean(axis=0))
    scale[scale == 0] = 1.0
    post = fit_bayesian_ridge(phi / scale, y)
    theta = post.mean / scale
    e0 = (
        float(np.mean([e - r @ theta for e, r in zip(energies, erows, strict=True)]))
        if energies
        else 0.0
    )
    return BayesianFCModelFit(basis, post, scale, e0, len(frames))
