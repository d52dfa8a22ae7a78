"""The harmonic-sampling-only baseline: more of D_0's harmonic samples instead of AL frames.

At every AL dataset size, D_0 plus as many harmonic samples (the sampler of ``initial``, with
D_0's force constants) as AL added frames, taken in turn from the baseline's temperatures. One
draw, as large as AL's last dataset needs, serves every iteration, so the datasets are nested
and each sample is labelled once (the oracle store); the labels are the baseline's oracle cost.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from alkappa.io import read_dataset, write_dataset, write_json

if TYPE_CHECKING:
    from ase import Atoms

    from alkappa.settings import SettingsDict

#: the oracle store's purpose of the baseline's labels
PURPOSE = "harmonic-baseline"


def interleave(draws: list[list[Atoms]], n: int) -> list[Atoms]:
    """The first ``n`` samples taking one from each draw in turn (temperatures alternate)."""
    out = [
        draw[k] for k in range(max(map(len, draws), default=0)) for draw in draws if k < len(draw)
    ]
    return out[:n]


def run_harmonic_dataset(
    settings: SettingsDict,
    structure_path: str | Path,
    initial_path: str | Path,
    al_dataset_path: str | Path,
    final_al_dataset_path: str | Path,
    store: str | Path,
    out_dataset: str | Path,
    out_record: str | Path,
    *,
    iteration: int,
) -> None:
    """D_0 plus harmonic samples, as many frames as AL's dataset of ``iteration`` holds.

    The record lists the store keys of the samples' labels (``oracle_keys``), which the cost
    accounting counts, and any oracle failures (a failed sample leaves the dataset smaller).
    """
    from alkappa.al.steps import Labeller, relaxed_supercell
    from alkappa.sampling import sample_structures
    from alkappa.settings import BaselinesSettings, InitialSettings, baseline_temperatures

    init = InitialSettings.from_settings(settings)
    seed = BaselinesSettings.from_settings(settings).harmonic.seed

    initial = read_dataset(initial_path)
    extra = len(read_dataset(al_dataset_path)) - len(initial)
    most = len(read_dataset(final_al_dataset_path)) - len(initial)
    temperatures = baseline_temperatures(settings, "harmonic")
    per_temperature = math.ceil(max(most, extra, 0) / len(temperatures))
    supercell = relaxed_supercell(structure_path)
    label = Labeller(settings, store)
    draws = [
        sample_structures(
            supercell,
            init,
            label,
            temperature=t,
            n_frames=per_temperature,
            seed=seed + 1000 * k,
            keep=Path(out_record).parent.parent / "samples",
        )
        if per_temperature
        else []
        for k, t in enumerate(temperatures)
    ]
    chosen = interleave(draws, max(extra, 0))
    frames = label(chosen, PURPOSE, iteration=iteration) if chosen else []
    for frame in frames:
        frame.info["source"] = "harmonic"
    write_dataset(out_dataset, initial + frames)
    record = label.record(n_initial=len(initial), n_samples=len(frames), wanted=max(extra, 0))
    # the fc2 calls are D_0's (reused from the store): not the baseline's
    record["oracle_keys"] = {PURPOSE: record["oracle_keys"].get(PURPOSE, [])}
    record["oracle_calls"] = {PURPOSE: len(record["oracle_keys"][PURPOSE])}
    write_json(out_record, record)
    if len(frames) < extra:
        print(f"{extra - len(frames)} harmonic sample(s) could not be labelled; see {out_record}")
