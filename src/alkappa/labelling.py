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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

import ase.io
import numpy as np
from tqdm import tqdm

from alkappa._timing import cpu_seconds
from alkappa.io import atomic_path, read_dataset, read_json, strip_labels, write_json
from alkappa.oracles import CALL_POLICY_KEYS, OracleError, OracleSpec, call_policy

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from ase import Atoms

    from alkappa.oracles import Oracle


class StoredInfo(TypedDict, total=False):
    """What the ledger reads of a stored oracle result (the ``info`` of its header) or of a
    failure record (:class:`FailureRecord`); older records may lack any of it."""

    purpose: str
    fidelity: str
    iteration: int
    oracle_seconds: float | None
    oracle_cpu_seconds: float | None
    oracle_retry_seconds: float
    oracle_retry_cpu_seconds: float
    oracle_attempts: int


class FailureRecord(StoredInfo, total=False):
    """A failed oracle call (``<key>.failed.json``): the call, the error, the structure, and
    the frame's provenance (:data:`_PROVENANCE` keys and ``label_frames``' ``provenance``)."""

    key: str
    error: str
    attempts: int
    transient: bool
    oracle_family: str
    positions: list[list[float]]
    cell: list[list[float]]
    source: str
    trajectory: str
    time: float
    temperature: float
    frame_index: int


@dataclass
class LabelOutcome:
    """Labelled frames of one labelling task, and what it cost."""

    frames: list[Atoms] = field(default_factory=list)
    failures: list[FailureRecord] = field(default_factory=list)
    oracle_calls: int = 0  # calls made now
    reused: int = 0  # results found in the store (made by an earlier, interrupted run)
    oracle_seconds: float = 0.0


@dataclass(frozen=True)
class OracleCost:
    """Oracle calls and the time they took.

    Records written before the time was recorded (or a time lost with a crash) leave calls
    without a time: they count as calls, and as ``untimed_wall``/``untimed_cpu``, so a sum of
    seconds says how many calls it leaves out instead of passing for the whole cost.
    """

    calls: int = 0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    untimed_wall: int = 0  # calls without a recorded wall time
    untimed_cpu: int = 0  # calls without a recorded CPU time

    def __add__(self, other: OracleCost) -> OracleCost:
        return OracleCost(
            self.calls + other.calls,
            self.wall_seconds + other.wall_seconds,
            self.cpu_seconds + other.cpu_seconds,
            self.untimed_wall + other.untimed_wall,
            self.untimed_cpu + other.untimed_cpu,
        )

    @classmethod
    def of(cls, calls: int, wall: float | None, cpu: float | None) -> OracleCost:
        """``calls`` that took ``wall`` and ``cpu`` seconds in all (None: not recorded)."""
        return cls(
            calls=int(calls),
            wall_seconds=0.0 if wall is None else float(wall),
            cpu_seconds=0.0 if cpu is None else float(cpu),
            untimed_wall=int(calls) if wall is None else 0,
            untimed_cpu=int(calls) if cpu is None else 0,
        )

    def scaled(self, calls: int) -> OracleCost:
        """``calls`` calls at this cost's mean time per timed call (e.g. a share of an MD run)."""
        wall_timed, cpu_timed = self.calls - self.untimed_wall, self.calls - self.untimed_cpu
        return OracleCost.of(
            calls,
            self.wall_seconds * calls / wall_timed if wall_timed > 0 else None,
            self.cpu_seconds * calls / cpu_timed if cpu_timed > 0 else None,
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "calls": self.calls,
            "wall_seconds": self.wall_seconds,
            "cpu_seconds": self.cpu_seconds,
            "untimed_wall": self.untimed_wall,
            "untimed_cpu": self.untimed_cpu,
        }


#: structures closer than this (Å, every coordinate and cell entry) are the same calculation:
#: the store finds a stored result for them even where rounding splits their keys
TOLERANCE = 1e-5


def structure_key(atoms: Atoms, oracle_spec: OracleSpec | Mapping[str, Any]) -> str:
    """Hash identifying (structure, oracle settings); positions are rounded to 1e-6 Å.

    The call-policy keys of the oracle block (``retries``, ``retry_delay``) do not enter it:
    changing them changes no result.
    """
    h = hashlib.sha256()
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.round(atoms.positions, 6).astype(np.float64).tobytes())
    h.update(np.round(np.asarray(atoms.cell), 6).astype(np.float64).tobytes())
    h.update(np.asarray(atoms.pbc, dtype=np.int8).tobytes())
    h.update(_method_json(oracle_spec).encode())
    return h.hexdigest()[:24]


def oracle_family(atoms: Atoms, oracle_spec: OracleSpec | Mapping[str, Any]) -> str:
    """Hash of what a stored result must share with a structure besides nearby positions
    (species in order, periodicity, oracle settings): the tolerant lookup's first filter."""
    h = hashlib.sha256()
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.asarray(atoms.pbc, dtype=np.int8).tobytes())
    h.update(_method_json(oracle_spec).encode())
    return h.hexdigest()[:16]


def _method_json(oracle_spec: OracleSpec | Mapping[str, Any]) -> str:
    if isinstance(oracle_spec, OracleSpec):
        method = oracle_spec.method()  # the block it came from, less the call policy
    else:
        method = {k: v for k, v in oracle_spec.items() if k not in CALL_POLICY_KEYS}
    return json.dumps(method, sort_keys=True, default=str)


class _StoredNearby:
    """Stored results and failures of one oracle family, found by positions within
    :data:`TOLERANCE` (read from the store once, at the first miss of a labelling task)."""

    def __init__(self, store: Path, family: str) -> None:
        self.family = family
        self.entries: list[tuple[np.ndarray, np.ndarray, Path]] = []
        for path in store.glob("*.extxyz"):
            with path.open() as handle:
                handle.readline()
                header = handle.readline()
            if f"oracle_family={family}" not in header:
                continue
            frame = ase.io.read(path, format="extxyz")
            self.add(frame.positions, np.asarray(frame.cell), path)
        for path in store.glob("*.failed.json"):
            record = read_json(path)
            if record.get("oracle_family") == family and "positions" in record:
                self.add(np.asarray(record["positions"]), np.asarray(record["cell"]), path)

    def add(self, positions: np.ndarray, cell: np.ndarray, path: Path) -> None:
        self.entries.append((np.asarray(positions, float), np.asarray(cell, float), path))

    def find(self, atoms: Atoms) -> Path | None:
        for positions, cell, path in self.entries:
            if (
                positions.shape == atoms.positions.shape
                and np.abs(cell - np.asarray(atoms.cell)).max() <= TOLERANCE
                and np.abs(positions - atoms.positions).max() <= TOLERANCE
                and path.exists()
            ):
                return path
        return None


#: waits between retries of a transient failure (replaced in tests)
_sleep = time.sleep


def label_frames(
    frames: Iterable[Atoms],
    oracle: Oracle,
    oracle_spec: OracleSpec | Mapping[str, Any],
    store: str | Path,
    *,
    purpose: str,
    provenance: Mapping[str, str | int | float] | None = None,
    progress: bool = True,
) -> LabelOutcome:
    """Label ``frames`` with ``oracle``, reusing stored results of earlier identical calls.

    A structure within :data:`TOLERANCE` of a stored one reuses that result (so a structure
    recomputed with rounding noise after a crash is not paid for again). A transient failure
    (:class:`~alkappa.oracles.OracleError` with ``transient``) is retried up to
    ``oracle_spec.retries`` times, waiting ``retry_delay`` seconds, doubled each time; if
    it still fails, it is recorded, and the next run tries it again. A permanent failure is
    recorded and skipped until :func:`retry_failed`. Every attempt counts as an oracle call.

    Parameters
    ----------
    frames
        Structures to label (existing labels are ignored).
    oracle, oracle_spec
        The oracle and the :class:`~alkappa.oracles.OracleSpec` it was built from (part of
        the cache key; a config ``oracle`` block is accepted too).
    store
        Directory of the per-call records.
    purpose
        Why these calls are made (``relax``, ``initial``, ``test``, ``al``, ...): recorded.
    provenance
        Extra ``info`` entries written into each labelled frame (iteration, ...).
    """
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    retries, delay = call_policy(oracle_spec)
    outcome = LabelOutcome()
    nearby: dict[str, _StoredNearby] = {}
    frames = list(frames)
    for atoms in tqdm(frames, desc=f"oracle ({purpose})", disable=not progress, unit="frame"):
        bare = strip_labels(atoms)
        key = structure_key(bare, oracle_spec)
        family = oracle_family(bare, oracle_spec)
        done = store / f"{key}.extxyz"
        failed = store / f"{key}.failed.json"
        if not done.exists() and not failed.exists():
            if family not in nearby:
                nearby[family] = _StoredNearby(store, family)
            found = nearby[family].find(bare)
            if found is not None and found.name.endswith(".failed.json"):
                failed = found
            elif found is not None:
                done = found
        if failed.exists() and read_json(failed).get("transient"):
            _set_aside(failed)  # a lost node or the like: this run tries again
        if done.exists():
            labelled = ase.io.read(done, format="extxyz")
            outcome.reused += 1
        elif failed.exists():
            outcome.failures.append(read_json(failed))
            outcome.reused += 1
            continue
        else:
            labelled, attempts, error, lost = _call(oracle, bare, retries, delay)
            outcome.oracle_calls += attempts
            if labelled is None:
                assert error is not None
                record = cast(
                    "FailureRecord",
                    {"key": key, "purpose": purpose, "error": str(error), **(provenance or {})},
                )
                record.update({"fidelity": oracle.fidelity, "attempts": attempts})
                record.update({"oracle_seconds": lost[0], "oracle_cpu_seconds": lost[1]})
                record.update({"transient": error.transient, "oracle_family": family})
                record.update({k: _plain(v) for k, v in atoms.info.items() if k in _PROVENANCE})
                record["positions"] = bare.positions.tolist()
                record["cell"] = np.asarray(bare.cell).tolist()
                write_json(failed, record)
                outcome.failures.append(record)
                if family in nearby:
                    nearby[family].add(bare.positions, np.asarray(bare.cell), failed)
                continue
            labelled.info.update({"oracle_key": key, "purpose": purpose, "oracle_family": family})
            if attempts > 1:  # the failed attempts were paid too
                labelled.info["oracle_attempts"] = attempts
                labelled.info["oracle_retry_seconds"] = lost[0]
                labelled.info["oracle_retry_cpu_seconds"] = lost[1]
            with atomic_path(done) as tmp:
                ase.io.write(tmp, labelled, format="extxyz")
            if family in nearby:
                nearby[family].add(bare.positions, np.asarray(bare.cell), done)
        outcome.oracle_seconds += float(labelled.info.get("oracle_seconds", 0.0))
        for k, v in atoms.info.items():
            if k in _PROVENANCE:
                labelled.info[k] = v
        labelled.info.update(provenance or {})
        labelled.info["source"] = labelled.info.get("source", purpose)
        outcome.frames.append(labelled)
    transient = [f for f in outcome.failures if f.get("transient")]
    if transient:
        # the job must fail, or Snakemake would never run it again to retry them
        raise OracleError(
            f"{len(transient)} oracle call(s) for {purpose} still failed after {retries} "
            f"retries ({transient[0]['error']}); the {len(outcome.frames)} results made are "
            f"stored in {store}; rerun to retry only the failed ones",
            transient=True,
        )
    return outcome


def _call(
    oracle: Oracle, atoms: Atoms, retries: int, delay: float
) -> tuple[Atoms | None, int, OracleError | None, tuple[float, float]]:
    """One oracle call with retries of transient failures: (result or None, attempts, error,
    (wall, CPU) seconds of the failed attempts, waits between them not included)."""
    attempts = 0
    wall = cpu = 0.0
    while True:
        attempts += 1
        start, cpu_start = time.perf_counter(), cpu_seconds()
        try:
            return oracle.label(atoms), attempts, None, (wall, cpu)
        except OracleError as exc:
            wall += time.perf_counter() - start
            cpu += cpu_seconds() - cpu_start
            if not exc.transient or attempts > retries:
                return None, attempts, exc, (wall, cpu)
            _sleep(delay * 2 ** (attempts - 1))


#: where :func:`retry_failed` moves the records of failed calls (kept: they were paid)
RETRIED_DIR = "retried"


@dataclass(frozen=True)
class LedgerEntry:
    """What the store records of one structure's oracle calls (every attempt of it)."""

    key: str
    purpose: str  # of the job that paid for it first
    fidelity: str
    iteration: int | None  # the AL iteration in its provenance, if any
    failed: bool  # no result stored (yet)
    cost: OracleCost


def _entry_cost(attempts: int, info: StoredInfo) -> OracleCost:
    """The cost of a stored result; one retried without the failed attempts' times (older
    records) has all its attempts untimed."""
    wall, cpu = _num(info.get("oracle_seconds")), _num(info.get("oracle_cpu_seconds"))
    if attempts > 1:
        retry, retry_cpu = (
            _num(info.get("oracle_retry_seconds")),
            _num(info.get("oracle_retry_cpu_seconds")),
        )
        wall = None if wall is None or retry is None else wall + retry
        cpu = None if cpu is None or retry_cpu is None else cpu + retry_cpu
    return OracleCost.of(attempts, wall, cpu)


def _num(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _header(path: Path) -> StoredInfo:
    """The ``info`` of a stored result, from its comment line only (the store can be large)."""
    from ase.io.extxyz import key_val_str_to_dict

    with path.open() as handle:
        handle.readline()
        return cast("StoredInfo", key_val_str_to_dict(handle.readline()))


def oracle_ledger(store: str | Path) -> dict[str, LedgerEntry]:
    """Every oracle call recorded in ``store``, per structure (its key): results, failures,
    and failures set aside for a retry (they were paid), each attempt a call.

    A structure that failed, was set aside and then labelled has one entry holding all of it.
    Records written before CPU times were recorded count their calls with the CPU time
    unknown (``untimed_cpu``), and likewise for the wall time.
    """
    store = Path(store)
    entries: dict[str, LedgerEntry] = {}
    if not store.is_dir():
        return entries

    def add(key: str, info: StoredInfo, failed: bool, cost: OracleCost) -> None:
        before = entries.get(key)
        iteration = info.get("iteration")
        entry = LedgerEntry(
            key=key,
            purpose=str(info.get("purpose", "unknown")),
            fidelity=str(info.get("fidelity", "unknown")),
            iteration=None if iteration is None else int(iteration),
            failed=failed,
            cost=cost,
        )
        if before is not None:  # a result and failures set aside: the result names the entry
            named = entry if before.failed and not failed else before
            entry = LedgerEntry(
                key,
                named.purpose,
                named.fidelity,
                named.iteration,
                named.failed,
                before.cost + cost,
            )
        entries[key] = entry

    for path in sorted(store.glob("*.extxyz")):
        info = _header(path)
        cost = _entry_cost(int(info.get("oracle_attempts", 1)), info)
        add(path.name.removesuffix(".extxyz"), info, False, cost)
    failures = [*store.glob("*.failed.json"), *store.glob(f"{RETRIED_DIR}/*.failed*.json")]
    for path in sorted(failures):
        record = read_json(path)
        attempts = int(record.get("attempts", 1))
        cost = OracleCost.of(
            attempts, _num(record.get("oracle_seconds")), _num(record.get("oracle_cpu_seconds"))
        )
        add(str(record.get("key", path.name.split(".")[0])), record, True, cost)
    return entries


def count_oracle_calls(store: str | Path) -> dict[str, int]:
    """Oracle calls recorded in ``store``, per purpose (every attempt of a retried call, and
    failed calls, also those moved aside for a retry by :func:`retry_failed`)."""
    counts: dict[str, int] = {}
    for entry in oracle_ledger(store).values():
        counts[entry.purpose] = counts.get(entry.purpose, 0) + entry.cost.calls
    return counts


def retry_failed(store: str | Path) -> list[FailureRecord]:
    """Let the next labelling retry every failed oracle call recorded in ``store``.

    A failed call is recorded (``<key>.failed.json``) so that a rerun skips it visibly instead
    of paying for it again; after the cause is fixed (a wall time too short, a setting), this
    moves the records to ``store/retried/`` (kept for the ledger, never deleted) and returns
    them. Successful results are not touched. (Transient failures need no command: the next
    run retries them.)
    """
    store = Path(store)
    moved: list[FailureRecord] = []
    if not store.is_dir():
        return moved
    for path in sorted(store.glob("*.failed.json")):
        moved.append(read_json(path))
        _set_aside(path)
    return moved


#: the info key of a frame, and the key of a JSON record, that name the failed oracle calls an
#: output was made without: :func:`remove_outputs_without` finds them after a retry
FAILED_KEYS = "oracle_failed_keys"


def remove_outputs_without(root: str | Path, keys: Iterable[str]) -> list[Path]:
    """Remove the results under ``root`` that were made without the oracle calls ``keys``.

    A job that skipped a failed call says so in its output: a JSON record with a ``failures``
    list or :data:`FAILED_KEYS`, or a frame file under ``labels/`` with :data:`FAILED_KEYS`.
    After :func:`retry_failed`, removing those outputs makes Snakemake rerun exactly those jobs
    (and what depends on them); their other oracle results come from the store.
    """
    root, keys = Path(root), set(keys)
    removed: list[Path] = []
    for path in sorted(root.rglob("*.json")):
        if "oracle" in path.relative_to(root).parts[:1]:
            continue
        try:
            record = read_json(path)
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict):
            continue
        named = set(record.get(FAILED_KEYS, []))
        named |= {f.get("key") for f in record.get("failures", []) if isinstance(f, dict)}
        if named & keys:
            path.unlink()
            removed.append(path)
    for path in sorted(root.rglob("labels/*.extxyz")):
        if any(set(str(f.info.get(FAILED_KEYS, "")).split()) & keys for f in read_dataset(path)):
            path.unlink()
            removed.append(path)
    return removed


def _set_aside(path: Path) -> None:
    """Move a failure record into ``retried/`` under a name no earlier retry used."""
    target = path.parent / RETRIED_DIR
    target.mkdir(exist_ok=True)
    name, k = path.name, 1
    while (target / name).exists():  # failed again after an earlier retry
        name = path.name.replace(".failed.json", f".failed-{k}.json")
        k += 1
    path.replace(target / name)


def count_oracle_cost(store: str | Path) -> dict[str, dict[str, float]]:
    """Oracle calls and their seconds recorded in ``store``, per fidelity (oracle level).

    Returns ``{fidelity: {"calls": n, "seconds": s}}``; failed calls (also those set aside for
    a retry) count as calls, without seconds, under the fidelity of their record.
    """
    cost: dict[str, dict[str, float]] = {}
    for entry in oracle_ledger(store).values():
        total = cost.setdefault(entry.fidelity, {"calls": 0, "seconds": 0.0})
        total["calls"] += entry.cost.calls
        total["seconds"] += entry.cost.wall_seconds
    return cost


# info keys describing where a structure came from; carried over into its labelled frame
_PROVENANCE = ("source", "iteration", "trajectory", "time", "temperature", "frame_index")


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
