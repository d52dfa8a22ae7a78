"""An ensemble of ASE calculators that predicts the mean and reports its own uncertainty.

The final potential of an AL campaign is loaded with one line::

    from alkappa.models.ensemble import load_ensemble
    atoms.calc = load_ensemble("results/CuI/al/iter_003/models")

Energy, forces and stress are the means over members, so MD with this calculator is driven by
the ensemble-mean force (design section 1.2, step 3).

:func:`load_ensemble` asks the model plugin for its ensemble calculator
(:meth:`alkappa.models.Model.load_ensemble_calculator`): a plugin may return a fast one that
shares work between members (the NequIP plugin does, see
:mod:`alkappa.models._nequip_ensemble`); the generic one is :class:`EnsembleCalculator` over
the members' own ASE calculators. Both give the same ``results`` keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from alkappa.models.uncertainty import uncertainty_statistics

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence

    from ase import Atoms

#: where :func:`load_ensemble` looks for members inside a model directory
MEMBER_GLOB = "member_*/model.nequip.zip"


class EnsembleCalculator(Calculator):
    """Mean of M member calculators, with the ensemble spread in ``results``.

    After a calculation, ``results`` holds the means ``energy``, ``free_energy``, ``forces``
    and (for a 3D-periodic cell, if all members provide it) ``stress``, and also

    ``energy_members``
        total energy of each member, shape ``(M,)``.
    ``forces_members``
        forces of each member, shape ``(M, N, 3)``.
    ``stress_members``
        Voigt stress of each member, shape ``(M, 6)`` (only with ``stress``).
    ``uncertainty``
        dict of the statistics of :func:`alkappa.models.uncertainty.uncertainty_statistics`
        (``force_max`` = U, ``force_mean``, ``energy_std_per_atom``, ``force_max_relative``).

    Every calculation evaluates all members for energy and forces (and stress when
    available), whatever property was asked for: the mean force needs every member anyway, and
    the member arrays are then at hand for the uncertainty. (The member energies are under
    ``energy_members``, not ``energies``, because ASE reserves ``energies`` for per-atom
    energies.)

    Parameters
    ----------
    calculators
        The members; at least one.
    uncertainty_every
        Put ``uncertainty`` into ``results`` on every k-th calculation only (1: always; 0:
        never). The statistics are always available on demand from the member arrays, through
        :attr:`uncertainty` or :func:`alkappa.al.explore.frame_uncertainty`; skipping them saves
        only their own cost (tens of microseconds), since the members must run for the mean.
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "forces", "stress"]

    def __init__(
        self, calculators: Sequence[Calculator], *, uncertainty_every: int = 1, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.calculators = list(calculators)
        if not self.calculators:
            raise ValueError("an ensemble needs at least one member calculator")
        self._init_counters(uncertainty_every)

    def _init_counters(self, uncertainty_every: int) -> None:
        if int(uncertainty_every) < 0:
            raise ValueError(f"uncertainty_every must be >= 0, not {uncertainty_every}")
        self.uncertainty_every = int(uncertainty_every)
        #: number of calculations done so far
        self.calls = 0

    @property
    def size(self) -> int:
        """Number of members M."""
        return len(self.calculators)

    @property
    def uncertainty(self) -> dict[str, float]:
        """The uncertainty statistics of the last calculation (empty before the first).

        Computed from the member arrays (and kept in ``results``) if this calculation skipped
        them (see ``uncertainty_every``).
        """
        if "uncertainty" not in self.results and "forces_members" in self.results:
            self.results["uncertainty"] = uncertainty_statistics(
                self.results["energy_members"], self.results["forces_members"]
            )
        return dict(self.results.get("uncertainty", {}))

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        with_stress = bool(self.atoms.pbc.all()) and all(
            "stress" in calc.implemented_properties for calc in self.calculators
        )
        wanted = ["energy", "forces", *(["stress"] if with_stress else [])]
        energies, forces, stresses = [], [], []
        for calc in self.calculators:
            # members that compute everything in one call (NequIP, LJ, ...) answer the later
            # properties from their cache
            res = {name: calc.get_property(name, self.atoms) for name in wanted}
            energies.append(float(res["energy"]))
            forces.append(np.asarray(res["forces"], dtype=float))
            if with_stress:
                stresses.append(_voigt(np.asarray(res["stress"], dtype=float)))
        self._set_results(
            np.array(energies), np.stack(forces), np.stack(stresses) if with_stress else None
        )

    def _set_results(
        self, energies: np.ndarray, forces: np.ndarray, stresses: np.ndarray | None
    ) -> None:
        """Fill ``results`` from the members' energies (M,), forces (M, N, 3), stress (M, 6)."""
        mean_energy = float(energies.mean())
        self.results = {
            "energy": mean_energy,
            "free_energy": mean_energy,
            "forces": forces.mean(axis=0),
            "energy_members": energies,
            "forces_members": forces,
        }
        if stresses is not None:
            self.results["stress"] = stresses.mean(axis=0)
            self.results["stress_members"] = stresses
        self.calls += 1
        k = self.uncertainty_every
        if k and (self.calls - 1) % k == 0:
            self.results["uncertainty"] = uncertainty_statistics(energies, forces)


def _voigt(stress: np.ndarray) -> np.ndarray:
    if stress.shape == (3, 3):
        return stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return stress.reshape(6)


def member_paths(model_dir: str | os.PathLike[str]) -> list[Path]:
    """The member model files ``member_*/model.nequip.zip`` under ``model_dir``, sorted."""
    directory = Path(model_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory {directory} does not exist")
    paths = sorted(directory.glob(MEMBER_GLOB), key=lambda p: _member_key(p.parent.name))
    if not paths:
        raise FileNotFoundError(f"no ensemble members ({MEMBER_GLOB}) found under {directory}")
    return paths


def _member_key(name: str) -> tuple[int, str]:
    # member_10 after member_9
    suffix = name.removeprefix("member_")
    return (int(suffix), name) if suffix.isdigit() else (1 << 30, name)


def load_ensemble(
    model_dir_or_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    device: str = "cpu",
    model: Mapping[str, object] | None = None,
    threads: int | None = None,
    *,
    fast: bool = True,
    **options: Any,
) -> EnsembleCalculator:
    """Load an ensemble of trained models as one ASE calculator.

    Parameters
    ----------
    model_dir_or_paths
        A directory holding ``member_*/model.nequip.zip``, or a list of model files.
    device
        Torch device of the members (``cpu``, ``cuda``, ...).
    model
        The config's ``model`` block, to load members of another model plugin; default
        ``{"name": "nequip"}``.
    threads
        The cores this process owns (a Snakemake job's ``threads``). If given, torch's
        intra-op threads are set to it (``torch.set_num_threads``), and the plugin's ensemble
        calculator may spread the members over them. Torch's default (all cores of the node)
        makes every step many times slower as soon as another process competes for a core.
    fast
        Use the plugin's ensemble calculator (:meth:`Model.load_ensemble_calculator
        <alkappa.models.Model.load_ensemble_calculator>`, shared work, the default); ``False``
        gives the plain :class:`EnsembleCalculator` over one ASE calculator per member.
    **options
        Passed to the plugin's ensemble calculator (for NequIP: ``compiled``, ``compile``,
        ``skin``, ``uncertainty_every``, ``parallel``; see
        :meth:`alkappa.models.nequip.NequIPModel.load_ensemble_calculator`). With
        ``fast=False`` only ``uncertainty_every`` is accepted.

    Returns
    -------
    EnsembleCalculator
    """
    from alkappa.models import get_model

    if isinstance(model_dir_or_paths, (str, Path)) or hasattr(model_dir_or_paths, "__fspath__"):
        paths = member_paths(model_dir_or_paths)  # type: ignore[arg-type]
    else:
        paths = [Path(p) for p in model_dir_or_paths]  # type: ignore[union-attr]
        if not paths:
            raise ValueError("no model files given")
    if threads is not None:
        import torch

        torch.set_num_threads(max(1, int(threads)))
    plugin = get_model(model or {"name": "nequip"})
    if fast:
        return plugin.load_ensemble_calculator(paths, device, threads=threads, **options)
    return EnsembleCalculator([plugin.load_calculator(p, device) for p in paths], **options)
