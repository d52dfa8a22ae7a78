r"""The unfolded-system heat flux of NequIP members (the NequIP plugin's Green-Kubo flux).

:meth:`alkappa.models.nequip.NequIPModel.heat_flux_method` returns :class:`UnfoldedHeatFlux`.
Conventions, units, the average virial and the unfolding itself are those of
:mod:`alkappa.models.heat_flux`; this module holds what needs NequIP's internals (its energy
module, its ``ConvNetLayer`` s, the dtypes it fixes at build time, the periodic model input of
:class:`~alkappa.models._nequip_ensemble.NequIPEnsembleCalculator`).

The method
----------
Langer, Knoop, Carbogno, Scheffler & Rupp, "Heat flux for semilocal machine-learning
potentials", Phys. Rev. B 108, L100302 (2023); the automatic-differentiation formulation
is in Langer, Frank & Knoop, J. Chem. Phys. 159, 174105 (2023). With *L* message-passing
layers of cutoff :math:`r_c`, :math:`U_i` depends on atoms up to :math:`L r_c` away, beyond
the periodic neighbour list. The *unfolded system* is the cell's atoms plus all periodic
images within the margin :math:`L r_c` of them, treated as a finite, non-periodic system;
its atomic energies of the cell atoms are those of the periodic system, and with
:math:`U = \sum_{i \in \mathrm{cell}} U_i` eq. (1) of :mod:`alkappa.models.heat_flux` becomes

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

The unfolding is :func:`alkappa.models.heat_flux.unfold`, from the periodic edge list of the
members' model input. Layer *l* of *L* (counted from 0) only needs messages into atoms within
:math:`(L-1-l) r_c` of the cell: features of atoms farther out reach no cell atom in the
remaining layers. With ``prune=True`` the unfolded edge list only has edges into atoms
within :math:`(L-1) r_c`, and each nequip ``ConvNetLayer`` gets the subset its layer
needs (the last one only the edges into the cell atoms) and only the atoms within
:math:`(L-l) r_c` (the neighbours of those centres), which halves the time with two
layers. This assumes messages flow along edges only and no layer normalises by the
actual neighbour count (true of nequip's ``NequIPGNNModel``, which divides by a constant
``avg_num_neighbors``); the tests check it against ``prune=False``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.geometry import complete_cell

from alkappa.models._nequip_ensemble import (
    DEFAULT_SKIN,
    Member,
    NequIPEnsembleCalculator,
    load_member,
)
from alkappa.models.heat_flux import (
    AverageVirials,
    UnfoldedSystem,
    convective_flux,
    flux_volume,
    unfold,
    velocities_per_fs,
)

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator, Sequence

    import torch
    from ase import Atoms

    from alkappa.models.heat_flux import FluxResults


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


class UnfoldedHeatFlux(AverageVirials):
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
        Add the convective term (see :mod:`alkappa.models.heat_flux`).
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

    name: str = "unfolded"

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
            self.name = "unfolded-float32"
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
        self.results: FluxResults = {}
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
        ``heat_flux_members`` (M, 3) and ``boundary_term`` (3,)
        (:mod:`alkappa.models.heat_flux`).
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
        convective = np.array([convective_flux(e, atoms) for e in energies])
        results = self.assemble_results(
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
        """Atomic virials :math:`W_o` (N, 3, 3) in eV, mean over members
        (:mod:`alkappa.models.heat_flux`).

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
