"""The model interface: an MLIP family that can be trained on a dataset and run in ASE."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from ase.calculators.calculator import Calculator

    from alkappa.models.ensemble import EnsembleCalculator


@dataclass(frozen=True)
class TrainResult:
    """What one training run produced.

    Attributes
    ----------
    model_path
        The deployable model file (loadable by :meth:`Model.load_calculator`).
    curve_path
        CSV of the training curve (epoch, train/validation losses and metrics).
    checkpoint_path
        Checkpoint a later iteration can warm-start from (``None`` if not supported).
    companions
        Other deployable files that belong next to ``model_path`` (e.g. a compiled version of
        the model); whoever moves the model moves them along.
    info
        Anything else worth recording (wall time, number of parameters, ...).
    """

    model_path: Path
    curve_path: Path
    checkpoint_path: Path | None = None
    companions: tuple[Path, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)


class Model(ABC):
    """Base class of all MLIP families.

    Options come from the config's ``model`` block (everything except ``name``) as keyword
    arguments.
    """

    def __init__(self, **options: Any) -> None:
        self.options = options

    @abstractmethod
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
        """Train one model on extxyz ``train_file`` (validated on ``val_file``) in ``workdir``."""

    @abstractmethod
    def load_calculator(self, model_path: Path, device: str = "cpu") -> Calculator:
        """An ASE calculator for a trained model file."""

    def load_ensemble_calculator(
        self,
        model_paths: Sequence[Path],
        device: str = "cpu",
        *,
        threads: int | None = None,
        **options: Any,
    ) -> EnsembleCalculator:
        """One ASE calculator for an ensemble of trained model files (mean and spread).

        The default is the generic :class:`alkappa.models.ensemble.EnsembleCalculator` over
        one :meth:`load_calculator` per file. Plugins override this to share work between
        members (one neighbour list, compiled models, ...); the ``results`` keys must stay
        those of :class:`~alkappa.models.ensemble.EnsembleCalculator`.

        Parameters
        ----------
        model_paths
            The members' model files.
        device
            Torch device.
        threads
            Cores the calling process owns (``None``: leave the thread settings alone).
        **options
            Plugin-specific; the default accepts ``uncertainty_every`` only.
        """
        from alkappa.models.ensemble import EnsembleCalculator

        return EnsembleCalculator([self.load_calculator(p, device) for p in model_paths], **options)
