"""The pipeline's phonon and conductivity steps, one function per Snakemake rule.

Each reads files, calls the library (:mod:`alkappa.phonons`) and writes its outputs; the
adapters of :mod:`alkappa.steps` only translate the Snakemake object into one of these calls. The
"method" of a step is ``mlip`` (the campaign's final ensemble, ``results/<m>/model``) or
``oracle`` (single points through the content-addressed oracle store, so they are counted by
``alkappa oracle-calls`` and never paid for twice).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alkappa.io import read_json, read_structure, write_json
from alkappa.io.dataset import labels
from alkappa.oracles.spec import OracleSpec
from alkappa.settings import ConductivitySettings, PhononSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from ase import Atoms
    from ase.calculators.calculator import Calculator

    from alkappa.settings import SettingsDict

METHODS = ("mlip", "oracle")


def force_source(
    oracle: OracleSpec,
    method: str,
    *,
    model_dir: str | Path | None = None,
    store: str | Path | None = None,
    purpose: str = "phonons",
) -> Calculator | Callable[[list[Atoms]], list[np.ndarray]]:
    """What computes the forces of displaced supercells: the final MLIP or the oracle.

    The oracle path labels with ``oracle`` (the job's spec) through
    :func:`alkappa.labelling.label_frames` (``purpose`` is recorded); a failed single point is
    an error here, since force constants need every one.
    """
    if method == "mlip":
        from alkappa import load_model

        if model_dir is None:
            raise ValueError("the mlip method needs model_dir")
        return load_model(model_dir)
    if method != "oracle":
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if store is None:
        raise ValueError("the oracle method needs the oracle store directory")
    from alkappa.labelling import label_frames
    from alkappa.oracles import get_oracle

    labeller = get_oracle(oracle)

    def label(frames: list[Atoms]) -> list[np.ndarray]:
        outcome = label_frames(frames, labeller, oracle, store, purpose=purpose)
        if outcome.failures:
            raise RuntimeError(
                f"the oracle failed on {len(outcome.failures)} of {len(frames)} displaced "
                f"supercells ({outcome.failures[0].get('error')}); force constants need all. "
                f"Once the cause is fixed: alkappa oracle-retry {Path(store).parent} and "
                "rerun (the failures are recorded and otherwise skipped)"
            )
        print(f"oracle: {outcome.oracle_calls} calls made, {outcome.reused} reused from the store")
        return [np.asarray(labels(f)["forces"]) for f in outcome.frames]

    return label


def phonons_step(
    settings: SettingsDict,
    structure_path: str | Path,
    out_dir: str | Path,
    *,
    method: str,
    model_dir: str | Path | None = None,
    store: str | Path | None = None,
) -> None:
    """Harmonic phonons of the relaxed supercell: ``phonopy_params.yaml``, ``phonons.nc``,
    ``phonons.json`` in ``out_dir``. Imaginary modes are a warning in the log and the JSON."""
    phonons = PhononSettings.from_settings(settings)
    oracle = OracleSpec.from_settings(settings)
    forces = force_source(oracle, method, model_dir=model_dir, store=store, purpose="phonons")
    write_harmonic_phonons(phonons, read_structure(structure_path), forces, out_dir, method=method)


def write_harmonic_phonons(
    phonons: PhononSettings,
    structure: Atoms,
    forces: Any,
    out_dir: str | Path,
    *,
    method: str,
) -> None:
    """Harmonic phonons of ``structure`` (the simulation cell itself) per the ``phonons``
    settings, written to ``out_dir`` (:func:`~alkappa.phonons.write_harmonic`); warnings,
    e.g. imaginary modes, go to the log. ``forces``: see :func:`~alkappa.phonons.run_harmonic`.
    """
    from alkappa.phonons import run_harmonic, write_harmonic

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_harmonic(
            structure,
            forces,
            displacement=phonons.displacement,
            mesh=list(phonons.mesh),
            band_npoints=phonons.band_npoints,
            imaginary_threshold=phonons.imaginary_threshold,
        )
    for w in caught:
        print(f"WARNING: {w.message}")
    result.dataset.attrs["method"] = method
    write_harmonic(result, out_dir)
    fmax = result.summary()["frequency_max"]
    print(f"{method}: {result.n_supercells} supercells, highest frequency {fmax:.2f} THz")


def phonon_comparison_step(
    settings: SettingsDict,
    phonon_dirs: Mapping[str, str | Path],
    out_json: str | Path,
    out_figure: str | Path,
) -> None:
    """Band structure + DOS figure of every method, and (with the oracle) the frequency RMSE
    of the MLIP against the oracle on the q-mesh."""
    from alkappa.phonons import compare_phonons, load_phonopy, plot_phonons

    phonons = PhononSettings.from_settings(settings)
    dirs = {label: Path(d) for label, d in phonon_dirs.items()}
    record: dict[str, Any] = {label: read_json(d / "phonons.json") for label, d in dirs.items()}
    if {"mlip", "oracle"} <= set(dirs):
        record["mlip_vs_oracle"] = compare_phonons(
            load_phonopy(dirs["oracle"] / "phonopy_params.yaml"),
            load_phonopy(dirs["mlip"] / "phonopy_params.yaml"),
            mesh=list(phonons.mesh),
        )
    write_json(out_json, record)
    plot_phonons(
        {_label(k): d / "phonons.nc" for k, d in dirs.items()},
        out_figure,
        title=f"{settings['name']}: harmonic phonons",
    )


def oracle_conductivity_wanted(settings: SettingsDict) -> bool:
    """Whether the oracle's own fc3 is computed: ``conductivity.oracle`` true, or ``auto`` and
    at most ``oracle_max_supercells`` displaced supercells.

    The count depends only on the symmetry of the supercell, which the relaxation keeps, so it
    is taken on the supercell built from the config: the workflow can decide before the
    relaxation has run.
    """
    from alkappa.phonons import count_fc3_supercells
    from alkappa.structure import build_supercell, read_unit_cell

    kappa = ConductivitySettings.from_settings(settings)
    if kappa.oracle != "auto":
        return bool(kappa.oracle)
    supercell = build_supercell(read_unit_cell(settings["structure"]), settings["supercell"])
    count = count_fc3_supercells(supercell, **kappa.fc3_options().to_dict())
    return count <= kappa.oracle_max_supercells


def fc3_step(
    settings: SettingsDict,
    structure_path: str | Path,
    out_dir: str | Path,
    *,
    method: str,
    model_dir: str | Path | None = None,
    store: str | Path | None = None,
) -> None:
    """fc2 and fc3 (``fc2.hdf5``, ``fc3.hdf5``, ``phono3py_params.yaml``, ``fc3.json``)."""
    from alkappa.phonons import run_fc3, write_fc3

    kappa = ConductivitySettings.from_settings(settings)
    oracle = OracleSpec.from_settings(settings)
    forces = force_source(oracle, method, model_dir=model_dir, store=store, purpose="fc3")
    result = run_fc3(read_structure(structure_path), forces, **kappa.fc3_options().to_dict())
    write_fc3(result, out_dir)
    print(f"{method}: fc3 from {result.n_supercells} supercells ({result.method})")


def iteration_kappa_step(
    settings: SettingsDict,
    structure_path: str | Path,
    member_infos: Sequence[str | Path],
    out_netcdf: str | Path,
    *,
    threads: int | None = None,
) -> None:
    """fc2/fc3 and kappa RTA (quantum, at the temperature closest to 300 K, on the configured
    mesh) with the ensemble of one AL iteration (``member_infos``: its members'
    ``member.json`` records), for the kappa curve along the loop
    (``conductivity.track_iterations``)."""
    from alkappa.models.ensemble import load_ensemble
    from alkappa.phonons import run_fc3, run_phono3py, write_netcdf

    kappa = ConductivitySettings.from_settings(settings)
    temperature = min(kappa.temperatures, key=lambda t: abs(t - 300.0))
    models = [Path(p).parent / read_json(p)["model_file"] for p in member_infos]
    calculator = load_ensemble(models, model=settings["model"], threads=threads)
    result = run_fc3(read_structure(structure_path), calculator, **kappa.fc3_options().to_dict())
    ds = run_phono3py(
        result.phono3py,
        mesh=list(kappa.mesh),
        temperatures=[temperature],
        sigma=kappa.sigma,
        isotopes=kappa.isotopes,
    )
    write_netcdf(ds, out_netcdf)
    _print_kappa_300(ds)


def kappa_curve_step(
    oracle_kappa: str | Path,
    iteration_kappas: Mapping[str, Sequence[str | Path]],
    out_table: str | Path,
    out_figure: str | Path,
    *,
    title: str = "",
) -> None:
    """kappa of each iteration's ensemble over the oracle's (RTA, quantum, same mesh, the
    temperature closest to 300 K), per kind of loop (``al``, ``random``), as a table
    (``kind, iteration, temperature_K, kappa_W_per_mK, kappa_oracle_W_per_mK, ratio``) and a
    figure."""
    import csv

    from alkappa.io import atomic_path
    from alkappa.phonons import read_netcdf
    from alkappa.plotting import pyplot, save_figure

    oracle = read_netcdf(oracle_kappa)
    rows = []
    for kind, paths in iteration_kappas.items():
        for it, path in enumerate(paths):
            ds = read_netcdf(path)
            t = float(ds["temperature"].values[0])
            k = float(ds["kappa_rta_average"].sel(temperature=t).item())
            k_ref = _kappa_at(oracle, t)
            ratio = k / k_ref if k_ref else float("nan")
            rows.append([kind, it, t, k, k_ref, ratio])
    with atomic_path(out_table) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["kind", "iteration", "temperature_K", "kappa_W_per_mK", "kappa_oracle_W_per_mK",
             "ratio"]
        )  # fmt: skip
        writer.writerows(rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for kind in iteration_kappas:
        mine = [r for r in rows if r[0] == kind]
        ax.plot([r[1] for r in mine], [r[5] for r in mine], "o-", label=kind)
    ax.axhline(1.0, color="0.5", lw=0.8)
    ax.axhspan(0.9, 1.1, color="0.9", zorder=0)
    ax.set_xlabel("iteration")
    ax.set_ylabel(r"$\kappa_\mathrm{MLIP} / \kappa_\mathrm{oracle}$ (RTA)")
    ax.legend(frameon=False, fontsize=8)
    if rows:
        ax.set_title(f"{title} {rows[0][2]:g} K".strip())
    fig.tight_layout()
    save_figure(fig, out_figure)
    for r in rows:
        print(f"{r[0]} iteration {r[1]}: kappa {r[3]:.3g} W/mK, oracle {r[4]:.3g}, "
              f"ratio {r[5]:.3f}")  # fmt: skip


def kappa_step(
    settings: SettingsDict,
    fc3_dir: str | Path,
    out_netcdf: str | Path,
) -> None:
    """kappa (RTA, optionally LBTE) and per-mode lifetimes on the configured mesh, as netCDF;
    phono3py's own ``kappa-m*.hdf5`` next to it (with classical statistics its temperatures
    include ``classical_temperature``). ``conductivity.statistics`` adds the classical
    values (``kappa_rta_classical``, ``tau_classical``, ...; see
    :func:`~alkappa.phonons.run_phono3py`) next to the quantum ones. With
    ``mesh_convergence`` also ``mesh_convergence.json`` (quantum kappa RTA per mesh and
    temperature, change from the previous mesh; NaN where undefined)."""
    from alkappa.phonons import load_fc3, run_mesh_convergence, run_phono3py, write_netcdf

    kappa = ConductivitySettings.from_settings(settings)
    out = Path(out_netcdf)
    ph3 = load_fc3(fc3_dir)
    ds = run_phono3py(
        ph3,
        mesh=list(kappa.mesh),
        temperatures=list(kappa.temperatures),
        lbte=kappa.lbte,
        sigma=kappa.sigma,
        hdf5_directory=out.parent,
        statistics=list(kappa.statistics),
        classical_temperature=kappa.classical_temperature,
        isotopes=kappa.isotopes,
    )
    write_netcdf(ds, out)
    _print_kappa_300(ds)
    if kappa.mesh_convergence:
        conv = run_mesh_convergence(
            ph3,
            meshes=[list(m) for m in kappa.mesh_convergence],
            temperatures=list(kappa.temperatures),
            lbte=False,
            sigma=kappa.sigma,
            isotopes=kappa.isotopes,
        )
        write_json(
            out.parent / "mesh_convergence.json",
            {
                "meshes": conv.attrs["meshes"],
                "n_qpoints": [int(n) for n in conv["n_qpoints"].values],
                "temperatures_K": [float(t) for t in conv["temperature"].values],
                "kappa_rta_W_per_mK": _finite_lists(conv["kappa_rta_average"].values),
                "relative_change_rta": _finite_lists(conv["relative_change_rta"].values),
            },
        )
        for mesh, kappas in zip(
            conv.attrs["meshes"], conv["kappa_rta_average"].values, strict=True
        ):
            print(f"mesh {mesh}: kappa RTA {', '.join(f'{k:.3f}' for k in kappas)} W/mK")


def kappa_commensurate_step(
    settings: SettingsDict,
    fc3_dir: str | Path,
    out_netcdf: str | Path,
) -> None:
    """kappa RTA with quantum and classical statistics on exactly the q-points commensurate
    with the MD supercell (the fc3 supercell, built from the material's ``supercell``
    setting), to compare with Green-Kubo and MD lifetimes in the same cell.

    Smearing: ``conductivity.commensurate_sigma`` (``null``: tetrahedron method). On such a
    coarse grid a Gaussian narrower than the spacing of the frequencies finds almost no
    energy-conserving triplets and kappa diverges; see :func:`~alkappa.phonons.commensurate_mesh`.
    """
    from alkappa.phonons import load_fc3, run_phono3py, write_netcdf

    kappa = ConductivitySettings.from_settings(settings)
    ds = run_phono3py(
        load_fc3(fc3_dir),
        mesh="commensurate",
        temperatures=list(kappa.temperatures),
        sigma=kappa.commensurate_sigma,
        statistics=("quantum", "classical"),
        classical_temperature=kappa.classical_temperature,
    )
    write_netcdf(ds, out_netcdf)
    print(
        f"commensurate grid: {ds.attrs['n_grid_points']} q-points, {ds.sizes['qpoint']} irreducible"
    )
    _print_kappa_300(ds)


def _print_kappa_300(ds: Any) -> None:
    for suffix in ("", "_classical"):
        k300 = _kappa_at(ds, 300.0, f"kappa_rta{suffix}_average")
        if k300 is not None:
            label = "classical" if suffix else "quantum"
            print(f"kappa(300 K) RTA {label} = {k300:.3f} W/mK")


def _finite_lists(values: np.ndarray) -> list[list[float | None]]:
    return [[float(x) if np.isfinite(x) else None for x in row] for row in values]


def _kappa_at(ds: Any, temperature: float, name: str = "kappa_rta_average") -> float | None:
    if name not in ds:
        return None
    temps = np.asarray(ds["temperature"].values, dtype=float)
    if temps.size == 0:
        return None
    k = int(np.argmin(np.abs(temps - temperature)))
    if abs(temps[k] - temperature) > 1e-6:
        return None
    return float(ds[name].values[k])


def conductivity_comparison_step(
    settings: SettingsDict,
    kappa_files: Mapping[str, str | Path],
    out_json: str | Path,
    out_kappa_figure: str | Path,
    out_lifetime_figure: str | Path,
) -> None:
    """kappa(T) and lifetime figures of every method; with the oracle, the comparison numbers
    (kappa per temperature, median lifetime ratio) in ``out_json``."""
    from alkappa.phonons import compare_conductivity, plot_kappa, plot_lifetimes, read_netcdf

    data = {label: read_netcdf(path) for label, path in kappa_files.items()}
    record: dict[str, Any] = {
        label: {
            "temperatures_K": [float(t) for t in ds["temperature"].values],
            "kappa_rta_W_per_mK": [float(k) for k in ds["kappa_rta_average"].values],
            "kappa_lbte_W_per_mK": [float(k) for k in ds["kappa_lbte_average"].values]
            if "kappa_lbte_average" in ds
            else None,
            "kappa_rta_300K": _kappa_at(ds, 300.0),
        }
        for label, ds in data.items()
    }
    if {"mlip", "oracle"} <= set(data):
        record["mlip_vs_oracle"] = compare_conductivity(data["oracle"], data["mlip"])
    write_json(out_json, record)
    labelled = {_label(k): ds for k, ds in data.items()}
    title = settings["name"]
    plot_kappa(labelled, out_kappa_figure, title=f"{title}: lattice thermal conductivity")
    plot_lifetimes(labelled, out_lifetime_figure, temperature=300.0, title=f"{title}: lifetimes")


def anharmonicity_step(
    settings: SettingsDict,
    trajectories: Mapping[str, str | Path],
    force_constants: str | Path,
    out_json: str | Path,
    out_figure: str | Path,
) -> None:
    """sigma^A (total, per species, per frame) of each trajectory, with harmonic forces from
    ``force_constants`` (a ``phonopy_params.yaml``)."""
    from alkappa.phonons import anharmonicity_from_trajectory, plot_anharmonicity

    scores = {
        label: anharmonicity_from_trajectory(path, force_constants)
        for label, path in trajectories.items()
    }
    write_json(
        out_json,
        {
            "force_constants": str(force_constants),
            **{label: s.to_dict() for label, s in scores.items()},
        },
    )
    for label, s in scores.items():
        per = ", ".join(f"{k} {v:.3f}" for k, v in s.to_dict()["sigma_A_per_species"].items())
        print(f"{label}: sigma_A = {s.total:.3f} ({per})")
    plot_anharmonicity(scores, out_figure, title=f"{settings['name']}: anharmonicity")


def _label(key: str) -> str:
    return {"mlip": "MLIP", "oracle": "oracle"}.get(key, key)


def trajectory_labels(paths: Sequence[str | Path]) -> dict[str, str]:
    """Legend labels for trajectories: ``reference/md_T300.nc`` -> ``reference 300 K``,
    ``al/iter_3/explore/T600.nc`` -> ``MLIP 600 K``."""
    out = {}
    for p in paths:
        path = Path(p)
        temperature = path.stem.split("T")[-1]
        kind = "reference" if path.parent.name == "reference" else "MLIP"
        out[f"{kind} {temperature} K"] = str(path)
    return out
