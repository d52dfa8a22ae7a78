"""Cheap analytic oracles (ASE EMT and Lennard-Jones), meant for fast tests of the pipeline.

Neither is a physical model of the materials alkappa targets; they exist so that the AL loop,
the bookkeeping and the Snakemake wiring can be exercised in seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ase.calculators import emt as _emt
from ase.calculators.lj import LennardJones

from alkappa.oracles._base import Oracle, OracleInputError

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator


class EMTOracle(Oracle):
    """ASE's effective-medium-theory potential.

    Supported elements are exactly those ASE's EMT has parameters for (the keys of
    ``ase.calculators.emt.parameters``: Al, Cu, Ag, Au, Ni, Pd, Pt and the "fun" H, C, N, O; see
    https://ase-lib.org/ase/calculators/emt.html).

    With ``correction`` it is EMT plus a smooth, known pair term: ASE's Morse potential
    (``epsilon`` eV, ``r0`` Å, ``rho0``, smoothly cut off between ``rcut1`` and ``rcut2`` Å).
    That is a cheap second fidelity for multi-fidelity tests: "high = low + a smooth known
    correction".

    Parameters
    ----------
    fidelity
        Fidelity label of the frames (default ``"emt"``, ``"emt+morse"`` with a correction).
    correction
        ``{epsilon, r0, rho0, rcut1, rcut2}`` of the added Morse term (``None``: plain EMT).
    """

    default_fidelity = "emt"

    def __init__(
        self, fidelity: str | None = None, correction: dict[str, float] | None = None
    ) -> None:
        if correction is not None:
            allowed = {"epsilon", "r0", "rho0", "rcut1", "rcut2"}
            unknown = sorted(set(correction) - allowed)
            if unknown:
                raise OracleInputError(
                    f"emt: unknown correction key(s) {unknown}; allowed: {sorted(allowed)}"
                )
            fidelity = fidelity or "emt+morse"
            super().__init__(fidelity, correction=dict(correction))
        else:
            super().__init__(fidelity)

    @property
    def supported_elements(self) -> set[str]:
        return set(_emt.parameters)

    def make_calculator(self) -> Calculator:
        correction = self.options.get("correction")
        if correction is None:
            return _emt.EMT()
        from ase.calculators.mixing import SumCalculator
        from ase.calculators.morse import MorsePotential

        return SumCalculator([_emt.EMT(), MorsePotential(**correction)])

    def describe(self) -> str:
        return "ASE EMT" + (" + Morse correction" if self.options.get("correction") else "")


class LennardJonesOracle(Oracle):
    """ASE's Lennard-Jones pair potential (one sigma/epsilon for all pairs, any element).

    Parameters
    ----------
    fidelity
        Fidelity label of the frames (default ``"lj"``).
    sigma, epsilon
        Length (Å) and energy (eV) scales; the pair minimum is at 2^(1/6) sigma.
    rc
        Cut-off in Å; ASE's default is 3 sigma.
    smooth
        Use ASE's smoothly truncated form (forces go continuously to zero at ``rc``).
    """

    default_fidelity = "lj"

    def __init__(
        self,
        fidelity: str | None = None,
        sigma: float = 1.0,
        epsilon: float = 1.0,
        rc: float | None = None,
        smooth: bool = False,
    ) -> None:
        if sigma <= 0 or epsilon <= 0:
            raise OracleInputError(
                f"lj: sigma and epsilon must be positive (got sigma={sigma}, epsilon={epsilon})"
            )
        if rc is not None and rc <= 0:
            raise OracleInputError(f"lj: rc must be positive (got {rc})")
        super().__init__(fidelity, sigma=sigma, epsilon=epsilon, rc=rc, smooth=smooth)

    def make_calculator(self) -> Calculator:
        return LennardJones(**self.options)

    def describe(self) -> str:
        o = self.options
        return f"ASE Lennard-Jones (sigma={o['sigma']}, epsilon={o['epsilon']})"
