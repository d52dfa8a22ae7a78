r"""Heat flux of periodic MD: the conventions, the contract and the model-agnostic pieces.

A Green-Kubo production needs the heat flux of the potential it runs. A model plugin provides
its own (:meth:`alkappa.models.Model.heat_flux_method`) as a :class:`HeatFluxMethod`; this
module holds what such a method and the pipeline share: the units and conventions, the
protocol, the average-virial bookkeeping (:class:`AverageVirials`), the convective term
(:func:`convective_flux`) and the unfolding of a periodic cell into a finite system
(:func:`unfold`, :class:`UnfoldedSystem`) that a many-body (message-passing) flux is built
on. The flux methods that need no model internals (``virial``, ``harmonic``) and the
selection by name are in :mod:`alkappa.greenkubo`; the NequIP flux is the NequIP plugin's
(:class:`alkappa.models.nequip.UnfoldedHeatFlux`).

Definition and conventions
--------------------------
With atomic energies :math:`E_i = K_i + U_i` (kinetic plus potential, :math:`\sum_i U_i` the
potential energy of the cell) the heat flux is (Hardy, Phys. Rev. 132, 168 (1963); for periodic
many-body potentials e.g. the "ML_LHEAT" page of the VASP wiki, and Langer et al. (2023),
below)

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
  equilibrium frames, :meth:`AverageVirials.set_average_virials`), ``heat_flux`` is
  :math:`\mathbf{J}_\mathrm{pot} - \mathbf{J}_\mathrm{aux}` (plus the convective term if
  asked) and ``heat_flux_aux`` is :math:`V^{-1} \sum_o \bar W_o \mathbf{v}_o`.

Unfolding
---------
Langer, Knoop, Carbogno, Scheffler & Rupp, "Heat flux for semilocal machine-learning
potentials", Phys. Rev. B 108, L100302 (2023). With *L* message-passing layers of cutoff
:math:`r_c`, :math:`U_i` depends on atoms up to :math:`L r_c` away, beyond the periodic
neighbour list. The *unfolded system* (:func:`unfold`) is the cell's atoms plus all periodic
images within the margin :math:`L r_c` of them, treated as a finite, non-periodic system; its
atomic energies of the cell atoms are those of the periodic system, so eq. (1) can be
evaluated on it with plain automatic differentiation (the NequIP plugin's
:class:`~alkappa.models.nequip.UnfoldedHeatFlux`). The unfolding keeps every image whose
fractional coordinates lie within the margin (divided by the lattice-plane spacing) of the
range the cell atoms span, a superset of the images within :math:`L r_c` of some cell atom, so
the atoms need not be wrapped into the cell. The cell atoms come first, the images follow by
their distance from that range, the edges by centre: the atoms (and the edges into atoms)
within a given distance are prefixes of the arrays, which lets a model skip, layer by layer,
the atoms whose features can no longer reach a cell atom.

Boundary term
-------------
For the tests: along any path :math:`d/dt \sum_{i \in \mathrm{cell}} \mathbf{r}_i U_i =
\sum_i U_i \mathbf{v}_i + V \mathbf{J}_\mathrm{pot} - \sum_i \mathbf{r}_i (\mathbf{F}_i \cdot
\mathbf{v}_i) + V \mathbf{J}_b`, with :math:`V \mathbf{J}_b = \sum_j \mathbf{T}_j
(\partial U / \partial \mathbf{r}_j \cdot \mathbf{v}_j)`, :math:`\mathbf{T}_j` the lattice
translation of image *j*: the energy crossing the cell boundary (Pereverzev, arXiv:2202.05196).
A flux on an unfolded system (e.g.
:class:`alkappa.models.nequip.UnfoldedHeatFlux`) reports it as ``results["boundary_term"]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from ase import units
from ase.geometry import complete_cell

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ase import Atoms

__all__ = [
    "HEAT_FLUX_UNIT",
    "AverageVirials",
    "FluxResults",
    "HeatFluxMethod",
    "HeatFluxNotAvailable",
    "UnfoldedSystem",
    "convective_flux",
    "flux_volume",
    "unfold",
    "velocities_per_fs",
]

#: unit of every heat flux (and of the ``heat_flux`` written to trajectories)
HEAT_FLUX_UNIT = "eV/Å^2/fs"


def velocities_per_fs(atoms: Atoms) -> np.ndarray:
    """Velocities in Å/fs (ASE's are in Å per ASE time unit)."""
    return np.asarray(atoms.get_velocities(), dtype=float) * units.fs


def flux_volume(atoms: Atoms) -> float:
    """The cell volume (Å³), or 1 for a cell without three lattice vectors (as FHI-vibes)."""
    return float(atoms.get_volume()) if atoms.cell.rank == 3 else 1.0


#: what a heat-flux method computed in its last call: arrays (eV/Å²/fs; ``heat_flux``,
#: ``heat_flux_potential``, ``heat_flux_aux``, ``heat_flux_convective``, ``heat_flux_members``)
#: and a method's own numbers (e.g. the ``energy`` of the model it ran)
FluxResults = dict[str, np.ndarray | float]


@runtime_checkable
class HeatFluxMethod(Protocol):
    """What production MD needs from a heat-flux method (what a model plugin returns from
    :meth:`alkappa.models.Model.heat_flux_method`).

    ``heat_flux(atoms)`` returns the flux (3,) in eV/Å²/fs (:data:`HEAT_FLUX_UNIT`) of the
    current positions *and velocities* of ``atoms`` (the MD calls it with the MD calculator
    attached) and leaves details in ``results``: at least ``heat_flux``; optionally
    ``heat_flux_potential``, ``heat_flux_aux``, ``heat_flux_convective``,
    ``heat_flux_members`` (M, 3), and ``energy``, ``energies`` (N,), ``forces`` (N, 3) of the
    potential the flux belongs to (production MD compares that energy with the MD's and
    warns when they differ). Methods that can subtract an average virial also have
    ``atomic_virials(atoms) -> (N, 3, 3)`` and an ``average_virials`` attribute
    (:class:`AverageVirials`; see the module docstring).

    Attributes
    ----------
    name
        Identifies the method in the production's files (``heat_flux_method``) and
        fingerprint; the pipeline sets it to the config's ``greenkubo.flux`` label.
    results
        The quantities of the last :meth:`heat_flux` call.
    """

    name: str
    results: FluxResults

    def heat_flux(self, atoms: Atoms) -> np.ndarray: ...


class HeatFluxNotAvailable(NotImplementedError):
    """A model plugin that provides no heat flux of its own
    (:meth:`alkappa.models.Model.heat_flux_method`)."""


class AverageVirials:
    """The average-virial bookkeeping shared by the methods that have atomic virials.

    A subclass implements :meth:`atomic_virials` and builds its ``results`` with
    :meth:`assemble_results`, which subtracts the average virial (when set) and adds the
    convective term (when ``convective``).

    Attributes
    ----------
    average_virials
        (N, 3, 3) mean atomic virials :math:`\\bar W_o` in eV (``None``: nothing subtracted);
        production MD sets them from the equilibration (module docstring).
    convective
        Add the convective term to ``heat_flux``.
    """

    average_virials: np.ndarray | None = None
    convective: bool = False

    def atomic_virials(self, atoms: Atoms) -> np.ndarray:
        """Atomic virials :math:`W_o` (N, 3, 3) in eV of the current positions (module
        docstring)."""
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

    def assemble_results(
        self,
        atoms: Atoms,
        potential: np.ndarray,
        convective: np.ndarray,
        members: np.ndarray | None = None,
        members_convective: np.ndarray | None = None,
    ) -> FluxResults:
        """``results`` from the potential and convective fluxes (eV/Å²/fs).

        Parameters
        ----------
        atoms
            The frame (its velocities give the average-virial flux ``heat_flux_aux``).
        potential, convective
            (3,) :math:`\\mathbf{J}_\\mathrm{pot}` and :math:`\\mathbf{J}_\\mathrm{conv}`
            (of the ensemble mean).
        members, members_convective
            (M, 3) the same per ensemble member, if any (``heat_flux_members``).

        Returns
        -------
        dict
            ``heat_flux``, ``heat_flux_potential``, ``heat_flux_aux``,
            ``heat_flux_convective`` and (with ``members``) ``heat_flux_members``.
        """
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
        out: FluxResults = {
            "heat_flux": flux,
            "heat_flux_potential": potential,
            "heat_flux_aux": aux,
            "heat_flux_convective": convective,
        }
        if members is not None:
            conv = members_convective if members_convective is not None else 0.0
            out["heat_flux_members"] = members - aux + (conv if self.convective else 0.0)
        return out


def convective_flux(energies: np.ndarray, atoms: Atoms) -> np.ndarray:
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
    """Unfold a periodic system into a finite one (see the module docstring).

    Parameters
    ----------
    positions, cell, pbc
        The periodic system (positions need not be wrapped).
    pairs
        ``(i, j, shifts)`` of all periodic pairs closer than ``cutoff``, shifts in units of the
        cell vectors (e.g. a model's periodic edge list, ``edge_index`` and
        ``edge_cell_shift``).
    margin
        Unfolding margin (Å): images within it of the cell atoms are kept (``L * cutoff`` for
        an L-layer message-passing model).
    cutoff
        Radial cutoff of the model (Å).
    prune
        Keep only the edges into atoms within ``margin - cutoff`` of the cell; otherwise all
        edges between unfolded atoms.

    Returns
    -------
    UnfoldedSystem

    Raises
    ------
    RuntimeError
        If a neighbour of an atom within ``margin - cutoff`` of the cell is not in the
        unfolded system (a margin below the cutoff, or pairs of other positions).
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
    # layer needs are then prefixes of the arrays (module docstring)
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
