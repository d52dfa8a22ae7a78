"""Fast ensemble inference for NequIP members: one input per step, compiled members, threads.

:class:`NequIPEnsembleCalculator` gives exactly the ``results`` of the generic
:class:`alkappa.models.ensemble.EnsembleCalculator` over M ``NequIPCalculator`` s, with the
work that does not depend on the member done once per MD step:

- **One input per step.** nequip's ASE calculator builds the model input from scratch for
  every call (``nequip.data.from_ase``, species-to-type mapping, then the neighbour list with
  matscipy, nequip's default backend, ``nequip/data/_nl.py``), so the naive ensemble does it M
  times per step, plus M rounds of ASE calculator bookkeeping. Here the input (``pos``,
  ``edge_index``, ``atom_types``, ``cell``, ``edge_cell_shift``: the fields nequip's models and
  its ``ase`` AOTInductor compile target take) is built once and fed to all members.
- **Verlet skin.** The neighbour list is built with cutoff ``r_max + skin`` and reused while no
  atom has moved more than ``skin / 2`` since the build (and the cell, pbc and atom count are
  unchanged); every step the pairs closer than ``r_max`` are selected from it. NequIP models
  take the edge list as input, so the selected list is the one a fresh ``r_max`` search gives
  (same pairs; only their order may differ, which changes sums in the last bits).
- **Compiled members.** A member ``model.nequip.zip`` with a compiled companion
  ``model.nequip.pt2`` next to it (``nequip-compile --mode aotinductor --target ase``, see
  :func:`alkappa.models.nequip.compile_nequip_model`) runs compiled; a companion that is
  older than the package, does not load, or does not match the package's type names falls
  back to eager with a warning.
- **Threads.** With ``threads`` >= 2 the members run concurrently in ``min(threads, M)``
  threads, each with ``threads // workers`` torch threads, so a job never uses more cores than
  it owns. This is the default for eager members only: compiled members were measured slower
  in threads than one after the other with all cores each.

What is *not* shared: every member's forward and backward pass. The mean force needs the
gradient of every member's energy, so all members run on every step; their individual forces
come out of those passes for free. ``uncertainty_every`` therefore saves only the statistics
themselves (tens of microseconds), which remain available on demand (see
:class:`~alkappa.models.ensemble.EnsembleCalculator`). Fusing the members into one
AOTInductor graph (traced like ``nequip-compile`` does it: ``make_fx`` through the M
gradients, ``torch.export``, ``aoti_compile_and_package``) was tried with nequip 0.19 and torch
2.13 on CPU: it compiled in about the time of one member, but ran slower than the members one
after the other on 64 atoms (about 16 against 12 ms for 4 members; faster on 216 atoms, but
the measurements were taken on a loaded machine), so members stay separate. The batched
alternative, ``torch.func.vmap`` over stacked member weights, fails on nequip's in-place
``scatter_add_`` and, with that patched, was slower than a loop in eager mode.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.data import atomic_numbers
from ase.geometry import complete_cell
from ase.stress import full_3x3_to_voigt_6_stress

from alkappa.models.ensemble import EnsembleCalculator

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch
    from ase import Atoms

#: default Verlet skin (Å): with r_max = 5 Å the candidate list has (6/5)^3 = 1.7 times the
#: edges; selecting from it costs 0.09 (64 atoms) and 0.25 ms (216 atoms) per step against
#: 0.25 and 0.8 ms for a new search, and 0.5 or 2 Å were not better
DEFAULT_SKIN = 1.0

# AtomicDataDict keys (nequip.data.AtomicDataDict); literal so that importing this module does
# not import nequip
_POS, _EDGE_INDEX, _TYPES, _CELL, _SHIFT = (
    "pos",
    "edge_index",
    "atom_types",
    "cell",
    "edge_cell_shift",
)
_INPUTS = (_POS, _EDGE_INDEX, _TYPES, _CELL, _SHIFT)
_ENERGY, _FORCES, _STRESS = "total_energy", "forces", "stress"


class IncompatibleMembersError(ValueError):
    """The members cannot share one input (different type names, per-edge-type cutoffs, ...)."""


def compiled_path(model_path: str | Path) -> Path:
    """The compiled companion of a packaged model: ``model.nequip.zip`` -> ``model.nequip.pt2``."""
    path = Path(model_path)
    stem = path.name[: -len(".zip")] if path.name.endswith(".zip") else path.name
    return path.with_name(stem + ".pt2")


def compiled_is_fresh(model_path: str | Path, pt2: str | Path | None = None) -> bool:
    """Whether the compiled companion ``pt2`` (default: :func:`compiled_path`) exists and is
    not older than the package."""
    pt2 = compiled_path(model_path) if pt2 is None else Path(pt2)
    return pt2.is_file() and pt2.stat().st_mtime >= Path(model_path).stat().st_mtime


# --- members ---------------------------------------------------------------------------------


@dataclass
class Member:
    """One loaded ensemble member.

    Attributes
    ----------
    path
        The member's package file.
    model
        ``dict -> dict`` module: a nequip ``GraphModel`` (eager) or nequip's wrapper of an
        AOTInductor package.
    kind
        ``"eager"`` or ``"compiled"``.
    r_max
        Cutoff radius (Å).
    type_names
        Atom types in model order (alkappa trains with type names = chemical symbols).
    input_keys
        Input fields the model takes.
    """

    path: Path
    model: Any
    kind: str
    r_max: float
    type_names: list[str]
    input_keys: tuple[str, ...] = _INPUTS

    def evaluate(self, data: dict[str, torch.Tensor]) -> tuple[float, np.ndarray, np.ndarray]:
        """Total energy, forces (N, 3) and 3x3 stress (NaN without a cell volume)."""
        import torch

        inputs = {key: data[key] for key in self.input_keys}
        if self.kind == "eager":
            # nequip's ForceStressOutput switches requires_grad on the position tensor it gets;
            # private copies keep members that run in parallel threads apart
            inputs[_POS] = inputs[_POS].clone()
            inputs[_CELL] = inputs[_CELL].clone()
            with torch.enable_grad():
                out = self.model(inputs)
        else:
            out = self.model(inputs)  # nequip's wrapper runs it under inference_mode
        energy = float(out[_ENERGY].detach().reshape(()).cpu())
        forces = out[_FORCES].detach().cpu().numpy().astype(float, copy=False)
        stress = out[_STRESS].detach().reshape(3, 3).cpu().numpy().astype(float, copy=False)
        return energy, forces, stress


def load_member(model_path: str | Path, device: str = "cpu", *, compiled: bool = True) -> Member:
    """Load one member, compiled if a usable companion exists (and ``compiled``), else eager."""
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"NequIP model file {path} does not exist")
    pt2 = compiled_path(path)
    if compiled and pt2.is_file():
        if not compiled_is_fresh(path):
            warnings.warn(
                f"compiled model {pt2} is older than {path.name}; ignoring it (eager mode)",
                stacklevel=2,
            )
        else:
            try:
                return _load_compiled(pt2, path, device)
            except Exception as err:  # any failure means: run eager
                warnings.warn(
                    f"compiled model {pt2} is not usable ({type(err).__name__}: {err}); "
                    "running the member in eager mode",
                    stacklevel=2,
                )
    return _load_eager(path, device)


def _load_eager(path: Path, device: str) -> Member:
    from nequip.integrations.ase import NequIPCalculator

    # the loader of the naive path (sets nequip's global torch state: float64 default dtype)
    calc = NequIPCalculator._from_saved_model(
        str(path), device=device, chemical_species_to_atom_type_map=True
    )
    metadata = calc.model.metadata
    if metadata.get("per_edge_type_cutoff"):
        raise IncompatibleMembersError(f"{path} uses per-edge-type cutoffs")
    return Member(
        path=path,
        model=calc.model,
        kind="eager",
        r_max=float(metadata["r_max"]),
        type_names=str(metadata["type_names"]).split(" "),
    )


def _load_compiled(pt2: Path, path: Path, device: str) -> Member:
    from nequip.model import ModelTypeNamesFromPackage
    from nequip.model.inference_models import load_compiled_model

    # input/output keys are read from the artifact's metadata (nequip >= 0.17)
    model, metadata = load_compiled_model(str(pt2), device)
    inputs = tuple(model.input_keys)
    missing_in = set(inputs) - set(_INPUTS)
    missing_out = {_ENERGY, _FORCES, _STRESS} - set(model.output_keys)
    if missing_in or missing_out:
        raise ValueError(
            f"compiled for another target (inputs {list(inputs)}, outputs {model.output_keys}); "
            "compile with --target ase"
        )
    if metadata.get("per_edge_type_cutoff"):
        raise ValueError("per-edge-type cutoffs are not supported")
    type_names = list(metadata["type_names"])
    package_names = list(ModelTypeNamesFromPackage(str(path)))
    if type_names != package_names:
        raise ValueError(f"type names {type_names} differ from the package's {package_names}")
    return Member(
        path=path,
        model=model,
        kind="compiled",
        r_max=float(metadata["r_max"]),
        type_names=type_names,
        input_keys=inputs,
    )


# --- neighbour list --------------------------------------------------------------------------


class VerletList:
    """Pairs within ``cutoff``, from a list built with ``cutoff + skin`` and reused.

    Parameters
    ----------
    cutoff
        The model's radial cutoff (Å).
    skin
        Extra radius of the stored list (Å); 0 builds a new list on every call.

    Attributes
    ----------
    builds
        Number of neighbour searches done so far.
    """

    def __init__(self, cutoff: float, skin: float = DEFAULT_SKIN) -> None:
        if cutoff <= 0 or skin < 0:
            raise ValueError(f"need cutoff > 0 and skin >= 0 (got {cutoff}, {skin})")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.builds = 0
        self._ref: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._pairs: tuple[np.ndarray, np.ndarray, np.ndarray] = (
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
            np.zeros((0, 3)),
        )
        self._shift_vectors = np.zeros((0, 3))

    def pairs(
        self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(i, j, shifts)`` of all pairs with ``|x_j - x_i + shifts @ cell| < cutoff``.

        Edge ``i -> j`` uses nequip's convention (``edge_index[0]`` the centre, ``[1]`` the
        neighbour); ``shifts`` are integer cell shifts, as float.
        """
        if self._must_build(positions, cell, pbc):
            self._build(positions, cell, pbc)
        i, j, shifts = self._pairs
        if self.skin == 0.0 or len(i) == 0:
            return i, j, shifts
        # the cell is that of the build, so the shift vectors are too
        vectors = positions[j] - positions[i] + self._shift_vectors
        keep = np.einsum("ij,ij->i", vectors, vectors) < self.cutoff**2
        return i[keep], j[keep], shifts[keep]

    def _must_build(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> bool:
        if self._ref is None or self.skin == 0.0:
            return True
        ref_pos, ref_cell, ref_pbc = self._ref
        if (
            ref_pos.shape != positions.shape
            or not np.array_equal(ref_cell, cell)
            or not np.array_equal(ref_pbc, pbc)
        ):
            return True
        moved = positions - ref_pos
        return bool(np.einsum("ij,ij->i", moved, moved).max(initial=0.0) > (0.5 * self.skin) ** 2)

    def _build(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> None:
        from matscipy.neighbours import neighbour_list

        # as nequip does it (nequip/data/_nl.py): matscipy on a completed cell
        i, j, shifts = neighbour_list(
            "ijS",
            positions=positions,
            cell=complete_cell(cell),
            pbc=pbc,
            cutoff=self.cutoff + self.skin,
        )
        self._pairs = (i.astype(np.int64), j.astype(np.int64), shifts.astype(float))
        self._shift_vectors = self._pairs[2] @ cell
        self._ref = (positions.copy(), cell.copy(), pbc.copy())
        self.builds += 1


# --- the calculator --------------------------------------------------------------------------


class NequIPEnsembleCalculator(EnsembleCalculator):
    """Ensemble mean and spread of NequIP members, with shared per-step work.

    ``results`` are those of :class:`~alkappa.models.ensemble.EnsembleCalculator` (means
    ``energy``, ``free_energy``, ``forces``, ``stress`` for 3D-periodic cells; ``energy_members``,
    ``forces_members``, ``stress_members``; ``uncertainty``).

    Parameters
    ----------
    members
        Loaded members (:func:`load_member`), all with the same type names and cutoff.
    device
        Torch device of the members.
    skin
        Verlet skin of the neighbour list (Å); 0 searches neighbours on every step.
    uncertainty_every
        See :class:`~alkappa.models.ensemble.EnsembleCalculator`.
    threads
        Cores this process owns; ``None`` leaves torch's thread settings alone and runs the
        members one after the other.
    parallel
        Run the members concurrently in ``min(threads, M)`` threads, each with
        ``threads // workers`` torch threads. ``None``: when ``threads`` >= 2 and a member is
        eager (compiled members run faster one after the other, each on all the cores).
    """

    def __init__(
        self,
        members: Sequence[Member],
        *,
        device: str = "cpu",
        skin: float = DEFAULT_SKIN,
        uncertainty_every: int = 1,
        threads: int | None = None,
        parallel: bool | None = None,
        **kwargs: Any,
    ) -> None:
        Calculator.__init__(self, **kwargs)
        self.members = list(members)
        if not self.members:
            raise ValueError("an ensemble needs at least one member")
        first = self.members[0]
        names = first.type_names
        for member in self.members[1:]:
            if (member.type_names, member.r_max) != (names, first.r_max):
                raise IncompatibleMembersError(
                    f"members differ in type names or r_max: {names}, {first.r_max} Å "
                    f"({first.path}) and {member.type_names}, {member.r_max} Å ({member.path})"
                )
        self._init_counters(uncertainty_every)
        self.device = device
        self.type_names = list(names)
        lookup = np.full(len(atomic_numbers) + 1, -1, dtype=np.int64)
        for index, name in enumerate(names):
            if name not in atomic_numbers:
                raise IncompatibleMembersError(f"type name {name!r} is not a chemical symbol")
            lookup[atomic_numbers[name]] = index
        self._lookup = lookup
        self.r_max = first.r_max
        self.neighbours = VerletList(self.r_max, skin)
        self._setup_threads(threads, parallel)

    @property
    def size(self) -> int:
        """Number of members M."""
        return len(self.members)

    @property
    def kinds(self) -> list[str]:
        """``"compiled"`` or ``"eager"`` for each member."""
        return [m.kind for m in self.members]

    def _setup_threads(self, threads: int | None, parallel: bool | None) -> None:
        self.threads = None if threads is None else max(1, int(threads))
        if parallel is None:
            # measured (benchmarks/ensemble_md.py, 2 cores, 64 atoms): 4 compiled members in
            # 2 threads took 14.1 ms against 12.5 ms one after the other, their kernels already
            # use both cores; eager members, mostly Python, gain from threads
            compiled = all(kind == "compiled" for kind in self.kinds)
            parallel = self.threads is not None and self.threads >= 2 and not compiled
        workers = min(self.threads or 1, self.size) if parallel else 1
        self.workers = max(1, workers)
        self._pool: ThreadPoolExecutor | None = None
        if self.threads is None:
            return
        import torch

        # torch's intra-op thread count is process-wide; with OpenMP each thread that runs
        # kernels starts its own team of that size, so workers x intra <= threads
        intra = max(1, self.threads // self.workers)
        torch.set_num_threads(intra)
        if self.workers > 1:
            # AOTInductor kernels size their OpenMP team from the calling thread's setting
            self._pool = ThreadPoolExecutor(
                self.workers,
                thread_name_prefix="alkappa-member",
                initializer=_set_threads,
                initargs=(intra,),
            )

    def close(self) -> None:
        """Stop the member threads (also done when the calculator is garbage collected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        Calculator.calculate(self, atoms, properties, system_changes)
        assert self.atoms is not None
        data = self.model_input(self.atoms)
        if self._pool is None:
            outputs = [member.evaluate(data) for member in self.members]
        else:
            outputs = list(self._pool.map(lambda member: member.evaluate(data), self.members))
        energies = np.array([o[0] for o in outputs])
        forces = np.stack([o[1] for o in outputs])
        stresses = None
        if self.atoms.pbc.all():
            stresses = np.stack([full_3x3_to_voigt_6_stress(o[2]) for o in outputs])
        self._set_results(energies, forces, stresses)

    def model_input(self, atoms: Atoms) -> dict[str, torch.Tensor]:
        """The nequip input fields of ``atoms`` (neighbour list from the Verlet list)."""
        import torch

        numbers = atoms.numbers
        if numbers.max(initial=0) >= len(self._lookup) or (self._lookup[numbers] < 0).any():
            unknown = sorted({s for s in atoms.get_chemical_symbols() if s not in self.type_names})
            raise ValueError(f"species {unknown} are not among the model's types {self.type_names}")
        positions = np.asarray(atoms.positions, dtype=float)
        cell = np.asarray(atoms.cell.array, dtype=float)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        i, j, shifts = self.neighbours.pairs(positions, cell, pbc)
        device = self.device
        # float64 inputs, as nequip.data.from_ase gives them under nequip's global state
        return {
            _POS: torch.as_tensor(positions, dtype=torch.float64, device=device),
            _EDGE_INDEX: torch.as_tensor(np.stack((i, j)), dtype=torch.int64, device=device),
            _TYPES: torch.as_tensor(self._lookup[numbers], dtype=torch.int64, device=device),
            _CELL: torch.as_tensor(cell, dtype=torch.float64, device=device).view(1, 3, 3),
            _SHIFT: torch.as_tensor(shifts, dtype=torch.float64, device=device),
        }


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def load_nequip_ensemble(
    model_paths: Sequence[str | Path],
    device: str = "cpu",
    *,
    compiled: bool = True,
    skin: float = DEFAULT_SKIN,
    uncertainty_every: int = 1,
    threads: int | None = None,
    parallel: bool | None = None,
) -> NequIPEnsembleCalculator:
    """Load NequIP members into a :class:`NequIPEnsembleCalculator` (see its parameters).

    ``compiled=False`` ignores compiled companions (all members eager).
    """
    members = [load_member(p, device, compiled=compiled) for p in model_paths]
    return NequIPEnsembleCalculator(
        members,
        device=device,
        skin=skin,
        uncertainty_every=uncertainty_every,
        threads=threads,
        parallel=parallel,
    )
