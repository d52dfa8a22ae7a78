"""A deployed (TorchScript) NequIP 0.5.x model as a surrogate oracle.

Legacy NequIP (0.5.x) deploys a model as a TorchScript archive that takes a dict of tensors
(``pos``, ``edge_index``, ``edge_cell_shift``, ``cell``, ``pbc``, ``atom_types``) and returns
``total_energy``, ``atomic_energy`` and ``forces`` (plus ``stress`` if it was built with a stress
output). The archive carries metadata as TorchScript "extra files": ``type_names``
(space-separated, in type order), ``r_max``, ``nequip_version``, ``config``, ... This module
reads them with ``torch.jit.load(..., _extra_files=...)``
(https://pytorch.org/docs/stable/generated/torch.jit.load.html), builds the neighbour list with
ASE and calls the model; it does not need the ``nequip`` package (whose current versions cannot
load 0.5.x archives anyway).

Stress: provided only if the model outputs ``stress`` (passed through in ASE's sign convention,
which NequIP also uses: stress = (1/V) dE/d(strain)). The CuI model of shared/reference has no
stress output, so its calculator implements energy and forces only. Switching the module to
training mode to differentiate through a strain is *not* an option: NequIP's output rescaling
only applies in eval mode (the CuI energy changes by ~2 eV).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.neighborlist import primitive_neighbor_list
from ase.stress import full_3x3_to_voigt_6_stress

from alkappa.oracles._base import Oracle, OracleInputError

if TYPE_CHECKING:
    from ase import Atoms

_METADATA_KEYS = ("type_names", "r_max", "nequip_version", "n_species", "model_dtype", "config")


@dataclass(frozen=True)
class DeployedModel:
    """A loaded TorchScript model and what its archive says about itself."""

    module: Any  # torch.jit.ScriptModule (torch is imported lazily)
    path: Path
    metadata: dict[str, str]
    dtype: Any  # torch.dtype

    @property
    def type_names(self) -> list[str] | None:
        names = self.metadata.get("type_names", "").split()
        return names or None

    @property
    def r_max(self) -> float | None:
        value = self.metadata.get("r_max", "").strip()
        return float(value) if value else None


_cache: dict[tuple[str, str, int], DeployedModel] = {}
_cache_lock = threading.Lock()


def load_deployed_model(path: str | Path, device: str = "cpu") -> DeployedModel:
    """Load a deployed model once per process (cached by path, device and file mtime).

    Raises
    ------
    OracleInputError
        If the file does not exist or is not a TorchScript archive.
    """
    import torch

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise OracleInputError(f"torchscript-nequip: model file not found: {path}")
    key = (str(path), device, path.stat().st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        extra: dict[str, Any] = dict.fromkeys(_METADATA_KEYS, "")
        try:
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
        except RuntimeError as exc:
            raise OracleInputError(
                f"torchscript-nequip: {path} is not a loadable TorchScript model: {exc}"
            ) from exc
        module.eval()
        metadata = {
            k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in extra.items() if v
        }
        # The parameters' dtype is what the model computes in (0.5.x archives often lack
        # ``model_dtype``).
        params = list(module.parameters())
        dtype = params[0].dtype if params else torch.float64
        model = DeployedModel(module=module, path=path, metadata=metadata, dtype=dtype)
        _cache[key] = model
        return model


class TorchScriptNequIPCalculator(Calculator):
    """ASE calculator for a deployed NequIP 0.5.x model.

    Implements ``energy``, ``free_energy``, ``energies`` (per atom) and ``forces``; ``stress``
    only if the model outputs it (see the module docstring).

    Parameters
    ----------
    model
        Path of the TorchScript file.
    species
        Chemical symbols in the model's type order. Default: the archive's ``type_names``.
    r_max
        Neighbour cut-off in Å. Default: the archive's ``r_max``. A smaller value than the
        model's own would silently drop interactions and is rejected.
    device
        Torch device, e.g. ``"cpu"`` or ``"cuda"``.
    threads
        Torch intra-op threads during each call (restored afterwards); ``None`` keeps torch's
        default (``OMP_NUM_THREADS``, else all cores). Worth setting when several jobs share a
        node: oversubscribed OpenMP threads spin, and a 64-atom CuI call went from 0.8 s to
        12 s on a busy 2-core machine.
    """

    implemented_properties = ("energy", "free_energy", "energies", "forces")

    def __init__(
        self,
        model: str | Path,
        species: list[str] | None = None,
        r_max: float | None = None,
        device: str = "cpu",
        threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = load_deployed_model(model, device)
        self.device = device
        self.threads = threads
        self.species = resolve_species(self.model, species)
        self.r_max = resolve_r_max(self.model, r_max)
        self._type_of = {s: i for i, s in enumerate(self.species)}
        # ASE refuses to compute a property not listed here, so stress support must be known
        # before the first call: 0.5.x models with a stress output were built with the
        # ``StressForceOutput`` model builder, which the archived config names.
        if "StressForceOutput" in self.model.metadata.get("config", ""):
            self.implemented_properties = (*self.implemented_properties, "stress")

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        import torch

        super().calculate(atoms, properties or ["energy"], system_changes)
        atoms = self.atoms
        symbols = atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(self._type_of))
        if unknown:
            raise OracleInputError(
                f"torchscript-nequip: element(s) {', '.join(unknown)} not in the model's "
                f"species {self.species}"
            )
        data = self._inputs(atoms, torch)
        # TorchScript's profiling executor re-specialises the graph for every new number of
        # edges, which in MD or on rattled frames is almost every call: measured on the CuI
        # model, optimisation buys nothing in steady state (~1 CPU-s per 64-atom call either
        # way) but costs 2-3x on the first calls. Scoped, so no global JIT setting changes.
        previous_threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            with torch.jit.optimized_execution(False):
                out = self.model.module(data)
        finally:
            torch.set_num_threads(previous_threads)
        energy = float(out["total_energy"].detach().sum())
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["forces"] = out["forces"].detach().cpu().numpy().astype(float).reshape(-1, 3)
        if "atomic_energy" in out:
            self.results["energies"] = (
                out["atomic_energy"].detach().cpu().numpy().astype(float).reshape(-1)
            )
        if "stress" in out and atoms.pbc.all():
            stress = out["stress"].detach().cpu().numpy().astype(float).reshape(3, 3)
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)

    def _inputs(self, atoms: Atoms, torch: Any) -> dict[str, Any]:
        """The model's input dict: positions, both-direction edges within r_max, cell shifts."""
        pbc = np.asarray(atoms.pbc, dtype=bool)
        cell = atoms.cell.array.copy()
        positions = atoms.positions
        i, j, shifts = primitive_neighbor_list(
            "ijS", pbc, cell, positions, self.r_max, self_interaction=False
        )
        types = np.array([self._type_of[s] for s in atoms.get_chemical_symbols()])
        dev, dtype = self.device, self.model.dtype
        return {
            "pos": torch.tensor(positions, dtype=dtype, device=dev),
            "edge_index": torch.tensor(np.stack([i, j]), dtype=torch.long, device=dev),
            "edge_cell_shift": torch.tensor(shifts, dtype=dtype, device=dev),
            "cell": torch.tensor(cell, dtype=dtype, device=dev),
            "pbc": torch.tensor(pbc, dtype=torch.bool, device=dev),
            "atom_types": torch.tensor(types, dtype=torch.long, device=dev),
        }


def resolve_species(model: DeployedModel, species: list[str] | None) -> list[str]:
    """The species list in type order: from the config, else the archive; both must agree."""
    archived = model.type_names
    if species is None:
        if archived is None:
            raise OracleInputError(
                f"torchscript-nequip: {model.path.name} has no 'type_names' metadata; "
                "give 'species' (chemical symbols in the model's type order) in the config"
            )
        return archived
    species = [str(s) for s in species]
    if archived is not None and species != archived:
        raise OracleInputError(
            f"torchscript-nequip: species {species} differ from the model's type_names {archived}"
        )
    return species


def resolve_r_max(model: DeployedModel, r_max: float | None) -> float:
    """The neighbour cut-off: from the config, else the archive; never below the archive's."""
    archived = model.r_max
    if r_max is None:
        if archived is None:
            raise OracleInputError(
                f"torchscript-nequip: {model.path.name} has no 'r_max' metadata; "
                "give 'r_max' (Å) in the config"
            )
        return archived
    if archived is not None and r_max < archived:
        raise OracleInputError(
            f"torchscript-nequip: r_max {r_max} Å is below the model's own {archived} Å"
        )
    return float(r_max)


class TorchScriptNequIPOracle(Oracle):
    """A deployed NequIP 0.5.x model as oracle (e.g. the CuI model in shared/reference).

    Parameters
    ----------
    fidelity
        Fidelity label; default: the model file's stem.
    model
        Path of the TorchScript file.
    species, r_max, device, threads
        See :class:`TorchScriptNequIPCalculator`.
    """

    def __init__(
        self,
        fidelity: str | None = None,
        model: str | None = None,
        species: list[str] | None = None,
        r_max: float | None = None,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        if not model:
            raise OracleInputError("torchscript-nequip: option 'model' (path) is required")
        self.default_fidelity = Path(model).stem
        if threads is not None and int(threads) < 1:
            raise OracleInputError(f"torchscript-nequip: threads must be >= 1 (got {threads})")
        super().__init__(
            fidelity, model=model, species=species, r_max=r_max, device=device, threads=threads
        )
        # Load and validate now, so a bad path or species stops the run before any MD.
        self._deployed = load_deployed_model(model, device)
        self.species = resolve_species(self._deployed, species)
        self.r_max = resolve_r_max(self._deployed, r_max)

    @property
    def supported_elements(self) -> set[str]:
        return set(self.species)

    def make_calculator(self) -> TorchScriptNequIPCalculator:
        o = self.options
        return TorchScriptNequIPCalculator(
            o["model"],
            species=self.species,
            r_max=self.r_max,
            device=o["device"],
            threads=o["threads"],
        )

    def describe(self) -> str:
        version = self._deployed.metadata.get("nequip_version", "0.5.x")
        return f"TorchScript NequIP {version} ({self._deployed.path.name})"
