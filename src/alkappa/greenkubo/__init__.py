"""Green-Kubo thermal conductivity and phonon lifetimes from molecular dynamics.

* Heat flux (:func:`make_heat_flux`): the model's own flux, which its plugin provides
  (:meth:`alkappa.models.Model.heat_flux_method`; for NequIP the unfolded-system flux of
  Langer et al., PRB 108, L100302 (2023), :class:`alkappa.models.nequip.UnfoldedHeatFlux`),
  the virial flux of any ASE calculator with per-atom stresses (:class:`VirialHeatFlux`), the
  harmonic flux from force constants (:class:`HarmonicHeatFlux`); conventions in
  :mod:`alkappa.models.heat_flux`.
* Production MD (:func:`run_production`): NVT equilibration, then rounds of independent NVE
  runs that record the heat flux, with the energy drift of each run, until kappa's relative
  error reaches ``target_error`` or a budget is spent (``stopped_by``, one of
  :data:`STOPPED_BY`), extending the runs first while the flux autocorrelation has not
  decayed; its parts (:func:`run_equilibration`, :func:`run_nve`, :func:`extend_run`,
  :func:`run_round` with :func:`extend_chain`, :func:`collect_production`) run as separate
  processes in the pipeline; :func:`read_run` reads a run with its extension segments.
* Green-Kubo analysis in the manner of FHI-vibes (:func:`run_green_kubo` on trajectory files,
  :func:`green_kubo` on heat-flux arrays): FFT autocorrelation of the heat flux, cumulative
  kappa(t), smoothing over one period of the lowest vibrational peak, kappa of every run at
  the first dip of the run-averaged smoothed autocorrelation, with a standard error; a second
  estimate by cepstral analysis (:func:`cepstral_kappa`); :func:`write_green_kubo` writes
  ``greenkubo.nc``.
* Phonon lifetimes from MD (:func:`run_mode_lifetimes`): mode-energy autocorrelation at the
  supercell's commensurate q-points, compared with phono3py by
  :func:`compare_mode_lifetimes`.
* Finite-size correction by harmonic interpolation (:func:`run_finite_size_correction`;
  :func:`run_harmonic_interpolation` for the harmonic-model kappa from MD lifetimes,
  :func:`phonopy_from_trajectory` for the force constants of FHI-vibes files).
* Figures (:func:`plot_green_kubo`, :func:`plot_kappa_convergence`, :func:`plot_finite_size`,
  :func:`plot_kappa_temperature`,
  :func:`plot_mode_lifetimes`).
"""

from __future__ import annotations

from typing import Any

from alkappa.greenkubo._analysis import (
    autocorrelation,
    gk_prefactor,
    green_kubo,
    lowest_vibrational_frequency,
    read_heat_flux,
    run_green_kubo,
    write_green_kubo,
)
from alkappa.greenkubo._cepstral import CepstralResult, cepstral_kappa
from alkappa.greenkubo._finite_size import (
    DEFAULT_MESHES,
    check_interpolation_grid,
    harmonic_kappa,
    mesh_modes,
    phonopy_from_trajectory,
    run_finite_size_correction,
    run_harmonic_interpolation,
)
from alkappa.greenkubo._flux import (
    HarmonicHeatFlux,
    HeatFluxCalculator,
    VirialHeatFlux,
    make_heat_flux,
)
from alkappa.greenkubo._modes import (
    CommensurateModes,
    commensurate_modes,
    commensurate_qpoints,
    compare_mode_lifetimes,
    mode_energies,
    mode_velocities,
    run_mode_lifetimes,
)
from alkappa.greenkubo._plots import (
    plot_finite_size,
    plot_green_kubo,
    plot_kappa_convergence,
    plot_kappa_temperature,
    plot_mode_lifetimes,
)
from alkappa.greenkubo._production import (
    DEFAULT_PRODUCTION_SETTINGS,
    STOPPED_BY,
    ProductionResult,
    extend_chain,
    extend_run,
    read_run,
    run_equilibration,
    run_files,
    run_nve,
)
from alkappa.greenkubo._rounds import collect_production, run_production, run_round

__all__ = [
    "DEFAULT_MESHES",
    "DEFAULT_PRODUCTION_SETTINGS",
    "STOPPED_BY",
    "CepstralResult",
    "CommensurateModes",
    "HarmonicHeatFlux",
    "HeatFluxCalculator",
    "ProductionResult",
    "VirialHeatFlux",
    "autocorrelation",
    "cepstral_kappa",
    "check_interpolation_grid",
    "collect_production",
    "commensurate_modes",
    "commensurate_qpoints",
    "compare_mode_lifetimes",
    "extend_chain",
    "extend_run",
    "gk_prefactor",
    "green_kubo",
    "harmonic_kappa",
    "lowest_vibrational_frequency",
    "make_heat_flux",
    "mesh_modes",
    "mode_energies",
    "mode_velocities",
    "phonopy_from_trajectory",
    "plot_finite_size",
    "plot_green_kubo",
    "plot_kappa_convergence",
    "plot_kappa_temperature",
    "plot_mode_lifetimes",
    "read_heat_flux",
    "read_run",
    "run_equilibration",
    "run_files",
    "run_finite_size_correction",
    "run_green_kubo",
    "run_harmonic_interpolation",
    "run_mode_lifetimes",
    "run_nve",
    "run_production",
    "run_round",
    "write_green_kubo",
]


def __getattr__(name: str) -> Any:
    # the NequIP flux moved to its plugin (issue 21); the old name still resolves
    if name == "UnfoldedHeatFlux":
        from alkappa.models.nequip import UnfoldedHeatFlux

        return UnfoldedHeatFlux
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
