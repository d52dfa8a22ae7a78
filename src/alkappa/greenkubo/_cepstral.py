"""Cepstral estimate of the Green-Kubo integral: kappa from the zero-frequency heat-flux spectrum.

Method (Ercole, Marcolongo, Baroni, "Accurate thermal conductivities from optimally short
molecular dynamics simulations", Sci. Rep. 7, 15835 (2017); Baroni, Bertossa, Ercole,
Grasselli, Marcolongo, "Heat transport in insulators from ab initio Green-Kubo theory",
Handbook of Materials Modeling (Springer, 2018), arXiv:1802.08006). kappa = (V / k_B T^2)
int_0^inf <J(t) J(0)> dt = S(0) / 2 with S(f) the power spectrum of J times the prefactor.

1. **Periodogram.** For every run r and diagonal direction a,
   I_k = prefactor_r * dt / N |sum_n J_a(n) exp(-2 pi i k n / N)|^2, k = 0 .. N/2, whose
   expectation is S(f_k). The l = n_runs x 3 periodograms are averaged ("multi-component"):
   Ŝ_k = S_k chi^2_{2l} / (2l) for k > 0 (chi^2_l / l at k = 0, where the transform is real).
   All runs are cut to the shortest so that they share one frequency grid. The raw flux is
   used: its mean is part of the signal (S(0) is what is measured).
2. **Low-pass.** Only f_k <= f* is kept (K* + 1 points): the low-frequency part holds the
   answer, a smooth spectrum there needs few coefficients. Default f* (set by the caller):
   half the lowest vibrational frequency, below the first vibrational peak.
3. **Log and cepstrum.** L_k = log Ŝ_k - lambda_k, with lambda_k = psi(l) - log l the mean of
   log(chi^2_{2l}/2l) (psi(l/2) - log(l/2) at k = 0), is log S_k plus noise of zero mean and
   variance psi'(l), independent between k. Its cepstral coefficients (type-I discrete
   cosine transform of the even, 2K*-periodic extension),
   c_n = (1 / 2K*) sum_k L_k cos(pi n k / K*), have variances sigma_n^2 = psi'(l) / 2K*
   (twice that at n = 0 and n = K*).
4. **Akaike information criterion.** Keeping the first P coefficients,
   AIC(P) = sum_{n >= P} c_n^2 / sigma_n^2 + 2P; P* minimises it.
5. **Result.** log S(0) = c_0 + 2 sum_{n=1}^{P*-1} c_n, variance
   sigma^2 = sigma_0^2 + 4 sum_{n=1}^{P*-1} sigma_n^2 = psi'(l) (4P* - 2) / 2K*;
   kappa = exp(log S(0)) / 2 with the error kappa * sigma (the log-normal's first order).

The variance of the endpoint k = 0 (psi'(l/2)) is taken as psi'(l) in the coefficient
variances, as in the papers. For anisotropic crystals the three directions' spectra differ;
their average is then still the scalar's spectrum, but its noise is only approximately
chi^2_{2l}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import ArrayLike

#: fewest frequencies below f* for a cepstral estimate
MIN_FREQUENCIES = 8


@dataclass(frozen=True)
class CepstralResult:
    """The cepstral estimate of kappa (the mean of the diagonal) and what it used.

    Attributes
    ----------
    kappa, kappa_error
        kappa and its standard error (W/(m K) when the prefactors are the Green-Kubo ones).
    n_coefficients
        P*, the number of cepstral coefficients the AIC kept.
    cutoff_frequency_thz
        f*, the low-pass frequency (THz).
    n_components
        l, the number of periodograms averaged (runs x 3).
    n_frequencies
        K* + 1, the frequencies kept (0 .. f*).
    frequency_thz, log_spectrum, log_spectrum_filtered
        The kept frequencies (THz), the bias-corrected log-periodogram L_k and its filtered
        form from P* coefficients (log of the prefactor times the spectrum).
    aic
        AIC(P) for P = 1 .. K* + 1.
    """

    kappa: float
    kappa_error: float
    n_coefficients: int
    cutoff_frequency_thz: float
    n_components: int
    n_frequencies: int
    frequency_thz: np.ndarray
    log_spectrum: np.ndarray
    log_spectrum_filtered: np.ndarray
    aic: np.ndarray

    @classmethod
    def empty(cls, cutoff_frequency_thz: float) -> CepstralResult:
        """A result of NaNs (no estimate possible)."""
        none = np.empty(0)
        return cls(np.nan, np.nan, 0, float(cutoff_frequency_thz), 0, 0, none, none, none, none)


def cepstral_kappa(
    fluxes: Sequence[ArrayLike],
    *,
    dt_fs: float,
    prefactors: float | Sequence[float] = 1.0,
    cutoff_frequency_thz: float,
) -> CepstralResult:
    """kappa = S(0) / 2 from the heat-flux periodograms by cepstral analysis (Ercole et al.).

    Parameters
    ----------
    fluxes
        One (time, 3) array per run at spacing ``dt_fs`` (fs); cut to the shortest run.
    dt_fs
        Time between samples (fs).
    prefactors
        The Green-Kubo prefactor V / (k_B T^2) of each run (one value or one per run), so that
        the result is in W/(m K) (see :func:`~alkappa.greenkubo.gk_prefactor`).
    cutoff_frequency_thz
        f* (THz): only the periodogram at f <= f* is used.

    Returns
    -------
    CepstralResult
        kappa, its error, P*, f* and the filtered log-spectrum.
    """
    from scipy import fft, special

    runs = [np.asarray(f, dtype=float) for f in fluxes]
    if not runs or any(r.ndim != 2 or r.shape[1] != 3 for r in runs):
        raise ValueError("cepstral_kappa needs one (time, 3) heat-flux array per run")
    if not dt_fs > 0 or not cutoff_frequency_thz > 0:
        raise ValueError(
            f"need a positive time step and cutoff frequency, got {dt_fs}, {cutoff_frequency_thz}"
        )
    pref = np.atleast_1d(np.asarray(prefactors, dtype=float))
    if pref.size == 1:
        pref = np.repeat(pref, len(runs))
    if pref.shape != (len(runs),):
        raise ValueError(f"need one prefactor or one per run ({len(runs)}), got {pref.size}")
    n = min(len(r) for r in runs)
    f_star = float(cutoff_frequency_thz)
    k_star = min(int(np.floor(f_star * 1e-3 * n * dt_fs)), n // 2)
    if k_star + 1 < MIN_FREQUENCIES:
        raise ValueError(
            f"runs of {n * dt_fs:.0f} fs hold only {k_star + 1} frequencies below "
            f"f* = {f_star:.3g} THz (need {MIN_FREQUENCIES}); raise f* or run longer"
        )

    periodogram = np.zeros(k_star + 1)
    for r, flux in enumerate(runs):
        spec = fft.rfft(flux[:n], axis=0)[: k_star + 1]
        periodogram += pref[r] * dt_fs / n * (spec.real**2 + spec.imag**2).sum(axis=1)
    components = 3 * len(runs)
    periodogram /= components
    if not (periodogram > 0).all():
        raise ValueError("the heat-flux periodogram vanishes at some frequency (constant flux?)")

    # log-periodogram less the mean of log(chi^2 / dof): an unbiased estimate of log S
    bias = np.full(k_star + 1, special.digamma(components) - np.log(components))
    bias[0] = special.digamma(components / 2) - np.log(components / 2)
    log_s = np.log(periodogram) - bias

    n_star = 2 * k_star
    coeffs = fft.dct(log_s, type=1) / n_star
    variance = np.full(k_star + 1, special.polygamma(1, components) / n_star)
    variance[[0, -1]] *= 2.0
    # AIC(P) for P = 1 .. K*+1: misfit of the dropped coefficients plus 2 per kept one
    dropped = np.concatenate((np.cumsum((coeffs**2 / variance)[::-1])[::-1][1:], [0.0]))
    aic = dropped + 2.0 * np.arange(1, k_star + 2)
    p_star = int(np.argmin(aic)) + 1

    weights = np.full(k_star + 1, 2.0)
    weights[0] = 1.0
    weights[-1] = 1.0  # the n = K* coefficient appears once in the even extension
    log_s0 = float(np.sum((weights * coeffs)[:p_star]))
    log_var = float(np.sum((weights**2 * variance)[:p_star]))
    kappa = 0.5 * np.exp(log_s0)
    kept = coeffs.copy()
    kept[p_star:] = 0.0
    filtered = fft.dct(kept, type=1)  # the inverse of c_n = DCT-I(L) / 2K*
    return CepstralResult(
        kappa=float(kappa),
        kappa_error=float(kappa * np.sqrt(log_var)),
        n_coefficients=p_star,
        cutoff_frequency_thz=f_star,
        n_components=components,
        n_frequencies=k_star + 1,
        frequency_thz=np.arange(k_star + 1) / (n * dt_fs) * 1e3,
        log_spectrum=log_s,
        log_spectrum_filtered=filtered,
        aic=aic,
    )
