"""Build the nequip 0.19 (hydra) training config from alkappa's model options.

The schema follows the nequip 0.19 documentation ("Config File",
https://nequip.readthedocs.io/en/latest/guide/configuration/config.html, and "Saved Models",
https://nequip.readthedocs.io/en/latest/api/save_model.html) and the test config shipped with
nequip (``nequip/utils/unittests/minimal_toy_emt.yaml``).

Conventions checked against nequip's source:

- ``nequip.data.from_ase`` maps ASE's ``energy`` to ``total_energy`` (and ``forces``/``stress``
  keep their names) for frames read with a single-point calculator, which is exactly what ASE's
  extxyz reader returns for our datasets, so no ``key_mapping`` is needed. Voigt stress is
  expanded to 3x3.
- nequip's stress sign convention is ASE's: positive diagonal = tensile strain, the cell wants
  to shrink (``nequip.data.transforms.StressSignFlipTransform`` docstring), and
  ``NequIPCalculator`` hands the model's stress to ASE without a sign flip. Units are the
  dataset's, i.e. eV/Å^3. So no conversion is needed either way.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

from alkappa._dicts import deep_merge

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

#: name of the validation metric the checkpoint, LR scheduler and early stopping monitor
MONITOR = "val0_epoch/weighted_sum"


class LossCoeffs(TypedDict):
    """Weights of the loss terms."""

    energy: float
    forces: float
    stress: float


class NequIPOptions(TypedDict):
    """The options of :class:`alkappa.models.nequip.NequIPModel`, resolved
    (:func:`resolve_options`; :data:`DEFAULTS` explains each)."""

    r_max: float
    num_layers: int
    l_max: int
    parity: bool
    num_features: int
    radial_mlp_depth: int
    radial_mlp_width: int
    num_bessels: int
    model_dtype: Literal["float32", "float64"]
    compile: bool
    uncertainty: Literal["ensemble", "llpr"]
    llpr_covariance: Literal["atoms", "structures"]
    max_epochs: int
    max_minutes: float | None
    batch_size: int
    learning_rate: float
    loss_coeffs: LossCoeffs
    ema_decay: float
    lr_factor: float
    lr_patience: int
    early_stopping_patience: int | None
    #: raw nequip config keys, free-form
    extra: dict[str, object]


#: a part of the generated nequip-train config (the YAML tree hydra instantiates): free-form
Node = dict[str, object]

#: the options :class:`alkappa.models.nequip.NequIPModel` understands, with their defaults
DEFAULTS: NequIPOptions = {
    # --- architecture (nequip.model.NequIPGNNModel) ---
    "r_max": 5.0,
    "num_layers": 2,
    "l_max": 1,
    "parity": True,
    "num_features": 16,
    "radial_mlp_depth": 1,
    "radial_mlp_width": 32,
    "num_bessels": 8,
    "model_dtype": "float64",
    # --- deployment ---
    # also AOTInductor-compile each member after training (model.nequip.pt2 next to the
    # package; the ensemble calculator then runs it compiled): about a minute per member on
    # one core; a 64-atom MD step got ~3x cheaper, a 216-atom one ~2.5x (2-core measurement)
    "compile": False,
    # --- uncertainty of the deployed model ---
    # "ensemble": the spread of the M members; "llpr": one member's last-layer prediction
    # rigidity (alkappa.models.llpr), fitted after training into model.llpr.npz (and, with
    # compile, compiled with its features into model.llpr.nequip.pt2); the ensemble
    # calculator of an AL iteration then runs the first member only
    "uncertainty": "ensemble",
    # LLPR covariance over training atoms ("atoms") or structures ("structures")
    "llpr_covariance": "atoms",
    # --- training ---
    "max_epochs": 50,
    "max_minutes": None,
    "batch_size": 4,
    "learning_rate": 0.01,
    "loss_coeffs": {"energy": 1.0, "forces": 1.0, "stress": 1.0},
    "ema_decay": 0.99,
    "lr_factor": 0.5,
    "lr_patience": 10,
    "early_stopping_patience": 25,
    # --- anything else, deep-merged into the generated config last ---
    "extra": {},
}


# the type and range of every scalar option: a typo ("hundred" epochs) fails at validation,
# not after the first training job has started
_POSITIVE_INT = (
    "num_layers",
    "num_features",
    "radial_mlp_depth",
    "radial_mlp_width",
    "num_bessels",
    "max_epochs",
    "batch_size",
)
_NON_NEGATIVE_INT = ("l_max", "lr_patience", "early_stopping_patience")
_POSITIVE_NUMBER = ("r_max", "learning_rate")
_FRACTION = ("ema_decay", "lr_factor")  # strictly between 0 and 1
_BOOLEAN = ("parity", "compile")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_option(key: str, value: Any) -> None:
    """``ValueError`` naming ``key`` when ``value`` has the wrong type or range."""
    if key == "early_stopping_patience" and value is None:  # no early stopping
        return
    if key in _POSITIVE_INT or key in _NON_NEGATIVE_INT:
        low = 1 if key in _POSITIVE_INT else 0
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
            raise ValueError(f"{key} must be an integer >= {low}, not {value!r}")
    elif key in _POSITIVE_NUMBER:
        if not (_is_number(value) and value > 0):
            raise ValueError(f"{key} must be a positive number, not {value!r}")
    elif key in _FRACTION:
        if not (_is_number(value) and 0 < value < 1):
            raise ValueError(f"{key} must be a number between 0 and 1, not {value!r}")
    elif key in _BOOLEAN:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, not {value!r}")
    elif key == "max_minutes":
        if value is not None and not (_is_number(value) and value > 0):
            raise ValueError(f"max_minutes must be a positive number (or null), not {value!r}")
    elif key == "loss_coeffs":
        if not isinstance(value, dict):
            raise ValueError(f"loss_coeffs must be a mapping energy/forces/stress, not {value!r}")
        bad = {k: v for k, v in value.items() if not (_is_number(v) and v >= 0)}
        if bad:
            raise ValueError(f"loss_coeffs must be non-negative numbers, not {bad}")
    elif key == "extra" and not isinstance(value, dict):
        raise ValueError(f"extra must be a mapping of nequip config keys, not {value!r}")


def resolve_options(options: Mapping[str, object]) -> NequIPOptions:
    """``DEFAULTS`` updated with ``options``; every unknown key and bad value is named in one
    ``ValueError`` (so a user fixes all of them at once)."""
    problems = []
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        problems.append(
            f"unknown nequip model option(s): {', '.join(unknown)}; "
            f"known options: {', '.join(DEFAULTS)} (use 'extra' for raw nequip config keys)"
        )
    for key, value in options.items():
        try:
            _check_option(key, value)
        except ValueError as exc:
            problems.append(str(exc))
    choices = {
        "uncertainty": ("ensemble", "llpr"),
        "llpr_covariance": ("atoms", "structures"),
        "model_dtype": ("float32", "float64"),
    }
    for key, allowed in choices.items():
        if key in options and options[key] not in allowed:
            problems.append(f"{key} must be {' or '.join(allowed)}, not {options[key]!r}")
    bad = sorted(set(options.get("loss_coeffs") or {}) - {"energy", "forces", "stress"})
    if bad and isinstance(options["loss_coeffs"], dict):
        problems.append(
            f"unknown loss_coeffs key(s): {', '.join(bad)}; expected energy, forces, stress"
        )
    if problems:
        raise ValueError("; ".join(problems))
    resolved: dict[str, object] = dict(copy.deepcopy(DEFAULTS))
    for key, value in options.items():
        if key == "loss_coeffs":
            resolved[key] = {**DEFAULTS["loss_coeffs"], **value}
        else:
            resolved[key] = copy.deepcopy(value)
    return cast("NequIPOptions", resolved)


_WEIGHTS = "alkappa.models._nequip_weights"


def _dataset(file_path: Path, label_weights: bool = False) -> Node:
    return {
        "_target_": f"{_WEIGHTS}.weighted_ase_dataset"
        if label_weights
        else "nequip.data.dataset.ASEDataset",
        "file_path": str(file_path),
        "ase_args": {"format": "extxyz"},
        "transforms": "${data_transforms}",
    }


def _metric(name: str, field: object, metric: str, coeff: float | None = None) -> Node:
    out: Node = {"name": name, "field": field, "metric": {"_target_": metric}}
    if coeff is not None:
        out["coeff"] = coeff
    return out


def _weighted(name: str, metric: str, coeff: float) -> Node:
    """A loss term over whole frames (``field`` None): the weighted MSEs of _nequip_weights."""
    return {
        "name": name,
        "field": None,
        "metric": {"_target_": f"{_WEIGHTS}.{metric}"},
        "coeff": coeff,
    }


def _metrics(coeffs: LossCoeffs, with_stress: bool, label_weights: bool = False) -> Node:
    """Loss-like validation metrics plus MAE/RMSE monitors.

    The weighted sum uses the loss' terms and coefficients, so ``val0_epoch/weighted_sum`` is
    the validation loss and directly comparable with ``train_loss_epoch/weighted_sum``.
    With ``label_weights`` its energy and stress terms are the per-frame weighted ones of
    the loss (the MAE/RMSE monitors stay unweighted).
    """
    per_atom = {"_target_": "nequip.data.PerAtomModifier", "field": "total_energy"}
    mse, mae, rmse = (
        "nequip.train.MeanSquaredError",
        "nequip.train.MeanAbsoluteError",
        "nequip.train.RootMeanSquaredError",
    )
    entries = [
        _metric("per_atom_energy_mse", per_atom, mse, coeffs["energy"]),
        _metric("forces_mse", "forces", mse, coeffs["forces"]),
        _metric("per_atom_energy_mae", per_atom, mae),
        _metric("per_atom_energy_rmse", per_atom, rmse),
        _metric("forces_mae", "forces", mae),
        _metric("forces_rmse", "forces", rmse),
    ]
    if with_stress:
        entries[2:2] = [_metric("stress_mse", "stress", mse, coeffs["stress"])]
        entries += [_metric("stress_mae", "stress", mae), _metric("stress_rmse", "stress", rmse)]
    if label_weights:
        entries[0] = _weighted("per_atom_energy_mse", "WeightedPerAtomEnergyMSE", coeffs["energy"])
        if with_stress:
            entries[2] = _weighted("stress_mse", "WeightedStressMSE", coeffs["stress"])
    return {"_target_": "nequip.train.MetricsManager", "metrics": entries}


def _loss(coeffs: LossCoeffs, with_stress: bool, label_weights: bool = False) -> Node:
    if label_weights:
        terms = [
            _weighted("per_atom_energy_mse", "WeightedPerAtomEnergyMSE", coeffs["energy"]),
            _metric("forces_mse", "forces", "nequip.train.MeanSquaredError", coeffs["forces"]),
        ]
        if with_stress:
            terms.append(_weighted("stress_mse", "WeightedStressMSE", coeffs["stress"]))
        return {"_target_": "nequip.train.MetricsManager", "metrics": terms}
    if with_stress:
        return {
            "_target_": "nequip.train.EnergyForceStressLoss",
            "per_atom_energy": True,
            "coeffs": {
                "total_energy": coeffs["energy"],
                "forces": coeffs["forces"],
                "stress": coeffs["stress"],
            },
        }
    return {
        "_target_": "nequip.train.EnergyForceLoss",
        "per_atom_energy": True,
        "coeffs": {"total_energy": coeffs["energy"], "forces": coeffs["forces"]},
    }


def _stats(label_weights: bool) -> Node:
    """The training-data statistics the model is normalised with (see :func:`_model`)."""
    if not label_weights:
        return {
            "_target_": "nequip.data.CommonDataStatisticsManager",
            "type_names": "${model_type_names}",
        }
    # the same three statistics, the energy mean over full-weight frames only
    return {
        "_target_": "nequip.data.DataStatisticsManager",
        "type_names": "${model_type_names}",
        "metrics": [
            {
                "name": "num_neighbors_mean",
                "field": {"_target_": "nequip.data.NumNeighbors"},
                "metric": {"_target_": "nequip.data.Mean"},
            },
            {
                "name": "per_atom_energy_mean",
                "field": {"_target_": f"{_WEIGHTS}.FullWeightPerAtomEnergy"},
                "metric": {"_target_": "nequip.data.Mean"},
                "ignore_nan": True,
            },
            {
                "name": "forces_rms",
                "field": "forces",
                "metric": {"_target_": "nequip.data.RootMeanSquare"},
            },
        ],
    }


def _model(opts: NequIPOptions, seed: int, init_model: Path | None) -> Node:
    if init_model is not None:
        # Warm start: nequip's model loaders rebuild the architecture and weights (including
        # the energy shifts/scales of the first training) from the file. A package is
        # self-contained, a checkpoint chains to the files *it* was started from.
        if str(init_model).endswith(".nequip.zip"):
            return {
                "_target_": "nequip.model.ModelFromPackage",
                "package_path": str(init_model),
                "compile_mode": "eager",
            }
        return {
            "_target_": "nequip.model.ModelFromCheckpoint",
            "checkpoint_path": str(init_model),
            "compile_mode": "eager",
        }
    return {
        "_target_": "nequip.model.NequIPGNNModel",
        "seed": seed,
        "model_dtype": opts["model_dtype"],
        "type_names": "${model_type_names}",
        "r_max": "${cutoff_radius}",
        "l_max": opts["l_max"],
        "parity": opts["parity"],
        "num_layers": opts["num_layers"],
        "num_features": opts["num_features"],
        "radial_mlp_depth": opts["radial_mlp_depth"],
        "radial_mlp_width": opts["radial_mlp_width"],
        "num_bessels": opts["num_bessels"],
        # data-dependent normalisation, computed by nequip from the training set
        "avg_num_neighbors": "${training_data_stats:num_neighbors_mean}",
        "per_type_energy_shifts": "${training_data_stats:per_atom_energy_mean}",
        "per_type_energy_scales": "${training_data_stats:forces_rms}",
    }


def build_config(
    opts: NequIPOptions,
    *,
    train_file: Path,
    val_file: Path,
    workdir: Path,
    species: list[str],
    seed: int,
    with_stress: bool,
    init_model: Path | None = None,
    label_weights: bool = False,
) -> Node:
    """The nequip-train config (a plain dict, to be dumped as YAML) for one training run.

    Parameters
    ----------
    opts
        Resolved options (see :func:`resolve_options`).
    train_file, val_file
        Absolute paths of the extxyz training and validation sets.
    workdir
        Absolute output directory (checkpoints and the CSV log go there).
    species
        Chemical symbols the model knows; they are also its type names.
    seed
        Seed of the weight initialisation and the data shuffling.
    with_stress
        Whether the stress enters loss and metrics (only if every frame has one).
    init_model
        Package (``.nequip.zip``) or checkpoint (``.ckpt``) to warm-start from.
    label_weights
        Whether frames carry energy/stress weights (info ``label_weight``): the datasets,
        loss and statistics of :mod:`alkappa.models._nequip_weights` are used. Without, the
        config is nequip's plain one.
    """
    coeffs = opts["loss_coeffs"]
    dataloader = {"_target_": "torch.utils.data.DataLoader", "batch_size": opts["batch_size"]}
    callbacks: list[Node] = [
        {
            "_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
            "monitor": MONITOR,
            # a directory of their own: Lightning warns about a non-empty one
            "dirpath": str(workdir / "checkpoints"),
            "filename": "best",
            "save_top_k": 1,
            "save_last": True,
        },
        {
            "_target_": "lightning.pytorch.callbacks.LearningRateMonitor",
            "logging_interval": "epoch",
        },
        {"_target_": "alkappa.models._nequip_config.EpochTimer"},
    ]
    if opts["early_stopping_patience"]:
        callbacks.append(
            {
                "_target_": "lightning.pytorch.callbacks.EarlyStopping",
                "monitor": MONITOR,
                "patience": int(opts["early_stopping_patience"]),
                "mode": "min",
            }
        )
    trainer: Node = {
        "_target_": "lightning.Trainer",
        "max_epochs": int(opts["max_epochs"]),
        "check_val_every_n_epoch": 1,
        "log_every_n_steps": 1,
        # the sanity-check validation pass only costs time here
        "num_sanity_val_steps": 0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": callbacks,
        "logger": {
            "_target_": "lightning.pytorch.loggers.CSVLogger",
            "save_dir": str(workdir),
            "name": "csv",
            "version": 0,
        },
    }
    if opts["max_minutes"]:
        # Lightning takes "DD:HH:MM:SS"; a dict would reach it as an omegaconf DictConfig,
        # which it mistakes for a timedelta
        seconds = round(60 * float(opts["max_minutes"]))
        days, rest = divmod(seconds, 86400)
        trainer["max_time"] = (
            f"{days:02d}:{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
        )

    config: Node = {
        "run": ["train"],
        "seed": int(seed),
        "cutoff_radius": float(opts["r_max"]),
        "model_type_names": list(species),
        "data_transforms": [
            {
                "_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
                "model_type_names": "${model_type_names}",
                "chemical_species_to_atom_type_map": {s: s for s in species},
            },
            {
                "_target_": "nequip.data.transforms.NeighborListTransform",
                "r_max": "${cutoff_radius}",
            },
        ],
        "data": {
            "_target_": "nequip.data.datamodule.NequIPDataModule",
            "seed": "${seed}",
            "train_dataset": _dataset(train_file, label_weights),
            "val_dataset": _dataset(val_file, label_weights),
            "train_dataloader": {**dataloader, "shuffle": True},
            "val_dataloader": dataloader,
            "stats_manager": _stats(label_weights),
        },
        "trainer": trainer,
        "training_module": {
            "_target_": "nequip.train.EMALightningModule",
            "ema_decay": float(opts["ema_decay"]),
            "loss": _loss(coeffs, with_stress, label_weights),
            "val_metrics": _metrics(coeffs, with_stress, label_weights),
            "optimizer": {"_target_": "torch.optim.Adam", "lr": float(opts["learning_rate"])},
            "lr_scheduler": {
                "scheduler": {
                    "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
                    "factor": float(opts["lr_factor"]),
                    "patience": int(opts["lr_patience"]),
                },
                "monitor": MONITOR,
                "interval": "epoch",
                "frequency": 1,
            },
            "model": _model(opts, seed, init_model),
        },
    }
    return deep_merge(config, opts["extra"] or {})


def _make_epoch_timer() -> type:
    """Build the ``EpochTimer`` Lightning callback (lightning is imported only when needed)."""
    import time

    from lightning.pytorch.callbacks import Callback

    class EpochTimer(Callback):
        """Log ``epoch_seconds`` (one training epoch incl. validation) and ``fit_seconds``."""

        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            self._fit_start = time.perf_counter()

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self._epoch_start = time.perf_counter()

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            # logged at the end of validation, so the epoch time includes validation
            if trainer.sanity_checking or not hasattr(self, "_epoch_start"):
                return
            now = time.perf_counter()
            pl_module.log("epoch_seconds", now - self._epoch_start, on_epoch=True)
            pl_module.log("fit_seconds", now - self._fit_start, on_epoch=True)

    return EpochTimer


_lazy: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    # hydra resolves ``_target_: alkappa.models._nequip_config.EpochTimer`` through getattr, so
    # the callback class is built on first access, inside the nequip-train process only
    if name == "EpochTimer":
        if name not in _lazy:
            _lazy[name] = _make_epoch_timer()
        return _lazy[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
