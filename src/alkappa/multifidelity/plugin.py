"""Model plugin ``sevenn-mf``: a multi-fidelity SevenNet model (thin wrapper).

The training frames carry ``info["fidelity"]``; one model learns all levels at once with
the fidelity as a one-hot input on the scalar channels of its linear layers and per-fidelity
energy shifts (SevenNet's multi-modal training, Kim et al., arXiv:2409.07947). With a single
fidelity in the data it trains an ordinary SevenNet model. The work is done in
:mod:`alkappa.multifidelity`; the calculator predicts at a chosen ``fidelity``.

Options (the config's ``model`` block): ``fidelities`` (ordered low to high; default: the
levels found in the data, in order of first appearance), ``fidelity`` (level predicted by
default; default the highest), and the network/training settings of
:data:`alkappa.multifidelity.DEFAULT_SEVENN_SETTINGS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from alkappa.io import read_dataset, read_json, write_json
from alkappa.models import Model, TrainResult

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator


class SevenNetMFModel(Model):
    """Multi-fidelity SevenNet (see the module docstring for the options)."""

    def __init__(
        self,
        fidelities: list[str] | None = None,
        fidelity: str | None = None,
        **settings: Any,
    ) -> None:
        from alkappa.multifidelity import DEFAULT_SEVENN_SETTINGS

        unknown = sorted(set(settings) - set(DEFAULT_SEVENN_SETTINGS))
        if unknown:
            raise ValueError(
                f"sevenn-mf: unknown option(s) {unknown}; valid: "
                f"{['fidelities', 'fidelity', *DEFAULT_SEVENN_SETTINGS]}"
            )
        super().__init__(fidelities=fidelities, fidelity=fidelity, **settings)
        self.fidelities = list(fidelities) if fidelities else None
        self.fidelity = fidelity
        self.settings = settings

    def train(
        self,
        train_file: Path,
        val_file: Path,
        workdir: Path,
        *,
        species: list[str],
        seed: int,
        init_checkpoint: Path | None = None,
        threads: int = 1,
    ) -> TrainResult:
        """Train on the (mixed-fidelity) frames of ``train_file``; ``val_file`` is not used
        for model selection (the last epoch is kept)."""
        from alkappa.multifidelity import (
            fit_reference,
            group_by_fidelity,
            referenced,
            train_sevenn,
            write_training_file,
        )

        workdir = Path(workdir)
        frames = read_dataset(train_file)
        groups = group_by_fidelity(frames, self.fidelities)
        groups = {f: g for f, g in groups.items() if g}
        ref = fit_reference(frames)
        files = {}
        for fid, group in groups.items():
            files[fid] = write_training_file(
                workdir / f"train_{fid}.extxyz", referenced(group, ref)
            )
        model = train_sevenn(
            files,
            workdir,
            self.settings,
            seed=seed,
            n_frames=len(frames),
            multi_fidelity=len(files) > 1,
            init_checkpoint=init_checkpoint,
            threads=threads,
        )
        write_json(
            workdir / "model.json",
            {**ref.to_dict(), "fidelities": list(files), "multi_fidelity": len(files) > 1},
        )
        return TrainResult(
            model_path=model,
            curve_path=workdir / "lc.csv",
            checkpoint_path=model,
            companions=(workdir / "model.json",),
            info={"fidelities": list(files), "n_frames": len(frames)},
        )

    def load_calculator(
        self, model_path: Path, device: str = "cpu", *, fidelity: str | None = None
    ) -> Calculator:
        """ASE calculator of a trained model at ``fidelity`` (default: the plugin's
        ``fidelity`` option, else the highest level the model was trained on)."""
        from alkappa.multifidelity import EnergyReference, ReferencedCalculator

        meta = read_json(Path(model_path).parent / "model.json")
        fids = meta["fidelities"]
        chosen = fidelity or self.fidelity or fids[-1]
        if chosen not in fids:
            raise ValueError(f"fidelity '{chosen}' is not one the model knows: {fids}")
        return ReferencedCalculator(
            model_path,
            chosen,
            EnergyReference.from_dict(meta),
            multi_fidelity=bool(meta["multi_fidelity"]),
            device=device,
        )
