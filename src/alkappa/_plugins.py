"""Plugin registry: oracles and models are discovered through Python entry points.

A third-party package registers its own oracle or model exactly like the built-ins do, in its
``pyproject.toml``::

    [project.entry-points."alkappa.oracles"]
    my-dft = "my_package.oracle:MyDFTOracle"

and the config then says ``oracle: {name: my-dft, ...}``. For tests and notebooks, plugins can
also be registered at run time with :func:`register`.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

GROUPS = ("alkappa.oracles", "alkappa.models")

_runtime: dict[str, dict[str, object]] = {group: {} for group in GROUPS}


class PluginError(LookupError):
    """A plugin name that no installed package provides."""


def register(group: str, name: str, obj: Any) -> None:
    """Register ``obj`` under ``name`` in ``group`` for this process (overrides entry points)."""
    _check_group(group)
    _runtime[group][name] = obj


def available(group: str) -> list[str]:
    """Names of all plugins of ``group``: entry points and run-time registrations."""
    _check_group(group)
    names = {ep.name for ep in entry_points(group=group)} | set(_runtime[group])
    return sorted(names)


def load(group: str, name: str) -> Any:
    """The class (or factory) registered as ``name`` in ``group``."""
    _check_group(group)
    if name in _runtime[group]:
        return _runtime[group][name]
    matches = [ep for ep in entry_points(group=group) if ep.name == name]
    if not matches:
        kind = group.split(".")[-1][:-1]
        raise PluginError(
            f"unknown {kind} '{name}'; installed {kind}s: {', '.join(available(group))}"
        )
    return matches[0].load()


def _check_group(group: str) -> None:
    if group not in GROUPS:
        raise ValueError(f"unknown plugin group {group!r}; expected one of {GROUPS}")
