"""Config validation: every problem is one clear message naming the key, before any work."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alkappa.config import ConfigError, load_config, material_settings

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = {
    "materials": {
        "Cu": {"structure": {"build": {"name": "Cu", "crystalstructure": "fcc", "a": 3.6}}}
    },
    "oracle": {"name": "emt"},
}


def _config(**changes):
    cfg = copy.deepcopy(MINIMAL)
    cfg.update(changes)
    return cfg


def test_defaults_are_filled():
    cfg = load_config(_config())
    assert cfg["ensemble"]["size"] == 4
    assert cfg["select"]["a"] == 2.0 and cfg["select"]["b"] == 1.0
    assert cfg["explore"]["temperatures"] == [300]
    assert cfg["results"] == "results"
    # the exploration and selection options default to today's behaviour
    assert cfg["explore"]["ramp"] == {"start": 1.0, "end": 1.0, "steps": None}
    assert cfg["explore"]["uncertainty_bias"]["strength"] == 0.0
    assert cfg["select"]["diversity"] == "none"


@pytest.mark.parametrize(
    "path",
    [
        "config/config.yaml",
        "config/test.yaml",
        "config/multifidelity.yaml",
        "config/test_multifidelity_al.yaml",
    ],
)
def test_shipped_configs_are_valid(path):
    load_config(ROOT / path)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown key 'temperatur' in explore"):
        load_config(_config(explore={"temperatur": [300]}))
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        load_config(_config(colour="red"))


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"ensemble\.size: 'four' is not of type 'integer'"):
        load_config(_config(ensemble={"size": "four"}))
    with pytest.raises(ConfigError, match=r"explore\.temperatures\.0"):
        load_config(_config(explore={"temperatures": [-5]}))


def test_missing_structure_file():
    cfg = _config(materials={"X": {"structure": {"file": "does/not/exist.cif"}}})
    with pytest.raises(
        ConfigError,
        match=r"materials\.X\.structure: structure file does/not/exist.cif does not exist",
    ):
        load_config(cfg)


def test_structure_needs_exactly_one_source():
    cfg = _config(materials={"X": {"structure": {}}})
    with pytest.raises(ConfigError, match="exactly one of 'file' or 'build'"):
        load_config(cfg)


def test_unsupported_element_is_named():
    cfg = _config(
        materials={
            "CuI": {
                "structure": {"build": {"name": "CuI", "crystalstructure": "zincblende", "a": 6.05}}
            }
        }
    )
    with pytest.raises(
        ConfigError, match=r"materials\.CuI\.oracle: .*does not support element\(s\) I"
    ):
        load_config(cfg)


def test_unknown_oracle_lists_the_installed_ones():
    with pytest.raises(
        ConfigError, match=r"materials\.Cu\.oracle: unknown oracle 'vasp-typo'.*tblite"
    ):
        load_config(_config(oracle={"name": "vasp-typo"}))


def test_overlapping_atoms(tmp_path):
    (tmp_path / "bad.xyz").write_text(
        '2\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3 pbc="T T T"\n'
        "Cu 0 0 0\nCu 0.2 0 0\n"
    )
    cfg = _config(materials={"X": {"structure": {"file": str(tmp_path / "bad.xyz")}}})
    with pytest.raises(ConfigError, match="overlapping"):
        load_config(cfg)


def test_material_overrides_merge_over_global_sections():
    cfg = _config(
        explore={"temperatures": [300, 600], "steps": 50},
        materials={
            "A": {"structure": MINIMAL["materials"]["Cu"]["structure"], "explore": {"steps": 10}},
            "B": {"structure": MINIMAL["materials"]["Cu"]["structure"]},
        },
    )
    cfg = load_config(cfg)
    a, b = material_settings(cfg, "A"), material_settings(cfg, "B")
    assert a["explore"]["steps"] == 10 and a["explore"]["temperatures"] == [300, 600]
    assert b["explore"]["steps"] == 50
    assert a["explore"]["timestep"] == b["explore"]["timestep"]


def test_greenkubo_defaults_are_the_production_defaults():
    from alkappa.greenkubo import DEFAULT_PRODUCTION_SETTINGS

    gk = load_config(_config())["greenkubo"]
    assert gk["enabled"] and gk["lifetimes"] and gk["flux"] == "unfolded"
    assert gk["temperatures"] == [300]
    for key, value in DEFAULT_PRODUCTION_SETTINGS.items():
        assert gk[key] == value, key
    with pytest.raises(ConfigError, match=r"greenkubo\.flux"):
        load_config(_config(greenkubo={"flux": "hardy"}))
    assert gk["target_error"] == 0.1 and gk["subtract_mean"] is False


@pytest.mark.parametrize(
    ("greenkubo", "match"),
    [
        ({"runs": 4, "max_runs": 3}, r"materials\.Cu\.greenkubo\.max_runs: 3 is fewer than"),
        (
            {"runs": 3, "steps": 4000, "timestep": 5.0, "max_simulated_ps": 50},
            r"materials\.Cu\.greenkubo\.max_simulated_ps: 50 ps is less than .* 60 ps",
        ),
        ({"max_runs": None}, r"materials\.Cu\.greenkubo\.target_error: a target needs a budget"),
        ({"target_error": 0}, r"greenkubo\.target_error"),
        (
            {"steps": 4000, "max_run_steps": 2000},
            r"materials\.Cu\.greenkubo\.max_run_steps: 2000 is fewer than the steps",
        ),
        (
            {"steps": 4001, "sample_interval": 8, "max_run_steps": 32000},
            r"greenkubo\.max_run_steps: .* steps \(4001\) must be a multiple of sample_interval",
        ),
    ],
)
def test_impossible_greenkubo_budgets_are_config_errors(greenkubo, match):
    with pytest.raises(ConfigError, match=match):
        load_config(_config(greenkubo=greenkubo))


def test_greenkubo_budgets_that_fit():
    gk = {"runs": 3, "steps": 4000, "timestep": 5.0, "max_runs": 3, "max_simulated_ps": 60}
    assert load_config(_config(greenkubo=gk))["greenkubo"]["max_simulated_ps"] == 60
    assert (
        load_config(_config(greenkubo={**gk, "max_run_steps": 32000}))["greenkubo"]["max_run_steps"]
        == 32000
    )
    # no target, no budget needed; a disabled stage is not checked
    load_config(_config(greenkubo={"target_error": None, "max_runs": None}))
    load_config(_config(greenkubo={"enabled": False, "runs": 4, "max_runs": 3}))


def test_lattice_dynamics_overrides_merge_over_global_sections():
    structure = MINIMAL["materials"]["Cu"]["structure"]
    cfg = _config(
        greenkubo={"runs": 3, "temperatures": [200, 300]},
        conductivity={"mesh": [4, 4, 4]},
        materials={
            "A": {"structure": structure, "greenkubo": {"steps": 100}},
            "B": {"structure": structure, "conductivity": {"temperatures": [300]}},
        },
    )
    cfg = load_config(cfg)
    a, b = material_settings(cfg, "A"), material_settings(cfg, "B")
    assert a["greenkubo"]["steps"] == 100 and a["greenkubo"]["runs"] == 3
    assert a["greenkubo"]["temperatures"] == [200, 300]
    assert b["greenkubo"]["steps"] == 25000
    assert b["conductivity"]["mesh"] == [4, 4, 4] and b["conductivity"]["temperatures"] == [300]


def test_cli_validate_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_config(ensemble={"sise": 4})))
    proc = subprocess.run(
        [sys.executable, "-m", "alkappa.cli", "validate", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "unknown key 'sise' in ensemble" in proc.stderr


def test_validating_a_config_never_runs_the_code_it_names(tmp_path):
    """The ase oracle's calculator is a name, not code to call: `alkappa validate` rejects a
    non-calculator in one line and the command it carries never runs."""
    marker = tmp_path / "FILE"
    cfg = _config(
        oracle={
            "name": "ase",
            "calculator": "subprocess.call",
            "kwargs": {"args": f"touch {marker}", "shell": True},
        }
    )
    path = tmp_path / "evil.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "alkappa.cli", "validate", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0
    assert "'subprocess.call' is not an ASE calculator class" in proc.stderr
    assert not marker.exists()


def test_missing_reference_file_is_named():
    cfg = _config(reference={"files": [{"path": "no/such/trajectory.nc"}]})
    with pytest.raises(
        ConfigError, match=r"materials\.Cu\.reference\.files\.0\.path: no/such/trajectory.nc"
    ):
        load_config(cfg)


def test_reference_defaults_mean_no_reference_data():
    from alkappa.reference_data import has_reference

    cfg = load_config(_config())
    assert not has_reference(material_settings(cfg, "Cu"))
    cfg = load_config(_config(reference={"md": {"temperatures": [600]}}))
    assert has_reference(material_settings(cfg, "Cu"))
    assert material_settings(cfg, "Cu")["reference"]["md"]["steps"] == 200


def test_multifidelity_levels_are_checked_before_any_work():
    levels = [{"name": "low", "oracle": {"name": "emt"}}]
    with pytest.raises(ConfigError, match=r"multifidelity\.levels: .* too short"):
        load_config(_config(multifidelity={"levels": levels}))
    levels = [*levels, {"name": "high", "oracle": {"name": "nosuchcode"}}]
    with pytest.raises(
        ConfigError, match=r"multifidelity\.levels\.1\.oracle: unknown oracle 'nosuchcode'"
    ):
        load_config(_config(multifidelity={"levels": levels}))
    levels[1]["oracle"] = {"name": "emt", "correction": {"epsilon": 0.1}}
    cfg = load_config(_config(multifidelity={"levels": levels}))
    assert cfg["multifidelity"]["study"]["budgets"] == [5, 10, 20, 40]


def _mf_al_config(**changes):
    cfg = yaml.safe_load((ROOT / "config/test_multifidelity_al.yaml").read_text())
    cfg.update(changes)
    return cfg


def test_multifidelity_al_makes_the_oracle_the_cheap_level():
    settings = material_settings(load_config(_mf_al_config()), "Cu")
    assert settings["oracle"]["fidelity"] == "low"
    assert settings["model"]["fidelities"] == ["low", "high"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": {"name": "nequip"}}, "model.name: multifidelity.al needs .*sevenn-mf"),
        ({"oracle": {"name": "emt", "fidelity": "cheap"}}, "oracle.fidelity: 'cheap' is not"),
        (
            {"oracle": {"name": "emt", "correction": {"epsilon": 0.1}}},
            "oracle: with multifidelity.al .* must be the cheapest level",
        ),
    ],
)
def test_multifidelity_al_config_errors_are_named(changes, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_mf_al_config(**changes))


def test_lifetime_mesh_that_misses_the_md_q_points_is_named():
    """fcc Cu, 2x2x2 conventional supercell: 32 commensurate q-points, multiples of 1/4 of the
    primitive reciprocal vectors; an 11^3 mesh holds only Gamma of them, 12^3 holds all."""
    from alkappa.config import ConfigWarning

    cfg = _config()
    cfg["materials"]["Cu"]["supercell"] = [2, 2, 2]
    cfg["materials"]["Cu"]["structure"]["build"]["cubic"] = True
    with pytest.warns(
        ConfigWarning,
        match=r"materials\.Cu\.conductivity\.mesh: \[11, 11, 11\].*"
        r"32 q-points.*multiples of \[4, 4, 4\]",
    ):
        load_config({**cfg, "conductivity": {"mesh": [11, 11, 11]}})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        load_config({**cfg, "conductivity": {"mesh": [12, 12, 12]}})
        load_config(
            {**cfg, "conductivity": {"mesh": [11, 11, 11]}, "greenkubo": {"lifetimes": False}}
        )


def test_greenkubo_cells_given_twice_or_missing_mesh_points_are_named():
    """The size-check cells are checked like the main one: each cell once, and the lifetime
    mesh against every cell's q-points (a 3x3x3 conventional fcc cell needs multiples of 6)."""
    from alkappa.config import ConfigWarning

    cfg = _config()
    cfg["materials"]["Cu"]["supercell"] = [2, 2, 2]
    cfg["materials"]["Cu"]["structure"]["build"]["cubic"] = True
    with pytest.raises(
        ConfigError, match=r"materials\.Cu\.greenkubo\.size_check\.0: \[2, 2, 2\] is a cell"
    ):
        load_config({**cfg, "greenkubo": {"size_check": [[2, 2, 2]]}})
    with pytest.raises(ConfigError, match=r"greenkubo\.size_check\.1: \[3, 3, 3\]"):
        load_config(
            {
                **cfg,
                "greenkubo": {
                    "supercell": [3, 3, 3],
                    "size_check": [[4, 4, 4], [3, 3, 3]],
                },
            }
        )
    with pytest.raises(ConfigError, match=r"greenkubo\.size_check\.0"):
        load_config({**cfg, "greenkubo": {"size_check": [[3, 3]]}})
    with pytest.warns(ConfigWarning, match=r"108 q-points.*multiples of \[6, 6, 6\]"):
        load_config(
            {
                **cfg,
                "conductivity": {"mesh": [8, 8, 8]},
                "greenkubo": {"size_check": [[3, 3, 3]]},
            }
        )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        settings = material_settings(
            load_config(
                {
                    **cfg,
                    "conductivity": {"mesh": [12, 12, 12]},
                    "greenkubo": {"size_check": [[3, 3, 3]]},
                }
            ),
            "Cu",
        )
    assert settings["greenkubo"]["size_check"] == [[3, 3, 3]]
    assert settings["greenkubo"]["supercell"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"materials": {"..": MINIMAL["materials"]["Cu"]}}, r"materials\.\.\.: .* not '\.' or"),
        ({"materials": {".": MINIMAL["materials"]["Cu"]}}, r"materials\.\.: .* not '\.' or"),
        (
            {"convergence": {"min_iterations": 4, "max_iterations": 2}},
            r"materials\.Cu\.convergence\.min_iterations: 4 is more than max_iterations 2",
        ),
        (
            {"conductivity": {"isotopes": True}},
            r"materials\.Cu\.conductivity\.isotopes: isotope scattering needs statistics",
        ),
        (
            {"explore": {"steps": 100, "ramp": {"end": 2.0, "steps": 200}}},
            r"materials\.Cu\.explore\.ramp\.steps: 200 is more than the run's 100 steps",
        ),
        (
            {
                "model": {"name": "nequip", "uncertainty": "llpr"},
                "explore": {"uncertainty_bias": {"strength": 0.5}},
            },
            r"materials\.Cu\.explore\.uncertainty_bias\.strength: .* model\.uncertainty: ensemble",
        ),
        (
            {"select": {"diversity": "farthest_point", "descriptor_bins": 10}},
            r"materials\.Cu\.select\.descriptor_bins: 10 points on 6 Å are 0\.667 Å apart",
        ),
        (
            {
                "materials": {
                    "Cu": {
                        "structure": {"build": {"name": "Cu", "crystalstructure": "fcc", "a": -3.6}}
                    }
                }
            },
            r"materials\.Cu\.structure\.build\.a: must be positive \(got -3\.6\)",
        ),
    ],
)
def test_cross_field_and_name_errors_are_one_line(change, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_config(**change))


def test_a_yaml_list_is_not_a_config(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- materials\n- oracle\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: the top level must be a mapping"):
        load_config(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("data_broken\n_cell_length_a\n", r"bad\.cif (cannot be read|holds no atoms)"),
        ("", r"bad\.cif (cannot be read|holds no atoms)"),
    ],
)
def test_unreadable_or_empty_structure_file_is_named(tmp_path, content, message):
    path = tmp_path / "bad.cif"
    path.write_text(content)
    cfg = _config(materials={"Cu": {"structure": {"file": str(path)}}})
    with pytest.raises(ConfigError, match=r"materials\.Cu\.structure: structure file .*" + message):
        load_config(cfg)


@pytest.mark.parametrize(
    ("supercell", "message"),
    [
        (
            [[1, 0, 0], [0, 1, 0], [1, 0, 0]],
            r"materials\.Cu\.supercell: .* \(non-singular\) 3x3 matrix",
        ),
        ([40, 40, 40], r"materials\.Cu\.supercell: \[40, 40, 40\] makes 256000 atoms, more than"),
    ],
)
def test_impossible_supercells_are_refused_before_they_are_built(supercell, message):
    cfg = _config()
    cfg["materials"]["Cu"]["structure"]["build"]["cubic"] = True
    cfg["materials"]["Cu"]["supercell"] = supercell
    with pytest.raises(ConfigError, match=message):
        load_config(cfg)


def test_model_uncertainty_option():
    """``model.uncertainty``: ensemble or llpr; not filled in (other plugins lack the key)."""
    cfg = load_config(_config(model={"name": "nequip", "uncertainty": "llpr"}))
    assert cfg["model"]["uncertainty"] == "llpr"
    assert "uncertainty" not in load_config(_config(model={"name": "nequip"}))["model"]
    with pytest.raises(ConfigError, match="uncertainty"):
        load_config(_config(model={"name": "nequip", "uncertainty": "dropout"}))


def test_calibrated_selection_with_a_one_model_uncertainty():
    """The evaluation calibrates LLPR's own per-atom force sigma, so its U can be selected
    on calibrated, with one member or more."""
    for size in (1, 2):
        cfg = load_config(
            _config(
                model={"name": "nequip", "uncertainty": "llpr"},
                ensemble={"size": size},
                calibration={"select_on": "calibrated"},
            )
        )
        assert cfg["calibration"]["select_on"] == "calibrated"


def test_an_ensemble_of_one_needs_a_one_model_uncertainty():
    """``ensemble.size: 1`` is valid with ``model.uncertainty: llpr`` (the cost of one model)
    and refused with one line otherwise (one member has no spread)."""
    cfg = load_config(
        _config(model={"name": "nequip", "uncertainty": "llpr"}, ensemble={"size": 1})
    )
    assert cfg["ensemble"]["size"] == 1
    for model in ({"name": "nequip"}, {"name": "nequip", "uncertainty": "ensemble"}):
        with pytest.raises(ConfigError) as err:
            load_config(_config(model=model, ensemble={"size": 1}))
        assert "\n" not in str(err.value)
        assert str(err.value).startswith("materials.Cu.ensemble.size: 1 member has no spread")
        assert "model.uncertainty: llpr" in str(err.value)
    with pytest.raises(ConfigError, match=r"ensemble\.size: 0 is less than the minimum of 1"):
        load_config(_config(ensemble={"size": 0}))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # a primitive fcc cell has one atom: the thermal range reaches 1 + 3 sqrt(2/3) = 3.45
        (
            {"gate": {"enabled": True, "multiple": 2.0}},
            r"materials\.Cu\.gate\.multiple: 2 x \(3/2\) k_B T lies inside the thermal range",
        ),
        ({"gate": {"enabled": True, "action": "halve"}}, r"gate\.action: 'halve' is not one of"),
        ({"gate": {"enabled": True, "weight": 1.5}}, r"gate\.weight: 1\.5 is greater than"),
        (
            {"calibration": {"select_on": "calibrated"}, "select": {"statistic": "force_mean"}},
            r"calibration\.select_on: the isotonic map .* force_max, not force_mean",
        ),
        (
            {
                "calibration": {"absolute_threshold": 0.1},
                "select": {"statistic": "energy_std_per_atom"},
            },
            r"calibration\.absolute_threshold: .* not energy_std_per_atom",
        ),
        (
            {"gate": {"enabled": True}, "model": {"name": "bayesian-fc"}},
            r"gate\.enabled: model 'bayesian-fc' does not take per-frame energy/stress weights",
        ),
    ],
)
def test_gate_and_calibration_errors_are_one_line(changes, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(_config(**changes))
    assert "\n" not in str(err.value)


def test_gate_and_calibration_defaults_keep_todays_loop():
    from alkappa.config import calibration_in_selection, gate_enabled

    settings = material_settings(load_config(_config()), "Cu")
    assert not gate_enabled(settings) and not calibration_in_selection(settings)
    assert settings["gate"]["multiple"] == 5.0 and settings["calibration"]["method"] == "isotonic"
    on = load_config(_config(gate={"enabled": True}, calibration={"select_on": "calibrated"}))
    settings = material_settings(on, "Cu")
    assert gate_enabled(settings) and calibration_in_selection(settings)
