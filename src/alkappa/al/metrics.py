"""Test-set errors of an ensemble and the uncertainty statistics that normalise the selection.

:func:`evaluate_ensemble` gives the errors of the ensemble mean that the AL loop records each
iteration. :func:`ensemble_error_metrics` measures every member and the mean separately, per
temperature, with a reliability figure; :func:`collect_predictions` gathers its inputs (and
those of :func:`alkappa.al.calibration.force_calibration`) from labelled frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import numpy as np
from ase import units

from alkappa.al.explore import frame_uncertainty
from alkappa.io.dataset import labels

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ase import Atoms
    from ase.calculators.calculator import Calculator
    from numpy.typing import ArrayLike

    from alkappa.al.calibration import CalibrationRecord, ForceCalibrationRecord

EV_PER_A3_TO_GPA = 1.0 / units.GPa

#: rmse, mae and max (None where undefined); the forces of a predictor have ``max_atom``
Stats = dict[str, float | None]


class UncertaintyStats(TypedDict):
    """An uncertainty statistic on the test set: ``U_test`` and ``sigma_test`` of the
    selection, and its value per frame."""

    mean: float
    std: float
    per_frame: list[float]


class Reliability(TypedDict):
    """The frames whose RMS force error is an outlier (:func:`ensemble_error_metrics`)."""

    median_frame_rmse_eV_per_A: float | None
    threshold_eV_per_A: float | None
    factor: float
    n_outliers: int
    fraction: float | None


class PredictorErrors(TypedDict):
    """The errors of one predictor (a member or the ensemble mean)."""

    energy_per_atom_meV: Stats
    forces_eV_per_A: Stats
    stress_GPa: Stats
    reliability: Reliability


class GroupErrors(TypedDict):
    """Every member's and the mean's errors on a group of frames."""

    n_frames: int
    n_frames_with_stress: int
    mean: PredictorErrors
    members: list[PredictorErrors]
    member_spread: dict[str, Stats]


class EnsembleErrors(TypedDict):
    """:func:`ensemble_error_metrics`: all frames and each temperature's."""

    n_members: int
    n_frames: int
    all: GroupErrors
    #: one group per distinct temperature, keys ``f"{T:g}"``
    by_temperature: dict[str, GroupErrors]


class Predictions(TypedDict):
    """Reference labels and member predictions (:func:`collect_predictions`): the keyword
    arguments of :func:`ensemble_error_metrics`."""

    ref_energy: np.ndarray
    ref_forces: list[np.ndarray]
    member_energy: np.ndarray
    member_forces: list[np.ndarray]
    ref_stress: np.ndarray | None
    member_stress: np.ndarray | None
    temperatures: np.ndarray | None


class MetricsRecord(TypedDict):
    """An iteration's test-set metrics (``metrics.json``, :func:`evaluate_ensemble`)."""

    n_frames: int
    energy_per_atom_meV: dict[str, float]
    forces_eV_per_A: dict[str, float]
    stress_GPa: dict[str, float]
    uncertainty: dict[str, UncertaintyStats]
    #: with ``detailed``: :func:`ensemble_error_metrics`
    per_member: NotRequired[EnsembleErrors]
    #: with ``detailed``: the force levels (``atom``, ``frame_max``, ``frame_rms``) and
    #: ``energy`` of :mod:`alkappa.al.calibration`
    calibration: NotRequired[dict[str, CalibrationRecord]]
    #: with ``detailed``: the force levels per temperature (keys ``f"{T:g}"``)
    calibration_by_temperature: NotRequired[dict[str, ForceCalibrationRecord]]
    #: with ``detailed``: :func:`alkappa.al.recalibration.recalibrate_forces` (or ``error``)
    recalibration: NotRequired[dict[str, Any]]
    #: the evaluation's wall time (added by the step)
    seconds: NotRequired[float]


def error_statistics(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and maximum absolute error over all entries of two arrays."""
    diff = np.asarray(predicted, dtype=float) - np.asarray(reference, dtype=float)
    if diff.size == 0:
        return {"rmse": float("nan"), "mae": float("nan"), "max": float("nan")}
    return {
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "mae": float(np.mean(np.abs(diff))),
        "max": float(np.max(np.abs(diff))),
    }


def evaluate_ensemble(
    frames: Sequence[Atoms], calculator: Calculator, *, detailed: bool = False
) -> MetricsRecord:
    """Errors of the ensemble mean on labelled ``frames`` and the per-frame uncertainties.

    Returns energy errors per atom (meV/atom), force errors (eV/Å, per Cartesian component),
    stress errors (GPa), and for every uncertainty statistic its per-frame values with mean
    and standard deviation (``U_test`` and ``sigma_test`` of the selection).

    With ``detailed=True`` two more keys are added from the same evaluations:
    ``per_member`` (:func:`ensemble_error_metrics`: every member and the mean, per
    temperature, with the reliability figure) and ``calibration`` (the levels ``atom``,
    ``frame_max``, ``frame_rms`` of :func:`alkappa.al.calibration.force_calibration` and
    ``energy`` of :func:`alkappa.al.calibration.energy_calibration`, per atom, as dicts), and
    ``calibration_by_temperature`` (the three force levels per temperature, keys ``f"{T:g}"``;
    empty unless the frames span several temperatures) and ``recalibration`` (the scale and
    isotonic maps of the force sigma fitted on these frames, with Spearman rho and
    miscalibration area before and, out of sample, after;
    :func:`alkappa.al.recalibration.recalibrate_forces`). The calibration measures the
    members' spread, or, where the calculator reports a per-atom force sigma of its own
    (``atom_force_uncertainty``: a one-model uncertainty such as LLPR, whose "members" are one
    model with no spread), that sigma and its energy sigma (``uncertainty``'s
    ``energy_std_per_atom``); ``calibration_sigma`` says which (``members`` or ``model``).
    """
    e_pred, e_ref, f_pred, f_ref, s_pred, s_ref = [], [], [], [], [], []
    per_frame: dict[str, list[float]] = {}
    collected = _Collector() if detailed else None
    for atoms in frames:
        ref = labels(atoms)
        work = atoms.copy()
        work.calc = calculator
        n = len(work)
        e_pred.append(work.get_potential_energy() / n)
        e_ref.append(float(ref["energy"]) / n)
        f_pred.append(work.get_forces())
        f_ref.append(np.asarray(ref["forces"]))
        if "stress" in ref and work.pbc.all():
            s_pred.append(work.get_stress(voigt=True))
            s_ref.append(np.asarray(ref["stress"]))
        for key, value in frame_uncertainty(calculator).items():
            per_frame.setdefault(key, []).append(value)
        if collected is not None:
            collected.add(atoms, ref, work, calculator)
    out: MetricsRecord = {
        "n_frames": len(frames),
        "energy_per_atom_meV": {k: 1000.0 * v for k, v in error_statistics(e_pred, e_ref).items()},
        "forces_eV_per_A": error_statistics(np.concatenate(f_pred), np.concatenate(f_ref))
        if f_pred
        else error_statistics([], []),
        "stress_GPa": {k: v * EV_PER_A3_TO_GPA for k, v in error_statistics(s_pred, s_ref).items()}
        if s_pred
        else error_statistics([], []),
        "uncertainty": {
            key: {
                "mean": float(np.mean(values)),
                "std": float(np.std(values)),
                "per_frame": [float(v) for v in values],
            }
            for key, values in per_frame.items()
        },
    }
    if collected is not None:
        from alkappa.al.calibration import energy_calibration, force_calibration

        inputs = collected.result()
        own = collected.own_sigma()
        out["per_member"] = ensemble_error_metrics(**inputs)
        out["calibration"] = {
            **force_calibration(
                inputs["ref_forces"], inputs["member_forces"], sigma=own["forces"]
            ).to_dict(),
            "energy": energy_calibration(
                inputs["ref_energy"], inputs["member_energy"], sigma=own["energy"]
            ).to_dict(),
        }
        out["calibration_sigma"] = "model" if own["forces"] is not None else "members"
        out["calibration_by_temperature"] = _calibration_by_temperature(inputs, own["forces"])
        out["recalibration"] = _recalibration(inputs, own["forces"])
    return out


def _recalibration(inputs: Predictions, sigma: list[np.ndarray] | None) -> dict[str, Any]:
    """Scale and isotonic recalibration of the per-atom force sigma (the members' spread, or
    the model's own ``sigma``), before and after
    (:func:`alkappa.al.recalibration.recalibrate_forces`); ``error`` where it cannot be
    fitted (one member without a sigma of its own, or no spread at all)."""
    from alkappa.al.recalibration import recalibrate_forces

    try:
        return recalibrate_forces(inputs["ref_forces"], inputs["member_forces"], sigma=sigma)
    except ValueError as exc:
        return {"error": str(exc)}


def _calibration_by_temperature(
    inputs: Predictions, sigma: list[np.ndarray] | None = None
) -> dict[str, ForceCalibrationRecord]:
    """Force calibration (levels ``atom``, ``frame_max``, ``frame_rms``) per distinct temperature.

    Empty when the frames span fewer than two temperatures (the overall result says it all).
    ``sigma``: the model's own per-atom force sigma per frame (``None``: the members' spread).
    """
    from alkappa.al.calibration import force_calibration

    temps = inputs["temperatures"]
    if temps is None:
        return {}
    distinct = np.unique(temps[np.isfinite(temps)])
    if distinct.size < 2:
        return {}
    out: dict[str, ForceCalibrationRecord] = {}
    for t in distinct:
        idx = np.flatnonzero(temps == t)
        out[f"{t:g}"] = force_calibration(
            [inputs["ref_forces"][k] for k in idx],
            [inputs["member_forces"][k] for k in idx],
            sigma=None if sigma is None else [sigma[k] for k in idx],
        ).to_dict()
    return out


# --------------------------------------------------------------------------------------------
# every member and the ensemble mean, per temperature


def collect_predictions(frames: Sequence[Atoms], calculator: Calculator) -> Predictions:
    """Reference labels and per-member predictions of ``calculator`` on labelled ``frames``.

    Members are read from ``calculator.results`` (``energy_members``, ``forces_members``,
    ``stress_members``, as :class:`alkappa.models.ensemble.EnsembleCalculator` provides them);
    a calculator without members counts as one member.

    Returns
    -------
    Predictions
        Keyword arguments of :func:`ensemble_error_metrics`: ``ref_energy`` (F,) and
        ``member_energy`` (M, F) in eV/atom; ``ref_forces`` (F arrays (N_f, 3)) and
        ``member_forces`` (F arrays (M, N_f, 3)) in eV/Å; ``ref_stress`` (F, 6) and
        ``member_stress`` (M, F, 6) in eV/Å^3 with NaN rows where a frame has no stress (None
        if no frame has one); ``temperatures`` (F,) in K, NaN where unknown (None if no frame
        has ``info["temperature"]``).
    """
    collector = _Collector()
    for atoms in frames:
        ref = labels(atoms)
        work = atoms.copy()
        work.calc = calculator
        work.get_potential_energy()
        work.get_forces()
        if "stress" in ref and work.pbc.all():
            work.get_stress(voigt=True)
        collector.add(atoms, ref, work, calculator)
    return collector.result()


class _Collector:
    """Accumulates reference labels and member predictions frame by frame."""

    def __init__(self) -> None:
        self.ref_energy: list[float] = []
        self.ref_forces: list[np.ndarray] = []
        self.ref_stress: list[np.ndarray] = []
        self.member_energy: list[np.ndarray] = []
        self.member_forces: list[np.ndarray] = []
        self.member_stress: list[np.ndarray] = []
        self.temperatures: list[float] = []
        self.own_forces: list[np.ndarray] = []
        self.own_energy: list[float] = []

    def own_sigma(self) -> dict[str, Any]:
        """The model's own sigmas, where the calculator reported them for every frame
        (``atom_force_uncertainty``, as a one-model uncertainty such as
        :class:`~alkappa.models._nequip_llpr.NequIPLLPRCalculator` does): ``forces`` (per
        frame (N_f,), eV/Å) and ``energy`` ((F,), eV/atom), each ``None`` where absent (then
        the calibration measures the members' spread)."""
        n = len(self.ref_energy)
        if n == 0 or len(self.own_forces) != n:
            return {"forces": None, "energy": None}
        energy = np.array(self.own_energy)
        return {
            "forces": list(self.own_forces),
            "energy": energy if np.isfinite(energy).all() else None,
        }

    def add(self, atoms: Atoms, ref: dict[str, Any], work: Atoms, calculator: Calculator) -> None:
        n = len(atoms)
        res = calculator.results
        # a one-model uncertainty (LLPR): the model's own per-atom force and energy sigma
        own = res.get("atom_force_uncertainty")
        if own is not None:
            self.own_forces.append(np.asarray(own, dtype=float).reshape(-1))
            stats = res.get("uncertainty") or {}
            self.own_energy.append(float(stats.get("energy_std_per_atom", np.nan)))
        if "energy_members" in res and "forces_members" in res:
            energies = np.asarray(res["energy_members"], dtype=float).reshape(-1)
            forces = np.asarray(res["forces_members"], dtype=float)
        else:
            energies = np.array([float(res["energy"])])
            forces = np.asarray(res["forces"], dtype=float)[None]
        stress = np.full((len(energies), 6), np.nan)
        if "stress" in ref and work.pbc.all():
            if "stress_members" in res:
                stress = np.asarray(res["stress_members"], dtype=float).reshape(-1, 6)
            elif "stress" in res:
                stress = np.asarray(res["stress"], dtype=float).reshape(1, 6)
        self.ref_energy.append(float(ref["energy"]) / n)
        self.ref_forces.append(np.asarray(ref["forces"], dtype=float))
        self.ref_stress.append(
            np.asarray(ref["stress"], dtype=float).reshape(6)
            if "stress" in ref
            else np.full(6, np.nan)
        )
        self.member_energy.append(energies / n)
        self.member_forces.append(forces)
        self.member_stress.append(stress)
        t = atoms.info.get("temperature")
        self.temperatures.append(np.nan if t is None else float(t))

    def result(self) -> Predictions:
        ref_stress = np.array(self.ref_stress).reshape(-1, 6)
        member_stress = np.stack(self.member_stress, axis=1) if self.member_stress else None
        has_stress = bool(np.isfinite(ref_stress).all(axis=1).any())
        temps = np.array(self.temperatures, dtype=float)
        return {
            "ref_energy": np.array(self.ref_energy),
            "ref_forces": self.ref_forces,
            "member_energy": np.stack(self.member_energy, axis=1)
            if self.member_energy
            else np.empty((1, 0)),
            "member_forces": self.member_forces,
            "ref_stress": ref_stress if has_stress else None,
            "member_stress": member_stress if has_stress else None,
            "temperatures": temps if np.isfinite(temps).any() else None,
        }


def ensemble_error_metrics(
    ref_energy: ArrayLike,
    ref_forces: ArrayLike | Sequence[ArrayLike],
    member_energy: ArrayLike,
    member_forces: ArrayLike | Sequence[ArrayLike],
    *,
    ref_stress: ArrayLike | None = None,
    member_stress: ArrayLike | None = None,
    temperatures: ArrayLike | None = None,
    outlier_factor: float = 3.0,
) -> EnsembleErrors:
    """Errors of every ensemble member and of the ensemble mean, overall and per temperature.

    Parameters
    ----------
    ref_energy
        Reference energies per atom, shape (F,), eV/atom.
    ref_forces
        Reference forces: an array (F, N, 3), or a sequence of F arrays (N_f, 3) when frames
        differ in size; eV/Å.
    member_energy
        Predicted energies per atom, shape (M, F), eV/atom.
    member_forces
        Predicted forces: an array (M, F, N, 3), or a sequence of F arrays (M, N_f, 3); eV/Å.
    ref_stress, member_stress
        Voigt stresses (F, 6) and (M, F, 6) in eV/Å^3 (ASE order and sign). Frames whose
        reference or prediction is not finite (NaN rows) are left out of the stress errors.
    temperatures
        Temperature (K) of each frame, shape (F,); NaN for unknown. Frames with a temperature
        are also reported per temperature.
    outlier_factor
        A frame is unreliable if its RMS force error exceeds ``outlier_factor`` times the
        median RMS force error of the frames in the same group.

    Returns
    -------
    EnsembleErrors
        ``n_members``, ``n_frames``, ``all`` and ``by_temperature`` (keys ``f"{T:g}"``, one per
        distinct temperature). Each group holds ``n_frames``, ``n_frames_with_stress``,
        ``mean`` (the ensemble mean's errors), ``members`` (a list, one entry per member) and
        ``member_spread`` (mean/std/min/max over members of the three RMSEs). Each error entry
        has ``energy_per_atom_meV`` {rmse, mae, max}, ``forces_eV_per_A`` {rmse, mae per
        Cartesian component; ``max_atom``: the largest per-atom error norm |ΔF_i|},
        ``stress_GPa`` {rmse, mae, max over Voigt components}, and ``reliability``
        {``median_frame_rmse_eV_per_A``, ``threshold_eV_per_A``, ``n_outliers``,
        ``fraction``}. Undefined values (no stress, no frames) are None; everything is plain
        JSON.

    Notes
    -----
    RMSE and MAE follow the usual MLIP benchmarking convention (e.g. Morrow, Gardner and
    Deringer, J. Chem. Phys. 158, 121501 (2023)): energies per atom, forces over all Cartesian
    components of all atoms. The reliability figure is the fraction of frames whose
    per-frame RMS force error ``sqrt(mean_{i,c} ΔF_ic^2)`` is more than ``outlier_factor``
    times the median of that quantity: a typical error says little about whether an MD run is
    safe, the tail of badly predicted frames does.
    """
    e_ref = np.asarray(ref_energy, dtype=float).reshape(-1)
    e_mem = np.atleast_2d(np.asarray(member_energy, dtype=float))
    n_members, n_frames = e_mem.shape
    if e_ref.size != n_frames:
        raise ValueError(f"ref_energy has {e_ref.size} frames, member_energy {n_frames}")
    f_ref, f_mem = _frame_forces(ref_forces, member_forces, n_members, n_frames)
    s_ref, s_mem = _stresses(ref_stress, member_stress, n_members, n_frames)
    temps = (
        np.full(n_frames, np.nan)
        if temperatures is None
        else np.asarray(temperatures, dtype=float).reshape(-1)
    )
    if temps.size != n_frames:
        raise ValueError(f"temperatures has {temps.size} entries for {n_frames} frames")

    def group(idx: np.ndarray) -> GroupErrors:
        members = []
        for m in range(n_members):
            members.append(
                _predictor_errors(
                    e_mem[m, idx] - e_ref[idx],
                    [f_mem[k][m] - f_ref[k] for k in idx],
                    None if s_ref is None else s_mem[m, idx] - s_ref[idx],
                    outlier_factor,
                )
            )
        mean = _predictor_errors(
            e_mem[:, idx].mean(axis=0) - e_ref[idx],
            [f_mem[k].mean(axis=0) - f_ref[k] for k in idx],
            None if s_ref is None else s_mem[:, idx].mean(axis=0) - s_ref[idx],
            outlier_factor,
        )
        n_stress = 0 if s_ref is None else int(np.isfinite(s_ref[idx]).all(axis=1).sum())
        return {
            "n_frames": len(idx),
            "n_frames_with_stress": n_stress,
            "mean": mean,
            "members": members,
            "member_spread": _spread(members),
        }

    by_t: dict[str, GroupErrors] = {}
    for t in np.unique(temps[np.isfinite(temps)]):
        by_t[f"{t:g}"] = group(np.flatnonzero(temps == t))
    return {
        "n_members": n_members,
        "n_frames": n_frames,
        "all": group(np.arange(n_frames)),
        "by_temperature": by_t,
    }


def _frame_forces(
    ref_forces: Any, member_forces: Any, n_members: int, n_frames: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-frame reference (N_f, 3) and member (M, N_f, 3) forces from either input layout."""
    if isinstance(member_forces, np.ndarray) and member_forces.ndim == 4:
        f_mem = [member_forces[:, k] for k in range(member_forces.shape[1])]
    else:
        f_mem = [np.asarray(f, dtype=float) for f in member_forces]
    f_ref = [np.asarray(f, dtype=float) for f in ref_forces]
    if len(f_ref) != n_frames or len(f_mem) != n_frames:
        raise ValueError(
            f"forces given for {len(f_ref)} (reference) and {len(f_mem)} (members) frames, "
            f"energies for {n_frames}"
        )
    for k, (r, p) in enumerate(zip(f_ref, f_mem, strict=True)):
        if r.ndim != 2 or r.shape[1] != 3 or p.shape != (n_members, *r.shape):
            raise ValueError(
                f"frame {k}: reference forces {r.shape} and member forces {p.shape} do not "
                f"match (expected (N, 3) and ({n_members}, N, 3))"
            )
    return f_ref, f_mem


def _stresses(
    ref_stress: Any, member_stress: Any, n_members: int, n_frames: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    if ref_stress is None or member_stress is None:
        return None, None
    s_ref = np.asarray(ref_stress, dtype=float).reshape(n_frames, 6)
    s_mem = np.asarray(member_stress, dtype=float).reshape(n_members, n_frames, 6)
    return s_ref, s_mem


def _stats(diff: np.ndarray, scale: float = 1.0) -> dict[str, float | None]:
    if diff.size == 0:
        return {"rmse": None, "mae": None, "max": None}
    a = np.abs(diff)
    return {
        "rmse": float(np.sqrt(np.mean(diff**2)) * scale),
        "mae": float(np.mean(a) * scale),
        "max": float(np.max(a) * scale),
    }


def _predictor_errors(
    de: np.ndarray,
    df: list[np.ndarray],
    ds: np.ndarray | None,
    outlier_factor: float,
) -> PredictorErrors:
    """Error statistics of one predictor from its per-frame differences to the reference."""
    forces: dict[str, float | None]
    if df:
        flat = np.concatenate([d.reshape(-1) for d in df])
        component = _stats(flat)
        forces = {
            "rmse": component["rmse"],
            "mae": component["mae"],
            # the largest error an atom sees, as a vector norm (what blows up an MD run)
            "max_atom": float(max(np.linalg.norm(d, axis=1).max() for d in df)),
        }
        frame_rms = np.array([np.sqrt(np.mean(d**2)) for d in df])
        median = float(np.median(frame_rms))
        threshold = outlier_factor * median
        n_out = int(np.sum(frame_rms > threshold))
        reliability: Reliability = {
            "median_frame_rmse_eV_per_A": median,
            "threshold_eV_per_A": threshold,
            "factor": float(outlier_factor),
            "n_outliers": n_out,
            "fraction": n_out / len(df),
        }
    else:
        forces = {"rmse": None, "mae": None, "max_atom": None}
        reliability = {
            "median_frame_rmse_eV_per_A": None,
            "threshold_eV_per_A": None,
            "factor": float(outlier_factor),
            "n_outliers": 0,
            "fraction": None,
        }
    if ds is not None:
        ds = ds[np.isfinite(ds).all(axis=1)]
    stress = _stats(np.empty(0) if ds is None else ds, EV_PER_A3_TO_GPA)
    return {
        "energy_per_atom_meV": _stats(np.asarray(de, dtype=float), 1000.0),
        "forces_eV_per_A": forces,
        "stress_GPa": stress,
        "reliability": reliability,
    }


def _spread(members: list[PredictorErrors]) -> dict[str, Stats]:
    """Mean, std, min and max over members of the energy, force and stress RMSEs."""
    out: dict[str, Stats] = {}
    for name, (block, key) in {
        "energy_rmse_meV_per_atom": ("energy_per_atom_meV", "rmse"),
        "force_rmse_eV_per_A": ("forces_eV_per_A", "rmse"),
        "stress_rmse_GPa": ("stress_GPa", "rmse"),
    }.items():
        values = [m[block][key] for m in members if m[block][key] is not None]
        if values:
            v = np.array(values)
            out[name] = {
                "mean": float(v.mean()),
                "std": float(v.std()),
                "min": float(v.min()),
                "max": float(v.max()),
            }
        else:
            out[name] = {"mean": None, "std": None, "min": None, "max": None}
    return out
