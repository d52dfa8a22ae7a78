"""The AL loop's steps at the level of files: what each Snakemake rule calls.

Each ``*_step`` function reads its inputs, does one step and writes its outputs atomically;
the rule's adapter in :mod:`alkappa.steps` only translates the rule into a call.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from alkappa.io import read_dataset, read_json, read_trajectory, write_dataset, write_json
from alkappa.labelling import FAILED_KEYS, label_frames
from alkappa.oracles import OracleSpec
from alkappa.settings import (
    CalibrationSettings,
    ConvergenceSettings,
    EnsembleSettings,
    ExploreSettings,
    GateSettings,
    InitialSettings,
    RelaxSettings,
    SelectSettings,
    TestSettings,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from ase import Atoms
    from ase.calculators.calculator import Calculator

    from alkappa.al.gate import GatedFrame, GateRecord
    from alkappa.al.recalibration import CalibrationMap
    from alkappa.labelling import FailureRecord
    from alkappa.oracles import Oracle
    from alkappa.settings import SettingsDict


class StructureRecord(TypedDict, total=False):
    """``structure.json``: the relaxed supercell (:meth:`alkappa.structure.RelaxResult.record`'s
    keys, or the single point of an unrelaxed one) and its material."""

    material: str
    formula: str
    natoms: int
    oracle: str
    converged: bool | None
    steps: int
    oracle_calls: int
    seconds: float
    cpu_seconds: float
    energy: float
    max_force: float
    max_stress: float
    cell_before: list[list[float]]
    cell_after: list[list[float]]
    warning: str
    nearest_neighbour_distance: float


def _oracle(spec: OracleSpec) -> Oracle:
    from alkappa.oracles import get_oracle

    return get_oracle(spec)


def prepare_structure_step(
    settings: SettingsDict, out_structure: str | Path, out_record: str | Path
) -> None:
    """Build the supercell of the material and relax it with the oracle."""
    from alkappa.structure import (
        build_supercell,
        check_geometry,
        nearest_neighbour_distance,
        read_unit_cell,
        relax_structure,
    )

    unit = read_unit_cell(settings["structure"])
    supercell = build_supercell(unit, settings["supercell"])
    check_geometry(supercell)
    oracle = _oracle(OracleSpec.from_settings(settings))
    oracle.check(supercell)
    relax = RelaxSettings.from_settings(settings)
    record: StructureRecord = {
        "material": settings["name"],
        "formula": supercell.get_chemical_formula(),
        "natoms": len(supercell),
        "oracle": oracle.describe(),
    }
    if relax.enabled:
        result = relax_structure(
            supercell,
            oracle.make_calculator(),
            cell=relax.cell,
            keep_symmetry=relax.keep_symmetry,
            fmax=relax.fmax,
            max_steps=relax.max_steps,
            logfile="-",
        )
        atoms = result.atoms
        record.update(result.record())
        if not result.converged:
            record["warning"] = (
                f"relaxation did not reach fmax={relax.fmax} in {result.steps} steps"
            )
    else:
        atoms = oracle.label(supercell)
        record.update({"converged": None, "oracle_calls": 1, "steps": 0})
        record["seconds"] = atoms.info["oracle_seconds"]
        record["cpu_seconds"] = atoms.info["oracle_cpu_seconds"]
    atoms.info.update({"source": "relax", "fidelity": oracle.fidelity, "iteration": -1})
    record["nearest_neighbour_distance"] = nearest_neighbour_distance(atoms)
    write_dataset(out_structure, [atoms])
    write_json(out_record, record)


class Labeller:
    """Labels harmonic samples for one job and counts its distinct oracle calls per purpose
    (the force-constant frames shared by D_0 and the test set count once; results reused
    after a crash still count as calls)."""

    def __init__(self, settings: SettingsDict, store: str | Path) -> None:
        self.settings = settings
        self.store = store
        self.spec = OracleSpec.from_settings(settings)  # once per job
        self.oracle = _oracle(self.spec)
        self.keys: dict[str, set[str]] = {}
        self.failures: list[FailureRecord] = []

    def __call__(self, frames: list[Atoms], purpose: str, **provenance: Any) -> list[Atoms]:
        outcome = label_frames(
            frames,
            self.oracle,
            self.spec,
            self.store,
            purpose=purpose,
            provenance={"iteration": 0, **provenance},
        )
        made = self.keys.setdefault(purpose, set())
        made.update(f.info["oracle_key"] for f in outcome.frames)
        made.update(rec["key"] for rec in outcome.failures)
        self.failures.extend(f for f in outcome.failures if f not in self.failures)
        return outcome.frames

    def record(self, **extra: object) -> dict[str, object]:
        calls = {purpose: len(made) for purpose, made in self.keys.items()}
        # the keys let the cost accounting count a call shared by two jobs once
        keys = {purpose: sorted(made) for purpose, made in self.keys.items()}
        return {"oracle_calls": calls, "oracle_keys": keys, "failures": self.failures, **extra}


def relaxed_supercell(structure_path: str | Path) -> Atoms:
    """The relaxed supercell of ``structure_path``, without its calculator."""
    supercell = read_dataset(structure_path)[0]
    supercell.calc = None
    return supercell


def initial_data_step(
    settings: SettingsDict,
    structure_path: str | Path,
    store: str | Path,
    out_initial: str | Path,
    out_record: str | Path,
) -> None:
    """Label the initial dataset D_0: harmonic samples at ``initial.temperature``."""
    from alkappa.sampling import sample_structures

    supercell = relaxed_supercell(structure_path)
    init = InitialSettings.from_settings(settings)
    label = Labeller(settings, store)
    # the draws are kept next to the record, so a rerun after a crash labels the same bits
    initial = sample_structures(
        supercell,
        init,
        label,
        temperature=init.temperature,
        n_frames=init.n_frames,
        seed=init.seed,
        keep=Path(out_record).parent / "samples",
    )
    initial = label(initial, "initial")
    if len(initial) < 2:
        raise RuntimeError(
            f"only {len(initial)} initial frames could be labelled; see {out_record}"
        )
    write_dataset(out_initial, initial)
    write_json(out_record, label.record(n_initial=len(initial)))


def harmonic_test_set_step(
    settings: SettingsDict,
    structure_path: str | Path,
    store: str | Path,
    out_test: str | Path,
    out_record: str | Path,
) -> None:
    """Label the held-out harmonic test set (never trained on): ``test.n_frames`` harmonic
    samples at each exploration temperature, drawn like D_0 (same force constants, its own
    seeds). Not made when the test set comes from reference data (rule reference_split)."""
    from alkappa.sampling import sample_structures

    init = InitialSettings.from_settings(settings)
    held_out = TestSettings.from_settings(settings)
    temperatures = ExploreSettings.from_settings(settings).temperatures
    supercell = relaxed_supercell(structure_path)
    label = Labeller(settings, store)
    test: list[Atoms] = []
    for k, temperature in enumerate(temperatures):
        frames = sample_structures(
            supercell,
            init,
            label,
            temperature=temperature,
            n_frames=held_out.n_frames,
            seed=held_out.seed + 1000 * k,
            keep=Path(out_record).parent / "samples",
        )
        test.extend(label(frames, "test"))
    if not test:
        raise RuntimeError(f"no test frame could be labelled; see {out_record}")
    write_dataset(out_test, test)
    write_json(out_record, label.record(n_test=len(test)))


def train_member_step(
    settings: SettingsDict,
    dataset_path: str | Path,
    out_dir: str | Path,
    *,
    iteration: int,
    member: int,
    threads: int = 1,
    init_checkpoint: str | Path | None = None,
) -> None:
    """Train one ensemble member on its subset of the dataset."""
    from alkappa.al.training import member_seed, member_split
    from alkappa.models import get_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = read_dataset(dataset_path)
    ens = EnsembleSettings.from_settings(settings)
    seed = member_seed(ens.seed, iteration, member)
    train_idx, val_idx = member_split(
        frames,
        seed=seed,
        validation_fraction=ens.validation_fraction,
        # resampling makes members differ; a lone member (one-model uncertainty) trains on
        # every frame it is given
        bootstrap=ens.bootstrap and ens.size != 1,
    )
    write_dataset(out_dir / "train.extxyz", [frames[i] for i in train_idx])
    write_dataset(out_dir / "val.extxyz", [frames[i] for i in val_idx])
    species = sorted({symbol for frame in frames for symbol in frame.get_chemical_symbols()})
    model = get_model(settings["model"])
    # the trainer writes its own log; the job's log says where, and how it ended
    print(
        f"iteration {iteration}, member {member}: training on {len(train_idx)} frames "
        f"(validation {len(val_idx)}); the trainer's own log and files: {out_dir / 'work'}/",
        flush=True,
    )
    result = model.train(
        out_dir / "train.extxyz",
        out_dir / "val.extxyz",
        out_dir / "work",
        species=species,
        seed=seed % (2**31),
        init_checkpoint=Path(init_checkpoint) if init_checkpoint else None,
        threads=threads,
    )
    summary = ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in result.info.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    )
    print(f"trained: {summary}" if summary else "trained", flush=True)
    # the deployable file sits next to member.json; work/ keeps the training by-products
    final = out_dir / Path(result.model_path).name
    Path(result.model_path).replace(final)
    # companions (e.g. the compiled model) stay next to it
    for companion in result.companions:
        Path(companion).replace(out_dir / Path(companion).name)
    write_json(
        out_dir / "member.json",
        {
            "iteration": iteration,
            "member": member,
            "seed": seed,
            "model": settings["model"]["name"],
            "model_file": final.name,
            "train_indices": train_idx,
            "validation_indices": val_idx,
            "curve": str(result.curve_path),
            "checkpoint": str(result.checkpoint_path or ""),
            **result.info,
        },
    )


def load_members(
    settings: SettingsDict, model_paths: Sequence[str | Path], threads: int | None = None
) -> Calculator:
    """The ensemble calculator of the given member model files."""
    from alkappa.models.ensemble import load_ensemble

    return load_ensemble(list(model_paths), model=settings["model"], threads=threads)


def evaluate_step(
    settings: SettingsDict,
    model_paths: Sequence[str | Path],
    test_path: str | Path,
    out_metrics: str | Path,
    *,
    threads: int = 1,
) -> None:
    """Test-set errors and uncertainty statistics of one iteration's ensemble."""
    from alkappa.al.metrics import evaluate_ensemble

    test = read_dataset(test_path)
    start = time.perf_counter()
    metrics = evaluate_ensemble(test, load_members(settings, model_paths, threads), detailed=True)
    metrics["seconds"] = time.perf_counter() - start
    write_json(out_metrics, metrics)


def explore_step(
    settings: SettingsDict,
    model_paths: Sequence[str | Path],
    structure_path: str | Path,
    record_path: str | Path,
    out_trajectory: str | Path,
    *,
    temperature: float,
    iteration: int,
    threads: int = 1,
) -> None:
    """Exploration MD at one temperature with one iteration's ensemble."""
    from alkappa.al.explore import run_exploration
    from alkappa.al.training import member_seed

    atoms = read_dataset(structure_path)[0]
    atoms.calc = None
    nn = float(read_json(record_path)["nearest_neighbour_distance"])
    explore = ExploreSettings.from_settings(settings)
    explore = dataclasses.replace(
        explore, seed=member_seed(explore.seed, iteration, int(temperature))
    )
    result = run_exploration(
        atoms,
        load_members(settings, model_paths, threads),
        Path(out_trajectory),
        temperature=temperature,
        settings=explore.to_dict(),
        nn_distance=nn,
        attrs={"iteration": iteration, "material": settings["name"]},
    )
    if result.blew_up:
        print(
            f"exploration at {temperature:g} K stopped after {result.steps_done} steps: "
            f"{result.reason}"
        )


SELECTION_FIELDS = (
    "trajectory",
    "frame",
    "time",
    "temperature",
    "U",
    "z",
    "P_U",
    "P_E",
    "P",
    "draw",
    "accepted",
    "reason",
)


def select_step(
    settings: SettingsDict,
    trajectory_paths: Sequence[str | Path],
    metrics_path: str | Path,
    out_selection: str | Path,
    out_candidates: str | Path,
    *,
    iteration: int,
) -> None:
    """Pick the frames to label from this iteration's exploration trajectories."""
    from alkappa.al.selection import Candidate, select_frames
    from alkappa.io import atomic_path

    sel = SelectSettings.from_settings(settings)
    # the rule passes the calibration section only when the selection uses it
    cal = CalibrationSettings.from_settings(settings) if "calibration" in settings else None
    stat = sel.statistic
    metrics = read_json(metrics_path)
    unc = metrics["uncertainty"][stat]
    calibrate = _selection_calibration(cal, metrics, metrics_path)
    test_values = calibrate(np.asarray(unc["per_frame"], dtype=float))
    candidates: list[Candidate] = []
    trajectories = {}
    for path in trajectory_paths:
        ds = read_trajectory(path)
        name = Path(path).stem
        trajectories[name] = (ds, str(path))
        values = ds[f"uncertainty_{stat}"].values
        # uncertainty-biased MD logs its frames' viability against the thermal range
        viability = ds["bias_viability"].values if "bias_viability" in ds else None
        # the first frame is the ideal lattice at t=0: nothing to learn there
        for k in range(1, ds.sizes["time"]):
            candidates.append(
                Candidate(
                    trajectory=name,
                    frame=k,
                    time=float(ds.time.values[k]),
                    temperature=float(ds.attrs["temperature_target"]),
                    uncertainty=float(calibrate(values[k])),
                    energy=float(ds.energy_potential.values[k]),
                    viability=None if viability is None else float(viability[k]),
                )
            )
    from ase import Atoms

    def frame(name: str, k: int) -> Atoms:
        ds = trajectories[name][0]
        return Atoms(
            symbols=list(ds.attrs["symbols"]),
            positions=ds.positions.values[k],
            cell=ds.cell.values[k],
            pbc=True,
        )

    features: Callable[[Candidate], np.ndarray] | None = None
    fields = SELECTION_FIELDS
    if sel.diversity == "farthest_point":
        from alkappa.al.diversity import pair_distance_descriptor

        species = sorted({s for ds, _ in trajectories.values() for s in ds.attrs["symbols"]})

        def describe(c: Candidate) -> np.ndarray:
            return pair_distance_descriptor(
                frame(c.trajectory, c.frame),
                cutoff=sel.descriptor_cutoff,
                bins=sel.descriptor_bins,
                width=sel.descriptor_width,
                species=species,
            )

        features = describe
        fields = (*SELECTION_FIELDS, "descriptor_distance")
    records = select_frames(
        candidates,
        test_mean=float(np.mean(test_values)),
        test_std=float(np.std(test_values)),
        settings=dataclasses.replace(sel, seed=sel.seed + 7919 * iteration),
        calibration=cal,
        features=features,
    )
    with atomic_path(out_selection) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for rec in records:
            writer.writerow({k: rec[k] for k in fields})

    chosen = []
    for rec in sorted(
        (r for r in records if r["accepted"]), key=lambda r: (r["trajectory"], r["frame"])
    ):
        path = trajectories[rec["trajectory"]][1]
        k = rec["frame"]
        atoms = frame(rec["trajectory"], k)
        atoms.info.update(
            {
                "source": "al",
                "iteration": iteration,
                "trajectory": path,
                "time": rec["time"],
                "temperature": rec["temperature"],
                "frame_index": k,
                "uncertainty": rec["U"],
            }
        )
        chosen.append(atoms)
    write_dataset(out_candidates, chosen)


def _selection_calibration(
    cal: CalibrationSettings | None, metrics: Mapping[str, Any], metrics_path: str | Path
) -> CalibrationMap:
    """The map applied to U before selecting: the identity unless ``calibration.select_on`` is
    ``calibrated``, else the ``calibration.method`` map fitted in ``metrics``."""
    from alkappa.al.recalibration import CalibrationMap

    if cal is None or cal.select_on != "calibrated":
        return CalibrationMap("identity")
    fitted = (metrics.get("recalibration") or {}).get(cal.method)
    if fitted is None:
        problem = (metrics.get("recalibration") or {}).get("error", "no recalibration in it")
        raise ValueError(
            f"calibration.select_on: calibrated needs the {cal.method} map of {metrics_path} "
            f"({problem}); rerun its evaluate job"
        )
    return CalibrationMap.from_dict(fitted["map"])


def count_selected(selection_path: str | Path) -> int:
    """How many frames a selection file accepted."""
    with open(selection_path, newline="") as fh:
        return sum(row["accepted"] == "True" for row in csv.DictReader(fh))


def label_step(
    settings: SettingsDict,
    candidates_path: str | Path,
    index: int,
    store: str | Path,
    out_frame: str | Path,
) -> None:
    """Label one selected frame; a failure is written as an unlabelled frame with its error.

    With ``multifidelity.al`` enabled the frame goes to
    :func:`alkappa.multifidelity.steps.mf_label_step` (cheap level, and the high level
    for the most uncertain frames).
    """
    from alkappa.settings import multifidelity_al

    if multifidelity_al(settings):
        from alkappa.multifidelity.steps import mf_label_step

        mf_label_step(settings, candidates_path, index, store, out_frame)
        return
    frame = read_dataset(candidates_path)[index]
    spec = OracleSpec.from_settings(settings)
    outcome = label_frames([frame], _oracle(spec), spec, store, purpose="al", progress=False)
    if outcome.frames:
        out = outcome.frames[0]
    else:
        out = frame.copy()
        out.info["oracle_error"] = outcome.failures[0]["error"]
        out.info[FAILED_KEYS] = outcome.failures[0]["key"]  # for `alkappa oracle-retry`
        print(f"oracle failed on frame {index}: {outcome.failures[0]['error']}")
    out.info["oracle_reused"] = bool(outcome.reused)
    write_dataset(out_frame, [out])


def gate_step(settings: SettingsDict, structure_path: str | Path, out_gate: str | Path) -> None:
    """The physical gate's limits (:mod:`alkappa.al.gate`) from the relaxed structure."""
    from alkappa.al.gate import gate_limits
    from alkappa.io.dataset import labels

    gate = GateSettings.from_settings(settings)
    temperatures = ExploreSettings.from_settings(settings).temperatures
    relaxed = read_dataset(structure_path)[0]
    record = gate_limits(
        gate, float(labels(relaxed)["energy"]) / len(relaxed), temperatures, len(relaxed)
    )
    record["fidelity"] = relaxed.info.get("fidelity")
    write_json(out_gate, record)


def merge_step(
    dataset_path: str | Path,
    label_paths: Sequence[str | Path],
    out_dataset: str | Path,
    out_record: str | Path,
    *,
    iteration: int,
    gate_path: str | Path | None = None,
) -> None:
    """D_{i+1} = D_i + the frames labelled in iteration i; failed frames are listed, not added.

    A label file holds one frame, or (multi-fidelity AL) the same structure at several levels.
    With ``gate_path`` (the record of :func:`gate_step`) the added frames far above the thermal
    range get a smaller energy/stress weight (:func:`alkappa.al.gate.apply_gate`); the record
    lists them under ``gated``.
    """
    if isinstance(label_paths, (str, Path)):  # a checkpoint placeholder, never a label list
        raise TypeError(
            f"merge got one path ({label_paths}) instead of the list of label files: "
            "Snakemake did not re-evaluate the convergence checkpoint of the iteration before"
        )
    frames = read_dataset(dataset_path)
    added, sources, failed, calls = [], [], [], 0
    for path in label_paths:
        for frame in read_dataset(path):
            calls += 1
            if "oracle_error" in frame.info:
                failed.append({"file": str(path), "error": frame.info["oracle_error"]})
            else:
                added.append(frame)
                sources.append(str(path))
    gate: dict[str, GateRecord | list[GatedFrame]] = {}
    if gate_path:
        from alkappa.al.gate import apply_gate

        limits = read_json(gate_path)
        gated = apply_gate(added, limits)
        for entry in gated:
            entry["file"] = sources[entry.pop("index")]
        gate = {"gate": limits, "gated": gated}
        if gated:
            print(
                f"gate: {len(gated)} of {len(added)} new frames lie above "
                f"{limits['multiple']:g} x (3/2) k_B T; their energy and stress weigh "
                f"{limits['weight']:g}"
            )
    by_fidelity: dict[str, int] = {}
    for frame in added:
        key = str(frame.info.get("fidelity", "reference"))
        by_fidelity[key] = by_fidelity.get(key, 0) + 1
    write_dataset(out_dataset, frames + added)
    write_json(
        out_record,
        {
            "iteration": iteration,
            "size_before": len(frames),
            "added": len(added),
            "added_by_fidelity": by_fidelity,
            "failed": failed,
            "size_after": len(frames) + len(added),
            "oracle_calls": calls,
            **gate,
        },
    )


def decide_step(
    settings: SettingsDict,
    iteration: int,
    selection_path: str | Path,
    metrics_paths: Sequence[str | Path],
    out_decision: str | Path,
) -> None:
    """Write the convergence decision of iteration ``iteration``."""
    import xarray as xr

    from alkappa.al.convergence import decide

    stat = SelectSettings.from_settings(settings).statistic
    convergence = ConvergenceSettings.from_settings(settings)
    history = [read_json(p)["uncertainty"][stat]["mean"] for p in metrics_paths]
    with open(selection_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    uncertain = float(np.mean([float(r["P_U"]) > 0.5 for r in rows])) if rows else 0.0
    n_selected = sum(r["accepted"] == "True" for r in rows)
    # the exploration trajectories are the select step's inputs, so they exist; they are not
    # inputs of this checkpoint, which would rerun every decision of existing campaigns
    explored = sorted((Path(selection_path).parent / "explore").glob("T*.nc"))
    blowups = 0
    for path in explored:  # the attributes only, not the frames
        with xr.open_dataset(path) as ds:
            blowups += int(ds.attrs.get("blew_up", 0))
    decision = decide(
        iteration,
        uncertain,
        n_selected,
        history,
        convergence,
        blowups=blowups,
        frames_explored=len(rows),
    )
    # the section as the config gives it, in its key order: decision.json stays byte for byte
    decision["settings"] = dict(settings["convergence"])
    decision["frames_explored"] = len(rows)
    write_json(out_decision, decision)
    print(decision["reason"])


def member_model_files(member_infos: Sequence[str | Path]) -> list[Path]:
    """The model files of trained members, from their ``member.json`` records."""
    return [Path(p).parent / read_json(p)["model_file"] for p in member_infos]


def warm_start_checkpoint(previous: str | Path | Sequence[str | Path]) -> Path | None:
    """The model a member warm-starts from: the packaged model of the same member in the
    previous iteration, from its ``member.json`` (``previous``); None where there is none
    (``previous`` empty: the first iteration, a baseline, or ``ensemble.warm_start`` off)."""
    if not previous:
        return None
    records = [previous] if isinstance(previous, str | Path) else list(previous)
    return member_model_files(records[:1])[0]


def summary_step(
    settings: SettingsDict,
    *,
    relax_record: str | Path,
    initial_record: str | Path,
    test_record: str | Path | None = None,
    initial_dataset: str | Path,
    metrics: Sequence[str | Path],
    selections: Sequence[str | Path],
    decisions: Sequence[str | Path],
    merges: Sequence[str | Path],
    trajectories: Sequence[str | Path],
    members: Sequence[str | Path],
    out_summary: str | Path,
    out_curve: str | Path,
    out_calibration: str | Path,
    out_ensemble: str | Path,
) -> None:
    """summary.csv, the learning-curve and calibration figures, the exported final ensemble."""
    from alkappa.al.calibration import plot_calibration
    from alkappa.al.summary import (
        IterationPaths,
        export_ensemble,
        plot_learning_curve,
        summary_rows,
        write_summary,
    )

    iterations: list[IterationPaths] = []
    for i, (m, s, d) in enumerate(zip(metrics, selections, decisions, strict=True)):
        iterations.append(
            {
                "metrics": m,
                "selection": s,
                "decision": d,
                "merge": merges[i] if i < len(merges) else None,
                "trajectories": [t for t in trajectories if f"/iter_{i}/" in str(t)],
                "initial_size": len(read_dataset(initial_dataset)),
            }
        )
    rows = summary_rows(
        SelectSettings.from_settings(settings),
        relax_record,
        initial_record,
        iterations,
        test_record,
    )
    write_summary(rows, out_summary)
    plot_learning_curve(rows, out_curve, title=f"{settings['name']}: active learning")
    # the final ensemble's per-atom force uncertainty against its actual error on the test set
    final = read_json(metrics[-1])
    plot_calibration(
        final["calibration"]["atom"],
        out_calibration,
        groups={
            f"{t} K": levels["atom"]
            for t, levels in final.get("calibration_by_temperature", {}).items()
        },
    )
    export_ensemble(
        settings, [Path(p).parent for p in members], decisions[-1], Path(out_ensemble).parent
    )
