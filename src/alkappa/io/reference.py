"""Import existing reference data (aiMD trajectories, DFT outputs) as labelled frames.

:func:`read_reference` turns an FHI-vibes trajectory (``trajectory.nc`` or ``trajectory.son``),
an extended XYZ file, or anything :func:`ase.io.read` understands with energies and forces
(VASP ``OUTCAR``, FHI-aims output, ...) into ``ase.Atoms`` frames that carry their labels in a
:class:`~ase.calculators.singlepoint.SinglePointCalculator`, exactly like alkappa's own datasets
(:mod:`alkappa.io.dataset`). :func:`time_decorrelated_split` then picks a held-out test set from
such frames that is not correlated in time with the training pool.

Units and conventions of the returned frames are ASE's: positions Å, energy eV, forces eV/Å,
stress eV/Å^3 in Voigt order ``xx, yy, zz, yz, xz, xy`` with ASE's sign (positive = tensile,
pressure ``P = -trace(stress)/3``), velocities in ASE units (``atoms.get_velocities()``),
``info["time"]`` in fs and ``info["temperature"]`` in K.

FHI-vibes conventions, as verified in its code and documentation
-------------------------------------------------------------------
Sources: the FHI-vibes documentation pages "Output Files" (``docs/Documentation/output_files.md``,
https://vibes-developers.gitlab.io/vibes/Documentation/output_files) and "Units"
(``docs/Documentation/units.md``), and the source files ``vibes/keys.py``, ``vibes/dimensions.py``,
``vibes/trajectory/dataset.py`` (``get_trajectory_dataset``), ``vibes/trajectory/trajectory.py``,
``vibes/trajectory/io.py`` (``parse_dataset``, ``reader``, ``step2file``),
``vibes/helpers/converters.py`` (``atoms2dict``, ``results2dict``), ``vibes/helpers/lists.py``,
``vibes/son.py`` and ``vibes/molecular_dynamics/{workflow,context}.py`` as mirrored on GitHub in
``AtomicTessellator/fhi-vibes`` (FHI-vibes itself lives on GitLab), and the ``son`` package 0.4.2
from PyPI (``son/stream.py``, ``son/interface.py``).

``trajectory.nc`` (an :class:`xarray.Dataset` written by ``get_trajectory_dataset``)
    Dimensions ``time`` (coordinate, fs), ``I`` (atoms), ``a``, ``b`` (Cartesian). Per frame:
    ``positions``, ``displacements``, ``velocities``, ``momenta``, ``forces`` (time, I, a);
    ``energy_potential``, ``energy_kinetic``, ``temperature``, ``volume``, ``pressure*``
    (time); ``cell``, ``stress``, ``stress_kinetic``, ``stress_potential`` (time, a, b).
    Reference structure: ``positions_reference`` (I, a), ``lattice_reference`` (a, b) and the
    attribute ``atoms_reference`` (a JSON string with ``pbc``, ``cell``, ``positions``,
    ``symbols``, ``masses``). Other attributes: ``symbols``, ``masses``, ``natoms``,
    ``time_unit`` (``"fs"``), ``timestep``, ``volume`` and, when written by ``vibes output``,
    ``raw_metadata`` (JSON of the run's metadata, with the ASE MD settings under ``"MD"``).

    * ``stress`` is the *full* stress, kinetic plus potential
      (``Trajectory.stress = stress_kinetic + stress_potential``); the label a DFT code
      produced is ``stress_potential`` (``a.get_stress(voigt=False, include_ideal_gas=False)``),
      and FHI-vibes' own reader puts ``stress_potential`` back into the calculator. So does this
      module; files without ``stress_potential`` (older FHI-vibes, alkappa's exploration
      trajectories) have only the potential stress under ``stress``. All stresses come from
      ASE's ``get_stress``: ASE sign convention, eV/Å^3 (units page: "Stress: eV/Å^3"),
      full 3x3 matrices. Frames where the stress was not computed hold NaN (the docs'
      example has ``pressure_potential`` for 1032 of 10001 steps); such frames keep their
      energy and forces and simply carry no stress label.
    * ``velocities`` are ``atoms.get_velocities()``, i.e. **ASE units** (Å per ASE time unit,
      1 ASE time unit = 1/``ase.units.fs`` fs ≈ 10.18 fs), not Å/fs: ``parse_dataset`` feeds
      them to ``atoms.set_velocities`` unchanged, and the heat-flux code converts with
      ``get_velocities() * units.fs * 1000`` to get Å/ps. alkappa's exploration trajectories
      store Å/fs instead. The unit is therefore decided per file by comparing the kinetic
      temperature of the velocities with the file's ``temperature`` variable (the two
      hypotheses differ by a factor ``1/units.fs**2`` ≈ 104); without a ``temperature``
      variable a file with ``atoms_reference`` (FHI-vibes) is taken as ASE units, else Å/fs.
    * ``temperature`` is the instantaneous kinetic temperature of each frame
      (``atoms.get_temperature()``), not the thermostat's; it is kept as
      ``info["temperature_kinetic"]``. ``info["temperature"]`` is the nominal (thermostat)
      temperature: ``raw_metadata["MD"]["temperature_K"]`` (what ``Langevin.todict`` of
      current ASE, e.g. 3.29, writes) or ``raw_metadata["MD"]["temperature"] / kB`` (older
      ASE stored kT in eV; FHI-vibes' own ``to_tdep`` divides by ``units.kB``), or alkappa's
      ``temperature_target`` attribute.

``trajectory.son``
    The ``son`` format ("sequential object notation", https://github.com/flokno/son): JSON
    documents, each followed by a line holding only a delimiter, ``===`` after the one metadata
    document at the top and ``---`` after every record; a last document without delimiter is
    an incomplete write and is ignored (as ``son.stream.read`` does). The metadata holds
    ``MD`` (``md.todict()`` plus ``fs``, ``kB``, ``dt``), ``calculator`` and ``atoms`` (the
    structure, with ``symbols``/``masses`` possibly run-length reduced to ``[[count, value],
    ...]`` by ``helpers.lists.reduce_list``). Each record is ``{"atoms": {...}, "calculator":
    {...}}`` from ``results2dict``: ``atoms`` holds ``positions``, ``velocities`` (ASE units,
    ``get_velocities()``), ``cell``, ``pbc``, ``info`` with ``nsteps`` and ``dt`` (ASE time
    units); ``calculator`` holds the results ``energy``, ``forces`` and ``stress`` (converted to
    3x3 by ``voigt_6_to_full_3x3_stress``, so again ASE convention, eV/Å^3). A record's atoms
    are merged over the metadata's atoms (FHI-vibes' ``reader`` does ``{**pre_atoms_dict,
    **obj["atoms"]}``). Time in fs is ``nsteps * dt / MD["fs"]`` (``Trajectory.times``). Files
    without the ``===`` metadata delimiter are the legacy form whose first record is the
    metadata. The ``son`` package itself is not used: its reader is a few lines and the package
    pins an old ``lz``.
"""

from __future__ import annotations

import bisect
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

import numpy as np
from ase import Atoms, units
from ase.stress import full_3x3_to_voigt_6_stress

from alkappa.io.dataset import with_labels

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    import xarray as xr

#: format names accepted by :func:`read_reference` besides any :func:`ase.io.read` format
VIBES_NETCDF = "vibes-netcdf"
VIBES_SON = "vibes-son"

_FORMAT_ALIASES = {
    "nc": VIBES_NETCDF,
    "netcdf": VIBES_NETCDF,
    "vibes-nc": VIBES_NETCDF,
    VIBES_NETCDF: VIBES_NETCDF,
    "son": VIBES_SON,
    VIBES_SON: VIBES_SON,
}


def read_reference(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,  # shadows the builtin on purpose: the name ase.io.read uses
    fidelity: str | None = None,
    temperature: float | None = None,
) -> list[Atoms]:
    """Labelled frames from an existing reference calculation.

    Parameters
    ----------
    path
        FHI-vibes ``trajectory.nc`` / ``trajectory.son``, extended XYZ, or any file
        :func:`ase.io.read` reads with energies and forces (VASP ``OUTCAR``, FHI-aims output).
    format
        ``"vibes-netcdf"`` (aliases ``nc``, ``netcdf``), ``"vibes-son"`` (alias ``son``), or an
        :func:`ase.io.read` format name. Default: from the suffix (``.nc``, ``.son``), else
        ASE's own detection.
    fidelity
        Stored as ``info["fidelity"]``. Default: the file's own ``fidelity`` entry if it has
        one, else ``"reference"``.
    temperature
        Nominal temperature (K) for every frame, overriding what the file says; useful for
        files that do not record their thermostat temperature (``OUTCAR``, NVE runs).

    Returns
    -------
    list[ase.Atoms]
        Frames with a ``SinglePointCalculator`` holding ``energy`` (eV), ``forces`` (eV/Å) and,
        where the file has a finite one, ``stress`` (Voigt, eV/Å^3, ASE sign). ``info`` holds
        ``source="reference"``, ``fidelity``, ``trajectory`` (the file, unless the frame names
        its own), ``time`` (fs) and ``temperature`` (K, nominal) when known, and
        ``temperature_kinetic`` (K, instantaneous) for FHI-vibes trajectories. See the module
        docstring for the FHI-vibes conventions.

    Warns
    -----
    RuntimeWarning
        With the number of frames skipped because their positions, cell, energy or forces
        are not finite, or because they carry no energy/forces at all.
    """
    p = Path(path)
    fmt = _resolve_format(p, format)
    if fmt == VIBES_NETCDF:
        raw = _read_vibes_netcdf(p)
    elif fmt == VIBES_SON:
        raw = _read_vibes_son(p)
    else:
        raw = _read_ase(p, fmt)

    frames: list[Atoms] = []
    skipped = 0
    for atoms, energy, forces, stress in raw:
        if energy is None or forces is None or not _finite_structure(atoms, energy, forces):
            skipped += 1
            continue
        out = with_labels(atoms, float(energy), np.asarray(forces, dtype=float), _voigt(stress))
        out.info = dict(atoms.info)
        out.info["source"] = "reference"
        out.info["fidelity"] = fidelity or str(atoms.info.get("fidelity", "reference"))
        out.info.setdefault("trajectory", str(p))
        if temperature is not None:
            out.info["temperature"] = float(temperature)
        frames.append(out)
    if skipped:
        warnings.warn(
            f"{p}: skipped {skipped} of {skipped + len(frames)} frames with missing or "
            "non-finite positions, cell, energy or forces",
            RuntimeWarning,
            stacklevel=2,
        )
    return frames


def time_decorrelated_split(
    frames: Sequence[Atoms], *, n_test: int, min_separation_fs: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split frames into a time-decorrelated test set and the training pool that remains.

    Frames are grouped by ``(info["trajectory"], info["temperature"])``; times (``info["time"]``,
    fs) are only compared within a group. Test frames are drawn at random (seeded), round-robin
    over the groups so that every trajectory/temperature contributes, and a frame is accepted
    only if it is at least ``min_separation_fs`` away from every test frame already chosen in
    its group. The training pool is every other frame that is at least ``min_separation_fs``
    away from all test frames of its group, so that no training frame is a near-duplicate of a
    test frame (MD frames closer than the force autocorrelation time are). Frames without a
    ``time`` are treated as uncorrelated with every other frame.

    The greedy random draw does not always reach the densest possible packing; if fewer than
    ``n_test`` frames can be placed, a warning says how many were.

    Parameters
    ----------
    frames
        Frames as returned by :func:`read_reference`.
    n_test
        Number of test frames wanted.
    min_separation_fs
        Minimum time (fs) between two test frames, and between a test and a training frame,
        of the same group.
    seed
        Seed of the random draw.

    Returns
    -------
    train_idx, test_idx
        Sorted indices into ``frames``; disjoint. Frames in neither list were dropped for being
        too close to a test frame. Nothing is written or recorded here.
    """
    if n_test < 0:
        raise ValueError(f"n_test must be >= 0, got {n_test}")
    if min_separation_fs < 0:
        raise ValueError(f"min_separation_fs must be >= 0, got {min_separation_fs}")
    rng = np.random.default_rng(seed)

    groups: dict[Any, list[int]] = {}
    times = np.full(len(frames), np.nan)
    for idx, atoms in enumerate(frames):
        t = atoms.info.get("time")
        if t is not None and np.isfinite(float(t)):
            times[idx] = float(t)
            key: Any = (str(atoms.info.get("trajectory")), _temperature_key(atoms))
        else:
            key = ("<untimed>", idx)  # its own group: uncorrelated with everything
        groups.setdefault(key, []).append(idx)

    # random candidate order inside each group, random order of groups
    keys = list(groups)
    order = rng.permutation(len(keys))
    queues = [list(rng.permutation(groups[keys[k]])) for k in order]
    chosen: dict[int, list[float]] = {}  # group position -> sorted test times
    test: list[int] = []
    active = list(range(len(queues)))
    while len(test) < n_test and active:
        still_active = []
        for g in active:
            if len(test) >= n_test:
                still_active.append(g)
                continue
            queue = queues[g]
            while queue:
                idx = int(queue.pop())
                t = times[idx]
                placed = chosen.setdefault(g, [])
                if np.isnan(t) or _far_from(placed, t, min_separation_fs):
                    if not np.isnan(t):
                        bisect.insort(placed, t)
                    test.append(idx)
                    break
            if queue:
                still_active.append(g)
        active = still_active
    if len(test) < n_test:
        warnings.warn(
            f"only {len(test)} of {n_test} test frames fit at least {min_separation_fs:g} fs apart",
            RuntimeWarning,
            stacklevel=2,
        )

    test_set = set(test)
    group_of = {idx: g for g, k in enumerate(order) for idx in groups[keys[k]]}
    train = []
    for idx in range(len(frames)):
        if idx in test_set:
            continue
        t = times[idx]
        if np.isnan(t) or _far_from(chosen.get(group_of[idx], []), t, min_separation_fs):
            train.append(idx)
    return train, sorted(test)


# --------------------------------------------------------------------------------------------
# helpers


def _resolve_format(path: Path, fmt: str | None) -> str | None:
    if fmt is not None:
        return _FORMAT_ALIASES.get(fmt.lower(), fmt)
    suffix = path.suffix.lower()
    if suffix == ".nc":
        return VIBES_NETCDF
    if suffix == ".son":
        return VIBES_SON
    return None  # ase.io.read guesses


def _far_from(sorted_times: list[float], t: float, min_sep: float) -> bool:
    """True if ``t`` is at least ``min_sep`` from every entry of ``sorted_times``."""
    pos = bisect.bisect_left(sorted_times, t)
    for neighbour in sorted_times[max(pos - 1, 0) : pos + 1]:
        if abs(neighbour - t) < min_sep:
            return False
    return True


def _temperature_key(atoms: Atoms) -> float | None:
    value = atoms.info.get("temperature")
    return None if value is None else float(value)


def _finite_structure(atoms: Atoms, energy: Any, forces: Any) -> bool:
    f = np.asarray(forces, dtype=float)
    return bool(
        np.isfinite(float(energy))
        and f.shape == (len(atoms), 3)
        and np.isfinite(f).all()
        and np.isfinite(atoms.positions).all()
        and np.isfinite(atoms.cell.array).all()
    )


def _voigt(stress: Any) -> np.ndarray | None:
    """Voigt 6-vector in ASE order from a 3x3 or 6 stress; None if absent or not finite."""
    if stress is None:
        return None
    s = np.asarray(stress, dtype=float)
    if s.shape == (3, 3):
        s = full_3x3_to_voigt_6_stress(s)
    if s.shape != (6,) or not np.isfinite(s).all():
        return None
    return s


class VibesMD(TypedDict, total=False):
    """ASE's ``MolecularDynamics.todict()`` as FHI-vibes stores it (what is read of it)."""

    temperature_K: float
    temperature: float  # older ASE: kT in eV
    kB: float  # the kB FHI-vibes used with it
    fs: float  # ASE's fs in the file's time unit


class VibesAtoms(TypedDict, total=False):
    """FHI-vibes' ``atoms2dict`` form (symbols or numbers, run-length lists)."""

    symbols: list[str] | list[list[object]]
    numbers: list[int]
    positions: list[list[float]]
    cell: list[list[float]]
    pbc: bool | list[bool]
    velocities: list[list[float]] | None
    info: dict[str, float]  # nsteps, dt, ...


class VibesCalculator(TypedDict, total=False):
    """The calculator results of a trajectory record."""

    energy: float
    forces: list[list[float]]
    stress: list[float] | list[list[float]]


class VibesMetadata(TypedDict, total=False):
    """The metadata document of a ``trajectory.son`` (what is read of it)."""

    MD: VibesMD
    atoms: VibesAtoms


class VibesRecord(TypedDict, total=False):
    """One frame of a ``trajectory.son``."""

    atoms: VibesAtoms
    calculator: VibesCalculator


def _nominal_temperature_from_md(md: VibesMD | None) -> float | None:
    """Thermostat temperature (K) from ASE ``MolecularDynamics.todict()`` as FHI-vibes stores it."""
    if not md:
        return None
    if md.get("temperature_K") is not None:
        return float(md["temperature_K"])
    if md.get("temperature") is not None:
        # older ASE stored kT in eV; FHI-vibes stores the kB it used next to it
        return float(md["temperature"]) / float(md.get("kB", units.kB))
    return None


def _expand(values: Any) -> list[Any]:
    """Undo FHI-vibes' run-length reduction ``[[count, value], ...]`` (``helpers.lists``)."""
    values = list(values)
    if values and isinstance(values[0], (list, tuple)):
        out: list[Any] = []
        for count, value in values:
            out.extend([value] * int(count))
        return out
    return values


def _kinetic_temperature(masses: np.ndarray, velocities: np.ndarray) -> float:
    """Kinetic temperature (K) of ASE-unit velocities with 3N degrees of freedom."""
    ekin = 0.5 * float(np.sum(masses[:, None] * velocities**2))
    return 2.0 * ekin / (3 * len(masses) * units.kB)


# --------------------------------------------------------------------------------------------
# FHI-vibes trajectory.nc


_RawFrame = tuple[Atoms, Any, Any, Any]  # atoms, energy, forces, stress (any shape or None)


def _read_vibes_netcdf(path: Path) -> list[_RawFrame]:
    import xarray as xr

    with xr.open_dataset(path) as opened:
        ds = opened.load()
    for name in ("positions", "forces", "energy_potential"):
        if name not in ds:
            raise ValueError(f"{path}: not an FHI-vibes trajectory, variable {name!r} missing")
    attrs = ds.attrs
    reference = vibes_reference_atoms(ds)
    n_atoms = len(reference)
    positions = ds["positions"].values
    if positions.shape[1:] != (n_atoms, 3):
        raise ValueError(f"{path}: positions {positions.shape} do not match {n_atoms} atoms")
    n_frames = positions.shape[0]
    times = ds["time"].values.astype(float) if "time" in ds.coords else np.full(n_frames, np.nan)
    forces = ds["forces"].values
    energy = ds["energy_potential"].values
    cells = (
        ds["cell"].values if "cell" in ds else np.repeat(reference.cell.array[None], n_frames, 0)
    )
    stress = _vibes_label_stress(ds)
    kinetic_t = ds["temperature"].values if "temperature" in ds else None
    velocities = None
    if "velocities" in ds and np.isfinite(ds["velocities"].values).any():
        velocities = ds["velocities"].values * velocities_to_ase(ds, reference.get_masses())

    nominal = None
    if "temperature_target" in attrs:  # alkappa's exploration trajectories
        nominal = float(attrs["temperature_target"])
    elif "raw_metadata" in attrs:
        try:
            nominal = _nominal_temperature_from_md(json.loads(attrs["raw_metadata"]).get("MD"))
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
            nominal = None

    out: list[_RawFrame] = []
    for k in range(n_frames):
        atoms = reference.copy()
        atoms.set_cell(cells[k])
        atoms.positions = positions[k]
        if velocities is not None and np.isfinite(velocities[k]).all():
            atoms.set_velocities(velocities[k])
        info: dict[str, float] = {}
        if np.isfinite(times[k]):
            info["time"] = float(times[k])
        if nominal is not None:
            info["temperature"] = nominal
        if kinetic_t is not None and np.isfinite(kinetic_t[k]):
            info["temperature_kinetic"] = float(kinetic_t[k])
        atoms.info = info
        out.append((atoms, energy[k], forces[k], None if stress is None else stress[k]))
    return out


def atoms_from_vibes_dict(d: VibesAtoms) -> Atoms:
    """Atoms from FHI-vibes' ``atoms2dict`` form (symbols or numbers, run-length lists)."""
    symbols = _expand(d["symbols"]) if "symbols" in d else None
    atoms = Atoms(
        symbols=symbols,
        numbers=None if symbols is not None else d.get("numbers"),
        positions=d.get("positions"),
        cell=d.get("cell"),
        pbc=d.get("pbc", "cell" in d),
    )
    if "masses" in d:
        atoms.set_masses(np.asarray(_expand(d["masses"]), dtype=float))
    return atoms


def vibes_reference_atoms(ds: xr.Dataset) -> Atoms:
    """Symbols, masses, pbc and reference cell/positions of an FHI-vibes dataset."""
    attrs = ds.attrs
    if "atoms_reference" in attrs:
        return atoms_from_vibes_dict(json.loads(attrs["atoms_reference"]))
    symbols = attrs.get("symbols")
    if symbols is None:
        raise ValueError("trajectory has neither an atoms_reference nor a symbols attribute")
    symbols = [symbols] if isinstance(symbols, str) else [str(s) for s in np.ravel(symbols)]
    n = len(symbols)
    cell = ds["lattice_reference"].values if "lattice_reference" in ds else np.zeros((3, 3))
    ref_pos = ds["positions_reference"].values if "positions_reference" in ds else np.zeros((n, 3))
    pbc = bool(abs(np.linalg.det(cell)) > 1e-12)
    atoms = Atoms(symbols=symbols, positions=ref_pos, cell=cell, pbc=pbc)
    if "masses" in attrs:
        masses = np.ravel(np.asarray(attrs["masses"], dtype=float))
        if masses.size == n:
            atoms.set_masses(masses)
    return atoms


def _vibes_label_stress(ds: xr.Dataset) -> np.ndarray | None:
    """The potential (DFT-label) stress per frame, 3x3 or 6, or None (see module docstring)."""
    if "stress_potential" in ds:
        return ds["stress_potential"].values
    if "stress" in ds and "stress_kinetic" in ds:
        return ds["stress"].values - ds["stress_kinetic"].values
    if "stress" in ds:
        return ds["stress"].values
    return None


def velocities_to_ase(ds: xr.Dataset, masses: np.ndarray) -> float:
    """Factor from the file's velocities to ASE units (1, or 1/units.fs for Å/fs)."""
    v = ds["velocities"].values
    if "temperature" in ds:
        t_file = ds["temperature"].values
        ok = [
            k
            for k in range(len(v))
            if np.isfinite(v[k]).all() and np.isfinite(t_file[k]) and t_file[k] > 0
        ]
        if ok:
            t_as_ase = np.mean([_kinetic_temperature(masses, v[k]) for k in ok])
            t_target = float(np.mean(t_file[ok]))
            if t_as_ase > 0:
                # Å/fs -> ASE units multiplies T by 1/units.fs**2 (about 104)
                t_as_fs = t_as_ase / units.fs**2
                if abs(np.log(t_as_fs / t_target)) < abs(np.log(t_as_ase / t_target)):
                    return 1.0 / units.fs
                return 1.0
    return 1.0 if "atoms_reference" in ds.attrs else 1.0 / units.fs


# --------------------------------------------------------------------------------------------
# FHI-vibes trajectory.son


def _son_documents(path: Path) -> tuple[VibesMetadata | None, list[VibesRecord]]:
    """Metadata (or None) and the records of a son file; an unterminated tail is ignored."""
    metadata: VibesMetadata | None = None
    records: list[VibesRecord] = []
    lines: list[str] = []
    first = True
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            token = line.strip()
            if token in ("===", "---"):
                text = "".join(lines)
                lines = []
                if token == "===" and first:
                    metadata = json.loads(text) if text.strip() else {}
                elif token == "---" and text.strip():
                    records.append(json.loads(text))
                # (a later "===" document is ignored, as son.stream readers do)
                first = False
            else:
                lines.append(line)
    return metadata, records


def _read_vibes_son(path: Path) -> list[_RawFrame]:
    metadata, records = _son_documents(path)
    if metadata is None and records:
        # legacy files without "===": the first record is metadata
        metadata = cast("VibesMetadata", records.pop(0))
    metadata = metadata or {}
    md = metadata.get("MD") or {}
    fs = float(md.get("fs", units.fs))
    nominal = _nominal_temperature_from_md(md)
    base = metadata.get("atoms", {})

    out: list[_RawFrame] = []
    for record in records:
        d: VibesAtoms = {**base, **record.get("atoms", {})}
        atoms = atoms_from_vibes_dict(d)
        if d.get("velocities") is not None:
            atoms.set_velocities(np.asarray(d["velocities"], dtype=float))  # ASE units
        info: dict[str, float] = {}
        rec_info = record.get("atoms", {}).get("info") or {}
        if "nsteps" in rec_info and "dt" in rec_info:
            info["time"] = float(rec_info["nsteps"]) * float(rec_info["dt"]) / fs
        if nominal is not None:
            info["temperature"] = nominal
        if atoms.get_velocities() is not None and np.any(atoms.get_velocities()):
            info["temperature_kinetic"] = float(atoms.get_temperature())
        atoms.info = info
        results = record.get("calculator") or {}
        out.append((atoms, results.get("energy"), results.get("forces"), results.get("stress")))
    return out


# --------------------------------------------------------------------------------------------
# extended XYZ and everything else ase.io.read understands


def _read_ase(path: Path, fmt: str | None) -> list[_RawFrame]:
    import ase.io

    read = ase.io.read(path, index=":", format=fmt)
    images = read if isinstance(read, list) else [read]
    out: list[_RawFrame] = []
    for atoms in images:
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        energy = results.get("energy", atoms.info.get("energy"))
        forces = results.get("forces", atoms.arrays.get("forces"))
        stress = results.get("stress", atoms.info.get("stress"))
        if stress is not None and not atoms.pbc.all():
            stress = None  # a stress of a non-periodic cell is not a label
        work = atoms.copy()
        work.calc = None
        for key in ("energy", "free_energy", "stress"):
            work.info.pop(key, None)
        if "forces" in work.arrays:
            del work.arrays["forces"]
        out.append((work, energy, forces, stress))
    return out
