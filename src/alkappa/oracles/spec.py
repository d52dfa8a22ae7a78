"""The oracle spec: which reference method labels the data, as one frozen object.

The config's ``oracle`` block (``{name: ..., fidelity: ..., retries: ..., retry_delay: ...,
**options}``) is turned into an :class:`OracleSpec` once per job (by the stage's step
function) and passed down as one object: to :func:`alkappa.oracles.get_oracle`, which builds
the oracle, and to :func:`alkappa.labelling.label_frames`, which keys the oracle store on it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

#: keys of the oracle block that set alkappa's call policy, not the method: they are not
#: passed to the plugin and do not enter the oracle store's key
CALL_POLICY_KEYS = ("retries", "retry_delay")

#: the call policy when the block gives none (the schema's defaults)
DEFAULT_RETRIES = 2
DEFAULT_RETRY_DELAY = 30.0


@dataclass(frozen=True)
class OracleSpec:
    """One oracle, as the config's ``oracle`` block describes it.

    Parameters
    ----------
    name
        The plugin's name (an entry point of group ``alkappa.oracles``: ``tblite``, ``ase``, ...).
    fidelity
        Label written into every frame the oracle produces; None: the plugin's default. With
        multi-fidelity active learning, :func:`alkappa.config.material_settings` sets it to
        the cheapest level's name.
    options
        The plugin's own options (keyword arguments of its constructor), read-only.
    retries
        Retries of a transient failure (alkappa's call policy, not the plugin's).
    retry_delay
        Seconds before the first retry, doubled for each next one.
    """

    name: str
    fidelity: str | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    retries: int = DEFAULT_RETRIES
    retry_delay: float = DEFAULT_RETRY_DELAY

    def __post_init__(self) -> None:
        # a private deep copy: neither the caller's dict nor a plugin can change the spec
        object.__setattr__(self, "options", MappingProxyType(copy.deepcopy(dict(self.options))))

    @classmethod
    def from_dict(cls, block: Mapping[str, Any], *, where: str = "oracle") -> OracleSpec:
        """The spec of a config ``oracle`` block (an :class:`OracleSpec` is returned as is).

        Raises
        ------
        ValueError
            In one line naming ``where.name`` if the block has no plugin name.
        """
        if isinstance(block, OracleSpec):
            return block
        options = dict(block)
        name = options.pop("name", None)
        if not name:
            raise ValueError(f"{where}.name: the oracle block needs the name of an oracle plugin")
        fidelity = options.pop("fidelity", None)
        retries = options.pop("retries", DEFAULT_RETRIES)
        delay = options.pop("retry_delay", DEFAULT_RETRY_DELAY)
        return cls(
            name=str(name),
            fidelity=fidelity,
            options=options,
            retries=int(retries),
            retry_delay=float(delay),
        )

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> OracleSpec:
        """The spec of a material's settings (:func:`alkappa.config.material_settings`)."""
        if "oracle" not in settings:
            raise ValueError("oracle: the settings have no oracle block")
        return cls.from_dict(settings["oracle"])

    def method(self) -> dict[str, object]:
        """What the method is, without the call policy: ``{name, fidelity (if set),
        **options}``, the oracle store's key (as the config block minus the policy keys)."""
        out: dict[str, object] = {"name": self.name}
        if self.fidelity is not None:
            out["fidelity"] = self.fidelity
        out.update(copy.deepcopy(dict(self.options)))
        return out

    def to_dict(self) -> dict[str, object]:
        """The config block again (``retries`` and ``retry_delay`` included)."""
        return {**self.method(), "retries": self.retries, "retry_delay": self.retry_delay}

    def with_fidelity(self, fidelity: str) -> OracleSpec:
        """The same method labelled ``fidelity`` (e.g. a multi-fidelity level's name)."""
        return replace(self, fidelity=fidelity)

    def call_policy(self) -> tuple[int, float]:
        """``(retries, first delay in seconds)``."""
        return self.retries, self.retry_delay
