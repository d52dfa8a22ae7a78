"""Which phonon modes carry a difference in kappa between two potentials on the same mesh.

In the relaxation-time approximation every mode adds ``C v_a^2 tau`` (times a constant) to
``kappa_aa`` (Srivastava, *The Physics of Phonons*, ch. 8; phono3py's ``mode_kappa``). With
two RTA results on the same q-points and bands, each mode's contribution of ``other`` factors
exactly into the reference's contribution times three ratios:

    k_other = k_ref * (tau_o / tau_r) * (C_o |v_o|^2 / C_r |v_r|^2)

for the direction average ``(xx + yy + zz) / 3``. Replacing one factor at a time says whether
a kappa difference comes from the lifetimes (anharmonicity: third-order force constants) or
from the harmonic part (heat capacity, group velocities: second order). Summing the
contributions per frequency window and per branch type says which modes carry it.

The lifetime ratio that matters for kappa is the kappa-weighted one,
``exp(sum_m k_m ln(tau_o / tau_r) / sum_m k_m)``: the median over all modes is dominated by
the many optical modes that carry little heat.
"""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING, TypedDict

import numpy as np

if TYPE_CHECKING:
    import xarray as xr

N_ACOUSTIC = 3


class FrequencyWindow(TypedDict):
    """kappa (W/mK) of the modes in one frequency window [low, high) THz."""

    low_THz: float
    high_THz: float
    reference: float
    other: float


class KappaModeBreakdown(TypedDict):
    """:func:`kappa_mode_breakdown`'s result at one temperature (kappa in W/mK, RTA,
    direction average)."""

    temperature: float
    statistics: str
    reference: float
    other: float
    lifetimes_only: float  # other's lifetimes, the reference's heat capacities and velocities
    harmonic_only: float  # the reference's lifetimes, other's heat capacities and velocities
    acoustic_reference: float
    acoustic_other: float
    optical_reference: float
    optical_other: float
    kappa_weighted_tau_ratio: float
    windows: list[FrequencyWindow]


def kappa_mode_breakdown(
    reference: xr.Dataset,
    other: xr.Dataset,
    temperature: float,
    *,
    statistics: str = "quantum",
    window_THz: float | None = None,
) -> KappaModeBreakdown:
    """Break the RTA kappa of ``other`` against ``reference`` down by mode at ``temperature``.

    Parameters
    ----------
    reference, other
        Datasets of :func:`~alkappa.phonons.run_phono3py` on the same q-points and bands (e.g.
        the oracle's and the MLIP's force constants on one mesh).
    temperature
        One of the datasets' temperatures (K).
    statistics
        ``"quantum"`` or ``"classical"`` (the latter needs the ``*_classical`` variables).
    window_THz
        Width of the frequency windows; by default the reference's highest frequency / 8.

    Returns
    -------
    KappaModeBreakdown
        Totals, the two one-factor swaps, acoustic/optical split, the kappa-weighted lifetime
        ratio and kappa per frequency window (by the reference's frequencies).
    """
    suffix = "" if statistics == "quantum" else f"_{statistics}"
    names = (f"mode_kappa_rta{suffix}", f"tau{suffix}")
    for ds, label in ((reference, "reference"), (other, "other")):
        missing = [n for n in (*names, "heat_capacity", "group_velocity") if n not in ds]
        if missing:
            raise ValueError(f"kappa breakdown: the {label} dataset has no {', '.join(missing)}")
    if reference.sizes.get("qpoint") != other.sizes.get("qpoint") or not np.allclose(
        reference["qpoints"].values, other["qpoints"].values, atol=1e-8
    ):
        raise ValueError("kappa breakdown: the two datasets are not on the same q-points")

    def at(ds: xr.Dataset, name: str) -> np.ndarray:
        return ds[name].sel(temperature=temperature).values

    def mode_kappa(ds: xr.Dataset) -> np.ndarray:  # (qpoint, band), W/mK summed to kappa
        mk = at(ds, names[0])[..., :3].mean(axis=-1)
        return mk / float(ds.attrs.get("n_grid_points", 1))

    k_ref, k_oth = mode_kappa(reference), mode_kappa(other)
    tau_r, tau_o = at(reference, names[1]), at(other, names[1])
    harm_r = at(reference, "heat_capacity") * (reference["group_velocity"].values ** 2).sum(-1)
    harm_o = at(other, "heat_capacity") * (other["group_velocity"].values ** 2).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau_ratio = np.where(np.isfinite(tau_o) & (tau_r > 0), tau_o / tau_r, 0.0)
        harm_ratio = np.where(harm_r > 0, harm_o / harm_r, 0.0)
    carrying = (k_ref > 0) & (tau_ratio > 0)
    weighted = (
        float(np.exp(np.average(np.log(tau_ratio[carrying]), weights=k_ref[carrying])))
        if carrying.any()
        else float("nan")
    )
    freq = reference["frequency"].values
    width = window_THz or max(float(np.nanmax(freq)) / 8.0, 1e-6)
    edges = np.arange(0.0, float(np.nanmax(freq)) + width, width)
    windows: list[FrequencyWindow] = []
    for low, high in pairwise(edges):
        sel = (freq >= low) & (freq < high)
        windows.append(
            {
                "low_THz": float(low),
                "high_THz": float(high),
                "reference": float(k_ref[sel].sum()),
                "other": float(k_oth[sel].sum()),
            }
        )
    acoustic = np.arange(freq.shape[1]) < N_ACOUSTIC
    return {
        "temperature": float(temperature),
        "statistics": statistics,
        "reference": float(k_ref.sum()),
        "other": float(k_oth.sum()),
        "lifetimes_only": float((k_ref * tau_ratio).sum()),
        "harmonic_only": float((k_ref * harm_ratio).sum()),
        "acoustic_reference": float(k_ref[:, acoustic].sum()),
        "acoustic_other": float(k_oth[:, acoustic].sum()),
        "optical_reference": float(k_ref[:, ~acoustic].sum()),
        "optical_other": float(k_oth[:, ~acoustic].sum()),
        "kappa_weighted_tau_ratio": weighted,
        "windows": windows,
    }


def cumulative_kappa(ds: xr.Dataset, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (sorted, THz) and kappa (W/mK, RTA, direction average) of the modes below
    each: the curve whose steps show which modes carry the heat."""
    mk = ds["mode_kappa_rta"].sel(temperature=temperature, method="nearest").values
    contrib = mk[..., :3].mean(axis=-1).ravel() / float(ds.attrs.get("n_grid_points", 1))
    freq = ds["frequency"].values.ravel()
    order = np.argsort(freq)
    return freq[order], np.cumsum(contrib[order])
