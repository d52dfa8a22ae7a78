"""The ``multifidelity`` section: oracle levels, the SevenNet models of the budget study and
multi-fidelity active learning (:mod:`alkappa.multifidelity`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from alkappa._schema import ConfigError
from alkappa.oracles.spec import OracleSpec
from alkappa.settings._base import _Section

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True)
class FidelityLevel:
    """One item of ``multifidelity.levels``: a fidelity label and the oracle that labels it.

    Parameters
    ----------
    name
        The fidelity label written into the frames (``info["fidelity"]``).
    oracle
        The level's oracle block.
    """

    name: str
    oracle: OracleSpec

    @classmethod
    def from_dict(cls, level: Mapping[str, Any], *, where: str) -> FidelityLevel:
        """The level of a validated ``levels`` item; one line naming a missing key."""
        if isinstance(level, FidelityLevel):
            return level
        for key in ("name", "oracle"):
            if key not in level:
                raise ConfigError(f"{where}.{key}: missing from the settings")
        return cls(name=str(level["name"]), oracle=OracleSpec.from_dict(level["oracle"]))

    def to_dict(self) -> dict[str, object]:
        """The ``levels`` item again."""
        return {"name": self.name, "oracle": self.oracle.to_dict()}


@dataclass(frozen=True)
class MultiFidelityModelSettings(_Section):
    """``multifidelity.model``: SevenNet network and training settings of every model of the
    study (:data:`alkappa.multifidelity.DEFAULT_SEVENN_SETTINGS`; Å, optimiser steps, loss
    weights)."""

    SECTION: ClassVar[str] = "multifidelity.model"

    cutoff: float
    channel: int
    lmax: int
    num_convolution_layer: int
    radial_neurons: int
    steps: int
    batch_size: int
    lr: float
    force_weight: float
    stress_weight: float
    high_weight: float


@dataclass(frozen=True)
class MultiFidelityALSettings(_Section):
    """``multifidelity.al``: multi-fidelity active learning.

    Parameters
    ----------
    enabled
        Whether the AL loop labels at several levels.
    fraction, budget
        At most this fraction of each iteration's selected frames (rounded up), and at most
        ``budget`` of them (None: no limit), also get the high level.
    initial_high
        Frames of D_0 also labelled at the high level.
    """

    SECTION: ClassVar[str] = "multifidelity.al"

    enabled: bool
    fraction: float
    budget: int | None
    initial_high: int


@dataclass(frozen=True)
class MultiFidelityStudySettings(_Section):
    """``multifidelity.study``: the budget study (numbers of high-level training frames,
    low-level pool and test frames, the approaches compared, the seed)."""

    SECTION: ClassVar[str] = "multifidelity.study"

    enabled: bool
    budgets: tuple[int, ...]
    n_low: int
    n_test: int | None
    approaches: tuple[Literal["multifidelity", "high_only", "transfer", "delta"], ...]
    seed: int


@dataclass(frozen=True)
class MultiFidelitySettings(_Section):
    """The ``multifidelity`` section (optional: a config without it has no levels).

    Parameters
    ----------
    levels
        The oracle levels, cheapest first; the last is the high level.
    model, al, study
        The objects of the same names.
    """

    SECTION: ClassVar[str] = "multifidelity"
    INNER: ClassVar[Mapping[str, type[_Section]]] = {
        "model": MultiFidelityModelSettings,
        "al": MultiFidelityALSettings,
        "study": MultiFidelityStudySettings,
    }

    levels: tuple[FidelityLevel, ...]
    model: MultiFidelityModelSettings
    al: MultiFidelityALSettings
    study: MultiFidelityStudySettings

    @classmethod
    def from_dict(
        cls, section: Mapping[str, Any], *, where: str | None = None
    ) -> MultiFidelitySettings:
        """As :meth:`_Section.from_dict`, the levels as :class:`FidelityLevel` objects."""
        where = where or cls.SECTION
        out = super().from_dict(section, where=where)
        levels = tuple(
            FidelityLevel.from_dict(level, where=f"{where}.levels.{k}")
            for k, level in enumerate(out.levels)
        )
        return dataclasses.replace(out, levels=levels)

    @classmethod
    def for_labelling(cls, settings: Mapping[str, Any]) -> MultiFidelitySettings:
        """The section as the labelling jobs get it: only ``levels`` and ``al`` (their
        params leave the rest out, so that editing the study does not relabel the AL loop);
        ``model`` and ``study`` take the schema's defaults."""
        section = settings[cls.SECTION]
        return cls.with_defaults(levels=section["levels"], al=section["al"])

    @property
    def names(self) -> list[str]:
        """The levels' fidelity labels, cheapest first."""
        return [level.name for level in self.levels]


def multifidelity_al(settings: Mapping[str, Any]) -> bool:
    """Whether a material's settings ask for multi-fidelity active learning."""
    return bool(((settings.get("multifidelity") or {}).get("al") or {}).get("enabled"))
