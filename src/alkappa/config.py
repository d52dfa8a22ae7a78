"""Campaign configuration: schema validation, defaults, per-material settings, sanity checks.

Every problem is reported as one :class:`ConfigError` whose message names the offending key, and
all checks here are cheap, so a bad config stops the pipeline in seconds, before any oracle call.
"""

from __future__ import annotations

import copy
import importlib
import warnings
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import yaml

from alkappa._dicts import deep_merge

# the schema and its error live below this module, so that the settings and the stages need
# not import it; they stay importable from here
from alkappa._schema import ConfigError as ConfigError
from alkappa._schema import ConfigWarning as ConfigWarning
from alkappa._schema import schema as schema

# checks and helpers of one section, next to its settings; importable from here as before
from alkappa.settings import baseline_temperatures as baseline_temperatures
from alkappa.settings import check_greenkubo_budget as check_greenkubo_budget
from alkappa.settings import multifidelity_al as multifidelity_al

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator, Mapping

SECTIONS = (
    "oracle",
    "model",
    "ensemble",
    "relax",
    "initial",
    "test",
    "explore",
    "select",
    "gate",
    "calibration",
    "convergence",
    "reference",
    "baselines",
    "phonons",
    "conductivity",
    "greenkubo",
    "bayesian",
    "multifidelity",
    "events",
)


#: the rules of optional features over a material's settings: modules imported only when
#: settings are made or checked (this module imports none of them, and names no plugin). Each
#: has ``complete_settings(settings)``, filling in keys that follow from other sections (in
#: place, keeping what the user set), ``oracle_blocks(settings)``, the feature's oracle blocks
#: to check besides ``oracle`` as ``(key, block, fidelity)``, and ``check_settings(settings,
#: where)``, the problems of combinations the feature forbids (one line each, naming the key)
SETTINGS_RULES = ("alkappa.multifidelity.rules",)


def _rules() -> list[Any]:
    return [importlib.import_module(name) for name in SETTINGS_RULES]


def load_config(source: str | os.PathLike[str] | dict[str, Any]) -> dict[str, Any]:
    """Read (if a path), validate and complete a configuration with the schema's defaults.

    Raises
    ------
    ConfigError
        On the first problem found, with the offending key in the message.
    """
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"config file {path} is not valid YAML: {_yaml_problem(exc)}"
            ) from exc
    if not isinstance(raw, dict):
        where = "the config" if isinstance(source, dict) else f"config file {source}"
        raise ConfigError(
            f"{where}: the top level must be a mapping of sections (materials:, oracle:, ...), "
            f"not a {type(raw).__name__}"
        )
    try:
        validate_schema(raw)
        check_materials(raw)
    except ConfigError as exc:
        if isinstance(source, dict):
            raise
        raise ConfigError(f"{source}: {exc}") from exc
    return raw


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML parser error in one line: where and what."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def validate_schema(config: dict[str, Any]) -> None:
    """Validate ``config`` in place against the schema and fill in defaults.

    Sections given inside a material are merged over the global ones, so after this call every
    material entry that overrides a section holds the complete section.
    """
    own = {
        name: {s: copy.deepcopy(entry[s]) for s in SECTIONS if s in entry}
        for name, entry in (config.get("materials") or {}).items()
        if isinstance(entry, dict)
    }
    validator = _validator_filling_defaults(jsonschema.Draft202012Validator)(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        # every problem at once, in one line: a user fixes them all before the next try
        problems = list(dict.fromkeys(_describe(_most_specific(e)) for e in errors))
        if len(problems) == 1:
            raise ConfigError(problems[0])
        raise ConfigError(f"{len(problems)} problems: " + "; ".join(problems))
    # the validator also filled defaults inside material sections; a material's own section
    # must override only what the user wrote there, so merge the raw section over the global
    for name, sections in own.items():
        for section, value in sections.items():
            config["materials"][name][section] = _merge_section(config.get(section) or {}, value)


def material_settings(config: dict[str, Any], material: str) -> dict[str, Any]:
    """The settings of one material: global sections overridden by the material's own."""
    if material not in config["materials"]:
        raise ConfigError(f"materials: no material named '{material}'")
    entry = config["materials"][material]
    out = {key: copy.deepcopy(value) for key, value in config.items() if key != "materials"}
    for key, value in entry.items():
        out[key] = copy.deepcopy(value)
    out["name"] = material
    out.setdefault("supercell", [1, 1, 1])
    for rules in _rules():  # keys that follow from other sections (SETTINGS_RULES)
        rules.complete_settings(out)
    return out


def check_materials(config: dict[str, Any]) -> None:
    """Cheap physical and plugin checks per material (structure readable, elements supported).

    Every problem of every material is reported in one :class:`ConfigError`, so a user fixes
    them all before the next try; a check that needs an earlier one's result (the supercell
    needs the structure) is skipped when that one failed.
    """
    problems: list[str] = []
    for name in config["materials"]:
        _check_material(material_settings(config, name), f"materials.{name}", problems)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} problems: " + "; ".join(problems))


@contextmanager
def _collect(problems: list[str]) -> Iterator[None]:
    """Record a :class:`ConfigError` raised in the block instead of stopping at it."""
    try:
        yield
    except ConfigError as exc:
        problems.append(str(exc))


def _check_material(settings: dict[str, Any], where: str, problems: list[str]) -> None:
    from alkappa._plugins import PluginError
    from alkappa.models import get_model
    from alkappa.oracles import OracleInputError, OracleSpec, get_oracle
    from alkappa.structure import check_geometry, read_unit_cell

    if set(where.removeprefix("materials.")) <= {"."}:
        problems.append(f"{where}: a material name is a directory under results: not '.' or '..'")
        return
    with _collect(problems):
        _check_cross_fields(settings, where)
    cell = supercell = None
    with _collect(problems):
        try:
            cell = read_unit_cell(settings["structure"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{where}.structure: {exc}") from exc
        supercell = _supercell(cell, settings["supercell"], f"{where}.supercell")
        try:
            check_geometry(supercell)
        except ValueError as exc:
            source = settings["structure"].get("file")
            origin = f"structure file {source}: " if source else ""
            supercell = None
            raise ConfigError(f"{where}.structure: {origin}{exc}") from exc
    oracles: list[tuple[str, Mapping[str, Any], str | None]] = [
        ("oracle", settings["oracle"], None)
    ]
    for rules in _rules():
        oracles += rules.oracle_blocks(settings)
    for key, block, fidelity in oracles:
        with _collect(problems):
            try:
                spec = OracleSpec.from_dict(block)
                oracle = get_oracle(spec if fidelity is None else spec.with_fidelity(fidelity))
                if supercell is not None:
                    oracle.check(supercell)
            except PluginError as exc:
                raise ConfigError(f"{where}.{key}.name: {exc}") from exc
            except (OracleInputError, TypeError, ValueError) as exc:
                raise ConfigError(f"{where}.{key}: {exc}") from exc
    for k, entry in enumerate(settings["reference"]["files"]):
        if not Path(entry["path"]).is_file():
            problems.append(f"{where}.reference.files.{k}.path: {entry['path']} does not exist")
    for rules in _rules():  # combinations a feature forbids (SETTINGS_RULES)
        problems += rules.check_settings(settings, where)
    gk = settings["greenkubo"]
    if gk["enabled"]:
        with _collect(problems):
            check_greenkubo_budget(gk, f"{where}.greenkubo")
        if supercell is not None:
            with _collect(problems):
                for gk_cell in greenkubo_cells(cell, supercell, gk, f"{where}.greenkubo"):
                    if gk["lifetimes"] and settings["conductivity"]["enabled"]:
                        check_lifetime_mesh(gk_cell, settings["conductivity"]["mesh"], where)
    with _collect(problems):
        try:
            model = get_model(settings["model"])
        except PluginError as exc:
            raise ConfigError(f"{where}.model.name: {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}.model: {exc}") from exc
        if settings["ensemble"]["size"] < 2 and not model.single_model_uncertainty():
            raise ConfigError(
                f"{where}.ensemble.size: 1 member has no spread to measure uncertainty with; "
                f"use at least 2, or a model with a one-model uncertainty "
                f"(model.uncertainty: llpr for nequip; model '{settings['model']['name']}' "
                f"has none with these options)"
            )
        if supercell is not None:
            _check_gate_and_calibration(settings, model, len(supercell), where)
        if gk["enabled"] and gk["flux"] == "unfolded" and not model.provides_heat_flux():
            raise ConfigError(
                f"{where}.greenkubo.flux: unfolded needs the model's own heat flux, which model "
                f"'{settings['model']['name']}' does not provide (Model.heat_flux_method); use "
                "virial (per-atom stresses) or harmonic"
            )


def gate_enabled(settings: Mapping[str, Any]) -> bool:
    """Whether a material's settings switch the physical gate on (``gate.enabled``)."""
    return bool((settings.get("gate") or {}).get("enabled"))


def calibration_in_selection(settings: Mapping[str, Any]) -> bool:
    """Whether the selection depends on the ``calibration`` section (calibrated U or an
    absolute threshold); otherwise the selection is today's, test-relative on the raw U."""
    cal = settings.get("calibration") or {}
    return cal.get("select_on", "raw") == "calibrated" or cal.get("absolute_threshold") is not None


def _check_gate_and_calibration(
    settings: Mapping[str, Any], model: Any, natoms: int, where: str
) -> None:
    """The gate above the thermal range and on a model that takes label weights; calibrated
    selection on a force statistic of the per-atom force sigma."""
    from alkappa.al.gate import check_gate
    from alkappa.settings import GateSettings

    if gate_enabled(settings):
        try:
            check_gate(GateSettings.from_settings(settings), natoms)
        except ValueError as exc:
            raise ConfigError(f"{where}.gate.{exc}") from exc
        if not getattr(model, "label_weights", False):
            raise ConfigError(
                f"{where}.gate.enabled: model '{settings['model']['name']}' does not take "
                "per-frame energy/stress weights (Model.label_weights), which the gate needs"
            )
    cal = settings["calibration"]
    stat = settings["select"]["statistic"]
    if cal["select_on"] == "calibrated":
        # the map is fitted on the per-atom force sigma the exploration's U is made of: the
        # members' spread, or a one-model uncertainty's own sigma (LLPR; alkappa.al.metrics)
        allowed = ("force_max", "force_mean") if cal["method"] == "scale" else ("force_max",)
        if stat not in allowed:
            raise ConfigError(
                f"{where}.calibration.select_on: the {cal['method']} map of the per-atom force "
                f"sigma carries over to select.statistic {' or '.join(allowed)}, not {stat}"
            )
    if cal["absolute_threshold"] is not None and stat not in ("force_max", "force_mean"):
        raise ConfigError(
            f"{where}.calibration.absolute_threshold: an absolute threshold in eV/Å needs "
            f"select.statistic force_max or force_mean, not {stat}"
        )


#: the most atoms a supercell may have (checked before it is built)
MAX_SUPERCELL_ATOMS = 100_000


def _supercell(unit: Any, spec: Any, where: str) -> Any:
    """The supercell ``spec`` of ``unit``, or one :class:`ConfigError` line: a singular
    matrix, or more than :data:`MAX_SUPERCELL_ATOMS` atoms (before anything is allocated)."""
    import numpy as np

    from alkappa.structure import build_supercell, supercell_matrix

    try:
        matrix = supercell_matrix(spec)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    det = round(abs(float(np.linalg.det(matrix))))
    if det * len(unit) > MAX_SUPERCELL_ATOMS:
        raise ConfigError(
            f"{where}: {spec} makes {det * len(unit)} atoms, more than {MAX_SUPERCELL_ATOMS}"
        )
    return build_supercell(unit, spec)


def _check_cross_fields(settings: Mapping[str, Any], where: str) -> None:
    """Checks across keys that the schema cannot express."""
    conv = settings["convergence"]
    if conv["min_iterations"] > conv["max_iterations"]:
        raise ConfigError(
            f"{where}.convergence.min_iterations: {conv['min_iterations']} is more than "
            f"max_iterations {conv['max_iterations']}"
        )
    kappa = settings["conductivity"]
    if kappa["isotopes"] and "classical" in kappa["statistics"]:
        raise ConfigError(
            f"{where}.conductivity.isotopes: isotope scattering needs statistics: [quantum] "
            f"(classical kappa comes from one high-temperature run, where the isotope "
            f"scattering, independent of temperature, would be lost)"
        )
    _check_exploration_options(settings, where)
    _check_baselines(settings, where)
    build = settings["structure"].get("build") or {}
    for key in ("a", "b", "c", "covera"):
        value = build.get(key)
        if isinstance(value, (int, float)) and not value > 0:
            raise ConfigError(f"{where}.structure.build.{key}: must be positive (got {value})")


def _check_exploration_options(settings: Mapping[str, Any], where: str) -> None:
    """The temperature ramp, the uncertainty bias and the diverse selection fit together."""
    explore, select = settings["explore"], settings["select"]
    ramp = explore["ramp"]
    if ramp["steps"] is not None and ramp["steps"] > explore["steps"]:
        raise ConfigError(
            f"{where}.explore.ramp.steps: {ramp['steps']} is more than the run's "
            f"{explore['steps']} steps (explore.steps): the ramp would never reach its end"
        )
    uncertainty = settings["model"].get("uncertainty", "ensemble")
    if explore["uncertainty_bias"]["strength"] > 0 and uncertainty != "ensemble":
        raise ConfigError(
            f"{where}.explore.uncertainty_bias.strength: the bias needs the members' spread, "
            f"model.uncertainty: ensemble (got '{uncertainty}')"
        )
    if select["diversity"] == "farthest_point":
        spacing = select["descriptor_cutoff"] / (select["descriptor_bins"] - 1)
        if spacing > 2 * select["descriptor_width"]:
            # Gaussians narrower than the grid fall between its points: distances get lost
            raise ConfigError(
                f"{where}.select.descriptor_bins: {select['descriptor_bins']} points on "
                f"{select['descriptor_cutoff']:g} Å are {spacing:.3g} Å apart, more than twice "
                f"descriptor_width {select['descriptor_width']:g} Å"
            )


def _check_baselines(settings: Mapping[str, Any], where: str) -> None:
    """A baseline must not retrace the test set's draws."""
    aimd, harmonic = settings["baselines"]["aimd"], settings["baselines"]["harmonic"]
    if not (aimd["enabled"] or harmonic["enabled"]):
        return
    ref = settings["reference"]["md"]
    shared = set(baseline_temperatures(settings, "aimd")) & {float(t) for t in ref["temperatures"]}
    if aimd["enabled"] and shared and aimd["seed"] == ref["seed"]:
        raise ConfigError(
            f"{where}.baselines.aimd.seed: {aimd['seed']} is reference.md.seed: at "
            f"{min(shared):g} K the baseline would rerun the reference MD the test set comes from"
        )
    if harmonic["enabled"]:
        if settings["initial"]["method"] != "harmonic":
            raise ConfigError(
                f"{where}.baselines.harmonic: needs initial.method: harmonic (it draws more of "
                f"D_0's harmonic samples; got {settings['initial']['method']})"
            )
        taken = {"initial.seed": settings["initial"]["seed"], "test.seed": settings["test"]["seed"]}
        for name, seed in taken.items():
            if harmonic["seed"] == seed:
                raise ConfigError(
                    f"{where}.baselines.harmonic.seed: {seed} is {name}: the baseline would "
                    "draw the same harmonic samples again"
                )


def greenkubo_cells(unit: Any, supercell: Any, gk: Mapping[str, Any], where: str) -> list[Any]:
    """The Green-Kubo cells of a material: the main one (``greenkubo.supercell`` or the
    material's supercell), then those of ``greenkubo.size_check``. Raises
    :class:`ConfigError` for a cell given twice."""
    import numpy as np

    main = (
        supercell
        if gk["supercell"] is None
        else _supercell(unit, gk["supercell"], f"{where}.supercell")
    )
    cells = [main]
    for k, reps in enumerate(gk["size_check"]):
        new = _supercell(unit, reps, f"{where}.size_check.{k}")
        for old in cells:
            if len(old) == len(new) and np.allclose(old.cell, new.cell):
                raise ConfigError(
                    f"{where}.size_check.{k}: {reps} is a cell the Green-Kubo stage already "
                    f"runs in ({len(new)} atoms)"
                )
        cells.append(new)
    return cells


def check_lifetime_mesh(supercell: Any, mesh: Any, where: str) -> None:
    """Warn when ``conductivity.mesh`` misses q-points commensurate with the MD supercell,
    where the MD lifetimes are compared with phono3py's (the finite-size correction does not
    need them: it interpolates with the force constants)."""
    import math

    import numpy as np

    from alkappa.greenkubo import commensurate_qpoints
    from alkappa.phonons import primitive_lattice

    primitive = primitive_lattice(supercell)
    matrix = np.rint(np.linalg.solve(primitive.T, np.asarray(supercell.cell).T).T).astype(int)
    q = commensurate_qpoints(matrix)
    need = [
        math.lcm(*(Fraction(float(x)).limit_denominator(1000).denominator for x in q[:, a]))
        for a in range(3)
    ]
    mesh = [int(n) for n in mesh]
    if any(n % m for n, m in zip(mesh, need, strict=True)):
        warnings.warn(
            f"{where}.conductivity.mesh: {mesh} does not hold the {len(q)} q-points of the MD "
            f"supercell, so the Green-Kubo lifetimes are compared with phono3py's at none or "
            f"some of them; use multiples of {need} (or greenkubo.lifetimes: false)",
            ConfigWarning,
            stacklevel=2,
        )


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - allowed)
        if unknown:
            where = f" in {key}" if error.absolute_path else ""
            return f"unknown key '{unknown[0]}'{where}; allowed keys: {', '.join(sorted(allowed))}"
    if error.validator == "oneOf" and "structure" in key:
        return f"{key}: give exactly one of 'file' or 'build'"
    if error.validator == "oneOf" and "description" in error.schema:
        # "not valid under any of the given schemas" does not say what is
        return f"{key}: {error.instance!r} is not allowed; expected {error.schema['description']}"
    return f"{key}: {error.message}"


def _most_specific(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    # descend into oneOf/anyOf sub-errors to report the deepest, most telling one
    best = error
    while best.context:
        deeper = max(best.context, key=lambda e: len(e.absolute_path))
        if len(deeper.absolute_path) <= len(best.absolute_path):
            break
        best = deeper
    return best


def _validator_filling_defaults(base: type) -> type:
    """A validator that writes each property's ``default`` into the instance before checking."""
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for prop, subschema in properties.items():
                if "default" in subschema and prop not in instance:
                    instance[prop] = copy.deepcopy(subschema["default"])
                elif "$ref" in subschema and prop not in instance and "default" in subschema:
                    instance[prop] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def _merge_section(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    # a plugin section naming another plugin replaces the global one: options don't carry over
    if "name" in override and override["name"] != base.get("name"):
        return copy.deepcopy(override)
    return deep_merge(base, override)
