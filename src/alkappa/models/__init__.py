"""MLIP model plugins (entry-point group ``alkappa.models``) and the ensemble calculator.

Heavy dependencies (torch, nequip) are imported only when a model is trained or loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alkappa._plugins import load
from alkappa.models._base import LABEL_WEIGHT_KEY, Model, TrainResult

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["LABEL_WEIGHT_KEY", "Model", "TrainResult", "ensemble_members", "get_model"]


def ensemble_members(directory: str | Path) -> list[Path]:
    """The member files that ``directory/ensemble.json`` lists, each checked to lie inside
    ``directory`` (a model directory is shared as a unit; a member path that leaves it, e.g.
    ``../x`` or an absolute path, is a ``ValueError`` naming the file)."""
    from alkappa.io import read_json

    directory = Path(directory)
    spec_path = directory / "ensemble.json"
    members = read_json(spec_path).get("members")
    if not isinstance(members, list) or not members:
        raise ValueError(f"{spec_path}: 'members' must be a non-empty list of file names")
    root = directory.resolve()
    paths = []
    for name in members:
        path = directory / str(name)
        if not path.resolve().is_relative_to(root):
            raise ValueError(
                f"{spec_path}: member {name!r} lies outside the model directory {directory}"
            )
        paths.append(path)
    return paths


def get_model(spec: Mapping[str, object]) -> Model:
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
