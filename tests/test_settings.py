"""Typed settings (alkappa.settings) and the oracle spec (alkappa.oracles.OracleSpec): they
agree with the schema, fail in one line naming the key, are frozen, and change no result
(the oracle store's keys and the production's fingerprint are those of the dicts)."""

from __future__ import annotations

import dataclasses

import pytest
from ase.build import bulk

from alkappa.config import ConfigError, load_config, material_settings, schema
from alkappa.greenkubo import DEFAULT_PRODUCTION_SETTINGS
from alkappa.greenkubo._production import production_fingerprint
from alkappa.labelling import oracle_family, structure_key
from alkappa.oracles import OracleSpec, call_policy, get_oracle
from alkappa.settings import (
    AimdBaselineSettings,
    AnalysisSettings,
    BaselinesSettings,
    BayesianSettings,
    CalibrationSettings,
    ConductivitySettings,
    ConvergenceSettings,
    EnsembleSettings,
    EventsSettings,
    ExploreSettings,
    GateSettings,
    GreenKuboSettings,
    HarmonicBaselineSettings,
    InitialSettings,
    MultiFidelityALSettings,
    MultiFidelityModelSettings,
    MultiFidelitySettings,
    MultiFidelityStudySettings,
    PhononSettings,
    ProductionSettings,
    RampSettings,
    ReferenceMDSettings,
    ReferenceSettings,
    RelaxSettings,
    SelectSettings,
    TestSettings,
    UncertaintyBiasSettings,
    section_defaults,
)

SECTIONS = (
    GreenKuboSettings,
    PhononSettings,
    ConductivitySettings,
    RelaxSettings,
    InitialSettings,
    TestSettings,
    EnsembleSettings,
    ExploreSettings,
    SelectSettings,
    GateSettings,
    CalibrationSettings,
    ConvergenceSettings,
    BaselinesSettings,
    ReferenceSettings,
    EventsSettings,
    BayesianSettings,
)
INNER = (
    RampSettings,
    UncertaintyBiasSettings,
    AimdBaselineSettings,
    HarmonicBaselineSettings,
    ReferenceMDSettings,
)


def _settings(**sections):
    cu = {"structure": {"build": {"name": "Cu", "crystalstructure": "fcc", "a": 3.6}}}
    return material_settings(
        load_config({"materials": {"Cu": cu}, "oracle": {"name": "emt"}, **sections}), "Cu"
    )


@pytest.mark.parametrize("cls", SECTIONS)
def test_every_section_object_has_the_schema_keys(cls):
    keys = list(schema()["$defs"][cls.SECTION]["properties"])
    assert [f.name for f in dataclasses.fields(cls)] == keys
    # the defaults-filled section of a validated config builds it
    section = cls.from_settings(_settings())
    assert section.to_dict() == _settings()[cls.SECTION]


@pytest.mark.parametrize("cls", INNER)
def test_every_inner_object_has_the_schema_keys(cls):
    section, name = cls.SECTION.split(".")
    keys = list(schema()["$defs"][section]["properties"][name]["properties"])
    assert [f.name for f in dataclasses.fields(cls)] == keys
    assert cls.with_defaults().to_dict() == _settings()[section][name]


def test_inner_objects_are_sections_and_back_to_dicts():
    explore = ExploreSettings.from_settings(_settings(explore={"ramp": {"end": 2.0}}))
    assert explore.ramp == RampSettings(start=1.0, end=2.0, steps=None)
    assert explore.uncertainty_bias.strength == 0.0
    assert explore.to_dict()["ramp"] == {"start": 1.0, "end": 2.0, "steps": None}
    assert ExploreSettings.with_defaults() == ExploreSettings.from_settings(_settings())
    with pytest.raises(ConfigError, match=r"^explore\.ramp\.steps: missing"):
        ExploreSettings.with_defaults(ramp={"start": 1.0, "end": 1.0})
    baselines = BaselinesSettings.from_settings(_settings())
    assert baselines.aimd.budget == "al" and baselines.harmonic.temperatures == ()
    assert GateSettings.with_defaults(action="drop").label_weight == 0.0
    assert GateSettings.with_defaults(weight=0.25).label_weight == 0.25


def test_production_defaults_are_the_schema_defaults():
    defaults = section_defaults("greenkubo")
    assert ProductionSettings().to_dict() == {k: defaults[k] for k in DEFAULT_PRODUCTION_SETTINGS}
    assert list(ProductionSettings().to_dict()) == list(DEFAULT_PRODUCTION_SETTINGS)
    assert GreenKuboSettings.with_defaults().production == ProductionSettings()
    assert GreenKuboSettings.with_defaults().analysis == AnalysisSettings()


def test_a_missing_or_unknown_key_is_one_line_naming_it():
    gk = section_defaults("greenkubo")
    del gk["steps"]
    with pytest.raises(ConfigError, match=r"^greenkubo\.steps: missing") as info:
        GreenKuboSettings.from_dict(gk)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"unknown key 'stepz' in phonons"):
        PhononSettings.from_dict({**section_defaults("phonons"), "stepz": 1})
    with pytest.raises(ConfigError, match=r"^conductivity: the settings have no such section"):
        ConductivitySettings.from_settings({"name": "Cu"})
    with pytest.raises(ValueError, match=r"^oracle\.name: the oracle block needs"):
        OracleSpec.from_dict({"method": "GFN1-xTB"})


def test_sections_are_frozen_and_their_lists_tuples():
    kappa = ConductivitySettings.from_settings(
        _settings(conductivity={"mesh_convergence": [[4, 4, 4]]})
    )
    assert kappa.mesh == (11, 11, 11) and kappa.mesh_convergence == ((4, 4, 4),)
    assert kappa.statistics == ("quantum", "classical")
    with pytest.raises(dataclasses.FrozenInstanceError):
        kappa.mesh = (1, 1, 1)  # type: ignore[misc]
    assert hash(kappa) == hash(ConductivitySettings.from_dict(kappa.to_dict()))
    # a typed section in a settings dict is taken as it is
    assert ConductivitySettings.from_settings({"conductivity": kappa}) is kappa


def test_greenkubo_groups_and_flux_label():
    gk = GreenKuboSettings.from_settings(
        _settings(greenkubo={"runs": 2, "window_fs": 30.0, "flux": "virial", "timestep": 1})
    )
    assert gk.production.runs == 2 and gk.production.timestep == 1  # an int stays an int
    assert gk.analysis == AnalysisSettings(window_fs=30.0)
    assert gk.flux_label == "virial"
    f32 = dataclasses.replace(gk, flux="unfolded", flux_precision="float32")
    assert f32.flux_label == "unfolded-float32"


def test_the_production_fingerprint_is_that_of_the_dict():
    atoms = bulk("Ar", "fcc", a=5.3)
    small = {"runs": 2, "steps": 60, "timestep": 4, "target_error": None}
    typed = ProductionSettings.from_dict(small)
    assert production_fingerprint(typed, 60.0, "virial", atoms) == production_fingerprint(
        small, 60.0, "virial", atoms
    )
    with pytest.raises(ValueError, match="unknown production setting"):
        ProductionSettings.from_dict({"stepz": 3})


def test_oracle_spec_round_trip_and_store_keys():
    block = {"name": "emt", "fidelity": "emt", "retries": 5, "retry_delay": 1.0}
    spec = OracleSpec.from_dict({**block, "asap": False})
    assert spec.name == "emt" and spec.fidelity == "emt" and dict(spec.options) == {"asap": False}
    assert spec.to_dict() == {**block, "asap": False}
    assert call_policy(spec) == (5, 1.0) == call_policy({**block, "asap": False})
    with pytest.raises(TypeError):
        spec.options["asap"] = True  # type: ignore[index]
    # the oracle store's keys: the same for the spec and the block it came from
    atoms = bulk("Cu", "fcc", a=3.6)
    for raw in ({"name": "emt"}, {"name": "emt", "fidelity": "x", "retries": 1}):
        spec = OracleSpec.from_dict(raw)
        assert structure_key(atoms, spec) == structure_key(atoms, raw)
        assert oracle_family(atoms, spec) == oracle_family(atoms, raw)
    # a multi-fidelity level: the level's name as fidelity
    level = OracleSpec.from_dict({"name": "emt", "retries": 2}).with_fidelity("low")
    assert structure_key(atoms, level) == structure_key(atoms, {"name": "emt", "fidelity": "low"})


def test_get_oracle_takes_the_spec_or_a_block():
    spec = OracleSpec.from_settings(_settings())
    assert get_oracle(spec).fidelity == get_oracle({"name": "emt"}).fidelity
    labelled = OracleSpec(name="emt", fidelity="cheap")
    assert get_oracle(labelled).fidelity == "cheap"
    # multi-fidelity AL: the campaign's oracle carries the cheapest level's name (set by
    # material_settings on the validated config; only its sections matter here)
    config = {
        "materials": {"Cu": {}},
        "oracle": {"name": "emt", "retries": 2, "retry_delay": 30},
        "model": {"name": "sevenn-mf"},
        "multifidelity": {
            "levels": [{"name": "low", "oracle": {"name": "emt"}}, {"name": "high"}],
            "al": {"enabled": True},
        },
    }
    spec = OracleSpec.from_settings(material_settings(config, "Cu"))
    assert spec.fidelity == "low" and get_oracle(spec).fidelity == "low"


#: the optional ``multifidelity`` section (no default: it needs its levels)
MF_LEVELS = [
    {"name": "low", "oracle": {"name": "emt"}},
    {"name": "high", "oracle": {"name": "emt", "fidelity": "x", "correction": {"epsilon": 0.1}}},
]


def test_the_multifidelity_section_has_the_schema_keys():
    keys = list(schema()["$defs"]["multifidelity"]["properties"])
    assert [f.name for f in dataclasses.fields(MultiFidelitySettings)] == keys
    for cls in (MultiFidelityModelSettings, MultiFidelityALSettings, MultiFidelityStudySettings):
        name = cls.SECTION.split(".")[1]
        inner = schema()["$defs"]["multifidelity"]["properties"][name]["properties"]
        assert [f.name for f in dataclasses.fields(cls)] == list(inner)
    settings = _settings(multifidelity={"levels": MF_LEVELS})
    mf = MultiFidelitySettings.from_settings(settings)
    assert mf.to_dict() == settings["multifidelity"]
    assert mf.names == ["low", "high"]
    assert mf.levels[1].oracle == OracleSpec(
        name="emt", fidelity="x", options={"correction": {"epsilon": 0.1}}
    )
    assert mf.study.budgets == (5, 10, 20, 40) and mf.al.enabled is False
    assert MultiFidelitySettings.with_defaults(levels=MF_LEVELS) == mf
    with pytest.raises(ConfigError, match=r"^multifidelity\.levels: missing"):
        MultiFidelitySettings.with_defaults()
    with pytest.raises(ConfigError, match=r"^multifidelity\.levels\.0\.oracle: missing"):
        MultiFidelitySettings.with_defaults(levels=[{"name": "low"}])


def test_derived_md_and_trigger_settings_are_those_of_the_dicts():
    from alkappa.bayesfc._dynamic import MDSettings, TriggerRule
    from alkappa.bayesfc.steps import check_settings, md_from_settings, rule_from_settings
    from alkappa.events.steps import _md_settings
    from alkappa.reference_data import has_reference

    settings = _settings(
        reference={"md": {"temperatures": [300], "steps": 20}},
        bayesian={"absolute": "auto", "window": 20},
    )
    md, explore = settings["reference"]["md"], settings["explore"]
    assert _md_settings(settings, 300.0) == {
        **md,
        "max_force": explore["max_force"],
        "min_distance_fraction": explore["min_distance_fraction"],
        "max_temperature_factor": explore["max_temperature_factor"],
        "seed": md["seed"] + 300,
    }
    assert has_reference(settings) and not has_reference(_settings())
    bayes = settings["bayesian"]
    typed = BayesianSettings.from_settings(settings)
    assert rule_from_settings(typed) == TriggerRule(
        window=20,
        factor=bayes["factor"],
        absolute=None,
        min_gap=bayes["min_gap"],
        warmup=bayes["warmup"],
        noise_factor=bayes["absolute_noise_factor"],
    )
    assert md_from_settings(typed) == MDSettings(
        temperature=bayes["temperature"],
        timestep=bayes["timestep"],
        friction=bayes["friction"],
        max_displacement=bayes["max_displacement"],
        statistic=bayes["statistic"],
    )
    with pytest.raises(ValueError, match=r"bayesian\.check_steps \(3\)"):
        check_settings(dataclasses.replace(typed, check_steps=3))
