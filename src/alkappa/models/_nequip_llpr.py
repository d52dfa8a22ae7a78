"""LLPR for a trained NequIP model: fitting after training, and the one-model calculator.

The math and the choices are in :mod:`alkappa.models.llpr` (Bigi et al., Mach. Learn.: Sci.
Technol. 5, 045018 (2024)). NequIP 0.19's per-atom energy is

    E_i = s_type(i) * (c * W . h_i) + shift_type(i)

with ``h_i`` the ``node_features`` that enter the readout (``per_atom_energy_readout``, one
``ScalarLinearLayer`` with weights ``W`` scaled by its constant ``c``) and ``s``/``shift``
the per-type scale and shift (``per_type_energy_scale_shift``). The last-layer features are
``f_i = dE_i/dW = c s_type(i) h_i``; ``c s_t`` is stored per type (``type_scale``) in
``model.llpr.npz`` next to the package, so that a compiled model only has to output ``h_i``.

Files next to ``model.nequip.zip`` (an exported ``member_0.nequip.zip`` has them as
``member_0.llpr.npz``, ...: named after the package's stem):

``model.llpr.npz``
    the calibrated :class:`~alkappa.models.llpr.LLPR` (written atomically).
``model.llpr.nequip.pt2``
    optional: the package compiled by AOTInductor with ``node_features`` among its outputs
    (:func:`alkappa.models.nequip.compile_llpr_model`), which :class:`NequIPLLPRCalculator`
    runs instead of the eager package.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from alkappa.models._nequip_ensemble import (
    _INPUTS,
    DEFAULT_SKIN,
    Member,
    NequIPEnsembleCalculator,
    load_member,
)
from alkappa.models.llpr import LLPR, calibrate, feature_covariance, fit_scale
from alkappa.models.uncertainty import RELATIVE_EPS

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch
    from ase import Atoms

LLPR_FILE = "model.llpr.npz"
LLPR_COMPILED_FILE = "model.llpr.nequip.pt2"
FEATURES_KEY = "node_features"
_ASE_OUTPUTS = ("atomic_energy", "total_energy", "forces", "stress")


def _stem(model_path: str | Path) -> str:
    """The package's name up to its first dot: ``model`` of ``model.nequip.zip``,
    ``member_0`` of an exported ``member_0.nequip.zip``."""
    return Path(model_path).name.split(".", 1)[0]


def llpr_path(model_path: str | Path) -> Path:
    """``model.llpr.npz`` next to the package ``model.nequip.zip`` (``<stem>.llpr.npz`` next
    to ``<stem>.nequip.zip``: an exported ``member_0.nequip.zip`` has ``member_0.llpr.npz``)."""
    return Path(model_path).with_name(_stem(model_path) + LLPR_FILE.removeprefix("model"))


def llpr_compiled_path(model_path: str | Path) -> Path:
    """``model.llpr.nequip.pt2`` next to the package ``model.nequip.zip`` (named after the
    package's stem, as :func:`llpr_path`)."""
    return Path(model_path).with_name(_stem(model_path) + LLPR_COMPILED_FILE.removeprefix("model"))


def readout_constants(model: Any, num_types: int) -> tuple[np.ndarray, np.ndarray]:
    """``(type_scale (T,), weights (D,))`` of an eager NequIP model (module docstring)."""
    modules = dict(model.named_modules())
    readout = next((m for n, m in modules.items() if n.endswith("per_atom_energy_readout")), None)
    scale_shift = next(
        (m for n, m in modules.items() if n.endswith("per_type_energy_scale_shift")), None
    )
    if readout is None:
        raise ValueError("no per_atom_energy_readout in the model: not a NequIP GNN model")
    mlp = readout.mlp_module
    if mlp.num_layers != 1 or mlp.bias:
        raise ValueError(
            "LLPR needs a linear readout without bias (readout_mlp_hidden_layers_depth 0)"
        )
    layer = mlp.mlp[0]
    weights = (layer.weight.detach().double() * layer.alpha.double()).reshape(-1).cpu().numpy()
    scale = np.ones(num_types)
    if scale_shift is not None and scale_shift.has_scales:
        s = scale_shift.scales.detach().double().reshape(-1).cpu().numpy()
        scale = np.broadcast_to(s, (num_types,)).copy() if s.size == 1 else s.copy()
    # the readout constant goes into the features, the trained weights stay as they are
    alpha = float(layer.alpha)
    return scale * alpha, weights / alpha


def evaluate_with_features(
    member: Member, data: dict[str, torch.Tensor]
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Energy, forces (N, 3), 3x3 stress and node features (N, D) of one member.

    A compiled member must have been compiled with ``node_features`` among its outputs
    (:func:`alkappa.models.nequip.compile_llpr_model`).
    """
    import torch

    inputs = {key: data[key] for key in member.input_keys}
    if member.kind == "eager":
        inputs["pos"] = inputs["pos"].clone()
        inputs["cell"] = inputs["cell"].clone()
        with torch.enable_grad():
            out = member.model(inputs)
    else:
        out = member.model(inputs)
    energy = float(out["total_energy"].detach().reshape(()).cpu())
    forces = out["forces"].detach().cpu().numpy().astype(float, copy=False)
    stress = out["stress"].detach().reshape(3, 3).cpu().numpy().astype(float, copy=False)
    feats = out[FEATURES_KEY].detach().cpu().numpy().astype(float, copy=False)
    return energy, forces, stress, feats


def fit_llpr(
    model_path: str | Path,
    train_frames: Sequence[Atoms],
    val_frames: Sequence[Atoms],
    *,
    per: str = "atoms",
    neighbours: bool | None = None,
    device: str = "cpu",
) -> LLPR:
    """Covariance from ``train_frames``, ``varsigma``/``alpha`` from ``val_frames``' errors.

    Frames must carry reference energies and forces (a single-point calculator, as
    :func:`alkappa.io.dataset.read_dataset` gives them); the training frames only need
    positions. The model runs eager, once per frame. ``neighbours``: whether the force
    uncertainty sums the rigidities over each atom's neighbours (:mod:`alkappa.models.llpr`);
    ``None`` (default) takes the variant with the smaller validation NLL (both NLLs are in
    ``info``).
    """
    member = load_member(model_path, device, compiled=False)
    calc = NequIPEnsembleCalculator([member], device=device, skin=0.0)
    type_scale, weights = readout_constants(member.model, len(member.type_names))

    def features_of(atoms: Atoms) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        data = calc.model_input(atoms)
        energy, forces, _, h = evaluate_with_features(member, data)
        types = data["atom_types"].cpu().numpy()
        scale = type_scale[types]
        return energy, forces, h * scale[:, None], data["edge_index"].cpu().numpy()

    train_feats = [features_of(a)[2] for a in train_frames]
    cov = feature_covariance(train_feats, per=per)
    atom_q, atom_e2, energy_q, energy_e2, edges = [], [], [], [], []
    offset = 0
    for atoms in val_frames:
        energy, forces, f, edge_index = features_of(atoms)
        edges.append(edge_index + offset)
        offset += len(f)
        ref = atoms.calc.results if atoms.calc is not None else {}
        if "forces" not in ref or "energy" not in ref:
            raise ValueError("validation frames need reference energies and forces")
        atom_q.append(f)
        atom_e2.append(((forces - np.asarray(ref["forces"])) ** 2).sum(axis=1))
        energy_q.append(f.sum(axis=0))
        energy_e2.append((energy - float(ref["energy"])) ** 2)
    queries, sq = np.concatenate(atom_q), np.concatenate(atom_e2)
    fits = {}
    for variant in (True, False) if neighbours is None else (neighbours,):
        val_edges = np.concatenate(edges, axis=1) if variant else None
        fits[variant] = calibrate(cov, queries, sq, dof=3, edges=val_edges)
    neighbours = min(fits, key=lambda v: fits[v][2])
    reg, force_scale2, nll = fits[neighbours]
    energy_scale2 = fit_scale(cov, reg, np.array(energy_q), np.array(energy_e2))
    info = {
        "n_train_frames": len(train_feats),
        "n_train_atoms": int(sum(len(f) for f in train_feats)),
        "n_val_frames": len(val_frames),
        "n_val_atoms": len(sq),
        "val_force_nll": nll,
        **{
            f"val_force_nll_{'neighbour_sum' if v else 'own_atom'}": fit[2]
            for v, fit in fits.items()
        },
        "val_force_rmse": float(np.sqrt(sq.mean() / 3.0)),
        "regulariser_over_mean_eigenvalue": reg / (float(np.trace(cov)) / len(cov)),
    }
    return LLPR(
        covariance=cov,
        regulariser=reg,
        force_scale2=force_scale2,
        energy_scale2=energy_scale2,
        per=per,
        neighbours=neighbours,
        type_scale=type_scale,
        weights=weights,
        info=info,
    )


def write_llpr(
    model_path: str | Path,
    train_file: str | Path,
    val_file: str | Path,
    *,
    per: str = "atoms",
    neighbours: bool | None = None,
    device: str = "cpu",
) -> Path:
    """Fit (:func:`fit_llpr`) on the extxyz files and write ``model.llpr.npz`` atomically."""
    from alkappa.io.dataset import read_dataset

    llpr = fit_llpr(
        model_path,
        read_dataset(train_file),
        read_dataset(val_file),
        per=per,
        neighbours=neighbours,
        device=device,
    )
    out = llpr_path(model_path)
    llpr.save(out)
    return out


def _load_llpr_member(model_path: Path, device: str, compiled: bool) -> Member:
    pt2 = llpr_compiled_path(model_path)
    if compiled and pt2.is_file():
        if pt2.stat().st_mtime < model_path.stat().st_mtime:
            warnings.warn(f"{pt2} is older than {model_path.name}; running eager", stacklevel=3)
        else:
            try:
                from nequip.model.inference_models import load_compiled_model

                model, metadata = load_compiled_model(str(pt2), device)
                if FEATURES_KEY not in model.output_keys:
                    raise ValueError(f"no {FEATURES_KEY} output")
                return Member(
                    path=model_path,
                    model=model,
                    kind="compiled",
                    r_max=float(metadata["r_max"]),
                    type_names=list(metadata["type_names"]),
                    input_keys=tuple(k for k in model.input_keys if k in _INPUTS),
                )
            except Exception as err:  # any failure means: run eager
                warnings.warn(f"{pt2} is not usable ({err}); running eager", stacklevel=3)
    return load_member(model_path, device, compiled=False)


class NequIPLLPRCalculator(NequIPEnsembleCalculator):
    """One NequIP model with its LLPR uncertainty, with the ``results`` of an ensemble of 1.

    ``energy``, ``free_energy``, ``forces``, ``stress`` are the model's; ``energy_members``
    (1,), ``forces_members`` (1, N, 3), ``stress_members`` (1, 6) the same as arrays;
    ``uncertainty`` the LLPR statistics (:meth:`alkappa.models.llpr.LLPR.statistics`, same keys
    as the ensemble's) and ``atom_force_uncertainty`` the per-atom ``u_i`` (N,).

    Parameters
    ----------
    member
        The model (eager, or compiled with ``node_features`` among its outputs).
    llpr
        Its calibrated :class:`~alkappa.models.llpr.LLPR`.
    device, skin, threads
        As for :class:`~alkappa.models._nequip_ensemble.NequIPEnsembleCalculator`.
    uncertainty_every
        Put ``uncertainty`` into ``results`` on every k-th calculation (0: never); always
        available on demand through :attr:`uncertainty`.
    """

    def __init__(
        self,
        member: Member,
        llpr: LLPR,
        *,
        device: str = "cpu",
        skin: float = DEFAULT_SKIN,
        uncertainty_every: int = 1,
        threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            [member],
            device=device,
            skin=skin,
            uncertainty_every=uncertainty_every,
            threads=threads,
            parallel=False,
            **kwargs,
        )
        self.llpr = llpr
        self._features: np.ndarray | None = None
        self._edges: np.ndarray | None = None

    @property
    def uncertainty(self) -> dict[str, float]:
        if "uncertainty" not in self.results and self._features is not None:
            u = self.llpr.atom_force_uncertainty(self._features, self._edges)
            self.results["atom_force_uncertainty"] = u
            forces = self.results["forces"]
            mean_force = float(np.linalg.norm(forces, axis=1).mean())
            self.results["uncertainty"] = {
                "force_max": float(u.max()),
                "force_mean": float(u.mean()),
                "energy_std_per_atom": self.llpr.energy_uncertainty(self._features) / len(u),
                "force_max_relative": float(u.max()) / (mean_force + RELATIVE_EPS),
            }
        return dict(self.results.get("uncertainty", {}))

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        Calculator.calculate(self, atoms, properties, system_changes)
        assert self.atoms is not None
        data = self.model_input(self.atoms)
        energy, forces, stress, h = evaluate_with_features(self.members[0], data)
        self._features = self.llpr.features(h, data["atom_types"].cpu().numpy())
        self._edges = data["edge_index"].cpu().numpy()
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": forces,
            "energy_members": np.array([energy]),
            "forces_members": forces[None],
        }
        if self.atoms.pbc.all():
            voigt = full_3x3_to_voigt_6_stress(stress)
            self.results["stress"] = voigt
            self.results["stress_members"] = voigt[None]
        self.calls += 1
        k = self.uncertainty_every
        if k and (self.calls - 1) % k == 0:
            _ = self.uncertainty


def load_llpr_calculator(
    model_path: str | Path,
    device: str = "cpu",
    *,
    compiled: bool = True,
    skin: float = DEFAULT_SKIN,
    uncertainty_every: int = 1,
    threads: int | None = None,
) -> NequIPLLPRCalculator:
    """The LLPR calculator of a package with its ``model.llpr.npz`` (compiled if available)."""
    model_path = Path(model_path)
    npz = llpr_path(model_path)
    if not npz.is_file():
        raise FileNotFoundError(
            f"no LLPR file {npz}: train with model option uncertainty: llpr, or run "
            "alkappa.models._nequip_llpr.write_llpr on the training and validation sets"
        )
    member = _load_llpr_member(model_path, device, compiled)
    return NequIPLLPRCalculator(
        member,
        LLPR.load(npz),
        device=device,
        skin=skin,
        uncertainty_every=uncertainty_every,
        threads=threads,
    )
