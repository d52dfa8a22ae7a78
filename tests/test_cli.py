"""The alkappa command line."""

from __future__ import annotations

from ase.build import bulk

from alkappa.cli import main
from alkappa.labelling import label_frames
from alkappa.oracles import get_oracle


def test_plugins_lists_builtins(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "alkappa.oracles:" in out and "tblite" in out and "torchscript-nequip" in out
    assert "alkappa.models: nequip" in out


def test_oracle_calls_counts_the_store(tmp_path, capsys):
    spec = {"name": "emt"}
    frames = []
    for i in range(3):
        a = bulk("Cu", cubic=True)
        a.positions[0, 0] += 0.01 * (i + 1)
        frames.append(a)
    store = tmp_path / "Cu" / "oracle"
    label_frames(frames[:2], get_oracle(spec), spec, store, purpose="initial", progress=False)
    label_frames(frames, get_oracle(spec), spec, store, purpose="al", progress=False)
    assert main(["oracle-calls", str(tmp_path / "Cu")]) == 0
    lines = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert lines == {"initial": "2", "al": "1", "total": "3"}
    assert main(["oracle-calls", str(tmp_path / "missing")]) == 1
