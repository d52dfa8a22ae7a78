"""Oracles: the reference methods that label structures with energy, forces and stress.

Built-in oracles (registered as entry points in the ``alkappa.oracles`` group, exactly like a
third-party plugin would be):

========================  ===========================================================
``tblite``                GFN1-xTB / GFN2-xTB through tblite (default; real QM)
``ase``                   any ASE calculator by import path (FHI-aims, VASP, QE, GPAW, ...)
``torchscript-nequip``    a deployed NequIP 0.5.x TorchScript model as a surrogate
``emt``, ``lj``           cheap analytic potentials for fast tests
========================  ===========================================================

The config's ``oracle`` block is ``{name: ..., fidelity: ..., **options}``; a job turns it into
one :class:`OracleSpec` (:meth:`OracleSpec.from_dict`) and passes that down; :func:`get_oracle`
turns the spec into an :class:`Oracle`.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from alkappa import _plugins
from alkappa.oracles._base import (
    Oracle,
    OracleError,
    OracleInputError,
    call_policy,
)
from alkappa.oracles.spec import CALL_POLICY_KEYS, OracleSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CALL_POLICY_KEYS",
    "Oracle",
    "OracleError",
    "OracleInputError",
    "OracleSpec",
    "available_oracles",
    "call_policy",
    "get_oracle",
]

_GROUP = "alkappa.oracles"


def available_oracles() -> list[str]:
    """Names of all installed oracle plugins."""
    return _plugins.available(_GROUP)


def get_oracle(spec: OracleSpec | Mapping[str, Any]) -> Oracle:
    """Instantiate the oracle an :class:`OracleSpec` describes.

    Parameters
    ----------
    spec
        The oracle spec, built once per job (:meth:`OracleSpec.from_dict`). A config
        ``oracle`` block (``{"name": <plugin name>, "fidelity": <label, optional>,
        **options}``) is still accepted, for third-party code written before the spec
        existed; it is turned into a spec here. The options are passed to the plugin's
        constructor as keyword arguments.

    Returns
    -------
    Oracle
        The configured oracle (nothing is computed yet).

    Raises
    ------
    OracleInputError
        If ``name`` is missing or unknown (the message lists the installed oracles), or an
        option is not accepted by the plugin (the message lists the valid ones).
    """
    if not isinstance(spec, OracleSpec):
        if not spec.get("name"):
            raise OracleInputError(
                "the oracle block needs a 'name'; installed oracles: "
                f"{', '.join(available_oracles())}"
            )
        spec = OracleSpec.from_dict(spec)
    name, fidelity = spec.name, spec.fidelity
    options = dict(spec.options)  # a copy: the plugin may keep or change it
    try:
        factory = _plugins.load(_GROUP, name)
    except _plugins.PluginError as exc:
        raise OracleInputError(str(exc)) from exc
    # Bind first so that a misspelt option gets a message naming it, instead of a TypeError
    # from deep inside a constructor.
    try:
        inspect.signature(factory).bind(fidelity=fidelity, **options)
    except TypeError as exc:
        valid = [
            p.name
            for p in inspect.signature(factory).parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "fidelity"
        ]
        raise OracleInputError(
            f"oracle '{name}': {exc}; valid options: {', '.join(valid) or '(none)'}"
        ) from exc
    oracle = factory(fidelity=fidelity, **options)
    if not isinstance(oracle, Oracle):
        raise OracleInputError(f"plugin '{name}' did not produce an alkappa Oracle")
    return oracle
