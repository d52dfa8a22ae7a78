"""The pipeline's Green-Kubo steps (alkappa.greenkubo.steps) on a small Lennard-Jones production:
analysis, summary against phono3py, drift record; helpers."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from test_gk_production import SMALL, crystal, lj

from alkappa.greenkubo import VirialHeatFlux, run_production
from alkappa.greenkubo.steps import (
    by_temperature,
    discard_stale,
    drift_record,
    gk_convergence,
    green_kubo_step,
    greenkubo_summary_step,
    kappa_at_temperature,
    production_runs,
    production_state,
    size_check_record,
)
from alkappa.io import read_json, write_json, write_netcdf
from alkappa.settings import GreenKuboSettings, PhononSettings, RelaxSettings


def fake_kappa(path, temperatures=(100.0, 300.0, 500.0), kappa=(6.0, 2.0, 1.2)) -> None:
    """A phono3py ``kappa.nc`` with just what the summary reads."""
    ds = xr.Dataset(
        {"kappa_rta_average": (("temperature",), np.array(kappa))},
        coords={"temperature": np.array(temperatures)},
    )
    write_netcdf(ds, path)


def test_kappa_at_temperature(tmp_path):
    fake_kappa(tmp_path / "k.nc")
    ds = xr.open_dataset(tmp_path / "k.nc")
    assert kappa_at_temperature(ds, "kappa_rta_average", 300.0) == (2.0, "exact")
    assert kappa_at_temperature(ds, "kappa_rta_average", 400.0) == (
        pytest.approx(1.6),
        "interpolated",
    )
    assert kappa_at_temperature(ds, "kappa_rta_average", 600.0) == (None, "outside")
    ds.close()


def test_by_temperature_and_drift_record():
    assert by_temperature(["r/Cu/greenkubo/T300/greenkubo.nc", "r/Cu/greenkubo/T612.5/x.nc"]) == {
        "300": "r/Cu/greenkubo/T300/greenkubo.nc",
        "612.5": "r/Cu/greenkubo/T612.5/x.nc",
    }
    record = drift_record(
        {
            "drift_flagged": True,
            "settings": {"drift_threshold": 1e-4, "deviation_threshold": 5e-3},
            "runs": [
                {"index": 0, "drift": -2e-4, "max_deviation": 1e-3, "drift_flagged": True,
                 "blew_up": False, "reason": ""},
                {"index": 1, "drift": float("inf"), "max_deviation": float("inf"),
                 "drift_flagged": True, "blew_up": True, "reason": "max force"},
            ],
        }
    )  # fmt: skip
    assert record["flagged"] and record["drift_threshold"] == 1e-4
    assert record["runs"][0]["drift_eV_per_atom_per_ps"] == -2e-4
    # non-finite numbers are written as null
    assert record["runs"][1]["drift_eV_per_atom_per_ps"] is None
    assert record["max_abs_drift_eV_per_atom_per_ps"] is None


@pytest.mark.filterwarnings("ignore:no zero crossing", "ignore:.*kappa's relative error")
def test_green_kubo_and_summary_steps(tmp_path):
    prod = tmp_path / "greenkubo/T60"
    gk = GreenKuboSettings.with_defaults(flux="virial", window_fs=20.0)
    settings = {"name": "Ar", "greenkubo": gk}
    # production until a target it cannot reach in 3 runs: one extra run, stopped by max_runs
    small = {**SMALL, "target_error": 1e-6, "max_runs": 3, "require_decay": False}
    result = run_production(
        crystal(),
        lj(),
        VirialHeatFlux(),
        prod,
        temperature=60.0,
        settings=small,
        analysis=gk.analysis,
        progress=False,
    )
    write_json(prod / "production.json", {"settings": small, **result.to_dict()})
    # the record lists the runs
    assert production_runs(prod / "production.json") == result.paths
    green_kubo_step(
        settings,
        prod / "production.json",
        prod / "greenkubo.nc",
        prod / "greenkubo.png",
        temperature=60.0,
    )
    with xr.open_dataset(prod / "greenkubo.nc") as ds:
        kappa = float(ds["kappa_scalar"])
        assert ds.attrs["n_runs"] == 3 and ds.attrs["temperature_target"] == 60.0
        assert ds.attrs["heat_flux_method"] == "virial"
        # the analysis that stopped the production is the one of the final kappa
        relative = float(ds["kappa_scalar_error"]) / abs(kappa)
        assert relative == pytest.approx(result.relative_error, rel=1e-12)
    fake_kappa(tmp_path / "kappa.nc", temperatures=(50.0, 100.0), kappa=(3.0, 1.0))
    greenkubo_summary_step(
        settings,
        {"60": prod / "greenkubo.nc"},
        {"60": prod / "production.json"},
        {},
        {"mlip": tmp_path / "kappa.nc"},
        tmp_path / "summary.json",
        tmp_path / "kappa_T.png",
    )
    summary = read_json(tmp_path / "summary.json")
    row = summary["temperatures"]["60"]
    assert row["kappa_W_per_mK"] == kappa and row["n_runs"] == 3
    # the honest state: which budget ended it, at what error
    assert row["stopped_by"] == "max_runs" and not row["converged"] and not summary["converged"]
    assert summary["stopped_by"] == {"60": "max_runs"}
    assert row["relative_error"] == pytest.approx(relative) and row["target_error"] == 1e-6
    assert row["simulated_ps"] == pytest.approx(3 * 60 * 2.0 / 1000)
    assert row["lifetime_check"] == {"checked": False, "reason": "no MD lifetimes"}
    assert row["phono3py"]["mlip"]["how"] == "interpolated"
    assert row["phono3py"]["mlip"]["kappa_rta_W_per_mK"] == pytest.approx(2.6)
    assert row["phono3py"]["mlip"]["gk_over_rta"] == pytest.approx(kappa / 2.6)
    assert len(row["drift"]["runs"]) == 3 and row["lifetimes"] is None
    assert summary["drift_flagged"] == result.drift_flagged
    assert (tmp_path / "kappa_T.png").stat().st_size > 10_000
    assert (prod / "greenkubo.png").stat().st_size > 10_000


def test_files_of_another_model_are_discarded(tmp_path):
    settings = {**SMALL, "runs": 1, "steps": 10}
    kwargs = {"temperature": 60.0, "settings": settings, "progress": False}
    run_production(
        crystal(), lj(), VirialHeatFlux(), tmp_path, attrs={"model_fingerprint": "a"}, **kwargs
    )
    (tmp_path / "run_07.nc").write_text("not netCDF")
    files = [tmp_path / name for name in ("equilibration.nc", "run_00.nc", "run_07.nc")]
    assert discard_stale(files, "a") == [tmp_path / "run_07.nc"]
    assert (tmp_path / "run_00.nc").is_file()
    again = run_production(
        crystal(), lj(), VirialHeatFlux(), tmp_path, attrs={"model_fingerprint": "a"}, **kwargs
    )
    assert again.runs[0].reused
    # a job checks only the files it was given: the others may be another job's
    assert discard_stale([tmp_path / "run_00.nc"], "b") == [tmp_path / "run_00.nc"]
    assert (tmp_path / "equilibration.nc").is_file()
    assert discard_stale(files, "b") == [tmp_path / "equilibration.nc"]
    assert not list(tmp_path.glob("*.nc"))


def test_gk_convergence_against_the_acoustic_lifetimes():
    # acoustic lifetimes 8, 9, 10 ps (median 9): a 3 ps cutoff keeps 1 - exp(-1/3) of their
    # decay, 20 ps runs are shorter than 10 lifetimes; the optical bands do not count
    taus = [8.0, 9.0, 10.0, 0.5, 0.5, np.nan]
    bands = [0, 1, 2, 3, 4, 0]
    out = gk_convergence(3000.0, 20000.0, taus, bands)
    assert out["checked"] and out["under_converged"]
    assert out["acoustic_lifetime_ps"] == pytest.approx(9.0)
    assert out["captured_fraction"] == pytest.approx(1.0 - np.exp(-1.0 / 3.0))
    assert "cutoff" in out["reason"] and "10 acoustic lifetimes" in out["reason"]
    # short-lived phonons, long runs: converged
    fine = gk_convergence(5000.0, 50000.0, [1.0, 1.0, 1.0], [0, 1, 2])
    assert fine["checked"] and not fine["under_converged"] and fine["reason"] == ""
    assert fine["captured_fraction"] == pytest.approx(1.0 - np.exp(-5.0))
    # only the run length too short
    short = gk_convergence(5000.0, 5000.0, [1.0, 1.0, 1.0], [0, 1, 2])
    assert short["under_converged"] and "cutoff" not in short["reason"]
    assert not gk_convergence(3000.0, 20000.0, [np.nan, 2.0], [0, 3])["checked"]


def test_production_runs_and_state_from_the_record(tmp_path):
    for k in range(2):
        (tmp_path / f"run_{k:02d}.nc").write_text("x")
    # paths are taken by name next to the record (the results directory may have moved)
    runs = [{"path": f"/elsewhere/run_{k:02d}.nc", "steps_done": 100} for k in range(2)]
    write_json(tmp_path / "production.json", {"runs": runs})
    assert production_runs(tmp_path / "production.json") == [
        tmp_path / "run_00.nc",
        tmp_path / "run_01.nc",
    ]
    (tmp_path / "run_01.nc").unlink()
    with pytest.raises(ValueError, match=r"production.json: its run .*run_01.nc is missing"):
        production_runs(tmp_path / "production.json")
    # a record of a production reaching its target, and one written before targets existed
    reached = {"stopped_by": "target_error", "target_error": 0.1, "simulated_ps": 40.0,
               "wall_seconds": 7200.0, "runs": runs}  # fmt: skip
    state = production_state(reached, kappa=-2.0, kappa_error=0.15)
    assert state["converged"] and state["relative_error"] == pytest.approx(0.075)
    assert state["wall_hours"] == pytest.approx(2.0) and state["simulated_ps"] == 40.0
    old = production_state({"settings": {"timestep": 5.0}, "runs": runs}, 1.0, None)
    assert old["stopped_by"] == "fixed_runs" and not old["converged"]
    assert old["relative_error"] is None and old["simulated_ps"] == pytest.approx(1.0)


def test_size_check_compares_each_cell_with_the_main_cells_corrected_kappa():
    def row(t, kappa, error, corrected=None, corrected_error=None):
        fs = None
        if corrected is not None:
            fs = {
                "kappa_corrected_W_per_mK": corrected,
                "kappa_corrected_error_W_per_mK": corrected_error,
            }
        return {
            "temperature_K": t,
            "kappa_W_per_mK": kappa,
            "kappa_error_W_per_mK": error,
            "finite_size": fs,
        }

    main = {"natoms": 108, "temperatures": {"56": row(56.0, 0.43, 0.07, 0.71, 0.07)}}
    big = {
        "natoms": 256,
        "temperatures": {"56": row(56.0, 0.71, 0.12, 0.91, 0.12), "80": row(80.0, 0.3, 0.1)},
    }
    uncorrected = {"natoms": 500, "temperatures": {"56": {**row(56.0, 0.8, 0.2)}}}
    (check, other) = size_check_record(main, [big, uncorrected])
    assert check["natoms"] == 256 and len(check["temperatures"]) == 1  # 80 K: not in main
    entry = check["temperatures"][0]
    assert entry["main_kappa_corrected_W_per_mK"] == 0.71
    assert entry["kappa_minus_main_corrected_sigma"] == pytest.approx(0.0)
    assert entry["corrected_minus_main_corrected_sigma"] == pytest.approx(
        0.2 / np.hypot(0.12, 0.07)
    )
    assert other["temperatures"][0]["corrected_minus_main_corrected_sigma"] is None
    assert other["temperatures"][0]["kappa_minus_main_corrected_sigma"] == pytest.approx(
        0.09 / np.hypot(0.2, 0.07)
    )


def test_gk_cell_is_the_resized_relaxed_crystal_with_its_own_force_constants(tmp_path, monkeypatch):
    """A size-check cell: 2x2x2 conventional cells of the material's relaxed 2x1x1 cell, with
    EMT standing in for the MLIP; its force constants belong to that cell (what the MD
    lifetimes and the finite-size correction read) and give EMT's phonons."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    import alkappa
    from alkappa.greenkubo.steps import gk_cell_step
    from alkappa.io import read_dataset, write_dataset
    from alkappa.phonons import load_phonopy, read_force_constants, run_harmonic

    monkeypatch.setattr(alkappa, "load_model", lambda *args, **kwargs: EMT())
    a = 3.59  # EMT's own lattice constant is close: no big residual forces
    relaxed = bulk("Cu", "fcc", a=a, cubic=True).repeat((2, 1, 1))
    write_dataset(tmp_path / "relaxed.extxyz", [relaxed])
    settings = {
        "name": "Cu",
        "structure": {"build": {"name": "Cu", "crystalstructure": "fcc", "a": 3.61, "cubic": True}},
        "supercell": [2, 1, 1],
        "relax": RelaxSettings.with_defaults(keep_symmetry=True, fmax=0.01, max_steps=20),
        "phonons": PhononSettings.with_defaults(displacement=0.01, mesh=[4, 4, 4],
                                                band_npoints=11, imaginary_threshold=-0.1),
    }  # fmt: skip
    gk_cell_step(settings, tmp_path / "relaxed.extxyz", tmp_path, [2, 2, 2], tmp_path / "c")
    cell = read_dataset(tmp_path / "c/structure.extxyz")[0]
    assert len(cell) == 32
    np.testing.assert_allclose(cell.cell.cellpar()[:3], [2 * a] * 3, atol=1e-9)
    assert read_json(tmp_path / "c/relax.json")["natoms"] == 32
    fc = read_force_constants(tmp_path / "c/phonopy_params.yaml", cell)
    assert fc.shape == (32, 32, 3, 3)
    # EMT's phonons at X (commensurate with both cells, so exact in both) from the cell's
    # force constants, against phonopy on the primitive cell's own 2x2x2 supercell
    ph = load_phonopy(tmp_path / "c/phonopy_params.yaml")
    prim = bulk("Cu", "fcc", a=a)
    direct = run_harmonic(prim, EMT(), supercell_matrix=[2, 2, 2], mesh=[2, 2, 2]).phonon
    x = [0.5, 0.0, 0.5]
    ph.run_qpoints([x])
    direct.run_qpoints([x])
    np.testing.assert_allclose(ph.qpoints.frequencies, direct.qpoints.frequencies, atol=0.05)
