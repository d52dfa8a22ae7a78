"""What a ``multifidelity`` section implies for, and forbids in, a material's settings.

:mod:`alkappa.config` applies these rules through its neutral hook
(:data:`alkappa.config.SETTINGS_RULES`), so that the configuration module names no
multi-fidelity model: :func:`complete_settings` when it makes a material's settings
(:func:`alkappa.config.material_settings`), :func:`oracle_blocks` and :func:`check_settings`
when it checks them (:func:`alkappa.config.load_config`). This module imports no stage and
nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alkappa.settings import multifidelity_al

if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping

#: the model plugin (:mod:`alkappa.multifidelity.plugin`) that learns all levels at once:
#: the only one multi-fidelity active learning can train
MODEL = "sevenn-mf"


def complete_settings(settings: MutableMapping[str, Any]) -> None:
    """With multi-fidelity AL, the campaign's oracle is the cheapest level (its labels say
    so: ``oracle.fidelity``), and model :data:`MODEL` predicts (and ranks) at the highest
    (``model.fidelities``, all levels); keys the user set are kept."""
    if not multifidelity_al(settings):
        return
    names = [level["name"] for level in settings["multifidelity"]["levels"]]
    settings["oracle"].setdefault("fidelity", names[0])
    if settings["model"].get("name") == MODEL:
        settings["model"].setdefault("fidelities", names)


def oracle_blocks(settings: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], str]]:
    """The levels' oracle blocks to check besides the campaign's: ``(key, block, fidelity)``."""
    levels = (settings.get("multifidelity") or {}).get("levels", [])
    return [
        (f"multifidelity.levels.{k}.oracle", level["oracle"], level["name"])
        for k, level in enumerate(levels)
    ]


def check_settings(settings: Mapping[str, Any], where: str) -> list[str]:
    """The problems (one line each, starting with ``where.<key>``) of multi-fidelity AL:
    it needs model :data:`MODEL` and the campaign's oracle as the cheapest level, and takes
    neither the physical gate, nor harmonic thresholds, nor the single-fidelity baselines."""
    if not multifidelity_al(settings):
        return []
    problems = []
    if settings["select"]["thresholds_from"] == "harmonic":
        problems.append(
            f"{where}.select.thresholds_from: harmonic is not made for multi-fidelity AL "
            "(its harmonic samples are labelled at the cheap level, the ensemble is tested at "
            "the high one)"
        )
    baselines = settings["baselines"]
    if baselines["aimd"]["enabled"] or baselines["harmonic"]["enabled"]:
        problems.append(
            f"{where}.baselines: the aiMD-only and harmonic-only baselines are not made for "
            "multi-fidelity AL (multifidelity.al.enabled)"
        )
    problem = _al_problem(settings, where)
    if problem:
        problems.append(problem)
    if (settings.get("gate") or {}).get("enabled"):
        problems.append(
            f"{where}.gate.enabled: the gate compares energies with the relaxed structure's "
            "and cannot be combined with multifidelity.al (levels with other energy zeros)"
        )
    return problems


def _al_problem(settings: Mapping[str, Any], where: str) -> str | None:
    """Multi-fidelity AL needs a fidelity-aware model and the oracle as the cheapest level."""
    if settings["model"]["name"] != MODEL:
        return (
            f"{where}.model.name: multifidelity.al needs the multi-fidelity model '{MODEL}' "
            f"(got '{settings['model']['name']}'): one model must learn all levels"
        )
    low = settings["multifidelity"]["levels"][0]
    if settings["oracle"]["fidelity"] != low["name"]:
        return (
            f"{where}.oracle.fidelity: '{settings['oracle']['fidelity']}' is not the cheapest "
            f"level '{low['name']}' of multifidelity.levels"
        )
    oracle = {k: v for k, v in settings["oracle"].items() if k != "fidelity"}
    level = {k: v for k, v in low["oracle"].items() if k != "fidelity"}
    if oracle != level:
        return (
            f"{where}.oracle: with multifidelity.al the campaign's oracle labels D_0, the test set "
            f"and every selected frame, so it must be the cheapest level "
            f"multifidelity.levels.0.oracle = {level} (got {oracle})"
        )
    return None
