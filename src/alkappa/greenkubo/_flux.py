r"""Heat flux of periodic MD: unfolded many-body flux of NequIP, virial and harmonic flux.

Definition and conventions
--------------------------
With atomic energies :math:`E_i = K_i + U_i` (kinetic plus potential, :math:`\sum_i U_i` the
potential energy of the cell) the heat flux is (Hardy, Phys. Rev. 132, 168 (1963); for periodic
many-body potentials e.g. the "ML_LHEAT" page of the VASP wiki, and Langer et al. below)

.. math::

    V \mathbf{J} = \underbrace{\sum_{i} E_i \mathbf{v}_i}_{V \mathbf{J}_\mathrm{conv}}
    + \underbrace{\sum_{i \in \mathrm{cell}} \sum_{j}
      (\mathbf{r}_i - \mathbf{r}_j)\,
      \Big(\frac{\partial U_i}{\partial \mathbf{r}_j} \cdot \mathbf{v}_j\Big)}
      _{V \mathbf{J}_\mathrm{pot}} ,                                             \tag{1}

where *j* runs over every atom :math:`U_i` depends on, periodic images included (at their
actual positions, with the velocity of the atom they are images of). For a pair potential
(:math:`U_i = \tfrac12 \sum_j \phi(r_{ij})`) this is the textbook
:math:`V\mathbf{J}_\mathrm{pot} = \tfrac12 \sum_{ij} \mathbf{r}_{ij}
(\mathbf{F}_{ij} \cdot \mathbf{v}_i)`, :math:`\mathbf{r}_{ij} = \mathbf{r}_i - \mathbf{r}_j`,
:math:`\mathbf{F}_{ij}` the force on *i* due to *j*.

- **Units** are FHI-vibes': positions in Å, energies in eV, velocities in Å/fs (ASE velocities
  times ``ase.units.fs``), *V* the cell volume in Å³, so ``heat_flux`` is in eV/Å²/fs, the unit
  FHI-vibes' Green-Kubo prefactor ``V / (k_B T^2)`` expects (``vibes.green_kubo.heat_flux.
  gk_prefactor``). FHI-vibes also divides by the volume: its atomic stresses are intensive
  (eV/Å³).
- **Sign.** :math:`\mathbf{J}` points where the energy flows. FHI-vibes stores
  ``heat_flux`` :math:`= \sum_I \sigma_I \mathbf{v}_I` with ASE-sign atomic stresses
  (``vibes.trajectory.Trajectory.compute_heat_flux``, and ``vibes.ase.calculators.fc.
  FCCalculator`` for the harmonic flux), which is :math:`-\mathbf{J}_\mathrm{pot}` for symmetric
  atomic stresses. Autocorrelation functions, hence κ, do not see the sign; cross-correlations
  of fluxes from the two codes would.
- **No convective term by default**, as in FHI-vibes (Knoop et al., Phys. Rev. B 107, 224304
  (2023)): in a solid without diffusion it does not contribute to κ to leading order, and with
  an MLIP its value hinges on the arbitrary zero of the atomic energies (NequIP's per-type
  energy shifts), which makes it large and noisy. ``convective=True`` adds
  :math:`\mathbf{J}_\mathrm{conv}` with the model's atomic energies as they are.
- **Atomic virials.** :math:`\mathbf{J}_\mathrm{pot} = V^{-1} \sum_{o \in \mathrm{cell}}
  W_o \mathbf{v}_o` with :math:`W_o = \sum_{j \to o} \sum_{i \in \mathrm{cell}}
  (\mathbf{r}_i - \mathbf{r}_j) \otimes \partial U_i / \partial \mathbf{r}_j` (eV; first index
  the position, second the gradient component; *j* over the images of *o*).
  :math:`\sum_o W_o = -V \sigma^T` with :math:`\sigma` the (potential) stress in ASE's sign
  convention, so :math:`\sigma_o = -W_o^T / V` are atomic stresses that add up to it.
- **Average virial** (Knoop et al. 2023; FHI-vibes' ``heat_flux`` / ``heat_flux_aux``): a
  constant :math:`\bar W_o` gives :math:`V^{-1} \sum_o \bar W_o \mathbf{v}_o = \frac{d}{dt}
  V^{-1} \sum_o \bar W_o \mathbf{u}_o`, the derivative of a bounded quantity, which does not
  change κ (gauge invariance: Marcolongo, Umari & Baroni, Nat. Phys. 12, 80 (2016)) but carries
  large oscillations at the optical frequencies. With ``average_virials`` set (from a few
  equilibrium frames, :meth:`UnfoldedHeatFlux.set_average_virials`), ``heat_flux`` is
  :math:`\mathbf{J}_\mathrm{pot} - \mathbf{J}_\mathrm{aux}` (plus the convective term if
  asked) and ``heat_flux_aux`` is :math:`V^{-1} \sum_o \bar W_o \mathbf{v}_o`.

The three methods
-----------------
``unfolded`` (:class:`UnfoldedHeatFlux`, NequIP and other message-passing models)
    Langer, Knoop, Carbogno, Scheffler & Rupp, "Heat flux for semilocal machine-learning
    potentials", Phys. Rev. B 108, L100302 (2023); the automatic-differentiation formulation
    is in Langer, Frank & Knoop, J. Chem. Phys. 159, 174105 (2023). With *L* message-passing
    layers of cutoff :math:`r_c`, :math:`U_i` depends on atoms up to :math:`L r_c` away, beyond
    the periodic neighbour list. The *unfolded system* is the cell's atoms plus all periodic
    images within the margin :math:`L r_c` of them, treated as a finite, non-periodic system;
    its atomic energies of the cell atoms are those of the periodic system, and with
    :math:`U = \sum_{i \in \mathrm{cell}} U_i` eq. (1) becomes

    .. math::

        V \mathbf{J}_\mathrm{pot} = \sum_{i \in \mathrm{cell}} \mathbf{r}_i\,
        \frac{d U_i}{d t}
        - \sum_{j \in \mathrm{unfolded}} \mathbf{r}_j
          \Big(\frac{\partial U}{\partial \mathbf{r}_j} \cdot \mathbf{v}_j\Big) .   \tag{2}

    :math:`dU_i/dt = \sum_j \partial U_i / \partial \mathbf{r}_j \cdot \mathbf{v}_j` for all *i*
    at once is one forward-mode Jacobian-vector product (``torch.autograd.forward_ad``) along
    the velocities; since only the cell atoms' rates enter, it is taken on the periodic graph
    (the same atomic energies, about a third of the edges). The gradient of *U* on the
    unfolded system is one forward and backward pass, which also gives the forces. The two
    terms are separately origin dependent, together not; positions are taken relative to the
    centroid of the cell atoms to keep the cancellation harmless.

    The unfolding keeps every image whose fractional coordinates lie within the margin
    (divided by the lattice-plane spacing) of the range the cell atoms span, a superset of the
    images within :math:`L r_c` of some cell atom, so the atoms need not be wrapped into the
    cell. Layer *l* of *L* (counted from 0) only needs messages into atoms within
    :math:`(L-1-l) r_c` of the cell: features of atoms farther out reach no cell atom in the
    remaining layers. With ``prune=True`` the unfolded edge list only has edges into atoms
    within :math:`(L-1) r_c`, and each nequip ``ConvNetLayer`` gets the subset its layer
    needs (the last one only the edges into the cell atoms) and only the atoms within
    :math:`(L-l) r_c` (the neighbours of those centres), which halves the time with two
    layers. This assumes messages flow along edges only and no layer normalises by the
    actual neighbour count (true of nequip's ``NequIPGNNModel``, which divides by a constant
    ``avg_num_neighbors``); the tests check it against ``prune=False``.
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

Boundary term
-------------
For the tests: along any path :math:`d/dt \sum_{i \in \mathrm{cell}} \mathbf{r}_i U_i =
\sum_i U_i \mathbf{v}_i + V \mathbf{J}_\mathrm{pot} - \sum_i \mathbf{r}_i (\mathbf{F}_i \cdot
\mathbf{v}_i) + V \mathbf{J}_b`, with :math:`V \mathbf{J}_b = \sum_j \mathbf{T}_j
(\partial U / \partial \mathbf{r}_j \cdot \mathbf{v}_j)`, :math:`\mathbf{T}_j` the lattice
translation of image *j*: the energy crossing the cell boundary (Pereverzev, arXiv:2202.05196).
:class:`UnfoldedHeatFlux` reports it as ``results["boundary_term"]``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from ase import units
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.geometry import complete_cell, find_mic
from ase.stress import voigt_6_to_full_3x3_stress

from alkappa.models._nequip_ensemble import (
    DEFAULT_SKIN,
    Member,
    NequIPEnsembleCalculator,
    load_member,
)

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Iterator, Sequence

    import torch
    from ase import Atoms

#: unit of every heat flux returned here (and written to trajectories)
HEAT_FLUX_UNIT = "eV/Å^2/fs"

#: names accepted by :func:`make_heat_flux`
HEAT_FLUX_METHODS = ("unfolded", "virial", "harmonic")


def velocities_per_fs(atoms: Atoms) -> np.ndarray:
    """Velocities in Å/fs (ASE's are in Å per ASE time unit)."""
    return np.asarray(atoms.get_velocities(), dtype=float) * units.fs


def flux_volume(atoms: Atoms) -> float:
    """The cell volume (Å³), or 1 for a cell without three lattice vectors (as FHI-vibes)."""
    return float(atoms.get_volume()) if atoms.cell.rank == 3 else 1.0


@runtime_checkable
class HeatFluxMethod(Protocol):
    """What production MD needs from a heat-flux method.

    ``heat_flux(atoms)`` returns the flux (3,) in eV/Å²/fs of the current positions and
    velocities of ``atoms`` and leaves details in ``results`` (at least ``heat_flux``;
    optionally ``heat_flux_potential``, ``heat_flux_aux``, ``heat_flux_convective``,
    ``heat_flux_members`` (M, 3), ``energy``, ``energies``, ``forces``). Methods that can
    subtract an average virial also have ``atomic_virials(atoms) -> (N, 3, 3)`` and an
    ``average_virials`` attribute (see the module docstring).
    """

    name: str
    results: dict[str, Any]

    def heat_flux(self, atoms: Atoms) -> np.ndarray: ...


class _AverageVirials:
    """The average-virial bookkeeping shared by the methods that have atomic virials."""

    average_virials: np.ndarray | None = None
    convective: bool = False

    def atomic_virials(self, atoms: Atoms) -> np.ndarray:
        raise NotImplementedError

    def set_average_virials(self, frames: Iterable[Atoms]) -> np.ndarray:
        """Set ``average_virials`` to the mean atomic virials (N, 3, 3) of ``frames``."""
        # unset first: the frames' own virials must not be corrected
        self.average_virials = None
        virials = [self.atomic_virials(atoms) for atoms in frames]
        if not virials:
            raise ValueError("need at least one frame to average the atomic virials over")
        self.average_virials = np.mean(virials, axis=0)
        return self.average_virials

    def _assemble(
        self,
        atoms: Atoms,
        potential: np.ndarray,
        convective: np.ndarray,
        members: np.ndarray | None = None,
        members_convective: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """``results`` from the (mean and member) potential and convective fluxes."""
        velocities = velocities_per_fs(atoms)
        aux = np.zeros(3)
        if self.average_virials is not None:
            if self.average_virials.shape != (len(atoms), 3, 3):
                raise ValueError(
                    f"average_virials have shape {self.average_virials.shape}, "
                    f"need {(len(atoms), 3, 3)}"
                )
            aux = np.einsum("oab,ob->a", self.average_virials, velocities) / flux_volume(atoms)
        flux = potential - aux + (convective if self.convective else 0.0)
        out: dict[str, Any] = {
            "heat_flux": flux,
            "heat_flux_potential": potential,
            "heat_flux_aux": aux,
            "heat_flux_convective": convective,
        }
        if members is not None:
            conv = members_convective if members_convective is not None else 0.0
            out["heat_flux_members"] = members - aux + (conv if self.convective else 0.0)
        return out


def _convective(energies: np.ndarray, atoms: Atoms) -> np.ndarray:
    """:math:`V^{-1} \\sum_i (U_i + K_i) v_i` (eV/Å²/fs) from atomic potential energies."""
    v = velocities_per_fs(atoms)
    kinetic = 0.5 * atoms.get_masses() * (atoms.get_velocities() ** 2).sum(axis=1)
    return ((np.asarray(energies) + kinetic)[:, None] * v).sum(axis=0) / flux_volume(atoms)


# --- unfolding ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnfoldedSystem:
    """The cell atoms plus their periodic images within the unfolding margin, as a finite system.

    Attributes
    ----------
    positions
        (n, 3) positions (Å); the first N are the cell atoms, in order, the images follow
        ordered by ``distance``.
    index
        (n,) the cell atom each unfolded atom is an image of.
    shifts
        (n, 3) integer lattice translation of each image (zero for the cell atoms).
    edge_index
        (2, E) directed edges within the model cutoff, nequip's convention (``[0]`` the centre
        that receives the message, ``[1]`` the neighbour), ordered by centre; with pruning only
        centres within ``margin - cutoff`` of the cell.
    n_cell
        Number of cell atoms N.
    distance
        (n,) how far (Å) each unfolded atom lies outside the range the cell atoms span: the
        largest over the lattice directions of the distance beyond the outermost lattice
        plane through a cell atom (0 inside). Every atom within d of some cell atom has
        ``distance <= d``.
    """

    positions: np.ndarray
    index: np.ndarray
    shifts: np.ndarray
    edge_index: np.ndarray
    n_cell: int
    distance: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


def unfold(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    margin: float,
    cutoff: float,
    prune: bool = True,
) -> UnfoldedSystem:
    """Unfold a periodic system (see the module docstring).

    Parameters
    ----------
    positions, cell, pbc
        The periodic system (positions need not be wrapped).
    pairs
        ``(i, j, shifts)`` of all periodic pairs closer than ``cutoff``, shifts in units of the
        cell vectors (:meth:`alkappa.models._nequip_ensemble.VerletList.pairs`).
    margin
        Unfolding margin (Å): images within it of the cell atoms are kept (``L * cutoff`` for
        an L-layer message-passing model).
    cutoff
        Radial cutoff of the model (Å).
    prune
        Keep only the edges into atoms within ``margin - cutoff`` of the cell; otherwise all
        edges between unfolded atoms.
    """
    positions = np.asarray(positions, dtype=float)
    n = len(positions)
    periodic = np.asarray(pbc, dtype=bool)
    full = complete_cell(np.asarray(cell, dtype=float))
    inverse = np.linalg.inv(full)
    frac = positions @ inverse
    # distance between neighbouring lattice planes of each cell vector's family
    spacing = 1.0 / np.linalg.norm(inverse, axis=0)
    lo, hi = frac.min(axis=0), frac.max(axis=0)
    tol = 1e-8
    reach = np.where(periodic, (margin + tol) / spacing, 0.0)
    reach_inner = np.where(periodic, (max(margin - cutoff, 0.0) + tol) / spacing, 0.0)
    nmin = np.where(periodic, np.ceil(lo - hi - reach), 0).astype(np.int64)
    nmax = np.where(periodic, np.floor(hi - lo + reach), 0).astype(np.int64)
    axes = [np.arange(a, b + 1) for a, b in zip(nmin, nmax, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    zero = int(np.flatnonzero((grid == 0).all(axis=1))[0])
    grid = np.concatenate([grid[zero : zero + 1], np.delete(grid, zero, axis=0)])
    scaled = frac[None, :, :] + grid[:, None, :]  # (G, N, 3)
    inside = ((scaled >= lo - reach) & (scaled <= hi + reach)).all(axis=-1)
    inside[0] = True  # the cell atoms themselves
    g, atom = np.nonzero(inside)  # row-major: the zero shift (the cell atoms) comes first
    shifts = grid[g]
    inner = ((scaled >= lo - reach_inner) & (scaled <= hi + reach_inner)).all(axis=-1)
    inner[0] = True
    is_inner = inner[g, atom]
    beyond = np.maximum(np.maximum(lo - scaled[g, atom], scaled[g, atom] - hi), 0.0)
    distance = np.where(periodic, beyond * spacing, 0.0).max(axis=1)
    distance[:n] = 0.0
    # nearest first (the cell atoms stay in front, in order): the atoms and edges a pruned
    # layer needs are then prefixes of the arrays (see _pruned_layers)
    order = np.argsort(distance, kind="stable")
    atom, shifts, is_inner, distance = atom[order], shifts[order], is_inner[order], distance[order]
    centres = np.flatnonzero(is_inner) if prune else np.arange(len(atom))

    # the images' neighbours, from the periodic pair list
    dims = nmax - nmin + 1
    table = np.full((*dims, n), -1, dtype=np.int64)
    table[(*(shifts - nmin).T, atom)] = np.arange(len(atom))
    i, j, pair_shifts = (np.asarray(x) for x in pairs)
    pair_shifts = np.rint(pair_shifts).astype(np.int64)
    order = np.argsort(i, kind="stable")
    counts = np.bincount(i, minlength=n)
    start = np.cumsum(counts) - counts
    count = counts[atom[centres]]
    centre_of_edge = np.repeat(centres, count)
    within = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    pair = order[np.repeat(start[atom[centres]], count) + within]
    neighbour_shift = shifts[centre_of_edge] + pair_shifts[pair] - nmin
    ok = ((neighbour_shift >= 0) & (neighbour_shift < dims)).all(axis=1)
    neighbour = np.full(len(pair), -1, dtype=np.int64)
    neighbour[ok] = table[(*neighbour_shift[ok].T, j[pair][ok])]
    missing = neighbour < 0
    # without pruning, atoms at the rim of the unfolded system lack neighbours (harmless:
    # they are farther than margin - cutoff from the cell); within it none may be missing
    if missing[is_inner[centre_of_edge]].any():
        raise RuntimeError(
            "unfolding: a neighbour of an unfolded atom is missing (margin smaller than the "
            "cutoff, or a neighbour list that does not belong to these positions)"
        )
    return UnfoldedSystem(
        positions=positions[atom] + shifts @ full,
        index=atom,
        shifts=shifts,
        edge_index=np.stack((centre_of_edge[~missing], neighbour[~missing])),
        n_cell=n,
        distance=distance,
    )


# --- the unfolded (NequIP) flux ----------------------------------------------------------------


def _energy_module(model: Any) -> Any:
    """The part of a model that maps a graph to ``atomic_energy`` (no force/stress autograd).

    A nequip ``GraphModel`` wraps ``ForceStressOutput(energy_model)``: the energy model is
    ``model.model.func``. Anything else is used as it is (it must write ``atomic_energy``).
    """
    inner = getattr(model, "model", None)
    func = getattr(inner, "func", None)
    if func is not None and type(inner).__name__ == "ForceStressOutput":
        return func
    return model


def _count_message_passing_layers(model: Any) -> int:
    """Number of nequip ``ConvNetLayer`` s in ``model`` (0 if it has none)."""
    return len(_message_passing_layers(model))


@contextlib.contextmanager
def _no_pruning() -> Iterator[None]:
    yield


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _message_passing_layers(model: Any) -> list[Any]:
    modules = model.modules() if hasattr(model, "modules") else []
    return [m for m in modules if type(m).__name__ == "ConvNetLayer"]


def _truncate(module: Any, args: tuple[Any, ...], *, nodes: int, edges: int) -> tuple[Any, ...]:
    """Forward pre-hook: keep the first ``nodes`` atoms and ``edges`` edges of the input.

    Per-edge fields are those named ``*edge*`` (``edge_index`` has the edges second), per-atom
    fields the other tensors with one row per atom.
    """
    data = dict(args[0])
    n_nodes = data["pos"].shape[0] if "pos" in data else data["atom_types"].shape[0]
    n_edges = data["edge_index"].shape[1]
    for key, value in data.items():
        shape = tuple(getattr(value, "shape", ()))
        if not shape:
            continue
        if "edge" in key:
            if len(shape) >= 2 and shape[:2] == (2, n_edges):  # edge_index, edge_type
                data[key] = value[:, :edges]
            elif shape[0] == n_edges:
                data[key] = value[:edges]
        elif shape[0] == n_nodes:
            data[key] = value[:nodes]
    return (data, *args[1:])


@contextlib.contextmanager
def _pruned_layers(module: Any, unfolded: UnfoldedSystem, cutoff: float) -> Iterator[None]:
    """Run nequip's message-passing layer l of L on the edges into atoms within (L-1-l) r_c.

    Features of atoms farther out do not reach a cell atom in the remaining layers, so the
    cell energies are unchanged; the last layer then only sees the edges into (about) the cell
    atoms. The layer also gets only the atoms within (L-l) r_c (the neighbours of those
    centres: the distance of :class:`UnfoldedSystem` grows by at most the length of an edge),
    so the atom-wise parts of the layers (self-interaction, linear maps, gates) skip the rim.
    Both sets are prefixes, as :func:`unfold` orders the atoms by distance and the edges by
    centre. Implemented with forward pre-hooks on the ``ConvNetLayer`` s (removed on exit),
    so the module must not be used elsewhere at the same time.
    """
    layers = _message_passing_layers(module)
    centre_distance = unfolded.distance[unfolded.edge_index[0]]
    if np.any(np.diff(centre_distance) < 0):
        raise ValueError("the unfolded edges are not ordered by the distance of their centre")
    handles = []
    try:
        for k, layer in enumerate(layers):
            reach = len(layers) - 1 - k
            edges = int(np.searchsorted(centre_distance, reach * cutoff + 1e-8, side="right"))
            nodes = int(np.searchsorted(unfolded.distance, (reach + 1) * cutoff + 1e-8, "right"))
            nodes = max(nodes, unfolded.n_cell)
            handles.append(
                layer.register_forward_pre_hook(partial(_truncate, nodes=nodes, edges=edges))
            )
        yield
    finally:
        for handle in handles:
            handle.remove()


def _float32_copy(module: Any) -> Any:
    """A float32 copy of an energy module.

    nequip fixes the dtype of some intermediate results at build time, in attributes
    (``_output_dtype`` of the edge embeddings, ``model_dtype`` of the tensor products), which
    ``Module.float()`` does not see.
    """
    import copy

    import torch

    copied = copy.deepcopy(module).float()
    for sub in copied.modules():
        for attr in ("_output_dtype", "model_dtype"):
            if getattr(sub, attr, None) == torch.float64:
                setattr(sub, attr, torch.float32)
    return copied


def _check_energies(periodic: np.ndarray, unfolded: np.ndarray, dtype: str) -> None:
    """Raise if the periodic and unfolded atomic energies of the cell atoms differ."""
    tolerance = (1e-4 if dtype == "float32" else 1e-8) * max(1.0, float(np.abs(periodic).max()))
    worst = float(np.abs(periodic - unfolded).max(initial=0.0))
    if not worst <= tolerance:
        raise RuntimeError(
            f"the periodic and unfolded atomic energies differ by up to {worst:.3g} eV: does "
            "the model take periodic input (edge_cell_shift and cell), and is the unfolding "
            "margin at least the number of layers times the cutoff?"
        )


@dataclass(frozen=True)
class _MemberFlux:
    """One member's quantities on the unfolded system (positions relative to the centroid)."""

    energies: np.ndarray  # (N,) cell atom energies
    forces: np.ndarray  # (N, 3)
    potential: np.ndarray  # (3,) V J_pot, eV Å/fs
    boundary: np.ndarray  # (3,) V J_b


class UnfoldedHeatFlux(_AverageVirials):
    """Heat flux of NequIP members on the unfolded system (Langer et al. 2023, eq. (2)).

    Parameters
    ----------
    members
        Eager members (:func:`alkappa.models._nequip_ensemble.load_member` with
        ``compiled=False``), all with the same type names and cutoff; or any :class:`Member`
        whose ``model`` writes ``atomic_energy`` from ``pos``, ``edge_index`` and
        ``atom_types`` (then give ``num_layers``). The flux is the mean over members (the flux
        of the ensemble-mean potential, since the flux is linear in the energy);
        ``results["heat_flux_members"]`` has each member's.
    num_layers
        Message-passing layers L; default: the number of nequip ``ConvNetLayer`` s.
    margin
        Unfolding margin (Å); default ``num_layers * r_max``. Smaller margins give wrong
        cell energies, which :meth:`heat_flux` detects (it compares them with the periodic
        ones) and refuses; larger ones the same flux at a higher cost.
    convective
        Add the convective term (see the module docstring).
    prune
        Drop edges that cannot influence cell energies, per layer for nequip models (see
        the module docstring). The layers are pruned with forward pre-hooks during the
        evaluation: do not evaluate the same member objects concurrently elsewhere.
    skin
        Verlet skin (Å) of the periodic neighbour list the unfolded edges are built from.
    device
        Torch device.
    threads
        Torch intra-op threads during a flux evaluation (restored afterwards); ``None`` keeps
        the current setting (which a parallel ensemble calculator may have lowered to one
        thread per member worker).
    dtype
        ``"float64"`` (default) or ``"float32"``: the precision the flux is evaluated in
        (a float32 copy of each member; sums are taken in float64). float32 was 1.5-1.8
        times faster on CPU and changed the flux by 4e-6 relative (energies by 1e-8
        eV/atom) in ``benchmarks/heat_flux.py`` (untrained CuI model); the MD is not
        affected.

    Notes
    -----
    The first term of eq. (2) needs :math:`dU_i/dt` of the cell atoms only, which the
    periodic system gives as well (its atomic energies are those of the cell atoms of the
    unfolded system): one forward-mode JVP on the periodic graph. The second term needs
    :math:`\\partial U / \\partial \\mathbf{r}_j` of every unfolded atom: one forward and one
    backward pass on the (pruned) unfolded system, which also give the energies and forces.
    The periodic and unfolded atomic energies are compared on every call.

    Cost: for 64-atom CuI with a 2-layer, 5 Å model the unfolded system has 1000 atoms and
    about 7200 edges in the first layer (1300 in the last, with pruning); see
    ``benchmarks/heat_flux.py`` for the cost relative to a force call at 64 and 216 atoms.
    Forward-mode AD needs eager members (AOTInductor-compiled ones have no atomic energies),
    and the models must take periodic input (``edge_cell_shift`` and ``cell``), as nequip's
    do.
    """

    name: ClassVar[str] = "unfolded"

    def __init__(
        self,
        members: Sequence[Member],
        *,
        num_layers: int | None = None,
        margin: float | None = None,
        convective: bool = False,
        prune: bool = True,
        skin: float = DEFAULT_SKIN,
        device: str = "cpu",
        threads: int | None = None,
        dtype: str = "float64",
    ) -> None:
        members = list(members)
        if not members:
            raise ValueError("need at least one member")
        compiled = [str(m.path) for m in members if m.kind != "eager"]
        if compiled:
            raise ValueError(
                f"the unfolded heat flux needs eager members (atomic energies and forward-mode "
                f"autograd); compiled: {compiled}. Load them with compiled=False."
            )
        # the periodic calculator checks the members against each other and gives the type
        # lookup and the (Verlet) neighbour list the unfolded edges are built from
        self._periodic = NequIPEnsembleCalculator(members, device=device, skin=skin)
        self.members = members
        if dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32', not {dtype!r}")
        self.dtype = dtype
        if dtype == "float32":  # in the production fingerprint: float64 runs are not reused
            self.name = "unfolded-float32"  # type: ignore[misc]
        self._modules = [_energy_module(m.model) for m in members]
        self._flux_modules = (
            [_float32_copy(m) for m in self._modules] if dtype == "float32" else self._modules
        )
        self.r_max = float(members[0].r_max)
        layers = (
            num_layers
            if num_layers is not None
            else _count_message_passing_layers(members[0].model)
        )
        if layers < 1:
            raise ValueError(
                "could not count the message-passing layers of the model; give num_layers"
            )
        self.num_layers = int(layers)
        self.margin = float(margin) if margin is not None else self.num_layers * self.r_max
        if self.margin < self.r_max:
            raise ValueError(f"margin {self.margin} Å is smaller than the cutoff {self.r_max} Å")
        self.convective = convective
        self.prune = prune
        self.device = device
        self.threads = threads
        self.average_virials = None
        self.results: dict[str, Any] = {}
        self.last_unfolded: UnfoldedSystem | None = None

    @classmethod
    def from_paths(
        cls,
        model_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        device: str = "cpu",
        **kwargs: Any,
    ) -> UnfoldedHeatFlux:
        """Load the members (eager) from a model directory or a list of ``.nequip.zip`` files."""
        from alkappa.models.ensemble import member_paths

        if isinstance(model_paths, (str, Path)) or hasattr(model_paths, "__fspath__"):
            path = Path(model_paths)  # type: ignore[arg-type]
            paths = member_paths(path) if path.is_dir() else [path]
        else:
            paths = [Path(p) for p in model_paths]  # type: ignore[union-attr]
        members = [load_member(p, device, compiled=False) for p in paths]
        return cls(members, device=device, **kwargs)

    @property
    def size(self) -> int:
        """Number of members."""
        return len(self.members)

    def unfold(self, atoms: Atoms) -> tuple[UnfoldedSystem, np.ndarray]:
        """The unfolded system of ``atoms`` and its atom types (model indices)."""
        unfolded, types, _ = self._unfold(atoms)
        return unfolded, types

    def _unfold(self, atoms: Atoms) -> tuple[UnfoldedSystem, np.ndarray, dict[str, torch.Tensor]]:
        """:meth:`unfold` and the periodic model input it is built from."""
        data = self._periodic.model_input(atoms)  # checks the species, updates the Verlet list
        edges = data["edge_index"].cpu().numpy()
        shifts = data["edge_cell_shift"].cpu().numpy()
        unfolded = unfold(
            atoms.positions,
            atoms.cell.array,
            atoms.pbc,
            (edges[0], edges[1], shifts),
            margin=self.margin,
            cutoff=self.r_max,
            prune=self.prune,
        )
        types = data["atom_types"].cpu().numpy()[unfolded.index]
        self.last_unfolded = unfolded
        return unfolded, types, data

    def _inputs(
        self, unfolded: UnfoldedSystem, types: np.ndarray
    ) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        import torch

        origin = unfolded.positions[: unfolded.n_cell].mean(axis=0)
        relative = unfolded.positions - origin
        graph = {
            "edge_index": torch.as_tensor(unfolded.edge_index, device=self.device),
            "atom_types": torch.as_tensor(types, dtype=torch.int64, device=self.device),
        }
        return relative, graph

    def _member_flux(
        self,
        module: Any,
        relative: np.ndarray,
        graph: dict[str, torch.Tensor],
        unfolded: UnfoldedSystem,
        velocities: np.ndarray,
        cell: np.ndarray,
        periodic: dict[str, torch.Tensor],
    ) -> _MemberFlux:
        import torch
        import torch.autograd.forward_ad as fwad

        n = unfolded.n_cell
        dtype = getattr(torch, self.dtype)
        # dU_i/dt of the cell atoms: forward mode along the velocities on the periodic graph
        # (no autograd graph: recording one costs more than the JVP saves)
        data = {k: v.to(dtype) if v.is_floating_point() else v for k, v in periodic.items()}
        tangent = torch.as_tensor(velocities, dtype=dtype, device=self.device)
        with torch.no_grad(), fwad.dual_level():
            data["pos"] = fwad.make_dual(data["pos"], tangent)
            primal, rate = fwad.unpack_dual(module(data)["atomic_energy"].reshape(-1))
        # dU/dr_j of the cell energy U on the unfolded system: reverse mode
        pos = torch.tensor(relative, dtype=dtype, device=self.device, requires_grad=True)
        pruning = _pruned_layers(module, unfolded, self.r_max) if self.prune else _no_pruning()
        with torch.enable_grad(), pruning:
            energies = module({"pos": pos, **graph})["atomic_energy"].reshape(-1)[:n]
            (gradient,) = torch.autograd.grad(energies.sum(), pos, allow_unused=True)
        unfolded_energies = energies.detach().cpu().numpy().astype(float)
        _check_energies(primal.cpu().numpy().astype(float), unfolded_energies, self.dtype)
        dudt = np.zeros(n) if rate is None else rate.cpu().numpy().astype(float)
        grad = (
            np.zeros_like(relative)
            if gradient is None
            else gradient.detach().cpu().numpy().astype(float)
        )
        v = velocities[unfolded.index]
        power = np.einsum("ja,ja->j", grad, v)  # dU/dr_j . v_j
        potential = relative[:n].T @ dudt - relative.T @ power
        translations = unfolded.shifts @ complete_cell(cell)
        forces = np.zeros((n, 3))
        np.add.at(forces, unfolded.index, -grad)
        return _MemberFlux(
            energies=unfolded_energies,
            forces=forces,
            potential=potential,
            boundary=translations.T @ power,
        )

    def heat_flux(self, atoms: Atoms) -> np.ndarray:
        """The heat flux (3,) in eV/Å²/fs; details in ``results``.

        ``results`` also holds ``energy``, ``energies`` (N,) and ``forces`` (N, 3) of the
        members' mean (equal to those of the periodic model: a consistency check), per-member
        ``heat_flux_members`` (M, 3) and ``boundary_term`` (3,) (module docstring).
        """
        unfolded, types, periodic = self._unfold(atoms)
        relative, graph = self._inputs(unfolded, types)
        # centred like the unfolded positions (smaller coordinates keep float32 digits)
        periodic = {**periodic, "pos": periodic["pos"] - periodic["pos"].mean(dim=0)}
        velocities = velocities_per_fs(atoms)
        volume = flux_volume(atoms)
        with _torch_threads(self.threads):
            per_member = [
                self._member_flux(
                    m, relative, graph, unfolded, velocities, atoms.cell.array, periodic
                )
                for m in self._flux_modules
            ]
        potential = np.array([p.potential for p in per_member]) / volume
        energies = np.array([p.energies for p in per_member])
        convective = np.array([_convective(e, atoms) for e in energies])
        results = self._assemble(
            atoms,
            potential.mean(axis=0),
            convective.mean(axis=0),
            members=potential,
            members_convective=convective,
        )
        mean_energies = energies.mean(axis=0)
        results.update(
            {
                "boundary_term": np.mean([p.boundary for p in per_member], axis=0) / volume,
                "energies": mean_energies,
                "energy": float(mean_energies.sum()),
                "forces": np.mean([p.forces for p in per_member], axis=0),
                "unfolded_atoms": len(unfolded),
                "unfolded_edges": unfolded.edge_index.shape[1],
            }
        )
        self.results = results
        return results["heat_flux"]

    def atomic_virials(self, atoms: Atoms) -> np.ndarray:
        """Atomic virials :math:`W_o` (N, 3, 3) in eV, mean over members (module docstring).

        Four backward passes per member (the gradients of U and of the three components of
        :math:`\\sum_i \\mathbf{r}_i U_i`); meant for a few frames (the average virial), not
        for every MD step.
        """
        unfolded, types = self.unfold(atoms)
        relative, graph = self._inputs(unfolded, types)
        n = unfolded.n_cell
        total = np.zeros((n, 3, 3))
        with _torch_threads(self.threads):
            for module in self._modules:
                total += self._member_virials(module, relative, graph, unfolded)
        return total / len(self._modules)

    def _member_virials(
        self,
        module: Any,
        relative: np.ndarray,
        graph: dict[str, torch.Tensor],
        unfolded: UnfoldedSystem,
    ) -> np.ndarray:
        import torch

        n = unfolded.n_cell
        pos = torch.tensor(relative, dtype=torch.float64, device=self.device)
        pos.requires_grad_(True)
        pruning = _pruned_layers(module, unfolded, self.r_max) if self.prune else _no_pruning()
        with torch.enable_grad():
            with pruning:
                energies = module({"pos": pos, **graph})["atomic_energy"].reshape(-1)[:n]
            weights = torch.as_tensor(relative[:n], dtype=torch.float64, device=self.device)
            outputs = [energies.sum()] + [(energies * weights[:, a]).sum() for a in range(3)]
            grads = [
                torch.autograd.grad(out, pos, retain_graph=k < 3, allow_unused=True)[0]
                for k, out in enumerate(outputs)
            ]
        g = [np.zeros_like(relative) if x is None else x.detach().cpu().numpy() for x in grads]
        # W_j^{ab} = sum_i r_i^a dU_i/dr_j^b - r_j^a dU/dr_j^b, summed over the images of o
        w = np.stack(g[1:], axis=1) - relative[:, :, None] * g[0][:, None, :]
        total = np.zeros((n, 3, 3))
        np.add.at(total, unfolded.index, w)
        return total


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


class VirialHeatFlux(_AverageVirials):
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

    name: ClassVar[str] = "virial"

    def __init__(self, calculator: Calculator | None = None, *, convective: bool = False) -> None:
        self.calculator = calculator
        self.convective = convective
        self.average_virials = None
        self.results: dict[str, Any] = {}

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
            convective = _convective(work.get_potential_energies(), atoms)
        self.results = self._assemble(atoms, potential, convective)
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

    name: ClassVar[str] = "harmonic"

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
        self.results: dict[str, Any] = {}

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
        convective = _convective(energies, atoms)
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

    - ``unfolded``: ``model_paths`` (directory or files) or ``members``, plus the keyword
      arguments of :class:`UnfoldedHeatFlux`;
    - ``virial``: the arguments of :class:`VirialHeatFlux` (``calculator``, ``convective``);
    - ``harmonic``: those of :class:`HarmonicHeatFlux` (``reference``, ``force_constants``,
      ...).
    """
    if name == "unfolded":
        if "members" in kwargs:
            return UnfoldedHeatFlux(kwargs.pop("members"), **kwargs)
        return UnfoldedHeatFlux.from_paths(kwargs.pop("model_paths"), **kwargs)
    if name == "virial":
        return VirialHeatFlux(**kwargs)
    if name == "harmonic":
        return HarmonicHeatFlux(**kwargs)
    raise ValueError(f"unknown heat-flux method {name!r}; known: {', '.join(HEAT_FLUX_METHODS)}")


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
