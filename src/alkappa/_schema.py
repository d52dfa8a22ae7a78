"""The configuration's schema and its error: the bottom of the configuration layer.

:mod:`alkappa.config` (loading and checking a campaign's config), :mod:`alkappa.settings` (the
typed sections) and the stages that check a section of their own all use these; this module
imports nothing of the package, so none of them needs another to raise a
:class:`ConfigError`. Users import them from :mod:`alkappa.config` (or ``ConfigError`` from
:mod:`alkappa.settings`).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml


class ConfigError(ValueError):
    """An invalid campaign configuration; the message names the key."""


class ConfigWarning(UserWarning):
    """A valid configuration that will not give everything asked for; names the key."""


def schema() -> dict[str, Any]:
    """The JSON schema of the configuration (also at workflow/schemas/config.schema.yaml)."""
    text = resources.files("alkappa").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)
