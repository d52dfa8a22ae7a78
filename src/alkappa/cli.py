"""The ``alkappa`` command line: checks and small tools around the pipeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["run"] and not {"-h", "--help"} & set(argv[1:2]):
        return _run(argv[1:])  # everything but --grace goes to snakemake, options included
    parser = argparse.ArgumentParser(prog="alkappa", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a campaign config (schema, structures, oracle)")
    p.add_argument("config", help="YAML config file")

    p = sub.add_parser("plugins", help="list the installed oracles and models")

    p = sub.add_parser(
        "status",
        help="where a campaign stands: stages, AL iteration, oracle calls, running jobs",
        description="The state of a running or stopped campaign, from its results directory "
        "and Snakemake's records in .snakemake/ of the directory it runs in: per material the "
        "stages done, the AL iteration and its last decision, the oracle calls by purpose; "
        "the running jobs with their progress; with --configfile also the jobs left and an "
        "estimate of their time (a dry run, safe beside the running campaign).",
    )
    p.add_argument("results", nargs="?", default="results", help="results directory")
    p.add_argument("--workdir", default=".", help="where Snakemake runs (holds .snakemake/)")
    p.add_argument("--configfile", help="the campaign's config: also estimate the time left")
    p.add_argument("--target", action="append", default=[], help="the run's targets, if any")
    p.add_argument(
        "--durations",
        action="store_true",
        help="print only the mean duration (s) of the finished jobs of each rule, as YAML",
    )

    p = sub.add_parser(
        "run",
        help="run Snakemake so that Ctrl-C or SIGTERM stop it in seconds and leave no lock",
        description="snakemake ARGS in its own process group: a stale lock of a killed run is "
        "removed first; Ctrl-C, SIGTERM or SIGHUP reach Snakemake and its jobs as SIGINT (the "
        "clean stop), and whatever still runs after --grace seconds is killed and unlocked. "
        "Every --status-every seconds a line says where the campaign stands and how long it "
        "has left (as alkappa status). Every argument after these options goes to Snakemake.",
    )
    p.add_argument("--grace", type=float, default=60.0, help="seconds before a stop kills")
    p.add_argument(
        "--status-every",
        type=float,
        default=600.0,
        help="seconds between status lines (stage, oracle calls, time left); 0: none",
    )
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="arguments of snakemake")

    p = sub.add_parser(
        "stop",
        help="stop the Snakemake run of this directory cleanly (as Ctrl-C) and unlock",
    )
    p.add_argument("--workdir", default=".", help="where Snakemake runs (holds .snakemake/)")
    p.add_argument("--grace", type=float, default=60.0, help="seconds before it is killed")

    p = sub.add_parser(
        "unlock",
        help="remove the lock a killed Snakemake run left (only if none runs here)",
    )
    p.add_argument("--workdir", default=".", help="where Snakemake runs (holds .snakemake/)")

    p = sub.add_parser("oracle-calls", help="count the oracle calls a material's results hold")
    p.add_argument("directory", help="results/<material>")

    p = sub.add_parser(
        "oracle-retry",
        help="make the next run retry the oracle calls that failed (records are kept)",
    )
    p.add_argument("directory", help="results/<material>")

    p = sub.add_parser(
        "anharmonicity",
        help="anharmonicity score sigma^A of a trajectory (total and per species)",
        description="Anharmonicity score sigma^A = sqrt(sum (F - F_harm)^2 / sum F^2) of Knoop "
        "et al., Phys. Rev. Materials 4, 083809 (2020), of an alkappa or FHI-vibes trajectory.nc. "
        "Harmonic forces come from --force-constants if given, else from the file's "
        "forces_harmonic (or force_constants_remapped).",
    )
    p.add_argument("trajectory", help="trajectory.nc (alkappa or FHI-vibes)")
    p.add_argument(
        "--force-constants",
        metavar="FILE",
        help="phonopy_params.yaml with force constants (or a directory holding one), or a full "
        "force-constant matrix (.npy, FORCE_CONSTANTS, .hdf5) in the trajectory's atom order",
    )
    p.add_argument("--json", metavar="FILE", help="also write the result (with per-frame values)")

    p = sub.add_parser(
        "gk",
        help="Green-Kubo thermal conductivity from heat-flux trajectories",
        description="Green-Kubo kappa from one or several independent runs (alkappa or "
        "FHI-vibes trajectory.nc with heat_flux in eV/Å^2/fs, temperature and volume), as in "
        "FHI-vibes and Knoop et al., Phys. Rev. B 107, 224304 (2023): autocorrelation, "
        "cumulative kappa, smoothing over one period of the lowest vibrational peak, cutoff "
        "at the first dip, mean over runs with its standard error. With force constants "
        "(--force-constants or force_constants_remapped in the file) also the MD mode "
        "lifetimes, the harmonic-model kappa and the finite-size correction by harmonic "
        "interpolation (Carbogno et al., PRL 118, 175901 (2017)): kappa_corrected.",
    )
    p.add_argument("trajectories", nargs="+", metavar="TRAJECTORY", help="trajectory.nc files")
    p.add_argument("-o", "--output", default="greenkubo.nc", help="output netCDF file")
    window = p.add_mutually_exclusive_group()
    window.add_argument("--window-fs", type=float, help="smoothing window (fs)")
    window.add_argument(
        "--lowest-frequency",
        type=float,
        metavar="THZ",
        help="lowest vibrational frequency (default: lowest VDOS peak of the velocities)",
    )
    p.add_argument("--window-factor", type=float, default=1.0, help="periods per window")
    p.add_argument("--max-lag-fs", type=float, help="longest correlation time (default T/2)")
    p.add_argument("--discard-fs", type=float, default=0.0, help="drop this much at the start")
    p.add_argument("--plot", metavar="FILE", help="also plot kappa(t) (e.g. greenkubo.png)")
    p.add_argument(
        "--convergence-plot",
        metavar="FILE",
        help="also plot kappa against simulated time (first k runs) with the cepstral value",
    )
    p.add_argument(
        "--subtract-mean",
        action="store_true",
        help="subtract each run's mean flux first (FHI-vibes' convention, biased low by about "
        "2 kappa t/T for runs of length T; only to compare with vibes' numbers)",
    )
    p.add_argument(
        "--force-constants",
        metavar="FILE",
        help="harmonic force constants of the MD supercell for the finite-size correction: "
        "phonopy_params.yaml (or a directory holding one), or a full force-constant matrix "
        "(.npy, FORCE_CONSTANTS, .hdf5) in the trajectory's atom order (default: the "
        "trajectory's force_constants_remapped, if any)",
    )
    correction = p.add_mutually_exclusive_group()
    correction.add_argument(
        "--correction",
        action="store_true",
        help="require the finite-size correction (an error if there are no force constants)",
    )
    correction.add_argument(
        "--no-correction", action="store_true", help="skip the finite-size correction"
    )

    p = sub.add_parser(
        "events",
        help="atoms leaving their lattice sites in a trajectory (events table)",
        description="Lattice-site assignment against the trajectory's reference structure with "
        "the drift removed; an atom farther than a fraction of the nearest-neighbour distance "
        "from its site for at least a minimum time is an event, classified as Frenkel pair, "
        "site exchange or transient excursion (see alkappa.events).",
    )
    p.add_argument("trajectory", help="trajectory.nc (alkappa or FHI-vibes)")
    p.add_argument("--threshold-fraction", type=float, default=0.4, help="site radius / d_nn")
    p.add_argument("--min-duration", type=float, default=50.0, help="fs off site for an event")
    p.add_argument("--frenkel-duration", type=float, default=250.0, help="fs as interstitial")
    p.add_argument("--csv", metavar="FILE", help="also write the events table")

    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(argv[1:])
    if args.command == "validate":
        return _validate(args.config)
    if args.command == "plugins":
        from alkappa._plugins import GROUPS, available

        for group in GROUPS:
            print(f"{group}: {', '.join(available(group))}")
        return 0
    if args.command == "status":
        return _status(args)
    if args.command == "unlock":
        return _unlock(args.workdir)
    if args.command == "stop":
        return _stop(args.workdir, args.grace)
    if args.command == "oracle-calls":
        return _oracle_calls(args.directory)
    if args.command == "oracle-retry":
        return _oracle_retry(args.directory)
    if args.command == "anharmonicity":
        return _anharmonicity(args.trajectory, args.force_constants, args.json)
    if args.command == "gk":
        return _green_kubo(args)
    if args.command == "events":
        return _events(args)
    return 2


def _events(args: argparse.Namespace) -> int:

    from alkappa.events import detect_trajectory_events, event_rates
    from alkappa.io import atomic_path, read_trajectory

    if not Path(args.trajectory).is_file():
        print(f"alkappa: {args.trajectory} does not exist", file=sys.stderr)
        return 1
    try:
        det = detect_trajectory_events(
            read_trajectory(args.trajectory),
            threshold_fraction=args.threshold_fraction,
            min_duration=args.min_duration,
            frenkel_duration=args.frenkel_duration,
        )
    except (ValueError, KeyError, OSError) as exc:
        print(f"alkappa: {exc}", file=sys.stderr)
        return 1
    print(
        f"{args.trajectory}: {len(det.times)} frames, {det.duration / 1000:.2f} ps, "
        f"{det.n_atoms} atoms; site radius {det.radius:.2f} Å; "
        f"largest displacement {det.displacement.max():.2f} Å"
    )
    for key, r in event_rates(det).items():
        print(
            f"{key:<16} {r['count']:4d} events  {r['rate_per_ps']:7.2f} /ps "
            f"[{r['rate_low']:.2f}, {r['rate_high']:.2f}] (95%)"
        )
    if len(det.events):
        print(det.events.to_string(index=False, max_rows=20))
    if args.csv:
        with atomic_path(args.csv) as tmp:
            det.events.to_csv(tmp, index=False)
    return 0


def _green_kubo(args: argparse.Namespace) -> int:
    import warnings

    from alkappa.greenkubo import (
        plot_green_kubo,
        plot_kappa_convergence,
        run_green_kubo,
        write_green_kubo,
    )

    for path in [*args.trajectories, args.force_constants]:
        if path is not None and not Path(path).exists():
            print(f"alkappa: {path} does not exist", file=sys.stderr)
            return 1
    try:
        phonon = _gk_force_constants(args)
    except (ValueError, KeyError, OSError) as exc:
        print(f"alkappa: {exc}", file=sys.stderr)
        return 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            ds = run_green_kubo(
                args.trajectories,
                window_fs=args.window_fs,
                lowest_frequency=args.lowest_frequency,
                window_factor=args.window_factor,
                max_lag_fs=args.max_lag_fs,
                discard_fs=args.discard_fs,
                subtract_mean=args.subtract_mean,
            )
        except (ValueError, KeyError, OSError) as exc:
            print(f"alkappa: {exc}", file=sys.stderr)
            return 1
        if phonon is not None:
            try:
                ds = _gk_correction(ds, args.trajectories, phonon, args.discard_fs)
            except (ValueError, KeyError, OSError) as exc:
                if args.correction:
                    print(f"alkappa: finite-size correction: {exc}", file=sys.stderr)
                    return 1
                warnings.warn(f"no finite-size correction: {exc}", RuntimeWarning, stacklevel=1)
    for warning in caught:
        print(f"alkappa: warning: {warning.message}", file=sys.stderr)
    write_green_kubo(ds, args.output)
    width = max(len(s) for s in ds.attrs["sources"])
    for r, source in enumerate(ds.attrs["sources"]):
        cut = ds["cutoff_time"].values[r].diagonal()
        print(
            f"{source:<{width}}  T = {float(ds['temperature'][r]):7.1f} K  "
            f"kappa = {float(ds['kappa_run_scalar'][r]):8.3f} W/(m K)  "
            f"cutoff {', '.join(f'{c:.0f}' for c in cut)} fs  "
            f"window {float(ds['window_fs'][r]):.0f} fs"
        )
    print(
        f"kappa = {float(ds['kappa_scalar']):.3f} ± {float(ds['kappa_scalar_error']):.3f} "
        f"W/(m K) ({ds.attrs['n_runs']} run(s), T = {ds.attrs['temperature']:.1f} K, "
        f"relative error {ds.attrs['relative_error']:.0%}"
        f"{', per-run mean subtracted' if args.subtract_mean else ''}); "
        f"cepstral {float(ds['kappa_cepstral']):.3f} ± {float(ds['kappa_cepstral_error']):.3f}; "
        f"written to {args.output}"
    )
    if "kappa_corrected" in ds:
        print(
            f"kappa_ha = {float(ds['kappa_ha_scalar']):.3f} W/(m K) (MD lifetimes, "
            f"{ds.attrs['n_commensurate_qpoints']} commensurate q-points); finite-size "
            f"correction {float(ds['interpolation_correction']):+.3f} ± "
            f"{float(ds['interpolation_fit_stderr']):.3f}"
        )
        print(
            f"kappa_corrected = {float(ds['kappa_corrected']):.3f} ± "
            f"{float(ds['kappa_corrected_error']):.3f} W/(m K)"
        )
    if args.plot:
        plot_green_kubo(ds, args.plot)
    if args.convergence_plot:
        plot_kappa_convergence(ds, args.convergence_plot)
    return 0


def _gk_force_constants(args: argparse.Namespace) -> Any:
    """The phonopy object for the finite-size correction of ``alkappa gk``, or None.

    Cheap checks only (reading attributes, matching the cell, the q-point grid), so that bad
    input fails before the Green-Kubo analysis.
    """
    from alkappa.greenkubo import (
        check_interpolation_grid,
        commensurate_modes,
        phonopy_from_trajectory,
    )
    from alkappa.io import open_trajectory
    from alkappa.io.reference import vibes_reference_atoms

    if args.no_correction:
        return None
    first = args.trajectories[0]
    with open_trajectory(first) as ds:
        has_remapped = "force_constants_remapped" in ds
    if args.force_constants is None and not has_remapped:
        if args.correction:
            raise ValueError(
                f"{first}: no force constants for the finite-size correction (no "
                "'force_constants_remapped'; give --force-constants)"
            )
        return None
    from alkappa.io.trajectory import read_trajectory

    trajectory = read_trajectory(first)
    trajectory.attrs.setdefault("source", str(first))
    phonon = phonopy_from_trajectory(trajectory, args.force_constants)
    origin = args.force_constants or f"{first} (force_constants_remapped)"
    try:
        modes = commensurate_modes(phonon, vibes_reference_atoms(trajectory))
        check_interpolation_grid(modes.qpoints)
    except ValueError as exc:
        raise ValueError(f"{origin}: {exc}") from exc
    return phonon


def _gk_correction(ds: Any, trajectories: list[str], phonon: Any, discard_fs: float) -> Any:
    """``ds`` with the MD lifetimes' finite-size correction merged in."""
    from alkappa.greenkubo import run_finite_size_correction, run_mode_lifetimes

    lifetimes = run_mode_lifetimes(trajectories, phonon, discard_fs=discard_fs)
    correction = run_finite_size_correction(ds, lifetimes, phonon)
    merged = ds.merge(correction, combine_attrs="no_conflicts")
    merged.attrs.update(ds.attrs)
    merged.attrs["mode_lifetimes_temperature"] = float(lifetimes.attrs["temperature"])
    return merged


def _anharmonicity(trajectory: str, force_constants: str | None, json_path: str | None) -> int:

    from alkappa.io import write_json
    from alkappa.phonons import anharmonicity_from_trajectory

    for path in (trajectory, force_constants):
        if path is not None and not Path(path).exists():
            print(f"alkappa: {path} does not exist", file=sys.stderr)
            return 1
    try:
        score = anharmonicity_from_trajectory(trajectory, force_constants)
    except (ValueError, KeyError, OSError) as exc:
        print(f"alkappa: {exc}", file=sys.stderr)
        return 1
    print(f"{trajectory}: {score.n_frames} frames; harmonic forces from {score.harmonic_source}")
    rows = {"total": score.total, **score.per_species}
    width = max(len(k) for k in rows)
    for name, value in rows.items():
        print(f"sigma_A {name:<{width}}  {value:.4f}")
    if json_path:
        write_json(json_path, {"trajectory": trajectory, **score.to_dict()})
    return 0


def _time_left(status: Any, workdir: str, configfile: str, targets: list[str]) -> Any:
    """The time-left estimate of the campaign of ``configfile`` (a dry run in ``workdir``)."""
    import time

    from alkappa.campaign import (
        estimate_time_left,
        gk_runs_beyond_plan,
        iterations_beyond_plan,
        planned_jobs,
        run_cores,
    )
    from alkappa.config import load_config, material_settings

    config = load_config(configfile)
    caps = {
        m: material_settings(config, m)["convergence"]["max_iterations"]
        for m in config["materials"]
    }
    return estimate_time_left(
        status,
        planned_jobs(workdir, configfile, targets),
        cores=run_cores(workdir),
        now=time.time(),
        iterations_left=iterations_beyond_plan(status.results, caps),
        gk_runs_left=gk_runs_beyond_plan(status.results, _gk_budgets(config)),
    )


def _gk_budgets(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per material with a Green-Kubo stage: what :func:`gk_runs_beyond_plan` needs."""
    from alkappa.config import material_settings

    out = {}
    for m in config["materials"]:
        gk = material_settings(config, m)["greenkubo"]
        if not gk["enabled"]:
            continue
        cells = ["greenkubo"] + ["greenkubo_" + "x".join(map(str, c)) for c in gk["size_check"]]
        out[m] = {
            "runs": gk["runs"],
            "max_runs": gk["max_runs"] if gk["target_error"] is not None else gk["runs"],
            "temperatures": [f"{t:g}" for t in gk["temperatures"]],
            "directories": cells,
        }
    return out


def _status(args: argparse.Namespace) -> int:
    import yaml

    from alkappa.campaign import campaign_status, format_status

    try:
        status = campaign_status(args.results, args.workdir)
        if args.durations:
            means = {r: round(status.mean_seconds(r) or 0.0) for r in sorted(status.rule_seconds)}
            print(yaml.safe_dump(means, sort_keys=False), end="")
            return 0
        estimate = None
        if args.configfile:
            estimate = _time_left(status, args.workdir, args.configfile, args.target)
    except (ValueError, OSError) as exc:
        print(f"alkappa: {exc}", file=sys.stderr)
        return 1
    print(format_status(status, estimate))
    return 0


def _run_report(argv: list[str]) -> Any:
    """The status line of the run ``snakemake ARGV`` (None if its arguments or config do not
    say where its results go: Snakemake then reports the problem itself)."""
    import contextlib
    import io

    from alkappa.campaign import campaign_status, status_line
    from alkappa.config import load_config

    try:
        from snakemake.cli import get_argument_parser

        with contextlib.redirect_stderr(io.StringIO()):
            parsed = get_argument_parser().parse_args(argv)
        configfile = str(parsed.configfile[-1]) if parsed.configfile else "config/config.yaml"
        results = str(load_config(configfile)["results"])
    except (SystemExit, ValueError, OSError, ImportError):
        return None
    for item in parsed.config or []:
        if str(item).startswith("results="):
            results = str(item).split("=", 1)[1]
    targets = [str(t) for t in parsed.targets or []]

    def report() -> str:
        if not Path(results).is_dir():
            return "starting"
        status = campaign_status(results, ".")
        return status_line(status, _time_left(status, ".", configfile, targets))

    return report


def _unlock(workdir: str) -> int:
    from alkappa.campaign import remove_stale_lock

    try:
        removed = remove_stale_lock(workdir)
    except RuntimeError as exc:
        print(f"alkappa: {exc}", file=sys.stderr)
        return 1
    if removed:
        print(f"removed the stale Snakemake lock of {workdir} (no Snakemake runs there)")
    return 0


def _run(argv: list[str]) -> int:
    from alkappa.campaign import GRACE_SECONDS, run_snakemake

    seconds = {"--grace": GRACE_SECONDS, "--status-every": 600.0}
    while argv[:1] and argv[0] in seconds:
        try:
            seconds[argv[0]] = float(argv[1])
        except (IndexError, ValueError):
            print(f"alkappa run: {argv[0]} needs a number of seconds", file=sys.stderr)
            return 2
        argv = argv[2:]
    return run_snakemake(
        argv,
        grace=seconds["--grace"],
        report=_run_report(argv) if seconds["--status-every"] > 0 else None,
        report_every=seconds["--status-every"],
    )


def _stop(workdir: str, grace: float) -> int:
    from alkappa.campaign import stop_snakemake

    if not Path("/proc/self").is_dir():
        print("alkappa: cannot list processes here (no /proc): press Ctrl-C", file=sys.stderr)
        return 1
    pids = stop_snakemake(workdir, grace)
    if not pids:
        print(f"no Snakemake runs in {Path(workdir).resolve()}")
    else:
        print(f"stopped Snakemake (pid {', '.join(map(str, pids))}); no lock is left")
    return 0


def _oracle_retry(directory: str) -> int:

    from alkappa.labelling import RETRIED_DIR, remove_outputs_without, retry_failed

    root = Path(directory)
    if not (root / "oracle").is_dir():
        print(f"alkappa: {root} holds no oracle store (oracle/)", file=sys.stderr)
        return 1
    moved = retry_failed(root / "oracle")
    if not moved:
        print(f"{root}: no failed oracle calls recorded")
        return 0
    for record in moved[:5]:
        print(f"  {record.get('purpose', '?')}: {record.get('error', '')}")
    if len(moved) > 5:
        print(f"  ... and {len(moved) - 5} more")
    removed = remove_outputs_without(root, [r["key"] for r in moved if "key" in r])
    for path in removed:
        print(f"  removed {path} (made without them)")
    print(
        f"{len(moved)} failed oracle call(s) will be retried by the next run (records moved "
        f"to {root / 'oracle' / RETRIED_DIR}; {len(removed)} result file(s) made without them "
        "removed, so Snakemake reruns those jobs); rerun Snakemake"
    )
    return 0


def _oracle_calls(directory: str) -> int:
    from alkappa.al.cost import oracle_totals
    from alkappa.labelling import count_oracle_cost

    root = Path(directory)
    if not root.is_dir():
        print(f"alkappa: {root} is not a directory", file=sys.stderr)
        return 1
    counts = {k: cost.calls for k, cost in oracle_totals(root).items()}
    width = max((len(k) for k in counts), default=5)
    for purpose, n in counts.items():
        print(f"{purpose:<{width}}  {n}")
    print(f"{'total':<{width}}  {sum(counts.values())}")
    cost = count_oracle_cost(root / "oracle")
    if len(cost) > 1:  # several oracle levels (multi-fidelity): calls and seconds per level
        print("per fidelity (labelling calls, oracle seconds):")
        for fidelity, entry in sorted(cost.items()):
            print(f"{fidelity:<{width}}  {int(entry['calls'])}  {entry['seconds']:.0f} s")
    return 0


def _validate(path: str) -> int:
    import warnings

    from alkappa.config import ConfigError, ConfigWarning, load_config

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConfigWarning)
        try:
            config = load_config(path)
        except ConfigError as exc:
            print(f"alkappa: invalid config: {exc}", file=sys.stderr)
            return 1
    for warning in caught:
        if issubclass(warning.category, ConfigWarning):
            print(f"alkappa: warning: {warning.message}", file=sys.stderr)
    print(
        f"{path}: valid ({len(config['materials'])} material(s): {', '.join(config['materials'])})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
