"""Phonons, thermal conductivity and anharmonicity.

* Harmonic phonons with phonopy (:func:`run_harmonic`): force constants from an MLIP or the
  oracle, band structure, DOS, imaginary-mode warnings; :func:`compare_phonons` gives the
  frequency error of one set of force constants against another on a q-mesh.
* Third-order force constants and lattice thermal conductivity with phono3py
  (:func:`run_fc3`, :func:`run_phono3py`, :func:`run_mesh_convergence`,
  :func:`compare_conductivity`, :func:`kappa_mode_breakdown`): kappa in RTA (and LBTE),
  per-mode linewidths and lifetimes, with quantum or classical statistics
  (:func:`classical_from_high_temperature`), on regular meshes or on exactly the q-points of
  an MD supercell (:func:`commensurate_mesh`).
* The anharmonicity score sigma^A of Knoop et al. (:func:`sigma_a`,
  :func:`anharmonicity_from_trajectory`).
* Figures (:func:`plot_phonons`, :func:`plot_kappa`, :func:`plot_lifetimes`,
  :func:`plot_anharmonicity`).
"""

from __future__ import annotations

# generic netCDF I/O, re-exported where the phonon datasets are
from alkappa.io import read_netcdf, write_netcdf
from alkappa.phonons._anharmonicity import (
    AnharmonicityScore,
    anharmonicity_from_dataset,
    anharmonicity_from_trajectory,
    harmonic_forces,
    match_atoms,
    read_force_constants,
    sigma_a,
)
from alkappa.phonons._common import to_ase_atoms
from alkappa.phonons._compare import compare_phonons, frequency_errors
from alkappa.phonons._conductivity import (
    Fc3Result,
    classical_from_high_temperature,
    commensurate_mesh,
    compare_conductivity,
    count_fc3_supercells,
    fc3_displacements,
    load_fc3,
    make_phono3py,
    run_fc3,
    run_mesh_convergence,
    run_phono3py,
    write_fc3,
)
from alkappa.phonons._harmonic import (
    HarmonicResult,
    ImaginaryModeWarning,
    find_imaginary_modes,
    load_phonopy,
    make_phonopy,
    phonon_properties,
    primitive_lattice,
    run_harmonic,
    write_harmonic,
)
from alkappa.phonons._kappa_modes import (
    FrequencyWindow,
    KappaModeBreakdown,
    cumulative_kappa,
    kappa_mode_breakdown,
)
from alkappa.phonons._plots import plot_anharmonicity, plot_kappa, plot_lifetimes, plot_phonons

__all__ = [
    "AnharmonicityScore",
    "Fc3Result",
    "FrequencyWindow",
    "HarmonicResult",
    "ImaginaryModeWarning",
    "KappaModeBreakdown",
    "anharmonicity_from_dataset",
    "anharmonicity_from_trajectory",
    "classical_from_high_temperature",
    "commensurate_mesh",
    "compare_conductivity",
    "compare_phonons",
    "count_fc3_supercells",
    "cumulative_kappa",
    "fc3_displacements",
    "find_imaginary_modes",
    "frequency_errors",
    "harmonic_forces",
    "kappa_mode_breakdown",
    "load_fc3",
    "load_phonopy",
    "make_phono3py",
    "make_phonopy",
    "match_atoms",
    "phonon_properties",
    "plot_anharmonicity",
    "plot_kappa",
    "plot_lifetimes",
    "plot_phonons",
    "primitive_lattice",
    "read_force_constants",
    "read_netcdf",
    "run_fc3",
    "run_harmonic",
    "run_mesh_convergence",
    "run_phono3py",
    "sigma_a",
    "to_ase_atoms",
    "write_fc3",
    "write_harmonic",
    "write_netcdf",
]
