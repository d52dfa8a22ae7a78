"""Green-Kubo production MD: files, units, attributes, energy drift, restarts."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.lj import LennardJones

from alkappa.greenkubo._flux import HEAT_FLUX_UNIT, VirialHeatFlux
from alkappa.greenkubo._production import (
    DEFAULT_PRODUCTION_SETTINGS,
    energy_drift,
    resolve_production_settings,
    run_files,
    run_production,
)
from alkappa.io.trajectory import read_trajectory

SIGMA, EPSILON, RC, RO = 2.3, 0.05, 5.0, 4.0


def lj() -> LennardJones:
    return LennardJones(sigma=SIGMA, epsilon=EPSILON, rc=RC, ro=RO, smooth=True)


def crystal() -> Atoms:
    """32-atom fcc cell near the LJ minimum (a = 2^(2/3) sigma), relaxed by symmetry."""
    return bulk("Ar", "fcc", a=2 ** (2 / 3) * SIGMA, cubic=True).repeat(2)


SMALL = {
    "timestep": 2.0,
    "friction": 0.05,
    "equilibration_steps": 40,
    "runs": 2,
    "steps": 60,
    "snapshot_spacing": 20,
    "sample_interval": 5,
    "average_virial_frames": 3,
    "log_interval": 10,
    "seed": 1,
    "target_error": None,  # exactly `runs` runs
}


def test_settings_and_drift_helpers():
    assert resolve_production_settings({})["runs"] == DEFAULT_PRODUCTION_SETTINGS["runs"]
    with pytest.raises(ValueError, match="unknown production setting"):
        resolve_production_settings({"stepz": 3})
    with pytest.raises(ValueError, match="sample_interval"):
        resolve_production_settings({"sample_interval": 0})
    t = np.arange(0.0, 2000.0, 10.0)  # fs
    slope, deviation = energy_drift(t, 0.5 + 3e-4 * t / 1000)
    assert slope == pytest.approx(3e-4) and deviation == pytest.approx(3e-4 * 1.99)
    assert energy_drift(t[:1], np.ones(1)) == (0.0, 0.0)
    assert energy_drift(t[:2], np.array([1.0, np.nan]))[0] == float("inf")


def test_production_files_units_and_drift(tmp_path):
    atoms = crystal()
    flux = VirialHeatFlux()
    result = run_production(
        atoms, lj(), flux, tmp_path, temperature=60.0, settings=SMALL, progress=False
    )
    assert result.equilibrated and not result.drift_flagged
    assert result.paths == run_files(tmp_path, 2)
    assert (tmp_path / "equilibration.nc").is_file()
    starts = []
    for run in result.runs:
        assert run.steps_done == 60 and run.frames == 13 and not run.blew_up
        assert abs(run.drift) < 1e-4 and run.max_deviation < 1e-3 and not run.drift_flagged
        ds = read_trajectory(run.path)
        assert ds["heat_flux"].dims == ("time", "a") and ds["heat_flux"].shape == (13, 3)
        assert ds["heat_flux_aux"].dims == ("time", "a")
        assert ds["positions"].dims == ("time", "I", "a")
        for name in ("velocities", "forces", "energy_potential", "energy_kinetic", "temperature"):
            assert name in ds, name
        np.testing.assert_allclose(ds["time"].values, 10.0 * np.arange(13))  # fs
        a = ds.attrs
        assert a["volume"] == pytest.approx(atoms.get_volume())
        assert a["heat_flux_unit"] == HEAT_FLUX_UNIT and a["heat_flux_method"] == "virial"
        assert a["ensemble"] == "NVE" and a["timestep"] == 2.0 and a["sample_interval"] == 5
        assert int(a["completed"]) == 1 and int(a["drift_flagged"]) == 0
        assert a["energy_drift"] == pytest.approx(run.drift)
        assert int(a["average_virial_subtracted"]) == 1
        starts.append(int(a["start_step"]))
        # the stored flux is the virial flux of the stored frame, in eV/Å^2/fs
        frame = atoms.copy()
        frame.positions = ds["positions"].values[7]
        frame.set_velocities(ds["velocities"].values[7])
        frame.calc = lj()
        check = VirialHeatFlux()
        check.average_virials = flux.average_virials
        np.testing.assert_allclose(check.heat_flux(frame), ds["heat_flux"].values[7], rtol=1e-10)
        sigma = -flux.average_virials.transpose(0, 2, 1) / atoms.get_volume()
        v = frame.get_velocities() * units.fs
        np.testing.assert_allclose(
            ds["heat_flux_aux"].values[7], -np.einsum("iba,ib->a", sigma, v), rtol=1e-10
        )
    assert starts == [40, 60]
    # a second call reuses everything
    again = run_production(
        atoms, lj(), VirialHeatFlux(), tmp_path, temperature=60.0, settings=SMALL, progress=False
    )
    assert all(r.reused for r in again.runs)
    assert [r.drift for r in again.runs] == pytest.approx([r.drift for r in result.runs])


def test_absurd_timestep_is_flagged(tmp_path):
    settings = {**SMALL, "timestep": 40.0, "runs": 1, "equilibration_steps": 5, "steps": 40}
    result = run_production(
        crystal(),
        lj(),
        VirialHeatFlux(),
        tmp_path,
        temperature=60.0,
        settings=settings,
        progress=False,
    )
    # five NVT steps survive; the NVE run heats up until the blow-up checks stop it
    assert result.equilibrated and result.drift_flagged
    run = result.runs[0]
    assert run.drift_flagged and run.steps_done < 40
    assert abs(run.drift) > 1e-3 or run.max_deviation > 5e-3
    assert int(read_trajectory(run.path).attrs["drift_flagged"]) == 1


def test_production_with_unfolded_ensemble_flux(tmp_path):
    """Two tiny NequIP members: member fluxes, uncertainty, flux energy = MD energy."""
    from test_heat_flux import tiny_nequip

    from alkappa.greenkubo._flux import UnfoldedHeatFlux
    from alkappa.models._nequip_ensemble import NequIPEnsembleCalculator

    members = [tiny_nequip(0), tiny_nequip(1)]
    atoms = bulk("CuI", "zincblende", a=6.05, cubic=True)
    settings = {**SMALL, "timestep": 1.0, "equilibration_steps": 20, "steps": 30}
    settings.update(snapshot_spacing=10, max_force=100.0)
    result = run_production(
        atoms,
        NequIPEnsembleCalculator(members),
        UnfoldedHeatFlux(members),
        tmp_path,
        temperature=50.0,
        settings=settings,
        progress=False,
    )
    assert result.equilibrated and not result.drift_flagged
    ds = read_trajectory(result.runs[0].path)
    assert ds["heat_flux_members"].dims == ("time", "member", "a")
    np.testing.assert_allclose(ds["heat_flux_members"].mean("member"), ds["heat_flux"], rtol=1e-12)
    assert "uncertainty_force_max" in ds
    assert ds.attrs["heat_flux_method"] == "unfolded"
    assert ds.attrs["flux_energy_mismatch_per_atom"] < 1e-10
