"""What every typed section can do: built from a validated config section, one
:class:`~alkappa.config.ConfigError` line naming a missing or unknown key, frozen, and back to
the config's dictionary."""

from __future__ import annotations

import copy
import functools
from dataclasses import fields
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, TypeVar

from alkappa._schema import ConfigError, schema

if TYPE_CHECKING:
    from collections.abc import Mapping

_S = TypeVar("_S", bound="_Section")

#: one material's validated, defaults-filled settings as
#: :func:`alkappa.config.material_settings` gives them and Snakemake's ``params.settings``
#: hands every job: what a step function receives and turns into the objects here at its top
#: (a section may already be one of them: :meth:`~_Section.from_settings` takes it as it is)
SettingsDict: TypeAlias = "Mapping[str, Any]"

Mesh = tuple[int, int, int]


def _filled(spec: Mapping[str, Any]) -> dict[str, object]:
    """The defaults of an object's properties, an object's own defaults filled in (as
    :func:`alkappa.config.load_config` fills them)."""
    out = {}
    for key, prop in spec["properties"].items():
        if "default" not in prop:
            continue
        value = prop["default"]
        if isinstance(value, dict) and "properties" in prop:
            value = {**_filled(prop), **value}
        out[key] = value
    return out


@functools.cache
def _schema_defaults(section: str) -> dict[str, object]:
    name, *inner = section.split(".")
    spec = schema()["$defs"][name]
    for key in inner:
        spec = spec["properties"][key]
    return _filled(spec)


def section_defaults(section: str) -> dict[str, object]:
    """The schema's defaults of a config section (a fresh copy), e.g. ``greenkubo``; a dotted
    name is an object inside a section, e.g. ``explore.ramp``."""
    return copy.deepcopy(_schema_defaults(section))


def _frozen(value: Any) -> Any:
    """Lists (also nested) as tuples: a section's values cannot be changed in place."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    """Tuples as lists again and inner sections (and other objects of a section, e.g. a
    multi-fidelity level) as dictionaries (the config's and JSON's form)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, _Section) or hasattr(value, "to_dict"):
        return value.to_dict()
    return value


class _Section:
    """What every section object can do (a mixin of frozen dataclasses)."""

    #: the section's key in the config (dotted for an object inside a section)
    SECTION: ClassVar[str]
    #: fields that are objects of their own (the field's name: its section class)
    INNER: ClassVar[Mapping[str, type[_Section]]] = {}

    @classmethod
    def from_dict(cls: type[_S], section: Mapping[str, Any], *, where: str | None = None) -> _S:
        """The section object of a validated config section (all keys present).

        Raises
        ------
        ConfigError
            In one line naming the first missing or unknown key (``where.<key>``).
        """
        where = where or cls.SECTION
        if isinstance(section, cls):
            return section
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        missing = [name for name in names if name not in section]
        if missing:
            raise ConfigError(
                f"{where}.{missing[0]}: missing from the settings (were they validated with "
                f"alkappa.config.load_config?)"
            )
        unknown = sorted(set(section) - set(names))
        if unknown:
            raise ConfigError(
                f"unknown key '{unknown[0]}' in {where}; allowed keys: {', '.join(sorted(names))}"
            )
        return cls(
            **{
                name: cls.INNER[name].from_dict(section[name], where=f"{where}.{name}")
                if name in cls.INNER
                else _frozen(section[name])
                for name in names
            }
        )

    @classmethod
    def from_settings(cls: type[_S], settings: SettingsDict) -> _S:
        """The section object of a material's settings
        (:func:`alkappa.config.material_settings`)."""
        if cls.SECTION not in settings:
            raise ConfigError(f"{cls.SECTION}: the settings have no such section")
        return cls.from_dict(settings[cls.SECTION])

    @classmethod
    def with_defaults(cls: type[_S], **changes: Any) -> _S:
        """The schema's defaults with ``changes`` (for code and tests without a config)."""
        return cls.from_dict({**section_defaults(cls.SECTION), **changes})

    def to_dict(self) -> dict[str, object]:
        """The config section again (tuples as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]
