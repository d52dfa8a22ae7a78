r"""Model-agnostic heat fluxes for Green-Kubo: virial and harmonic; selection by name.

The definition of the flux, its units and sign, the convective term and the average virial
are those of :mod:`alkappa.models.heat_flux` (re-exported here: :data:`HEAT_FLUX_UNIT`,
:class:`HeatFluxMethod`, :func:`velocities_per_fs`, :func:`flux_volume`). The methods, by
``greenkubo.flux``:

``unfolded`` (the model's own flux, :meth:`alkappa.models.Model.heat_flux_method`)
    The full flux of the model, which the model plugin provides because only it knows the
    model's atomic energies and how far they reach: for NequIP the unfolded-system flux of
    Langer et al. (:class:`alkappa.models.nequip.UnfoldedHeatFlux`). A plugin without one
    raises :class:`~alkappa.models.heat_flux.HeatFluxNotAvailable`.
``virial`` (:class:`VirialHeatFlux`, any ASE calculator with atomic stresses)
    :math:`\mathbf{J}_\mathrm{pot} = -\sum_i \sigma_i^T \mathbf{v}_i` from
    ``atoms.get_stresses()`` (intensive, eV/Å³, ASE sign; extensive ones are recognised by
    their sum and divided by *V*, as FHI-vibes' ``enforce_intensive`` does). Exact for pair
    potentials; for many-body potentials as good as the calculator's atomic stresses.
``harmonic`` (:class:`HarmonicHeatFlux`, force constants)
    Atomic energies :math:`U_i = \tfrac12 \mathbf{u}_i \cdot \sum_j \Phi_{ij} \mathbf{u}_j`
    in eq. (1) give (Hardy 1963; FHI-vibes' ``FCCalculator``, Knoop et al. 2023)
    :math:`V \mathbf{J}_\mathrm{harm} = -\tfrac12 \sum_{ij} \mathbf{r}_{ij}\,
    (\mathbf{v}_i \cdot \Phi_{ij} \mathbf{u}_j)`, with :math:`\mathbf{r}_{ij}` the reference
    minimum-image vector :math:`\mathbf{R}_i - \mathbf{R}_j`, averaged over equivalent images
    when several are equally short (phonopy's multiplicities; ``pair_vectors="reference"``, the
    flux bilinear in displacements and velocities whose phonon representation is
    :math:`\sum_s E_s \mathbf{v}_s`), or that vector plus :math:`\mathbf{u}_i - \mathbf{u}_j`
    (``pair_vectors="current"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.geometry import find_mic
from ase.stress import voigt_6_to_full_3x3_stress

from alkappa.models.heat_flux import (
    HEAT_FLUX_UNIT,
    AverageVirials,
    HeatFluxMethod,
    convective_flux,
    flux_volume,
    velocities_per_fs,
)

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence

    from ase import Atoms

    from alkappa.models.heat_flux import FluxResults

__all__ = [
    "HEAT_FLUX_METHODS",
    "HEAT_FLUX_UNIT",
    "HarmonicHeatFlux",
    "HeatFluxCalculator",
    "HeatFluxMethod",
    "VirialHeatFlux",
    "atomic_stresses",
    "flux_volume",
    "make_heat_flux",
    "minimum_image_pair_vectors",
    "velocities_per_fs",
]

#: names accepted by :func:`make_heat_flux` (the values of ``greenkubo.flux``)
HEAT_FLUX_METHODS = ("unfolded", "virial", "harmonic")


# --- the virial flux (ASE atomic stresses) -----------------------------------------------------


def atomic_stresses(atoms: Atoms, calculator: Calculator | None = None) -> np.ndarray:
    """Intensive atomic stresses (N, 3, 3) in eV/Å³ (ASE sign) from ``get_stresses``.

    Voigt input is expanded; atomic stresses that add up to V times the stress (extensive)
    are divided by the volume, as FHI-vibes' ``enforce_intensive`` does.
    """
    work = atoms
    if calculator is not None:
        work = atoms.copy()
        work.calc = calculator
    stresses = np.asarray(work.get_stresses(), dtype=float)
    if stresses.ndim == 2 and stresses.shape[1] == 6:
        stresses = voigt_6_to_full_3x3_stress(stresses)
    if stresses.shape != (len(atoms), 3, 3):
        raise ValueError(f"atomic stresses have shape {stresses.shape}")
    try:
        stress = np.asarray(work.get_stress(voigt=False), dtype=float)
    except PropertyNotImplementedError:
        return stresses
    total = stresses.sum(axis=0)
    scale = max(float(np.abs(stress).max()), 1e-12)
    volume = flux_volume(atoms)
    if not np.allclose(total, stress, rtol=1e-6, atol=1e-8 * scale) and np.allclose(
        total / volume, stress, rtol=1e-6, atol=1e-8 * scale
    ):
        return stresses / volume
    return stresses


class VirialHeatFlux(AverageVirials):
    """Virial heat flux :math:`\\mathbf{J} = -\\sum_i \\sigma_i^T \\mathbf{v}_i` (+ convective).

    Parameters
    ----------
    calculator
        Calculator with ``stresses`` (and ``energies`` for the convective term); default: the
        calculator attached to the atoms passed to :meth:`heat_flux` (whose results of the
        current step are then reused, e.g. ASE's Lennard-Jones computes them with the forces).
    convective
        Add the convective term with the calculator's ``energies``.
    """

    name: str = "virial"

    def __init__(self, calculator: Calculator | None = None, *, convective: bool = False) -> None:
        self.calculator = calculator
        self.convective = convective
        self.average_virials = None
        self.results: FluxResults = {}

    def atomic_virials(self, atoms: Atoms) -> np.ndarray:
        """:math:`W_i = -V \\sigma_i^T` (N, 3, 3) in eV."""
        sigma = atomic_stresses(atoms, self.calculator)
        return -flux_volume(atoms) * sigma.transpose(0, 2, 1)

    def heat_flux(self, atoms: Atoms) -> np.ndarray:
        """The heat flux (3,) in eV/Å²/fs; details in ``results``."""
        virials = self.atomic_virials(atoms)
        volume = flux_volume(atoms)
        potential = np.einsum("oab,ob->a", virials, velocities_per_fs(atoms)) / volume
        convective = np.zeros(3)
        if self.convective:
            work = atoms
            if self.calculator is not None:
                work = atoms.copy()
                work.calc = self.calculator
            convective = convective_flux(work.get_potential_energies(), atoms)
        self.results = self.assemble_results(atoms, potential, convective)
        return self.results["heat_flux"]


# --- the harmonic flux (force constants) -------------------------------------------------------


def minimum_image_pair_vectors(reference: Atoms, tolerance: float = 1e-5) -> np.ndarray:
    """Pair vectors :math:`\\mathbf{R}_i - \\mathbf{R}_j` (N, N, 3), minimum image, averaged.

    For a 3D-periodic reference the shortest of the periodic images, averaged over all images
    within ``tolerance`` (Å) of the shortest (phonopy's multiplicities; FHI-vibes'
    ``get_smallest_vectors`` weights them the same way); without periodicity the plain
    differences.
    """
    from ase.geometry import minkowski_reduce

    positions = reference.get_positions()
    diff = positions[:, None, :] - positions[None, :, :]
    if not reference.pbc.any():
        return diff
    if not reference.pbc.all():
        raise NotImplementedError("pair vectors of partly periodic cells are not implemented")
    reduced, _ = minkowski_reduce(reference.cell.array)
    inverse = np.linalg.inv(reduced)
    images = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)])
    translations = images @ reduced  # (27, 3)
    out = np.empty_like(diff)
    for i in range(len(positions)):
        frac = diff[i] @ inverse
        base = (frac - np.rint(frac)) @ reduced  # (N, 3)
        candidates = base[:, None, :] + translations[None, :, :]  # (N, 27, 3)
        lengths = np.linalg.norm(candidates, axis=-1)
        shortest = lengths.min(axis=1, keepdims=True)
        weight = (lengths <= shortest + tolerance).astype(float)
        out[i] = (weight[:, :, None] * candidates).sum(axis=1) / weight.sum(axis=1)[:, None]
    return out


class HarmonicHeatFlux:
    """Harmonic heat flux from supercell force constants (Hardy 1963; FHI-vibes' FCCalculator).

    Parameters
    ----------
    reference
        The reference (equilibrium) supercell the force constants belong to.
    force_constants
        Supercell force constants, phonopy's full (N, N, 3, 3) array (or (3N, 3N)) in eV/Å²,
        :math:`\\Phi_{ij}^{ab} = \\partial^2 U / \\partial u_i^a \\partial u_j^b`.
    pair_vectors
        ``"reference"`` (Hardy's harmonic flux, default) or ``"current"`` (module docstring).
    convective
        Add the convective term with the harmonic atomic energies.
    """

    name: str = "harmonic"

    def __init__(
        self,
        reference: Atoms,
        force_constants: np.ndarray,
        *,
        pair_vectors: str = "reference",
        convective: bool = False,
    ) -> None:
        n = len(reference)
        fc = np.asarray(force_constants, dtype=float)
        if fc.shape == (3 * n, 3 * n):
            fc = fc.reshape(n, 3, n, 3).transpose(0, 2, 1, 3)
        if fc.shape != (n, n, 3, 3):
            raise ValueError(f"force constants of shape {fc.shape} do not fit {n} atoms")
        if pair_vectors not in ("reference", "current"):
            raise ValueError(f"pair_vectors must be 'reference' or 'current', not {pair_vectors!r}")
        self.reference = reference.copy()
        self.force_constants = fc
        self.pair_vectors = pair_vectors
        self.convective = convective
        self.r0 = minimum_image_pair_vectors(self.reference)
        self.results: FluxResults = {}

    def displacements(self, atoms: Atoms) -> np.ndarray:
        """Displacements from the reference (minimum image for periodic cells)."""
        u = atoms.positions - self.reference.positions
        if self.reference.pbc.all():
            u = find_mic(u, self.reference.cell, pbc=True)[0]
        return u

    def heat_flux(self, atoms: Atoms) -> np.ndarray:
        """The harmonic heat flux (3,) in eV/Å²/fs; ``results`` also has the harmonic
        ``energy``, ``energies`` and ``forces``."""
        if len(atoms) != len(self.reference):
            raise ValueError(f"{len(atoms)} atoms, but the reference has {len(self.reference)}")
        u = self.displacements(atoms)
        v = velocities_per_fs(atoms)
        phi_u = np.einsum("ijab,jb->ija", self.force_constants, u)  # Phi_ij u_j
        r = self.r0
        if self.pair_vectors == "current":
            r = r + u[:, None, :] - u[None, :, :]
        volume = flux_volume(atoms)
        # V J = -1/2 sum_ij r_ij (v_i . Phi_ij u_j)
        potential = -0.5 * np.einsum("ija,ijb,ib->a", r, phi_u, v) / volume
        forces = -phi_u.sum(axis=1)
        energies = -0.5 * (u * forces).sum(axis=1)
        convective = convective_flux(energies, atoms)
        self.results = {
            "heat_flux": potential + (convective if self.convective else 0.0),
            "heat_flux_potential": potential,
            "heat_flux_convective": convective,
            "energies": energies,
            "energy": float(energies.sum()),
            "forces": forces,
        }
        return self.results["heat_flux"]


# --- selection by name and the ASE wrapper -----------------------------------------------------


def make_heat_flux(name: str, **kwargs: Any) -> HeatFluxMethod:
    """The heat-flux method ``name`` (one of :data:`HEAT_FLUX_METHODS`).

    Parameters
    ----------
    name
        ``unfolded``: the model's own flux, from its plugin
        (:meth:`alkappa.models.Model.heat_flux_method`); ``virial``: :class:`VirialHeatFlux`;
        ``harmonic``: :class:`HarmonicHeatFlux`.
    **kwargs
        ``unfolded``: ``model_paths`` (a model directory, or the member files), ``model``
        (the config's ``model`` block; default: the one in the directory's
        ``ensemble.json``, else ``{"name": "nequip"}``) and the keyword arguments of
        :meth:`~alkappa.models.Model.heat_flux_method` (``device``, ``threads``,
        ``convective``, ``precision``, plugin options); ``virial``: those of
        :class:`VirialHeatFlux` (``calculator``, ``convective``); ``harmonic``: those of
        :class:`HarmonicHeatFlux` (``reference``, ``force_constants``, ...).

    Raises
    ------
    alkappa.models.heat_flux.HeatFluxNotAvailable
        ``unfolded`` for a model plugin that provides no heat flux.
    ValueError
        An unknown ``name``.
    """
    if name == "unfolded":
        from alkappa.models import get_model

        paths, spec = _model_files(kwargs.pop("model_paths"), kwargs.pop("model", None))
        return get_model(spec).heat_flux_method(paths, **kwargs)
    if name == "virial":
        return VirialHeatFlux(**kwargs)
    if name == "harmonic":
        return HarmonicHeatFlux(**kwargs)
    raise ValueError(f"unknown heat-flux method {name!r}; known: {', '.join(HEAT_FLUX_METHODS)}")


def _model_files(
    model_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    model: Mapping[str, object] | None,
) -> tuple[list[Path], Mapping[str, object]]:
    """The member files and the ``model`` block of a model directory or a list of files."""
    from alkappa.io import read_json
    from alkappa.models import ensemble_members
    from alkappa.models.ensemble import member_paths

    if isinstance(model_paths, (str, Path)) or hasattr(model_paths, "__fspath__"):
        directory = Path(model_paths)  # type: ignore[arg-type]
        if (directory / "ensemble.json").is_file():
            spec = model or read_json(directory / "ensemble.json").get("model")
            return ensemble_members(directory), dict(spec or {"name": "nequip"})
        paths = member_paths(directory) if directory.is_dir() else [directory]
    else:
        paths = [Path(p) for p in model_paths]  # type: ignore[union-attr]
    return paths, dict(model or {"name": "nequip"})


class HeatFluxCalculator(Calculator):
    """An ASE calculator: ``calculator``'s properties plus ``heat_flux`` from ``method``.

    ``atoms.calc.get_property("heat_flux", atoms)`` gives the flux (eV/Å²/fs) at the current
    positions *and velocities*; ASE does not track velocity changes, so the flux is never
    taken from the cache. The method's other results (``heat_flux_potential``, ...) are added
    to ``results`` too, under their own names.
    """

    def __init__(self, calculator: Calculator, method: HeatFluxMethod, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calculator = calculator
        self.method = method
        self.implemented_properties = [*calculator.implemented_properties, "heat_flux"]

    def get_property(self, name: str, atoms: Atoms | None = None, allow_calculation: bool = True):  # type: ignore[no-untyped-def]
        if name == "heat_flux":
            self.results.pop("heat_flux", None)
        return super().get_property(name, atoms, allow_calculation)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        Calculator.calculate(self, atoms, properties, system_changes)
        assert self.atoms is not None
        results = dict(self.results)
        wanted = [p for p in properties if p != "heat_flux"]
        for prop in wanted:
            results[prop] = self.calculator.get_property(prop, self.atoms)
        results.update({k: v for k, v in self.calculator.results.items() if k not in results})
        if "heat_flux" in properties:
            work = self.atoms.copy()
            work.calc = self.calculator
            self.method.heat_flux(work)
            results.update(self.method.results)
        self.results = results
