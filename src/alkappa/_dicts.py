"""Small helpers for nested configuration dictionaries."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping


def deep_merge(base: Mapping[str, object], override: Mapping[str, object]) -> dict[str, object]:
    """``base`` with ``override`` merged in recursively (dicts merge, anything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        inner = out.get(key)
        if isinstance(value, dict) and isinstance(inner, dict):
            out[key] = deep_merge(inner, value)
        else:
            out[key] = copy.deepcopy(value)
    return out
