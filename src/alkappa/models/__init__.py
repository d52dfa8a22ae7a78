"""MLIP model plugins (entry-point group ``alkappa.models``) and the ensemble calculator.

Heavy dependencies (torch, nequip) are imported only when a model is trained or loaded.
"""

from __future__ import annotations

from typing import Any

from alkappa._plugins import load
from alkappa.models._base import Model, TrainResult

__all__ = ["Model", "TrainResult", "get_model"]


def get_model(spec: dict[str, Any]) -> Model:
    """Instantiate the model plugin described by the config's ``model`` block.

    Parameters
    ----------
    spec
        ``{"name": <plugin name>, **options}``; the options go to the plugin's constructor.

    Returns
    -------
    Model

    Examples
    --------
    >>> get_model({"name": "nequip", "num_features": 32})  # doctest: +SKIP
    """
    if "name" not in spec:
        raise ValueError("the model block needs a 'name' (e.g. name: nequip)")
    options = {k: v for k, v in spec.items() if k != "name"}
    cls = load("alkappa.models", spec["name"])
    return cls(**options)
