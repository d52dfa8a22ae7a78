"""Which modes carry the difference between the MLIP's phono3py kappa and the oracle's.

Reads two ``conductivity/<method>/kappa.nc`` files on the same mesh (the pipeline writes them
for ``conductivity.methods: [oracle, mlip]``) and prints, at one temperature, the RTA kappa of
each, the kappa with one factor swapped (the MLIP's lifetimes with the oracle's heat
capacities and group velocities, and the reverse), the acoustic/optical split, the
kappa-weighted lifetime ratio, and kappa per frequency window
(:func:`alkappa.phonons.kappa_mode_breakdown`).

    python validation/kappa_modes.py results/CuI/conductivity/oracle/kappa.nc \\
        results/CuI/conductivity/mlip/kappa.nc --temperature 300
"""

from __future__ import annotations

import argparse
import json

from alkappa.phonons import kappa_mode_breakdown, read_netcdf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", help="kappa.nc of the reference (the oracle)")
    parser.add_argument("other", help="kappa.nc of the other potential (the MLIP)")
    parser.add_argument("--temperature", type=float, default=300.0)
    parser.add_argument("--statistics", default="quantum", choices=["quantum", "classical"])
    parser.add_argument("--window", type=float, default=None, help="window width (THz)")
    parser.add_argument("--json", help="also write the breakdown here")
    args = parser.parse_args()
    b = kappa_mode_breakdown(
        read_netcdf(args.reference),
        read_netcdf(args.other),
        args.temperature,
        statistics=args.statistics,
        window_THz=args.window,
    )

    def row(label: str, ref: float, oth: float) -> None:
        ratio = oth / ref if ref else float("nan")
        print(f"{label:<44} {ref:9.3f} {oth:9.3f} {ratio:7.3f}")

    print(f"T = {b['temperature']:g} K, {b['statistics']} statistics, RTA, W/mK")
    print(f"{'':<44} {'reference':>9} {'other':>9} {'ratio':>7}")
    row("kappa", b["reference"], b["other"])
    row("other's lifetimes, reference's C and v", b["reference"], b["lifetimes_only"])
    row("reference's lifetimes, other's C and v", b["reference"], b["harmonic_only"])
    row("acoustic branches", b["acoustic_reference"], b["acoustic_other"])
    row("optical branches", b["optical_reference"], b["optical_other"])
    print(f"kappa-weighted lifetime ratio other/reference: {b['kappa_weighted_tau_ratio']:.3f}")
    for w in b["windows"]:
        row(f"  {w['low_THz']:5.2f}-{w['high_THz']:5.2f} THz", w["reference"], w["other"])
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(b, fh, indent=2)


if __name__ == "__main__":
    main()
