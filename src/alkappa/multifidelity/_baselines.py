"""The four ways of using few high-fidelity labels, trained on the same data.

* ``multifidelity``: one SevenNet model on low + high frames, fidelity as a one-hot input
  (Kim et al., arXiv:2409.07947), predicting at the high level;
* ``high_only``: a model trained on the high-fidelity frames alone;
* ``transfer``: a model pre-trained on the low level, fine-tuned on the high frames
  (all weights, fresh optimiser and schedule);
* ``delta``: the low-level model plus a model of ``E_high - E_low`` trained on the high frames
  (their low-level labels are needed: Ramakrishnan et al., JCTC 11, 2087 (2015)).

Every model is trained on energies referenced per fidelity (:mod:`._data`); each approach
returns an ASE calculator predicting the absolute high-level energy, forces and stress.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ase.calculators.mixing import SumCalculator

from alkappa.multifidelity._data import (
    EnergyReference,
    difference_frames,
    fit_element_energies,
    referenced,
)
from alkappa.multifidelity._sevenn import (
    ReferencedCalculator,
    train_sevenn,
    write_training_file,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ase import Atoms
    from ase.calculators.calculator import Calculator

#: the approaches compared by the study, in display order
APPROACHES = ("multifidelity", "high_only", "transfer", "delta")

#: fidelity label of Delta-learning's difference data
DELTA = "delta"


def _check_levels(frames: Sequence[Atoms], level: str, what: str) -> None:
    if not frames:
        raise ValueError(f"no {what} frames")
    wrong = {str(a.info.get("fidelity")) for a in frames} - {level}
    if wrong:
        raise ValueError(f"{what} frames must all have fidelity '{level}', found {sorted(wrong)}")


def _write(path: Path, frames: Sequence[Atoms]) -> Path:
    return write_training_file(path, frames)


def train_low_model(
    low: Sequence[Atoms],
    workdir: str | Path,
    settings: Mapping[str, Any],
    *,
    low_level: str,
    seed: int = 0,
    threads: int = 1,
) -> tuple[Path, EnergyReference]:
    """Single-fidelity model of the low level (used by ``transfer`` and ``delta``)."""
    _check_levels(low, low_level, "low-fidelity")
    workdir = Path(workdir)
    ref = EnergyReference({low_level: fit_element_energies(low)})
    data = _write(workdir / "train.extxyz", referenced(low, ref))
    model = train_sevenn(
        {low_level: data},
        workdir,
        settings,
        seed=seed,
        n_frames=len(low),
        multi_fidelity=False,
        threads=threads,
    )
    return model, ref


def train_approach(
    approach: str,
    low: Sequence[Atoms],
    high: Sequence[Atoms],
    workdir: str | Path,
    settings: Mapping[str, Any],
    *,
    low_level: str,
    high_level: str,
    low_model: tuple[Path, EnergyReference] | None = None,
    low_of_high: Sequence[Atoms] | None = None,
    seed: int = 0,
    threads: int = 1,
) -> Calculator:
    """Train ``approach`` and return its calculator at the high level.

    Parameters
    ----------
    approach
        One of :data:`APPROACHES`.
    low, high
        Low-fidelity training frames and the few high-fidelity ones.
    low_model
        ``(checkpoint, reference)`` of :func:`train_low_model` (``transfer``, ``delta``).
    low_of_high
        The high frames' structures labelled at the low level (``delta``).
    """
    if approach not in APPROACHES:
        raise ValueError(f"unknown approach '{approach}'; choose from {list(APPROACHES)}")
    _check_levels(high, high_level, "high-fidelity")
    workdir = Path(workdir)
    common = {"seed": seed, "threads": threads}
    if approach == "multifidelity":
        # the model plugin sevenn-mf does it: per-fidelity references, one-hot fidelity input
        from alkappa.io.dataset import write_dataset
        from alkappa.multifidelity.plugin import SevenNetMFModel

        _check_levels(low, low_level, "low-fidelity")
        model = SevenNetMFModel(fidelities=[low_level, high_level], **settings)
        data = workdir / "train.extxyz"
        workdir.mkdir(parents=True, exist_ok=True)
        write_dataset(data, [*low, *high])
        result = model.train(data, data, workdir, species=[], **common)
        return model.load_calculator(result.model_path, fidelity=high_level)
    ref_high = EnergyReference({high_level: fit_element_energies(high)})
    if approach != "high_only" and low_model is None:
        raise ValueError(f"approach '{approach}' needs the low-fidelity model")
    if approach in ("high_only", "transfer"):
        # transfer: the same training on the high level, started from the low-level model
        data = _write(workdir / "train.extxyz", referenced(high, ref_high))
        model = train_sevenn(
            {high_level: data},
            workdir,
            settings,
            n_frames=len(high),
            multi_fidelity=False,
            init_checkpoint=low_model[0] if approach == "transfer" else None,
            **common,
        )
        return ReferencedCalculator(model, high_level, ref_high, multi_fidelity=False)
    low_path, low_ref = low_model
    # delta
    if low_of_high is None:
        raise ValueError("Delta-learning needs the high-fidelity frames labelled at the low level")
    _check_levels(low_of_high, low_level, "low-level copies of the high")
    diff = difference_frames(high, low_of_high, DELTA)
    ref_diff = EnergyReference({DELTA: fit_element_energies(diff)})
    data = _write(workdir / "train.extxyz", referenced(diff, ref_diff))
    model = train_sevenn(
        {DELTA: data},
        workdir,
        settings,
        n_frames=len(diff),
        multi_fidelity=False,
        **common,
    )
    return SumCalculator(
        [
            ReferencedCalculator(low_path, low_level, low_ref, multi_fidelity=False),
            ReferencedCalculator(model, DELTA, ref_diff, multi_fidelity=False),
        ]
    )
