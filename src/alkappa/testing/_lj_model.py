"""A Lennard-Jones "MLIP" with its own heat flux: a model plugin for tests of the pipeline.

The model file holds the parameters of ASE's :class:`~ase.calculators.lj.LennardJones` pair
potential; training fits the well depth to the training forces (least squares: the forces are
linear in it), on a bootstrap sample drawn with the member's seed, so an ensemble's members
differ a little. It trains in milliseconds and needs no torch, so tests can run the whole
Green-Kubo stage on it. Its heat flux (:meth:`LennardJonesModel.heat_flux_method`) is the exact
pair flux, from ASE's per-atom virials: :class:`PairHeatFlux`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.calculators.lj import LennardJones
from ase.stress import voigt_6_to_full_3x3_stress

from alkappa.models import Model, TrainResult
from alkappa.models.heat_flux import (
    AverageVirials,
    convective_flux,
    flux_volume,
    velocities_per_fs,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ase import Atoms

#: the model file's name inside a member directory
LJ_MODEL_FILE = "model.lj.json"

#: the options and their defaults: ASE's ``LennardJones`` parameters (Å, eV)
LJ_DEFAULTS: dict[str, float | bool] = {
    "sigma": 2.3,
    "epsilon": 0.05,
    "rc": 5.0,
    "ro": 4.0,
    "smooth": True,
}


def lennard_jones(parameters: Mapping[str, object]) -> LennardJones:
    """ASE's Lennard-Jones calculator of ``parameters`` (the keys of :data:`LJ_DEFAULTS`)."""
    return LennardJones(**{k: parameters[k] for k in LJ_DEFAULTS})


class LennardJonesModel(Model):
    """A Lennard-Jones pair potential as a model plugin (for tests; not a physical MLIP).

    Parameters
    ----------
    **options
        Keys of :data:`LJ_DEFAULTS`: ``sigma`` (Å), ``epsilon`` (eV, the starting value of
        the fit), ``rc`` (cutoff, Å), ``ro`` and ``smooth`` (ASE's smooth cutoff from ``ro``
        to ``rc``). Training fits ``epsilon`` only. Unknown keys raise ``ValueError``.

    Examples
    --------
    Registered at run time (it has no entry point)::

        from alkappa._plugins import register
        register("alkappa.models", "lj-test", LennardJonesModel)
    """

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(LJ_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown Lennard-Jones model option(s) {unknown}")
        super().__init__(**options)
        self.parameters = {**LJ_DEFAULTS, **options}

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
        """Fit ``epsilon`` to the forces of a bootstrap sample of ``train_file``."""
        from alkappa.io import read_dataset

        frames = read_dataset(train_file)
        rng = np.random.default_rng(seed)
        sample = [frames[k] for k in rng.integers(len(frames), size=len(frames))]
        reference = lennard_jones(self.parameters)
        model, target = [], []
        for frame in sample:
            work = frame.copy()
            work.calc = reference
            model.append(work.get_forces().ravel())
            target.append(frame.get_forces().ravel())
        f0, f = np.concatenate(model), np.concatenate(target)
        scale = float(f0 @ f / (f0 @ f0)) if f0 @ f0 > 0 else 1.0
        parameters = {**self.parameters, "epsilon": self.parameters["epsilon"] * scale}
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        model_path = workdir / LJ_MODEL_FILE
        model_path.write_text(json.dumps(parameters, indent=1))
        fitted = lennard_jones(parameters)
        errors = []
        for frame in read_dataset(val_file):
            work = frame.copy()
            work.calc = fitted
            errors.append(work.get_forces() - frame.get_forces())
        rmse = float(np.sqrt(np.mean(np.concatenate(errors) ** 2))) if errors else float("nan")
        curve = workdir / "curve.csv"
        curve.write_text(f"epoch,val_forces_rmse\n0,{rmse}\n")
        return TrainResult(model_path=model_path, curve_path=curve, info={"epsilon": scale})

    def load_calculator(self, model_path: Path, device: str = "cpu") -> LennardJones:
        """ASE's Lennard-Jones with the parameters in ``model_path``."""
        return lennard_jones(json.loads(Path(model_path).read_text()))

    def heat_flux_method(
        self,
        model_paths: Sequence[Path],
        *,
        device: str = "cpu",
        threads: int | None = None,
        convective: bool = False,
        precision: str = "float64",
        **options: Any,
    ) -> PairHeatFlux:
        """The exact pair heat flux of the members (:class:`PairHeatFlux`); float64 only."""
        if precision != "float64":
            raise ValueError(f"the Lennard-Jones flux is evaluated in float64, not {precision}")
        if options:
            raise ValueError(f"unknown heat-flux option(s) {sorted(options)}")
        return PairHeatFlux(
            [self.load_calculator(Path(p)) for p in model_paths], convective=convective
        )


class PairHeatFlux(AverageVirials):
    """The heat flux of an ensemble of pair potentials, from their per-atom virials.

    For a pair potential the atomic virials :math:`W_i = \\frac12 \\sum_j \\mathbf{r}_{ij}
    \\otimes \\mathbf{F}_{ij}` give the flux exactly (:mod:`alkappa.models.heat_flux`, eq. (1));
    ASE's ``LennardJones`` has them as per-atom stresses :math:`\\sigma_i = -W_i^T / V`.

    Parameters
    ----------
    calculators
        One calculator with ``stresses`` and ``energies`` per member; the flux is the members'
        mean, ``results["heat_flux_members"]`` each member's.
    convective
        Add the convective term with the members' atomic energies.
    """

    name: str = "pair"

    def __init__(self, calculators: Sequence[Any], *, convective: bool = False) -> None:
        self.calculators = list(calculators)
        if not self.calculators:
            raise ValueError("need at least one member")
        self.convective = convective
        self.average_virials = None
        self.results: dict[str, float | np.ndarray] = {}

    def _member(self, calculator: Any, atoms: Atoms) -> tuple[np.ndarray, Atoms]:
        work = atoms.copy()
        work.calc = calculator
        stresses = np.asarray(work.get_stresses(), dtype=float)
        if stresses.shape[-1] == 6:
            stresses = voigt_6_to_full_3x3_stress(stresses)
        return -flux_volume(atoms) * stresses.transpose(0, 2, 1), work

    def atomic_virials(self, atoms: Atoms) -> np.ndarray:
        """Mean atomic virials (N, 3, 3) in eV."""
        return np.mean([self._member(c, atoms)[0] for c in self.calculators], axis=0)

    def heat_flux(self, atoms: Atoms) -> np.ndarray:
        """The heat flux (3,) in eV/Å²/fs; ``results`` also holds the members' mean
        ``energy``, ``energies`` and ``forces``."""
        velocities = velocities_per_fs(atoms)
        volume = flux_volume(atoms)
        potential, convective, energies, forces = [], [], [], []
        for calculator in self.calculators:
            virials, work = self._member(calculator, atoms)
            potential.append(np.einsum("oab,ob->a", virials, velocities) / volume)
            energies.append(work.get_potential_energies())
            forces.append(work.get_forces())
            convective.append(convective_flux(energies[-1], atoms))
        members = np.array(potential)
        members_convective = np.array(convective)
        results = self.assemble_results(
            atoms,
            members.mean(axis=0),
            members_convective.mean(axis=0),
            members=members,
            members_convective=members_convective,
        )
        mean_energies = np.mean(energies, axis=0)
        results.update(
            energies=mean_energies,
            energy=float(mean_energies.sum()),
            forces=np.mean(forces, axis=0),
        )
        self.results = results
        return results["heat_flux"]
