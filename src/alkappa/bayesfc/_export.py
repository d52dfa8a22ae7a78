"""Force constants of a fitted model for phonopy/phono3py and ShengBTE.

The model's force-constant potential is evaluated on phono3py's own supercell of the
reference structure (so atom order and conventions are phono3py's), and written as

``phono3py_params.yaml``, ``fc2.hdf5``, ``fc3.hdf5``
    phono3py's files (full fc arrays); :func:`alkappa.phonons.load_fc3` reads them, so the
    phonon issue's conductivity step runs on them unchanged.
``FORCE_CONSTANTS_2ND``
    second-order constants of the supercell in phonopy's text format, which ShengBTE reads.
``FORCE_CONSTANTS_3RD``
    third-order constants in ShengBTE's format (hiphive's writer), for hiphive's primitive
    cell (``POSCAR_primitive``, written alongside, is the cell ShengBTE's CONTROL must use).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alkappa.io import atomic_path

if TYPE_CHECKING:
    import os

    from ase import Atoms

    from alkappa.bayesfc._model import BayesianFCModelFit


@dataclass(frozen=True)
class ExportResult:
    """Paths written by :func:`export_force_constants` and what they hold."""

    paths: dict[str, Path]
    orders: list[int]
    n_atoms_supercell: int

    def summary(self) -> dict[str, Any]:
        return {
            "files": {k: str(v) for k, v in self.paths.items()},
            "orders": self.orders,
            "n_atoms_supercell": self.n_atoms_supercell,
        }


def phono3py_with_model(
    model: BayesianFCModelFit, structure: Atoms | None = None, *, symprec: float = 1e-3
) -> Any:
    """A ``Phono3py`` on ``structure`` (default: the model's reference supercell, as its own
    unit cell with supercell matrix 1) with fc2 (and fc3 when the model has third order) from
    the model's posterior mean."""
    from alkappa.phonons import make_phono3py, to_ase_atoms

    structure = structure if structure is not None else model.basis.reference
    ph3 = make_phono3py(structure, supercell_matrix=None, symprec=symprec)
    supercell = to_ase_atoms(ph3.supercell)
    # hiphive needs scaled positions in [0, 1): fold round-off 1.0 - 1e-16 onto 0
    supercell.wrap(eps=1e-6)
    fcs = model.force_constants(supercell)
    ph3.fc2 = fcs.get_fc_array(order=2)
    if 3 in model.basis.orders:
        ph3.fc3 = fcs.get_fc_array(order=3)
    return ph3, fcs


def export_force_constants(
    model: BayesianFCModelFit,
    directory: str | os.PathLike[str],
    *,
    symprec: float = 1e-3,
) -> ExportResult:
    """Write the model's fc2/fc3 for phono3py and ShengBTE into ``directory``.

    Parameters
    ----------
    model
        A fitted model with at least second order.
    directory
        Output directory (created).
    symprec
        phono3py's symmetry tolerance.
    """
    import ase.io
    from phono3py.file_IO import write_fc2_to_hdf5, write_fc3_to_hdf5

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    ph3, fcs = phono3py_with_model(model, symprec=symprec)
    paths = {
        "phono3py": root / "phono3py_params.yaml",
        "fc2": root / "fc2.hdf5",
        "shengbte_fc2": root / "FORCE_CONSTANTS_2ND",
    }
    with atomic_path(paths["phono3py"]) as tmp:
        ph3.save(filename=tmp)
    with atomic_path(paths["fc2"]) as tmp:
        write_fc2_to_hdf5(np.asarray(ph3.fc2), filename=str(tmp))
    with atomic_path(paths["shengbte_fc2"]) as tmp:
        fcs.write_to_phonopy(str(tmp), format="text")
    orders = sorted({int(o) for o in model.basis.orders})
    if 3 in orders:
        paths["fc3"] = root / "fc3.hdf5"
        paths["shengbte_fc3"] = root / "FORCE_CONSTANTS_3RD"
        paths["primitive"] = root / "POSCAR_primitive"
        with atomic_path(paths["fc3"]) as tmp:
            write_fc3_to_hdf5(np.asarray(ph3.fc3), filename=str(tmp))
        prim = model.basis.cluster_space.primitive_structure
        with atomic_path(paths["shengbte_fc3"]) as tmp:
            fcs.write_to_shengBTE(str(tmp), prim)
        with atomic_path(paths["primitive"]) as tmp:
            ase.io.write(tmp, prim, format="vasp", direct=True)
    return ExportResult(paths=paths, orders=orders, n_atoms_supercell=len(ph3.supercell))
