"""validation/al_ablation.py: every variant's config is valid, seeds move, the table reads
the campaign's files."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
import yaml

from alkappa.config import load_config, material_settings

ROOT = Path(__file__).resolve().parents[1]


def _ablation():
    spec = importlib.util.spec_from_file_location("al_ablation", ROOT / "validation/al_ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "variant", ["plain", "gate", "calibrated", "diversity", "ramp", "harmonic_thresholds"]
)
def test_every_variant_is_a_valid_campaign_with_its_option_and_shifted_seeds(tmp_path, variant):
    ab = _ablation()
    base = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    plain = material_settings(load_config(ab.run_config(base, variant, 0, tmp_path)), "CuI")
    moved = material_settings(load_config(ab.run_config(base, variant, 1, tmp_path)), "CuI")
    for section in ab.SEEDED:
        assert moved[section]["seed"] == plain[section]["seed"] + 1000
    # what the comparison must not change: the test set and the reference MD
    assert moved["test"]["seed"] == plain["test"]["seed"]
    assert moved["reference"]["md"]["seed"] == plain["reference"]["md"]["seed"]
    assert plain["baselines"]["aimd"]["enabled"] and plain["baselines"]["harmonic"]["enabled"]
    assert not plain["greenkubo"]["enabled"]
    for section, options in ab.VARIANTS[variant].items():
        for key, value in options.items():
            got = plain[section][key]
            assert got == value or (isinstance(value, dict) and value.items() <= got.items())
    # the base's own settings survive the merge
    assert plain["select"]["max_frames"] == base["select"]["max_frames"]


def test_the_table_reads_labels_rmse_calibration_and_kappa(tmp_path):
    ab = _ablation()
    al = tmp_path / "al"
    al.mkdir()
    rows = [  # AL reaches random's final 0.030 at 40 labels
        {
            "group": "all",
            "n_frames": 28,
            "al_force_rmse_eV_per_A": 0.040,
            "random_force_rmse_eV_per_A": 0.045,
        },
        {
            "group": "T300",
            "n_frames": 40,
            "al_force_rmse_eV_per_A": 0.010,
            "random_force_rmse_eV_per_A": 0.020,
        },
        {
            "group": "all",
            "n_frames": 40,
            "al_force_rmse_eV_per_A": 0.029,
            "random_force_rmse_eV_per_A": 0.035,
        },
        {
            "group": "all",
            "n_frames": 52,
            "al_force_rmse_eV_per_A": 0.025,
            "random_force_rmse_eV_per_A": 0.030,
        },
    ]
    with open(al / "al_vs_random.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(al / "summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(
            fh,
            fieldnames=[
                "force_rmse_eV_per_A",
                "spearman_force_atom",
                "miscalibration_area_force_atom",
                "miscalibration_area_force_atom_isotonic",
            ],
        )
        writer.writeheader()
        writer.writerow(
            {
                "force_rmse_eV_per_A": 0.04,
                "spearman_force_atom": 0.3,
                "miscalibration_area_force_atom": 0.2,
                "miscalibration_area_force_atom_isotonic": 0.03,
            }
        )
        writer.writerow(
            {
                "force_rmse_eV_per_A": 0.025,
                "spearman_force_atom": 0.5,
                "miscalibration_area_force_atom": 0.1,
                "miscalibration_area_force_atom_isotonic": 0.02,
            }
        )
    (tmp_path / "conductivity").mkdir()
    (tmp_path / "conductivity/comparison.json").write_text(
        '{"mlip": {"kappa_rta_300K": 16.6}, "oracle": {"kappa_rta_300K": 24.5}}'
    )
    row = ab.collect(tmp_path, "gate", 1)
    assert row["labels_random"] == 52
    assert row["labels_al_to_random_final"] == 40  # the first "all" row at or below 0.030
    assert row["iterations"] == 2
    assert float(row["final_force_rmse_eV_per_A"]) == 0.025
    assert float(row["miscalibration_area_isotonic"]) == 0.02
    assert row["kappa_mlip_over_oracle_300K"] == f"{16.6 / 24.5:.3f}"
    assert "calls_al_over_aimd" not in row  # no cost table: left empty, not guessed
