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
    from alkappa.models.heat_flux import HeatFluxMethod


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
    info: dict[str, object] = field(default_factory=dict)


#: frame info key with the weight (0..1) of a frame's energy and stress in the training loss;
#: absent means 1, forces always weigh 1 (set by the physical gate, alkappa.al.gate)
LABEL_WEIGHT_KEY = "label_weight"


class Model(ABC):
    """Base class of all MLIP families.

    Options come from the config's ``model`` block (everything except ``name``) as keyword
    arguments. A plugin implements :meth:`train` and :meth:`load_calculator`; it may override
    :meth:`load_ensemble_calculator` (shared work between members) and
    :meth:`heat_flux_method` (its own heat flux, for Green-Kubo with
    ``greenkubo.flux: unfolded``).
    """

    #: whether :meth:`train` honours per-frame energy/stress weights (info
    #: :data:`LABEL_WEIGHT_KEY` of the training frames); the physical gate needs it
    label_weights: bool = False

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

    def heat_flux_method(
        self,
        model_paths: Sequence[Path],
        *,
        device: str = "cpu",
        threads: int | None = None,
        convective: bool = False,
        precision: str = "float64",
        **options: Any,
    ) -> HeatFluxMethod:
        """The heat flux of an ensemble of trained model files, for Green-Kubo MD.

        ``greenkubo.flux: unfolded`` (the default) asks the model for its own heat flux: only
        the model knows its atomic energies and how far they reach, so only the plugin can
        give the full flux of a many-body potential. The pipeline calls this once per
        production job, before any MD, and calls the method's ``heat_flux(atoms)`` at every
        logged NVE step with the ensemble calculator of :meth:`load_ensemble_calculator`
        attached to ``atoms``. Conventions, units and the building blocks (the average
        virial, the convective term, the unfolding of the periodic cell) are in
        :mod:`alkappa.models.heat_flux`.

        The default raises :class:`~alkappa.models.heat_flux.HeatFluxNotAvailable`: a model
        without a flux of its own runs Green-Kubo with ``greenkubo.flux: virial`` (if its
        calculator gives per-atom stresses) or ``harmonic``. :meth:`provides_heat_flux` tells
        without loading anything.

        Parameters
        ----------
        model_paths
            The members' model files (those of :meth:`load_ensemble_calculator`).
        device
            Torch device (or whatever the plugin runs on).
        threads
            Cores the calling process owns (``None``: leave the thread settings alone).
        convective
            Add the convective term :math:`\\sum_i E_i \\mathbf{v}_i / V` with the model's
            atomic energies (``greenkubo.convective``).
        precision
            ``"float64"`` or ``"float32"`` (``greenkubo.flux_precision``): the floating point
            the model is evaluated in for the flux; a plugin with one precision only raises
            ``ValueError`` for the other.
        **options
            Plugin-specific.

        Returns
        -------
        HeatFluxMethod
            The ensemble-mean flux (the flux of the mean potential; per-member fluxes in
            ``results["heat_flux_members"]`` if the plugin has them). Methods with atomic
            virials should derive from :class:`~alkappa.models.heat_flux.AverageVirials`, so
            that production MD can subtract the average virial.

        Raises
        ------
        alkappa.models.heat_flux.HeatFluxNotAvailable
            The model provides no heat flux (the default).
        """
        from alkappa.models.heat_flux import HeatFluxNotAvailable

        raise HeatFluxNotAvailable(
            f"model plugin {type(self).__name__} provides no heat flux of its own "
            "(Model.heat_flux_method)"
        )

    def single_model_uncertainty(self) -> bool:
        """Whether one trained model gives an uncertainty of its own, so that an "ensemble" of
        one member (``ensemble.size: 1``) can run the AL loop: its ensemble calculator then
        reports ``uncertainty`` (and the per-atom force sigma ``atom_force_uncertainty``, (N,)
        eV/Å, for the calibration) although the members' spread is zero. The default (``False``)
        needs at least two members; a plugin whose options switch such an uncertainty on (e.g.
        NequIP's ``uncertainty: llpr``) overrides this."""
        return False

    def provides_heat_flux(self) -> bool:
        """Whether :meth:`heat_flux_method` gives a flux (checked with the config, before any
        job). The default: whether the plugin overrides :meth:`heat_flux_method`; override
        this too when that depends on the options."""
        return type(self).heat_flux_method is not Model.heat_flux_method
