"""Training and running SevenNet models (single- and multi-fidelity) for this package.

SevenNet (Park et al., J. Chem. Theory Comput. 20, 4857 (2024)) implements multi-fidelity
("multi-modal") training as in Kim et al., arXiv:2409.07947: the fidelity enters as a one-hot
vector appended to the scalar (0e) inputs of the self-interaction linear layers before and
after each convolution and of the output block (``use_modal_self_inter_intro/outro``,
``use_modal_output_block``), and each fidelity has its own per-element energy shift
(``use_modal_wise_shift``). The dataset blocks carry ``data_modality``; the calculator takes
``modal``. This module writes SevenNet's input YAML (documented in its ``presets/`` files),
runs ``sevenn`` in a subprocess (its logger is process-global) and wraps the result in an ASE
calculator that adds back this package's per-fidelity energy reference.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from ase.calculators.calculator import Calculator, all_changes

from alkappa.io import atomic_path

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from ase import Atoms

    from alkappa.multifidelity._data import EnergyReference

#: network and training defaults: deliberately tiny (a study trains many models on one core)
DEFAULT_SEVENN_SETTINGS: dict[str, float] = {
    "cutoff": 5.0,
    "channel": 8,
    "lmax": 1,
    "num_convolution_layer": 2,
    "radial_neurons": 16,
    "steps": 600,
    "batch_size": 4,
    "lr": 0.01,
    "force_weight": 1.0,
    "stress_weight": 0.01,
    "high_weight": 1.0,
}


def sevenn_input(
    datasets: Mapping[str, str | Path],
    settings: Mapping[str, Any],
    *,
    seed: int,
    n_frames: int,
    multi_fidelity: bool,
    init_checkpoint: str | Path | None = None,
) -> dict[str, object]:
    """SevenNet's input configuration for training on ``datasets`` (``{fidelity: extxyz}``):
    the YAML tree SevenNet reads, free-form.

    The number of epochs is chosen so that training takes about ``settings["steps"]``
    optimiser steps whatever the dataset size, so approaches with different amounts of data
    get the same optimisation effort.
    """
    s = {**DEFAULT_SEVENN_SETTINGS, **settings}
    batches = max(1, math.ceil(n_frames / int(s["batch_size"])))
    epochs = max(2, math.ceil(int(s["steps"]) / batches))
    cutoff = float(s["cutoff"])
    model: dict[str, object] = {
        "chemical_species": "auto",
        "cutoff": cutoff,
        "channel": int(s["channel"]),
        "is_parity": False,
        "lmax": int(s["lmax"]),
        "num_convolution_layer": int(s["num_convolution_layer"]),
        "weight_nn_hidden_neurons": [int(s["radial_neurons"])] * 2,
        "radial_basis": {"radial_basis_name": "bessel", "bessel_basis_num": 8},
        "cutoff_function": {"cutoff_function_name": "XPLOR", "cutoff_on": 0.9 * cutoff},
        "act_gate": {"e": "silu", "o": "tanh"},
        "act_scalar": {"e": "silu", "o": "tanh"},
        "conv_denominator": "avg_num_neigh",
        "train_shift_scale": True,
        "train_denominator": False,
        "self_connection_type": "linear",
    }
    train: dict[str, object] = {
        "random_seed": int(seed),
        "train_shuffle": True,
        "is_train_stress": True,
        "epoch": epochs,
        "loss": "mse",
        "optimizer": "adam",
        "optim_param": {"lr": float(s["lr"])},
        "scheduler": "linearlr",
        "scheduler_param": {"start_factor": 1.0, "total_iters": epochs, "end_factor": 0.01},
        "force_loss_weight": float(s["force_weight"]),
        "stress_loss_weight": float(s["stress_weight"]),
        "error_record": [
            ["Energy", "RMSE"],
            ["Force", "RMSE"],
            ["Stress", "RMSE"],
            ["TotalLoss", "None"],
        ],
        "per_epoch": epochs,
    }
    data: dict[str, object] = {
        "batch_size": int(s["batch_size"]),
        "shift": "elemwise_reference_energies",
        "scale": "force_rms",
    }
    if multi_fidelity:
        model.update(
            {
                "use_modal_node_embedding": False,
                "use_modal_self_inter_intro": True,
                "use_modal_self_inter_outro": True,
                "use_modal_output_block": True,
            }
        )
        names = list(datasets)
        weight = float(s["high_weight"])
        train.update({"use_modality": True, "use_weight": weight != 1.0})
        data.update({"use_modal_wise_shift": True, "use_modal_wise_scale": False})
        blocks = []
        for i, (fid, path) in enumerate(datasets.items()):
            block: dict[str, object] = {
                "data_modality": fid,
                "file_list": [{"file": str(Path(path).resolve())}],
            }
            if weight != 1.0:
                w = weight if i == len(names) - 1 else 1.0
                block["data_weight"] = {"energy": w, "force": w, "stress": w}
            blocks.append(block)
        data["load_trainset_path"] = blocks
    else:
        if len(datasets) != 1:
            raise ValueError("a single-fidelity model trains on exactly one dataset")
        data["load_trainset_path"] = [str(Path(p).resolve()) for p in datasets.values()]
    if init_checkpoint is not None:
        train["continue"] = {
            "checkpoint": str(Path(init_checkpoint).resolve()),
            "reset_optimizer": True,
            "reset_scheduler": True,
            "reset_epoch": True,
        }
    return {"model": model, "train": train, "data": data}


def write_training_file(path: str | Path, frames: Sequence[Atoms]) -> Path:
    """Write a SevenNet training file; a single frame is written twice.

    (SevenNet 0.13 cannot collate a dataset of one graph: its in-memory dataset then stores
    0-dimensional attributes. Two copies of the frame train exactly the same thing.)
    """
    from alkappa.io.dataset import write_dataset

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_dataset(path, list(frames) * 2 if len(frames) == 1 else frames)
    return path


def train_sevenn(
    datasets: Mapping[str, str | Path],
    workdir: str | Path,
    settings: Mapping[str, Any],
    *,
    seed: int,
    n_frames: int,
    multi_fidelity: bool,
    init_checkpoint: str | Path | None = None,
    threads: int = 1,
) -> Path:
    """Train one SevenNet model in ``workdir``; returns ``workdir/model.pth``.

    A finished ``model.pth`` of the same input and data (``model.key``: a hash of both) is
    reused (rerun after a crash); otherwise SevenNet runs in a
    subprocess limited to ``threads`` threads and its last-epoch checkpoint becomes
    ``model.pth`` (written atomically).
    """
    workdir = Path(workdir)
    final = workdir / "model.pth"
    config = sevenn_input(
        datasets,
        settings,
        seed=seed,
        n_frames=n_frames,
        multi_fidelity=multi_fidelity,
        init_checkpoint=init_checkpoint,
    )
    text = yaml.safe_dump(config, sort_keys=False)
    digest = hashlib.sha256(text.encode())
    for path in [*datasets.values(), *([init_checkpoint] if init_checkpoint else [])]:
        digest.update(Path(path).read_bytes())
    key = workdir / "model.key"
    if final.exists() and key.exists() and key.read_text() == digest.hexdigest():
        return final  # the same training finished before (rerun after a crash)
    workdir.mkdir(parents=True, exist_ok=True)
    # SevenNet caches processed graphs here and would reuse them for different data
    shutil.rmtree(workdir / "sevenn_data", ignore_errors=True)
    (workdir / "input.yaml").write_text(text)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-c", "from sevenn.main.sevenn import main; main()", "input.yaml"]
    proc = subprocess.run(
        [*cmd, "-w", "."], cwd=workdir, env=env, capture_output=True, text=True, check=False
    )
    (workdir / "sevenn.out").write_text(proc.stdout + proc.stderr)
    epochs = config["train"]["epoch"]
    produced = workdir / f"checkpoint_{epochs}.pth"
    if proc.returncode != 0 or not produced.exists():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise RuntimeError(f"SevenNet training in {workdir} failed:\n{tail}")
    with atomic_path(final) as tmp:
        shutil.copyfile(produced, tmp)
    key.write_text(digest.hexdigest())
    return final


@contextmanager
def _float32_default() -> Iterator[None]:
    """SevenNet models are float32 and build their inputs with torch's default dtype; NequIP
    sets that default to float64 process-wide, so switch it for the duration of a call."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


class ReferencedCalculator(Calculator):
    """A trained SevenNet model at one fidelity, plus that fidelity's energy reference.

    Parameters
    ----------
    model_path
        SevenNet checkpoint.
    fidelity
        Level to predict (``modal`` of a multi-fidelity model; ignored by a single one).
    reference
        Per-fidelity per-element energies added back to the model's energy.
    reference_fidelity
        Which reference table to add (default: ``fidelity``).
    multi_fidelity
        Whether the checkpoint is a multi-fidelity model.
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(
        self,
        model_path: str | Path,
        fidelity: str,
        reference: EnergyReference,
        *,
        reference_fidelity: str | None = None,
        multi_fidelity: bool = True,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        from sevenn.calculator import SevenNetCalculator

        self.fidelity = fidelity
        self.reference = reference
        self.reference_fidelity = reference_fidelity or fidelity
        with _float32_default():
            self.inner = SevenNetCalculator(
                str(model_path), device=device, modal=fidelity if multi_fidelity else None
            )

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        assert self.atoms is not None
        work = self.atoms.copy()
        with _float32_default():
            self.inner.calculate(work, ["energy", "forces", "stress"], all_changes)
        shift = self.reference.energy(work, self.reference_fidelity)
        energy = float(self.inner.results["energy"]) + shift
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": self.inner.results["forces"].copy(),
            "stress": self.inner.results["stress"].copy(),
        }
