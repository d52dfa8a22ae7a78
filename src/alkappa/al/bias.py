"""Uncertainty-biased exploration MD: a bias that lowers the energy where the ensemble disagrees.

Uncertainty-driven dynamics (Kulichenko et al., "Uncertainty-driven dynamics for active learning
of interatomic potentials", Nat. Comput. Sci. 3, 230 (2023)) adds to the ensemble-mean energy
``Ebar = mean_m E_m`` of M members on N atoms the bias

    E_bias = A [exp(-x) - 1],   x = sigma2 / (M N B^2),   sigma2 = 1/2 sum_m (E_m - Ebar)^2,

which is ~0 where the members agree, falls smoothly to -A where they disagree (so it never
lowers the energy by more than A), and whose force pushes the MD towards disagreement. Its
gradient needs only what the ensemble already computes, the members' energies and forces
``F_m = -dE_m/dR``:

    dx/dR = -1/(M N B^2) sum_m (E_m - Ebar) F_m,   F_bias = -dE_bias/dR = A exp(-x) dx/dR

(no autograd and no finite differences); the stress follows the same way from the members'
stresses.

Energetic viability: a bias strong enough to find disagreement may also drag the MD into
configurations far above the thermal range, which are useless for a potential of the material
at that temperature. The bias is therefore multiplied by

    w(Ebar) = 1/2 erfc((Ebar - E_0 - 3N/2 kT - c s) / (s sqrt 2)),   s = sqrt(3N/2) kT,

the harmonic estimate of the thermal range of the potential energy above the relaxed
structure's ``E_0`` (mean 3N/2 kT, standard deviation s) with the shift c of the selection's
viability factor: the bias fades out once the configuration is c standard deviations above
the thermal mean. The product ``w E_bias`` is differentiated as a whole (its force gains
``E_bias w'(Ebar) Fbar``, which points back down the physical energy), so the biased MD stays
conservative.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import units
from ase.calculators.calculator import Calculator, all_changes
from scipy.special import erfc

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ase import Atoms


def thermal_range(n_atoms: int, temperature: float) -> tuple[float, float]:
    """Harmonic mean and standard deviation of the potential energy above the minimum (eV)."""
    kt = units.kB * temperature
    return 1.5 * n_atoms * kt, math.sqrt(1.5 * n_atoms) * kt


def viability(
    energy: float, *, reference: float, n_atoms: int, temperature: float, shift: float
) -> tuple[float, float]:
    """The viability factor ``w`` of a potential energy and its derivative ``dw/dE`` (1/eV)."""
    mean, std = thermal_range(n_atoms, temperature)
    t = (energy - reference - mean - shift * std) / (std * math.sqrt(2.0))
    w = 0.5 * float(erfc(t))
    dw = -math.exp(-t * t) / (std * math.sqrt(2.0 * math.pi))
    return w, dw


class UncertaintyBias(Calculator):
    """An ensemble calculator with the uncertainty-driven bias of Kulichenko et al. added.

    ``results`` holds the biased ``energy``, ``free_energy``, ``forces`` (and ``stress``), which
    drive the MD, and the ensemble's own keys unchanged (``energy_members``,
    ``forces_members``, ``stress_members``, ``uncertainty``), plus ``energy_unbiased``,
    ``forces_unbiased``, ``stress_unbiased`` (the ensemble mean), ``energy_bias`` (the bias
    energy added, viability included) and ``bias_viability`` (``w``).

    Parameters
    ----------
    ensemble
        A calculator that reports ``energy_members`` (M,) and ``forces_members`` (M, N, 3)
        with M >= 2 (and ``stress_members`` (M, 6) for the stress).
    strength
        A (eV): the deepest the bias goes.
    width
        B (eV): the energy spread, per member and atom as in ``x`` above, at which the bias
        reaches 1 - 1/e of its depth.
    viability_shift
        c of the viability factor; ``None`` switches the factor off.
    """

    def __init__(
        self,
        ensemble: Calculator,
        *,
        strength: float,
        width: float,
        viability_shift: float | None = 3.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if strength < 0 or width <= 0:
            raise ValueError(f"the bias needs strength >= 0 and width > 0, not {strength}, {width}")
        self.ensemble = ensemble
        # the stress only where the ensemble has one (has_stress() reads this list)
        self.implemented_properties = [
            p
            for p in ("energy", "free_energy", "forces", "stress")
            if p != "stress" or "stress" in getattr(ensemble, "implemented_properties", ())
        ]
        self.strength = float(strength)
        self.width = float(width)
        self.viability_shift = viability_shift
        self.reference_energy: float | None = None
        self.temperature: float | None = None

    def set_thermal_range(self, reference_energy: float, temperature: float) -> None:
        """The relaxed structure's ensemble energy E_0 and the temperature of the viability."""
        self.reference_energy = float(reference_energy)
        self.temperature = float(temperature)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        ens = self.ensemble
        wanted = ["energy", "forces"]
        if self.atoms.pbc.all() and "stress" in ens.implemented_properties:
            wanted.append("stress")
        ens.calculate(self.atoms, wanted, all_changes)
        res = dict(ens.results)
        if "energy_members" not in res or "forces_members" not in res:
            raise RuntimeError(
                "uncertainty-biased MD needs an ensemble that reports energy_members and "
                "forces_members"
            )
        energies = np.asarray(res["energy_members"], dtype=float).reshape(-1)
        forces = np.asarray(res["forces_members"], dtype=float)
        m, n = energies.size, forces.shape[1]
        if m < 2:
            raise RuntimeError(f"uncertainty-biased MD needs at least two members, not {m}")
        dev = energies - energies.mean()
        scale = 1.0 / (m * n * self.width**2)
        x = 0.5 * float(dev @ dev) * scale
        e_bias = self.strength * (math.exp(-x) - 1.0)
        # -dE_bias/dR = A exp(-x) dx/dR, dx/dR = -scale sum_m dev_m F_m
        f_bias = -self.strength * math.exp(-x) * scale * np.einsum("m,mij->ij", dev, forces)
        mean_energy = float(res["energy"])
        mean_forces = np.asarray(res["forces"], dtype=float)
        w, dw = 1.0, 0.0
        if self.viability_shift is not None:
            if self.reference_energy is None or self.temperature is None:
                raise RuntimeError("set_thermal_range() before a biased calculation")
            w, dw = viability(
                mean_energy,
                reference=self.reference_energy,
                n_atoms=n,
                temperature=self.temperature,
                shift=self.viability_shift,
            )
        out = {
            **res,
            "energy_unbiased": mean_energy,
            "forces_unbiased": mean_forces,
            "energy_bias": w * e_bias,
            "bias_viability": w,
            "energy": mean_energy + w * e_bias,
            "free_energy": mean_energy + w * e_bias,
            # d(w E_bias)/dR = w dE_bias/dR + E_bias w' dEbar/dR, dEbar/dR = -Fbar
            "forces": mean_forces + w * f_bias + e_bias * dw * mean_forces,
        }
        out.pop("stress", None)  # the ensemble's own, unbiased: replaced or dropped
        if "stress" in res and "stress_members" in res:
            stresses = np.asarray(res["stress_members"], dtype=float).reshape(m, 6)
            mean_stress = np.asarray(res["stress"], dtype=float).reshape(-1)
            if mean_stress.size == 9:
                mean_stress = mean_stress.reshape(3, 3)[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
            # stress = dE/d(strain) / V, and dx/d(strain) / V = scale sum_m dev_m S_m
            s_bias = -self.strength * math.exp(-x) * scale * (dev @ stresses)
            out["stress_unbiased"] = mean_stress
            out["stress"] = mean_stress + w * s_bias + e_bias * dw * mean_stress
        self.results = out
