"""Labelling with the per-call oracle store: provenance, failures, no repeated calls."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from alkappa.io import read_json
from alkappa.labelling import count_oracle_calls, label_frames, oracle_ledger, structure_key
from alkappa.oracles import Oracle, OracleError


class CountingEMT(Oracle):
    """EMT that counts its calls and fails on structures whose first x coordinate is < -0.5."""

    default_fidelity = "emt"

    def __init__(self, **options):
        super().__init__(**options)
        self.calls = 0

    def make_calculator(self):
        oracle = self

        class _Calc(Calculator):
            implemented_properties = ("energy", "forces", "stress")

            def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
                super().calculate(atoms, properties, system_changes)
                oracle.calls += 1
                if atoms.positions[0, 0] < -0.5:
                    raise RuntimeError("SCF not converged")
                emt = EMT()
                emt.calculate(atoms, ["energy", "forces", "stress"], all_changes)
                self.results = dict(emt.results)

        return _Calc()


def _frames(n, seed=0):
    rng = np.random.default_rng(seed)
    base = bulk("Cu", cubic=True)
    out = []
    for i in range(n):
        a = base.copy()
        a.positions += rng.normal(0, 0.05, size=a.positions.shape)
        a.info.update({"source": "al", "iteration": 3, "time": 10.0 * i, "temperature": 300.0})
        out.append(a)
    return out


SPEC = {"name": "counting-emt"}


def test_labels_match_the_oracle_and_carry_provenance(tmp_path):
    oracle = CountingEMT()
    frames = _frames(3)
    out = label_frames(frames, oracle, SPEC, tmp_path, purpose="al", progress=False)
    assert out.oracle_calls == 3 and out.reused == 0 and not out.failures
    for src, lab in zip(frames, out.frames, strict=True):
        ref = src.copy()
        ref.calc = EMT()
        assert lab.get_potential_energy() == ref.get_potential_energy()
        np.testing.assert_allclose(lab.get_forces(), ref.get_forces())
        for key in ("iteration", "time", "temperature", "source"):
            assert lab.info[key] == src.info[key]
        assert lab.info["fidelity"] == "emt"
        assert lab.info["oracle_seconds"] >= 0


def test_rerun_makes_no_new_calls(tmp_path):
    frames = _frames(4)
    first = CountingEMT()
    label_frames(frames[:2], first, SPEC, tmp_path, purpose="al", progress=False)  # "crash" after 2
    second = CountingEMT()
    out = label_frames(frames, second, SPEC, tmp_path, purpose="al", progress=False)
    assert second.calls == 2  # only the two missing frames
    assert out.reused == 2 and out.oracle_calls == 2
    assert count_oracle_calls(tmp_path) == {"al": 4}


def test_failure_is_recorded_and_skipped(tmp_path):
    frames = _frames(3)
    frames[1].positions[0, 0] = -1.0
    oracle = CountingEMT()
    out = label_frames(frames, oracle, SPEC, tmp_path, purpose="al", progress=False)
    assert len(out.frames) == 2 and len(out.failures) == 1
    assert "SCF not converged" in out.failures[0]["error"]
    assert out.failures[0]["time"] == 10.0
    # the failure is remembered: a rerun does not call the oracle on it again
    again = CountingEMT()
    out2 = label_frames(frames, again, SPEC, tmp_path, purpose="al", progress=False)
    assert again.calls == 0 and len(out2.failures) == 1


def test_retry_makes_the_next_run_call_exactly_the_failed_frames(tmp_path, capsys):
    from alkappa.cli import main
    from alkappa.labelling import retry_failed

    frames = _frames(3)
    frames[1].positions[0, 0] = -1.0
    store = tmp_path / "CuX" / "oracle"
    label_frames(frames, CountingEMT(), SPEC, store, purpose="al", progress=False)
    assert count_oracle_calls(store) == {"al": 3}
    # the cause is "fixed": the record is moved aside (kept), the next run calls only that frame
    assert main(["oracle-retry", str(tmp_path / "CuX")]) == 0
    assert "1 failed oracle call(s) will be retried" in capsys.readouterr().out
    healthy = CountingEMT()
    out = label_frames(frames, healthy, SPEC, store, purpose="al", progress=False)
    # still failing here (the fake oracle fails on that structure): one call, recorded again
    assert healthy.calls == 1 and len(out.failures) == 1 and len(out.frames) == 2
    assert count_oracle_calls(store) == {"al": 4}  # every paid call stays in the ledger
    assert len(retry_failed(store)) == 1 and len(list((store / "retried").iterdir())) == 2
    assert main(["oracle-retry", str(tmp_path / "CuX")]) == 0
    assert "no failed oracle calls" in capsys.readouterr().out


def test_key_depends_on_structure_and_oracle_settings():
    a = _frames(1)[0]
    b = a.copy()
    b.positions[0, 0] += 1e-3
    assert structure_key(a, SPEC) != structure_key(b, SPEC)
    assert structure_key(a, SPEC) != structure_key(a, {"name": "counting-emt", "x": 1})
    c = a.copy()
    c.positions[0, 0] += 1e-9  # below the rounding: the same calculation
    assert structure_key(a, SPEC) == structure_key(c, SPEC)


def test_merge_adds_every_level_and_lists_failures(tmp_path):
    import pytest

    from alkappa.al.steps import merge_step
    from alkappa.io import read_dataset, read_json, write_dataset

    def labelled(seed, fidelity):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.05, seed=seed)
        atoms.calc = EMT()
        atoms.get_potential_energy()
        atoms.info["fidelity"] = fidelity
        return atoms

    write_dataset(tmp_path / "d0.extxyz", [labelled(0, "low"), labelled(1, "low")])
    write_dataset(tmp_path / "f0.extxyz", [labelled(2, "low"), labelled(2, "high")])
    failed = bulk("Cu", "fcc", a=3.6, cubic=True)
    failed.info["oracle_error"] = "SCF did not converge"
    write_dataset(tmp_path / "f1.extxyz", [failed])
    labels = [tmp_path / "f0.extxyz", tmp_path / "f1.extxyz"]
    merge_step(
        tmp_path / "d0.extxyz", labels, tmp_path / "d1.extxyz", tmp_path / "m.json", iteration=1
    )
    record = read_json(tmp_path / "m.json")
    assert record["added_by_fidelity"] == {"low": 1, "high": 1}
    assert record["size_after"] == len(read_dataset(tmp_path / "d1.extxyz")) == 4
    assert record["oracle_calls"] == 3 and len(record["failed"]) == 1
    # a single path (a Snakemake checkpoint placeholder) is refused, not read letter by letter
    with pytest.raises(TypeError, match="instead of the list of label files"):
        merge_step(
            tmp_path / "d0.extxyz",
            str(labels[0]),
            tmp_path / "x.extxyz",
            tmp_path / "x.json",
            iteration=1,
        )


class FlakyEMT(CountingEMT):
    """EMT whose first ``failures`` calls fail with an error of type ``error``."""

    def __init__(self, failures, error=OSError, **options):
        super().__init__(**options)
        self.failures = failures
        self.error = error

    def make_calculator(self):
        inner = super().make_calculator()
        oracle = self

        class _Calc(type(inner)):
            def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
                if oracle.failures > 0:
                    oracle.failures -= 1
                    oracle.calls += 1
                    raise oracle.error("node lost")
                super().calculate(atoms, properties, system_changes)

        return _Calc()


def test_a_structure_split_by_rounding_is_not_paid_twice(tmp_path):
    frame = _frames(1)[0]
    frame.positions[0, 0] = 0.1234565  # on a rounding boundary of the 1e-6 Å key
    first = CountingEMT()
    label_frames([frame], first, SPEC, tmp_path, purpose="initial", progress=False)
    jittered = frame.copy()
    jittered.positions[0, 0] += 2e-9  # what a recomputed sample may differ by
    assert structure_key(jittered, SPEC) != structure_key(frame, SPEC)
    again = CountingEMT()
    out = label_frames([jittered], again, SPEC, tmp_path, purpose="initial", progress=False)
    assert again.calls == 0 and out.reused == 1
    assert out.frames[0].get_potential_energy() == pytest.approx(first_energy(frame), rel=1e-12)
    # farther than the tolerance: another calculation
    moved = frame.copy()
    moved.positions[0, 0] += 1e-4
    label_frames([moved], again, SPEC, tmp_path, purpose="initial", progress=False)
    assert again.calls == 1


def first_energy(atoms):
    ref = atoms.copy()
    ref.calc = EMT()
    return ref.get_potential_energy()


def test_transient_failures_are_retried_with_back_off(tmp_path, monkeypatch):
    import alkappa.labelling

    waits = []
    monkeypatch.setattr(alkappa.labelling, "_sleep", waits.append)
    spec = {**SPEC, "retries": 2, "retry_delay": 5.0}
    oracle = FlakyEMT(failures=2)
    out = label_frames(_frames(1), oracle, spec, tmp_path, purpose="al", progress=False)
    assert len(out.frames) == 1 and not out.failures
    assert waits == [5.0, 10.0] and out.oracle_calls == 3
    assert out.frames[0].info["oracle_attempts"] == 3
    assert count_oracle_calls(tmp_path) == {"al": 3}  # every attempt was paid
    # and timed: the failed attempts' time is stored with the result
    (entry,) = oracle_ledger(tmp_path).values()
    assert entry.cost.calls == 3 and entry.cost.untimed_cpu == entry.cost.untimed_wall == 0
    assert entry.cost.wall_seconds > out.frames[0].info["oracle_seconds"] > 0


def test_a_transient_failure_left_over_is_retried_by_the_next_run(tmp_path, monkeypatch):
    import alkappa.labelling

    monkeypatch.setattr(alkappa.labelling, "_sleep", lambda s: None)
    spec = {**SPEC, "retries": 1}
    frames = _frames(2)
    # the job fails (so Snakemake runs it again) after storing what it could
    with pytest.raises(OracleError, match=r"1 oracle call\(s\) for al still failed after 1 ret"):
        label_frames(frames, FlakyEMT(failures=2), spec, tmp_path, purpose="al", progress=False)
    (record,) = [read_json(p) for p in tmp_path.glob("*.failed.json")]
    assert record["transient"] and record["attempts"] == 2 and "node lost" in record["error"]
    assert len(list(tmp_path.glob("*.extxyz"))) == 1
    healthy = CountingEMT()
    out = label_frames(frames, healthy, spec, tmp_path, purpose="al", progress=False)
    assert healthy.calls == 1 and len(out.frames) == 2 and not out.failures
    assert count_oracle_calls(tmp_path) == {"al": 4}  # 2 failed attempts + 2 results
    # the failure set aside and the result of the same structure: one entry, every call timed
    ledger = oracle_ledger(tmp_path)
    assert sorted(e.cost.calls for e in ledger.values()) == [1, 3]
    assert all(not e.failed and e.cost.untimed_wall == 0 for e in ledger.values())
    assert record["oracle_seconds"] > 0 and record["oracle_cpu_seconds"] >= 0


def test_a_permanent_failure_is_not_retried(tmp_path, monkeypatch):
    import alkappa.labelling

    monkeypatch.setattr(alkappa.labelling, "_sleep", lambda s: None)
    spec = {**SPEC, "retries": 3}
    oracle = FlakyEMT(failures=5, error=RuntimeError)  # e.g. SCF not converged
    out = label_frames(_frames(1), oracle, spec, tmp_path, purpose="al", progress=False)
    assert oracle.calls == 1 and not out.failures[0]["transient"]
    again = CountingEMT()
    label_frames(_frames(1), again, spec, tmp_path, purpose="al", progress=False)
    assert again.calls == 0  # recorded; only `alkappa oracle-retry` lets it run again


def test_the_call_policy_is_not_part_of_the_key():
    a = _frames(1)[0]
    assert structure_key(a, SPEC) == structure_key(a, {**SPEC, "retries": 5, "retry_delay": 1})


class Killed(BaseException):
    """Stands for a SIGKILL of the labelling job."""


def test_a_kill_during_initial_labelling_repeats_no_oracle_call(tmp_path, monkeypatch):
    from alkappa import sampling
    from alkappa.al.steps import initial_data_step
    from alkappa.config import load_config, material_settings
    from alkappa.io import read_json, write_dataset

    settings = material_settings(load_config("config/test.yaml"), "Cu")
    settings["oracle"] = {"name": "emt"}
    structure = tmp_path / "structure.extxyz"
    write_dataset(structure, [bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))])
    store = tmp_path / "oracle"
    paths = (tmp_path / "data" / "initial.extxyz",)
    record = tmp_path / "data" / "initial.json"

    from alkappa.oracles import get_oracle

    calls = {"n": 0}
    oracle_type = type(get_oracle({"name": "emt"}))
    real_label = oracle_type.label

    def counting_label(self, atoms):
        calls["n"] += 1
        if calls.get("kill_at") == calls["n"]:
            raise Killed
        return real_label(self, atoms)

    monkeypatch.setattr(oracle_type, "label", counting_label)
    calls["kill_at"] = 4  # inside the initial frames, after the fc2 and two samples
    with pytest.raises(Killed):
        initial_data_step(settings, structure, store, *paths, record)
    paid_before = calls["n"] - 1

    # a rerun draws again with noise in the last digits (threads, degenerate modes)
    real_draw = sampling.harmonic_samples

    def noisy(*args, **kwargs):
        frames = real_draw(*args, **kwargs)
        for atoms in frames:
            atoms.positions += np.random.default_rng(7).uniform(-1e-8, 1e-8, atoms.positions.shape)
        return frames

    monkeypatch.setattr(sampling, "harmonic_samples", noisy)
    calls.update(n=0, kill_at=None)
    initial_data_step(settings, structure, store, *paths, record)
    total = sum(read_json(record)["oracle_calls"].values())
    assert paid_before + calls["n"] == total  # nothing paid twice
    assert sum(count_oracle_calls(store).values()) == total


def test_retry_removes_exactly_the_outputs_made_without_the_failed_calls(tmp_path):
    from alkappa.io import write_dataset, write_json
    from alkappa.labelling import FAILED_KEYS, remove_outputs_without

    frame = _frames(1)[0]
    labels = tmp_path / "al/iter_0/labels"
    labels.mkdir(parents=True)
    without = frame.copy()
    without.info[FAILED_KEYS] = "k1"
    write_dataset(labels / "frame_0.extxyz", [without])
    write_dataset(labels / "frame_1.extxyz", [frame])
    write_json(tmp_path / "data/initial.json", {"failures": [{"key": "k2", "error": "x"}]})
    write_json(tmp_path / "data/other.json", {"failures": [{"key": "k9", "error": "x"}]})
    write_json(tmp_path / "oracle/k2.failed.json", {"key": "k2", "failures": [{"key": "k2"}]})
    removed = remove_outputs_without(tmp_path, ["k1", "k2"])
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == [
        "al/iter_0/labels/frame_0.extxyz",
        "data/initial.json",
    ]
    assert (labels / "frame_1.extxyz").exists() and (tmp_path / "oracle/k2.failed.json").exists()
