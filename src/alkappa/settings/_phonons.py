"""The ``phonons`` and ``conductivity`` sections and how fc3 is computed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Literal

from alkappa.settings._base import Mesh, _Section


@dataclass(frozen=True)
class PhononSettings(_Section):
    """The ``phonons`` section: harmonic phonons (phonopy) with the final MLIP and the oracle.

    Parameters
    ----------
    enabled
        Whether the stage runs.
    oracle
        Also with the oracle.
    displacement
        Å.
    mesh
        q-point mesh of the DOS and the comparisons.
    band_npoints
        Points per segment of the band structure.
    imaginary_threshold
        THz; modes below it are reported as imaginary.
    """

    SECTION: ClassVar[str] = "phonons"

    enabled: bool
    oracle: bool
    displacement: float
    mesh: Mesh
    band_npoints: int
    imaginary_threshold: float


@dataclass(frozen=True)
class ConductivitySettings(_Section):
    """The ``conductivity`` section: fc3 and lattice thermal conductivity with phono3py.

    The keys are those of the schema (``$defs/conductivity``, which describes each at length).

    Parameters
    ----------
    enabled
        Whether the stage runs.
    temperatures
        K.
    mesh
        q-point mesh of kappa.
    lbte
        Also solve the linearised BTE exactly.
    isotopes
        Isotope scattering (natural abundances).
    sigma
        Gaussian smearing (THz); None: the tetrahedron method.
    displacement
        Å, of the fc3 supercells.
    cutoff_pair_distance
        Å; pairs farther apart get no displacements (None: all pairs).
    random_snapshots
        Random displacements and symfc: a number of supercells or ``"auto"`` (None:
        systematic pairs).
    seed
        Of the random displacements.
    mesh_convergence
        Extra meshes for a convergence table.
    oracle
        The oracle's own fc3: True, False or ``"auto"`` (when at most
        ``oracle_max_supercells`` are needed).
    oracle_max_supercells
        See ``oracle``.
    statistics
        Phonon occupations: ``quantum`` (always) and ``classical``.
    classical_temperature
        K; the classical limit comes from one phono3py run at this temperature.
    commensurate
        Also kappa on exactly the q-points of the MD supercell.
    commensurate_sigma
        Gaussian smearing (THz) on that grid; None: the tetrahedron method.
    track_iterations
        Also kappa of every AL iteration's ensemble against the oracle's (the kappa curve).
    """

    SECTION: ClassVar[str] = "conductivity"

    enabled: bool
    temperatures: tuple[float, ...]
    mesh: Mesh
    lbte: bool
    isotopes: bool
    sigma: float | None
    displacement: float
    cutoff_pair_distance: float | None
    random_snapshots: int | Literal["auto"] | None
    seed: int
    mesh_convergence: tuple[Mesh, ...]
    oracle: bool | Literal["auto"]
    oracle_max_supercells: int
    statistics: tuple[Literal["quantum", "classical"], ...]
    classical_temperature: float
    commensurate: bool
    commensurate_sigma: float | None
    track_iterations: bool = False

    def fc3_options(self) -> Fc3Options:
        """The keywords of :func:`alkappa.phonons.run_fc3` and
        :func:`~alkappa.phonons.count_fc3_supercells`."""
        return Fc3Options(
            displacement=self.displacement,
            cutoff_pair_distance=self.cutoff_pair_distance,
            random_snapshots=self.random_snapshots,
            random_seed=self.seed,
        )


@dataclass(frozen=True)
class Fc3Options:
    """How fc3 is computed (:func:`alkappa.phonons.run_fc3`'s keywords).

    Parameters
    ----------
    displacement
        Å.
    cutoff_pair_distance
        Å; pairs farther apart get no displacements (None: all pairs).
    random_snapshots
        Random displacements and symfc instead of systematic pairs: a number of supercells
        or ``"auto"`` (None: systematic).
    random_seed
        Of the random displacements.
    """

    displacement: float
    cutoff_pair_distance: float | None
    random_snapshots: int | Literal["auto"] | None
    random_seed: int

    def to_dict(self) -> dict[str, object]:
        """The keywords."""
        return dataclasses.asdict(self)
