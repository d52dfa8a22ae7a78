"""NequIP (nequip 0.19) as an alkappa model plugin.

Training runs ``nequip-train`` in a subprocess on a config generated from the options (see
:mod:`alkappa.models._nequip_config` for the options, their defaults and the conventions),
then packages the best checkpoint with ``nequip-package build`` into ``model.nequip.zip``,
the self-contained file that :meth:`NequIPModel.load_calculator` loads into ASE. The
Green-Kubo heat flux of the members is :class:`UnfoldedHeatFlux`
(:meth:`NequIPModel.heat_flux_method`).

Files written into ``workdir`` by :meth:`NequIPModel.train`:

``config.yaml``
    the generated nequip-train config (rerun by hand with ``nequip-train -cn config``).
``train.log``
    everything nequip-train and nequip-package printed.
``checkpoints/best.ckpt``, ``checkpoints/last.ckpt``
    Lightning checkpoints (best validation loss, and last epoch).
``model.nequip.zip``
    the packaged best model.
``model.nequip.pt2``
    with the option ``compile``: the package compiled by AOTInductor for ASE
    (:func:`compile_nequip_model`), which the ensemble calculator runs instead of the package.
``model.llpr.npz``, ``model.llpr.nequip.pt2``
    with the option ``uncertainty: llpr``: the last-layer uncertainty fitted on the training
    and validation sets, and (with ``compile``) the model compiled with its last-layer
    features as an output (:mod:`alkappa.models._nequip_llpr`).
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
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from alkappa.models._base import LABEL_WEIGHT_KEY, Model, TrainResult
from alkappa.models._nequip_config import build_config, resolve_options
from alkappa.models._nequip_flux import UnfoldedHeatFlux

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ase.calculators.calculator import Calculator

    from alkappa.models.ensemble import EnsembleCalculator

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
COMPILED_FILE = "model.nequip.pt2"
_LLPR_FILES = ("model.llpr.npz", "model.llpr.nequip.pt2")


class NequIPTrainingError(RuntimeError):
    """nequip-train or nequip-package failed; the message ends with the tail of the log."""


class NequIPCompileError(RuntimeError):
    """nequip-compile failed; the message ends with the tail of its log."""


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
        ``lr_patience``, ``early_stopping_patience``), deployment (``compile``: also write the
        AOTInductor-compiled ``model.nequip.pt2``), uncertainty (``uncertainty``: ``ensemble``
        or ``llpr``; ``llpr_covariance``: ``atoms`` or ``structures``) and ``extra``, a dict
        deep-merged into the generated nequip config last. Unknown keys raise ``ValueError``.

    Examples
    --------
    >>> model = NequIPModel(num_features=32, max_epochs=100)  # doctest: +SKIP
    >>> result = model.train(Path("train.xyz"), Path("val.xyz"), Path("member_0"),
    ...                      species=["Cu", "I"], seed=1)  # doctest: +SKIP
    >>> calc = model.load_calculator(result.model_path)  # doctest: +SKIP
    """

    # per-frame energy/stress weights through alkappa.models._nequip_weights
    label_weights = True

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
            ``model_path`` (the package), ``curve_path``, ``checkpoint_path`` (``best.ckpt``),
            ``companions`` (the compiled model, if made) and ``info`` with ``wall_seconds``,
            ``train_seconds``, ``package_seconds``, ``compile_seconds`` (``None`` without
            ``compile``), ``compiled`` (whether a compiled model was written; a failed
            compilation only warns: the package works without it), ``epochs``,
            ``best_epoch``, ``best_val_loss``, ``final`` (last curve row), ``n_train``,
            ``n_val``, ``warm_start``.
        """
        workdir = Path(workdir).resolve()
        train_file, val_file = Path(train_file).resolve(), Path(val_file).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        _clean(workdir)
        n_train, train_stress, train_weighted = _inspect_dataset(train_file, "training")
        n_val, val_stress, val_weighted = _inspect_dataset(val_file, "validation")
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
            label_weights=train_weighted or val_weighted,
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
            best = workdir / "checkpoints" / "best.ckpt"
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
        compiled: Path | None = None
        if self.resolved["compile"]:
            try:
                compiled = compile_nequip_model(model_path, threads=threads)
            except NequIPCompileError as err:
                warnings.warn(f"{err}\nthe member runs in eager mode", stacklevel=2)
        compiled_end = time.perf_counter()
        llpr_file: Path | None = None
        llpr_compiled: Path | None = None
        if self.resolved["uncertainty"] == "llpr":
            from alkappa.models._nequip_llpr import write_llpr

            llpr_file = write_llpr(
                model_path, train_file, val_file, per=self.resolved["llpr_covariance"]
            )
            if self.resolved["compile"]:
                try:
                    llpr_compiled = compile_llpr_model(model_path, threads=threads)
                except NequIPCompileError as err:
                    warnings.warn(f"{err}\nthe LLPR model runs in eager mode", stacklevel=2)
        llpr_end = time.perf_counter()

        rows = read_lightning_csv(workdir / "csv" / "version_0" / "metrics.csv")
        curve_path = workdir / "curve.csv"
        write_curve(curve_path, rows)
        val = [(r["val_loss"], r["epoch"]) for r in rows if _finite(r.get("val_loss"))]
        best_loss, best_epoch = min(val) if val else (math.nan, -1)
        info = {
            "wall_seconds": end - start,
            "train_seconds": trained - start,
            "package_seconds": end - trained,
            "compile_seconds": compiled_end - end if self.resolved["compile"] else None,
            "llpr_seconds": llpr_end - compiled_end if llpr_file else None,
            "compiled": compiled is not None,
            "epochs": len(rows),
            "best_epoch": best_epoch,
            "best_val_loss": best_loss,
            "final": rows[-1] if rows else {},
            "n_train": n_train,
            "n_val": n_val,
            "stress_in_loss": train_stress and val_stress,
            "label_weights": train_weighted or val_weighted,
            "warm_start": str(init) if init else None,
            "seed": seed,
            "threads": threads,
        }
        return TrainResult(
            model_path=model_path,
            curve_path=curve_path,
            checkpoint_path=best,
            companions=tuple(p for p in (compiled, llpr_file, llpr_compiled) if p is not None),
            info=info,
        )

    def load_calculator(self, model_path: Path, device: str = "cpu") -> Calculator:
        """An ASE calculator (energy, forces, stress) for a packaged ``.nequip.zip`` model."""
        return load_nequip_calculator(model_path, device)

    def load_ensemble_calculator(
        self,
        model_paths: Sequence[Path],
        device: str = "cpu",
        *,
        threads: int | None = None,
        compiled: bool = True,
        compile: bool = False,
        skin: float | None = None,
        uncertainty_every: int = 1,
        parallel: bool | None = None,
    ) -> EnsembleCalculator:
        """The fast ensemble calculator of :mod:`alkappa.models._nequip_ensemble`.

        One model input (neighbour list with a Verlet skin) per step for all members,
        compiled members where a ``model.nequip.pt2`` sits next to the package, members spread
        over ``threads``. Members that cannot share an input (different type names or
        cutoffs) get the generic :class:`~alkappa.models.ensemble.EnsembleCalculator`, with a
        warning.

        Parameters
        ----------
        model_paths
            The members' ``.nequip.zip`` files.
        device
            Torch device.
        threads
            Cores the process owns (see
            :class:`~alkappa.models._nequip_ensemble.NequIPEnsembleCalculator`).
        compiled
            Use compiled companions when present (``False``: all members eager).
        compile
            First compile the members that have no up-to-date companion
            (:func:`compile_nequip_model`, about a minute each on one core); a failure leaves
            that member eager, with a warning.
        skin
            Verlet skin in Å (default
            :data:`~alkappa.models._nequip_ensemble.DEFAULT_SKIN`; 0: new list every step).
        uncertainty_every
            See :class:`~alkappa.models.ensemble.EnsembleCalculator`.
        parallel
            Run members concurrently (default: when ``threads`` >= 2).

        With the model option ``uncertainty: llpr`` the calculator is
        :class:`~alkappa.models._nequip_llpr.NequIPLLPRCalculator` on the first member only
        (its ``model.llpr.npz``, compiled ``model.llpr.nequip.pt2`` when present), with the same
        ``results`` keys (an ensemble of one, ``uncertainty`` from the last layer).
        """
        from alkappa.models._nequip_ensemble import (
            DEFAULT_SKIN,
            IncompatibleMembersError,
            compiled_is_fresh,
            load_nequip_ensemble,
        )

        paths = [Path(p) for p in model_paths]
        if self.resolved["uncertainty"] == "llpr":
            from alkappa.models._nequip_llpr import llpr_compiled_path, load_llpr_calculator

            # one model: the first member, with its last-layer uncertainty
            first = paths[0]
            if compile and compiled and not compiled_is_fresh(first, llpr_compiled_path(first)):
                try:
                    compile_llpr_model(first, device=device, threads=threads or 1)
                except NequIPCompileError as err:
                    warnings.warn(f"{err}\nthe LLPR model runs in eager mode", stacklevel=2)
            return load_llpr_calculator(
                first,
                device,
                compiled=compiled,
                skin=DEFAULT_SKIN if skin is None else skin,
                uncertainty_every=uncertainty_every,
                threads=threads,
            )
        if compile and compiled:
            for path in paths:
                if compiled_is_fresh(path):
                    continue
                try:
                    compile_nequip_model(path, device=device, threads=threads or 1)
                except NequIPCompileError as err:
                    warnings.warn(f"{err}\nthe member runs in eager mode", stacklevel=2)
        try:
            return load_nequip_ensemble(
                paths,
                device,
                compiled=compiled,
                skin=DEFAULT_SKIN if skin is None else skin,
                uncertainty_every=uncertainty_every,
                threads=threads,
                parallel=parallel,
            )
        except IncompatibleMembersError as err:
            warnings.warn(
                f"members cannot share one input ({err}); one calculator per member",
                stacklevel=2,
            )
            return super().load_ensemble_calculator(
                paths, device, threads=threads, uncertainty_every=uncertainty_every
            )

    def single_model_uncertainty(self) -> bool:
        """With ``uncertainty: llpr``: the last-layer uncertainty of one model (an ensemble of
        one is enough)."""
        return self.resolved["uncertainty"] == "llpr"

    def heat_flux_method(
        self,
        model_paths: Sequence[Path],
        *,
        device: str = "cpu",
        threads: int | None = None,
        convective: bool = False,
        precision: str = "float64",
        **options: Any,
    ) -> UnfoldedHeatFlux:
        """The unfolded-system heat flux of the members (Langer et al. 2023):
        :class:`UnfoldedHeatFlux` with the members loaded eagerly (the flux needs their
        atomic energies and forward-mode autograd; compiled companions are not used).

        Parameters
        ----------
        model_paths
            The members' ``.nequip.zip`` files.
        device
            Torch device.
        threads
            Torch intra-op threads during a flux evaluation (``None``: unchanged).
        convective
            Add the convective term.
        precision
            ``"float64"`` or ``"float32"`` (a float32 copy of each member for the flux).
        **options
            Further keywords of :class:`UnfoldedHeatFlux` (``num_layers``, ``margin``,
            ``prune``, ``skin``).

        With ``uncertainty: llpr`` the MD runs the first member alone
        (:meth:`load_ensemble_calculator`), so the flux is that member's too: the flux must
        come from the potential that drives the dynamics.
        """
        paths = [Path(p) for p in model_paths]
        if self.resolved["uncertainty"] == "llpr":
            paths = paths[:1]
        return UnfoldedHeatFlux.from_paths(
            paths,
            device=device,
            threads=threads,
            convective=convective,
            dtype=precision,
            **options,
        )


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


def compile_nequip_model(
    model_path: Path | str,
    output: Path | str | None = None,
    *,
    device: str = "cpu",
    threads: int = 1,
) -> Path:
    """AOTInductor-compile a packaged model for ASE with ``nequip-compile``.

    Runs ``nequip-compile <package> <output> --mode aotinductor --device <device> --target
    ase`` in a subprocess (it needs a C++ compiler). For a small model (2 layers, l_max 1, 32
    features) this took about a minute on one core. The compiled file takes the model input
    with its edge list (``pos``, ``edge_index``, ``atom_types``, ``cell``, ``edge_cell_shift``)
    and works only with the torch version and device it was compiled for.

    Parameters
    ----------
    model_path
        The ``.nequip.zip`` package.
    output
        Where to write; default the companion ``model.nequip.pt2`` next to the package (the
        name the ensemble calculator looks for).
    device
        Device the compiled model will run on.
    threads
        CPU threads of the compilation.

    Returns
    -------
    Path
        The compiled file. The log ``<output>.log`` is kept next to it.
    """
    from alkappa.models._nequip_ensemble import compiled_path

    model_path = Path(model_path).resolve()
    if not model_path.is_file():
        raise FileNotFoundError(f"NequIP model file {model_path} does not exist")
    out = Path(output).resolve() if output is not None else compiled_path(model_path)
    if not out.name.endswith(".nequip.pt2"):
        raise ValueError(f"the compiled file must end with .nequip.pt2, not {out.name}")
    out.unlink(missing_ok=True)
    # written under a temporary name: a half-written file must never look like a model
    tmp = out.with_name(out.name.removesuffix(".nequip.pt2") + ".tmp.nequip.pt2")
    log_path = out.with_name(out.name + ".log")
    cmd = [
        _script("nequip-compile"),
        str(model_path),
        str(tmp),
        "--mode",
        "aotinductor",
        "--device",
        device,
        "--target",
        "ase",
    ]
    try:
        with log_path.open("w") as log:
            _run(
                cmd,
                cwd=out.parent,
                env=_thread_env(threads),
                log=log,
                log_path=log_path,
                error=NequIPCompileError,
            )
        if not tmp.is_file():
            raise NequIPCompileError(f"nequip-compile wrote no {tmp}\n{_tail(log_path)}")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def compile_llpr_model(
    model_path: str | Path, *, device: str = "cpu", threads: int = 1, log: Path | None = None
) -> Path:
    """AOTInductor-compile the package with ``node_features`` as an extra output.

    ``nequip-compile`` of nequip 0.19 with a compile target registered in the subprocess
    (nequip's ``ase`` target plus ``node_features``); written under a temporary name and
    renamed to ``model.llpr.nequip.pt2``. About a minute on one core for a small model.
    """
    from alkappa.models._nequip_llpr import FEATURES_KEY, llpr_compiled_path

    model_path = Path(model_path).resolve()
    out = llpr_compiled_path(model_path)
    tmp = out.with_name(out.name.removesuffix(".nequip.pt2") + ".tmp.nequip.pt2")
    log_path = log or out.with_name(out.name + ".log")
    script = (
        "import sys\n"
        "from nequip.scripts._compile_utils import ASE_TARGET, register_compile_targets\n"
        "register_compile_targets({'alkappa_llpr': {**ASE_TARGET, "
        f"'output': [*ASE_TARGET['output'], {FEATURES_KEY!r}]}}}})\n"
        "from nequip.scripts.compile import main\n"
        "main(sys.argv[1:])\n"
    )
    cmd = [sys.executable, "-c", script, str(model_path), str(tmp), "--mode", "aotinductor"]
    cmd += ["--device", device, "--target", "alkappa_llpr"]
    try:
        with log_path.open("w") as fh:
            proc = subprocess.run(
                cmd, cwd=out.parent, env=_thread_env(threads), stdout=fh, stderr=subprocess.STDOUT
            )
        if proc.returncode != 0 or not tmp.is_file():
            raise NequIPCompileError(f"LLPR compilation failed\n{_tail(log_path)}")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


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


def _inspect_dataset(path: Path, what: str) -> tuple[int, bool, bool]:
    """Number of frames, whether all carry stress and whether any has an energy/stress weight
    below 1 (info ``label_weight``); empty/missing/unlabelled files raise."""
    import ase.io

    if not path.is_file():
        raise FileNotFoundError(f"{what} set {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} set {path} is empty")
    n, stress, weighted = 0, True, False
    for atoms in ase.io.iread(path, index=":", format="extxyz"):
        results = atoms.calc.results if atoms.calc is not None else {}
        if "energy" not in results or "forces" not in results:
            raise ValueError(f"frame {n} of {what} set {path} has no energy/forces labels")
        stress = stress and "stress" in results
        weight = float(atoms.info.get(LABEL_WEIGHT_KEY, 1.0))
        if not 0.0 <= weight <= 1.0:
            raise ValueError(
                f"frame {n} of {what} set {path}: {LABEL_WEIGHT_KEY} {weight} not in [0, 1]"
            )
        weighted = weighted or weight < 1.0
        n += 1
    if n == 0:
        raise ValueError(f"{what} set {path} is empty")
    return n, stress, weighted


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
    for name in (MODEL_FILE, COMPILED_FILE, "curve.csv", "train.log", *_LLPR_FILES):
        (workdir / name).unlink(missing_ok=True)
    for ckpt in workdir.glob("*.ckpt"):  # where checkpoints went before checkpoints/
        ckpt.unlink()
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
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


def _run(
    cmd: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log: Any,
    log_path: Path,
    error: type[RuntimeError] = NequIPTrainingError,
) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    log.flush()
    if proc.returncode != 0:
        raise error(
            f"{Path(cmd[0]).name} failed with exit code {proc.returncode} "
            f"(full log: {log_path})\n{_tail(log_path)}"
        )


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])
