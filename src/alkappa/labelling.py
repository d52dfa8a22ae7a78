"""Labelling structures with the oracle, with a content-addressed record of every call.

Each oracle call is stored as one file under the material's oracle directory, named by a hash
of the structure and the oracle settings. A rerun after a crash (or after Snakemake decided to
rerun a job) finds the stored result and does not call the oracle again; the stored files are
also the ledger from which oracle calls are counted. Failures are stored too, with the error,
so a frame on which the oracle failed is skipped visibly and not retried forever; after the
cause is fixed, :func:`retry_failed` (``alkappa oracle-retry``) makes the next run retry them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ase.io
import numpy as np
from tqdm import tqdm

from alkappa.io._atomic import atomic_path, read_json, write_json
from alkappa.io.dataset import strip_labels
from alkappa.oracles._base import OracleError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ase import Atoms

    from alkappa.oracles import Oracle


@dataclass
class LabelOutcome:
    """Labelled frames of one labelling task, and what it cost."""

    frames: list[Atoms] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    oracle_calls: int = 0  # calls made now
    reused: int = 0  # results found in the store (made by an earlier, interrupted run)
    oracle_seconds: float = 0.0


def structure_key(atoms: Atoms, oracle_spec: dict[str, Any]) -> str:
    """Hash identifying (structure, oracle settings); positions are rounded to 1e-6 Å."""
    h = hashlib.sha256()
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.round(atoms.positions, 6).astype(np.float64).tobytes())
    h.update(np.round(np.asarray(atoms.cell), 6).astype(np.float64).tobytes())
    h.update(np.asarray(atoms.pbc, dtype=np.int8).tobytes())
    h.update(json.dumps(oracle_spec, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


def label_frames(
    frames: Iterable[Atoms],
    oracle: Oracle,
    oracle_spec: dict[str, Any],
    store: str | Path,
    *,
    purpose: str,
    provenance: dict[str, Any] | None = None,
    progress: bool = True,
) -> LabelOutcome:
    """Label ``frames`` with ``oracle``, reusing stored results of earlier identical calls.

    Parameters
    ----------
    frames
        Structures to label (existing labels are ignored).
    oracle, oracle_spec
        The oracle and the config block it was built from (part of the cache key).
    store
        Directory of the per-call records.
    purpose
        Why these calls are made (``relax``, ``initial``, ``test``, ``al``, ...): recorded.
    provenance
        Extra ``info`` entries written into each labelled frame (iteration, ...).
    """
    store = Path(store)
    outcome = LabelOutcome()
    frames = list(frames)
    for atoms in tqdm(frames, desc=f"oracle ({purpose})", disable=not progress, unit="frame"):
        bare = strip_labels(atoms)
        key = structure_key(bare, oracle_spec)
        done = store / f"{key}.extxyz"
        failed = store / f"{key}.failed.json"
        if done.exists():
            labelled = ase.io.read(done, format="extxyz")
            outcome.reused += 1
        elif failed.exists():
            outcome.failures.append(read_json(failed))
            outcome.reused += 1
            continue
        else:
            try:
                labelled = oracle.label(bare)
            except OracleError as exc:
                record = {"key": key, "purpose": purpose, "error": str(exc), **(provenance or {})}
                record["fidelity"] = oracle.fidelity
                record.update({k: _plain(v) for k, v in atoms.info.items() if k in _PROVENANCE})
                write_json(failed, record)
                outcome.failures.append(record)
                outcome.oracle_calls += 1
                continue
            labelled.info.update({"oracle_key": key, "purpose": purpose})
            with atomic_path(done) as tmp:
                ase.io.write(tmp, labelled, format="extxyz")
            outcome.oracle_calls += 1
        outcome.oracle_seconds += float(labelled.info.get("oracle_seconds", 0.0))
        for k, v in atoms.info.items():
            if k in _PROVENANCE:
                labelled.info[k] = v
        labelled.info.update(provenance or {})
        labelled.info["source"] = labelled.info.get("source", purpose)
        outcome.frames.append(labelled)
    return outcome


#: where :func:`retry_failed` moves the records of failed calls (kept: they were paid)
RETRIED_DIR = "retried"


def count_oracle_calls(store: str | Path) -> dict[str, int]:
    """Oracle calls recorded in ``store``, per purpose (failed calls count too, also those
    moved aside for a retry by :func:`retry_failed`)."""
    counts: dict[str, int] = {}
    store = Path(store)
    if not store.is_dir():
        return counts
    for path in store.glob("*.extxyz"):
        purpose = str(ase.io.read(path, format="extxyz").info.get("purpose", "unknown"))
        counts[purpose] = counts.get(purpose, 0) + 1
    for path in [*store.glob("*.failed.json"), *store.glob(f"{RETRIED_DIR}/*.failed*.json")]:
        purpose = str(read_json(path).get("purpose", "unknown"))
        counts[purpose] = counts.get(purpose, 0) + 1
    return counts


def retry_failed(store: str | Path) -> list[dict[str, Any]]:
    """Let the next labelling retry every failed oracle call recorded in ``store``.

    A failed call is recorded (``<key>.failed.json``) so that a rerun skips it visibly instead
    of paying for it again; after the cause is fixed (a node lost, a wall time too short, a
    setting), this moves the records to ``store/retried/`` (kept for the ledger, never
    deleted) and returns them. Successful results are not touched.
    """
    store = Path(store)
    moved: list[dict[str, Any]] = []
    if not store.is_dir():
        return moved
    target = store / RETRIED_DIR
    for path in sorted(store.glob("*.failed.json")):
        record = read_json(path)
        target.mkdir(exist_ok=True)
        name, k = path.name, 1
        while (target / name).exists():  # failed again after an earlier retry
            name = path.name.replace(".failed.json", f".failed-{k}.json")
            k += 1
        path.replace(target / name)
        moved.append(record)
    return moved


def count_oracle_cost(store: str | Path) -> dict[str, dict[str, float]]:
    """Oracle calls and their seconds recorded in ``store``, per fidelity (oracle level).

    Returns ``{fidelity: {"calls": n, "seconds": s}}``; failed calls count as calls (their
    seconds are not recorded) under the fidelity of their record, else ``unknown``.
    """
    cost: dict[str, dict[str, float]] = {}
    store = Path(store)
    if not store.is_dir():
        return cost

    def add(fidelity: str, seconds: float) -> None:
        entry = cost.setdefault(fidelity, {"calls": 0, "seconds": 0.0})
        entry["calls"] += 1
        entry["seconds"] += seconds

    for path in store.glob("*.extxyz"):
        info = ase.io.read(path, format="extxyz").info
        add(str(info.get("fidelity", "unknown")), float(info.get("oracle_seconds", 0.0)))
    for path in store.glob("*.failed.json"):
        add(str(read_json(path).get("fidelity", "unknown")), 0.0)
    return cost


# info keys describing where a structure came from; carried over into its labelled frame
_PROVENANCE = ("source", "iteration", "trajectory", "time", "temperature", "frame_index")


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
