"""NequIP (nequip 0.19) as an alkappa model plugin.

Training runs ``nequip-train`` in a subprocess on a config generated from the options (see
:mod:`alkappa.models._nequip_config` for the options, their defaults and the conventions),
then packages the best checkpoint with ``nequip-package build`` into ``model.nequip.zip``,
the self-contained file that :meth:`NequIPModel.load_calculator` loads into ASE.

Files written into ``workdir`` by :meth:`NequIPModel.train`:

``config.yaml``
    the generated nequip-train config (rerun by hand with ``nequip-train -cn config``).
``train.log``
    everything nequip-train and nequip-package printed.
``best.ckpt``, ``last.ckpt``
    Lightning checkpoints (best validation loss, and last epoch).
``model.nequip.zip``
    the packaged best model.
``curve.csv``
    the training curve, one row per epoch (see :func:`write_curve`).
``csv/``
    Lightning's raw CSV log.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from alkappa.models._base import Model, TrainResult
from alkappa.models._nequip_config import build_config, resolve_options

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

#: columns of the curve CSV and the Lightning log columns they come from
CURVE_COLUMNS: dict[str, str] = {
    "train_loss": "train_loss_epoch/weighted_sum",
    "val_loss": "val0_epoch/weighted_sum",
    "val_energy_mae": "val0_epoch/per_atom_energy_mae",
    "val_energy_rmse": "val0_epoch/per_atom_energy_rmse",
    "val_forces_mae": "val0_epoch/forces_mae",
    "val_forces_rmse": "val0_epoch/forces_rmse",
    "val_stress_mae": "val0_epoch/stress_mae",
    "val_stress_rmse": "val0_epoch/stress_rmse",
    "lr": "lr-Adam",
    "epoch_seconds": "epoch_seconds",
    "fit_seconds": "fit_seconds",
}

MODEL_FILE = "model.nequip.zip"


class NequIPTrainingError(RuntimeError):
    """nequip-train or nequip-package failed; the message ends with the tail of the log."""


class NequIPModel(Model):
    """NequIP message-passing potential trained with nequip 0.19.

    Parameters
    ----------
    **options
        Keys of :data:`alkappa.models._nequip_config.DEFAULTS`: architecture (``r_max``,
        ``num_layers``, ``l_max``, ``parity``, ``num_features``, ``radial_mlp_depth``,
        ``radial_mlp_width``, ``num_bessels``, ``model_dtype``), training (``max_epochs``,
        ``max_minutes``, ``batch_size``, ``learning_rate``, ``loss_coeffs`` with keys
        ``energy`` (per atom), ``forces``, ``stress``, ``ema_decay``, ``lr_factor``,
        ``lr_patience``, ``early_stopping_patience``) and ``extra``, a dict deep-merged into
        the generated nequip config last. Unknown keys raise ``ValueError``.

    Examples
    --------
    >>> model = NequIPModel(num_features=32, max_epochs=100)  # doctest: +SKIP
    >>> result = model.train(Path("train.xyz"), Path("val.xyz"), Path("member_0"),
    ...                      species=["Cu", "I"], seed=1)  # doctest: +SKIP
    >>> calc = model.load_calculator(result.model_path)  # doctest: +SKIP
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.resolved = resolve_options(options)

    def train(
        self,
        train_file: Path,
        val_file: Path,
        workdir: Path,
        *,
        species: list[str],
        seed: int,
        init_checkpoint: Path | None = None,
        threads: int = 1,
    ) -> TrainResult:
        """Train one NequIP model on extxyz ``train_file``, validated on ``val_file``.

        Parameters
        ----------
        train_file, val_file
            Extended XYZ datasets with energy, forces and (periodic frames) stress.
        workdir
            Output directory (created; earlier training outputs in it are removed).
        species
            Chemical symbols the model covers (its type names, in this order).
        seed
            Seed of weight initialisation and data shuffling.
        init_checkpoint
            Warm start: a ``.nequip.zip`` package (preferred: self-contained) or a ``.ckpt``
            checkpoint of an earlier training. The architecture and the energy
            shifts/scales come from that model; ``species`` must match its type names. The
            file must stay where it is, since the new checkpoint refers to it by path.
        threads
            CPU threads for torch (``OMP_NUM_THREADS`` of the subprocess).

        Returns
        -------
        TrainResult
            ``model_path`` (the package), ``curve_path``, ``checkpoint_path`` (``best.ckpt``)
            and ``info`` with ``wall_seconds``, ``train_seconds``, ``package_seconds``,
            ``epochs``, ``best_epoch``, ``best_val_loss``, ``final`` (last curve row),
            ``n_train``, ``n_val``, ``warm_start``.
        """
        workdir = Path(workdir).resolve()
        train_file, val_file = Path(train_file).resolve(), Path(val_file).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        _clean(workdir)
        n_train, train_stress = _inspect_dataset(train_file, "training")
        n_val, val_stress = _inspect_dataset(val_file, "validation")
        init = None
        if init_checkpoint is not None:
            init = Path(init_checkpoint).resolve()
            if not init.is_file():
                raise FileNotFoundError(f"warm-start model {init} does not exist")
            _check_init_species(init, species)

        config = build_config(
            self.resolved,
            train_file=train_file,
            val_file=val_file,
            workdir=workdir,
            species=list(species),
            seed=seed,
            with_stress=train_stress and val_stress,
            init_model=init,
        )
        (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

        log_path = workdir / "train.log"
        env = _thread_env(threads)
        start = time.perf_counter()
        with log_path.open("w") as log:
            _run(
                [
                    _script("nequip-train"),
                    "-cp",
                    str(workdir),
                    "-cn",
                    "config",
                    f"hydra.run.dir={workdir}",
                ],
                cwd=workdir,
                env=env,
                log=log,
                log_path=log_path,
            )
            trained = time.perf_counter()
            best = workdir / "best.ckpt"
            if not best.is_file():
                raise NequIPTrainingError(
                    f"nequip-train wrote no {best.name} in {workdir}\n{_tail(log_path)}"
                )
            model_path = workdir / MODEL_FILE
            _run(
                [_script("nequip-package"), "build", str(best), str(model_path)],
                cwd=workdir,
                env=env,
                log=log,
                log_path=log_path,
            )
        end = time.perf_counter()

        rows = read_lightning_csv(workdir / "csv" / "version_0" / "metrics.csv")
        curve_path = workdir / "curve.csv"
        write_curve(curve_path, rows)
        val = [(r["val_loss"], r["epoch"]) for r in rows if _finite(r.get("val_loss"))]
        best_loss, best_epoch = min(val) if val else (math.nan, -1)
        info = {
            "wall_seconds": end - start,
            "train_seconds": trained - start,
            "package_seconds": end - trained,
            "epochs": len(rows),
            "best_epoch": best_epoch,
            "best_val_loss": best_loss,
            "final": rows[-1] if rows else {},
            "n_train": n_train,
            "n_val": n_val,
            "stress_in_loss": train_stress and val_stress,
            "warm_start": str(init) if init else None,
            "seed": seed,
            "threads": threads,
        }
        return TrainResult(
            model_path=model_path, curve_path=curve_path, checkpoint_path=best, info=info
        )

    def load_calculator(self, model_path: Path, device: str = "cpu") -> Calculator:
        """An ASE calculator (energy, forces, stress) for a packaged ``.nequip.zip`` model."""
        return load_nequip_calculator(model_path, device)


def load_nequip_calculator(model_path: Path | str, device: str = "cpu") -> Calculator:
    """:class:`nequip.integrations.ase.NequIPCalculator` for a package or checkpoint file.

    The model runs in eager mode. The type names are taken as chemical symbols (alkappa always
    trains with ``type_names == species``).

    Note that nequip's loader sets process-wide torch state on first use (default dtype
    float64, a fixed global seed; ``nequip.utils.global_state.set_global_state``).
    """
    from nequip.integrations.ase import NequIPCalculator

    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"NequIP model file {path} does not exist")
    # `_from_saved_model` is the 0.19 loader for package/checkpoint files (the public
    # `from_compiled_model` needs a `nequip-compile`d file).
    return NequIPCalculator._from_saved_model(
        str(path), device=device, chemical_species_to_atom_type_map=True
    )


# --- helpers ---------------------------------------------------------------------------------


def read_lightning_csv(path: Path) -> list[dict[str, float]]:
    """One row per epoch from Lightning's CSVLogger file, with :data:`CURVE_COLUMNS` names.

    Lightning writes train-epoch, validation and LR values on separate lines of the same
    epoch; they are merged here (the last non-empty value of each column wins).
    """
    if not path.is_file():
        return []
    by_epoch: dict[int, dict[str, float]] = {}
    # LearningRateMonitor logs at the start of an epoch, on a line without an epoch number
    pending: dict[str, float] = {}
    with path.open(newline="") as fh:
        for line in csv.DictReader(fh):
            values = {
                name: float(line[column])
                for name, column in CURVE_COLUMNS.items()
                if line.get(column) not in (None, "")
            }
            if not line.get("epoch"):
                pending.update(values)
                continue
            epoch = int(float(line["epoch"]))
            row = by_epoch.setdefault(epoch, {"epoch": epoch})
            row.update(pending)
            pending = {}
            row.update(values)
    # an epoch without validation (e.g. interrupted) is not a point of the curve
    return [by_epoch[e] for e in sorted(by_epoch) if "val_loss" in by_epoch[e]]


def write_curve(path: Path, rows: list[dict[str, float]]) -> None:
    """Write the training curve: ``epoch`` then :data:`CURVE_COLUMNS` (empty if absent)."""
    columns = ["epoch", *CURVE_COLUMNS]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in columns if k in row})


def _finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def _inspect_dataset(path: Path, what: str) -> tuple[int, bool]:
    """Number of frames and whether all carry stress; empty/missing/unlabelled files raise."""
    import ase.io

    if not path.is_file():
        raise FileNotFoundError(f"{what} set {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} set {path} is empty")
    n, stress = 0, True
    for atoms in ase.io.iread(path, index=":", format="extxyz"):
        results = atoms.calc.results if atoms.calc is not None else {}
        if "energy" not in results or "forces" not in results:
            raise ValueError(f"frame {n} of {what} set {path} has no energy/forces labels")
        stress = stress and "stress" in results
        n += 1
    if n == 0:
        raise ValueError(f"{what} set {path} is empty")
    return n, stress


def _check_init_species(init: Path, species: list[str]) -> None:
    if not init.name.endswith(".nequip.zip"):
        return  # a checkpoint's type names are checked by nequip itself
    from nequip.model import ModelTypeNamesFromPackage

    names = list(ModelTypeNamesFromPackage(str(init)))
    if names != list(species):
        raise ValueError(
            f"warm-start model {init} has type names {names}, but species {list(species)} "
            "were requested"
        )


def _clean(workdir: Path) -> None:
    """Remove outputs of an earlier run, so a rerun cannot mix old and new files."""
    for name in ("best.ckpt", "last.ckpt", MODEL_FILE, "curve.csv", "train.log"):
        (workdir / name).unlink(missing_ok=True)
    for ckpt in workdir.glob("best-v*.ckpt"):
        ckpt.unlink()
    for ckpt in workdir.glob("last-v*.ckpt"):
        ckpt.unlink()
    shutil.rmtree(workdir / "csv", ignore_errors=True)


def _thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    n = str(max(1, int(threads)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = n
    # plain-text logs
    env.setdefault("HYDRA_FULL_ERROR", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _script(name: str) -> str:
    """Console script ``name`` of the running interpreter's environment, else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise NequIPTrainingError(f"'{name}' not found next to {sys.executable} or on PATH")
    return found


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], log: Any, log_path: Path) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    log.flush()
    if proc.returncode != 0:
        raise NequIPTrainingError(
            f"{Path(cmd[0]).name} failed with exit code {proc.returncode} "
            f"(full log: {log_path})\n{_tail(log_path)}"
        )


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])
