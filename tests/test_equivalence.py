"""hwlib.study.equivalence: a change on the training path keeps its stored runs only with evidence, and the evidence file
cannot be edited by hand; runs of the first key scheme are carried over where the code is provably the same."""

import dataclasses
import json

import pytest

from hwlib.study import equivalence as eq
from hwlib.study import codes, obtain
from hwlib.study import store as st
from hwlib.config import load_profile

OLD = "0123456789abcdef"          # a training code that is not today's


def _record(cfg, seed, code, name="arm", evals=(0.9,), kind="amx"):
    hist = {"steps": [1, 2], "loss": [1.0, 0.5], "seconds": [0.1, 0.2], "train_seconds": 1.0,
            "evals": [{"step": 2, "map_standard": v, "map_seed": v / 2} for v in evals]}
    d = st.new_record("detector", "detector", f"{name}_s{seed}", cfg, seed, hist, code,
                      machine={"cpu": "x", "cpu_kind": kind, "gpu": ""})
    spec = {"kind": "detector", "split": "test", "n": 4, "code": "e"}
    d["evaluations"] = {st.evaluation_key(spec): {"spec": spec, "metrics": {"map_standard": evals[-1],
                                                                            "map_seed": evals[-1] / 2}}}
    return d


@pytest.fixture
def store(tmp_path):
    cfg = load_profile("smoke").detector
    s = st.RunStore(tmp_path / "runs")
    for seed in (0, 1):
        s.put(_record(cfg, seed, OLD))
    return s, cfg


def _fake_verify(verdict, diff=0.0):
    def verify(rec, tolerance=None, device="auto", precision="auto", progress=True, store=None):
        v = rec.data["evaluations"][next(iter(rec.data["evaluations"]))]["metrics"]["map_standard"]
        return {"name": rec.name, "verdict": verdict, "same_machine": True, "max_abs": diff,
                "validation": {"max_abs": diff}, "machine": {"cpu": "x", "cpu_kind": "amx"},
                "stored_machine": rec.data["machine"], "precision": "bf16", "stored_precision": "bf16",
                "seconds": 1.0, "reported": [("test map_standard (test, n=4)", v, v + diff, 0.01)]}
    return verify


def test_an_unproved_change_leaves_runs_stale_and_a_proved_one_serves_them(store, monkeypatch, capsys):
    s, cfg = store
    f = eq.equivalence_file(s.root)
    assert obtain.stored_run("detector", "detector", cfg, 0, s) is None          # another code: not served
    row = eq.classify(s.records())["detector"]
    assert list(row["stale"]) == [OLD] and len(row["stale"][OLD]) == 2 and not row["current"]
    monkeypatch.setattr("hwlib.study.verify.verify", _fake_verify("identical"))
    made = eq.prove(s, "detector", sample=1, path=f)
    assert [e["verdict"] for e in made] == ["accepted"] and made[0]["runs_served"] == 2
    assert eq.accepted_codes("detector", codes.training_code("detector"), path=f) == [OLD]
    for seed in (0, 1):                                                        # both runs served, not only the proof
        rec = obtain.stored_run("detector", "detector", cfg, seed, s)
        assert rec is not None and rec.data["code"] == OLD
    assert obtain.stored_run("detector", "detector", cfg, 2, s) is None            # a run never stored: still missing
    assert eq.main(["status", "--store", str(s.root), "--profile", "smoke"]) == 0
    assert "2 of accepted equivalent code(s), 0 stale" in capsys.readouterr().out


def test_a_change_that_moves_a_result_is_refused(store, monkeypatch, capsys):
    s, cfg = store
    monkeypatch.setattr("hwlib.study.verify.verify", _fake_verify("differs", 0.3))
    assert eq.main(["prove", "--task", "detector", "--store", str(s.root), "--profile", "smoke"]) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and "retrained 1.200000" in out
    assert obtain.stored_run("detector", "detector", cfg, 0, s) is None
    assert eq.main(["status", "--store", str(s.root), "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "2 stale" in out and "refused" in out and "differs" in out


def test_a_hand_edited_file_or_a_proof_from_another_code_is_a_clear_error(store, monkeypatch, capsys):
    s, cfg = store
    f = eq.equivalence_file(s.root)
    monkeypatch.setattr("hwlib.study.verify.verify", _fake_verify("identical"))
    eq.prove(s, "detector", path=f)
    good = json.loads(f.read_text())
    edited = json.loads(json.dumps(good))
    edited["entries"][0]["proofs"][0]["reported"][0]["retrained"] = 0.5       # a number changed by hand
    f.write_text(json.dumps(edited))
    with pytest.raises(eq.EquivalenceError, match="edited by hand"):
        obtain.stored_run("detector", "detector", cfg, 0, s)
    assert eq.main(["status", "--store", str(s.root), "--profile", "smoke"]) == 2
    assert "edited by hand" in capsys.readouterr().err
    # each with its digest made right again: what the checks themselves refuse
    for field, value, message in (("code", "ffffffffffffffff", "retrained by code 'ffffffffffffffff'"),
                                  ("verdict", "differs", "accepted, but"),
                                  ("stored_code", "eeeeeeeeeeeeeeee", "is a run of code 'eeeeeeeeeeeeeeee'"),
                                  ("verdict", "within tolerance", "not identical")):   # same machine, not identical
        bad = json.loads(json.dumps(good))
        e = bad["entries"][0]
        e["proofs"][0][field] = value
        e["digest"] = eq.entry_digest(e)
        f.write_text(json.dumps(bad))
        with pytest.raises(eq.EquivalenceError, match=message):
            eq.load(f)
    f.write_text("{not json")
    with pytest.raises(eq.EquivalenceError, match="not JSON"):
        eq.load(f)


def test_accepted_changes_chain():
    def entry(a, b, verdict="accepted"):
        return {"task": "detector", "from_code": a, "to_code": b, "verdict": verdict}
    entries = [entry("A", "B"), entry("B", "C"), entry("X", "C", "refused"), entry("C", "D")]
    assert eq.accepted_codes("detector", "D", entries) == ["C", "B", "A"]
    assert eq.accepted_codes("detector", "B", entries) == ["A"]
    assert eq.accepted_codes("keypoint", "D", entries) == []
    # A's runs retrained under D and refused: no chain serves them to D
    assert eq.accepted_codes("detector", "D", entries + [entry("A", "D", "refused")]) == ["C", "B"]


def test_every_method_of_a_task_proves_itself(tmp_path, monkeypatch):
    """One keypoint code serves three methods: a proof on a heatmap run says nothing of regression runs."""
    kcfg = load_profile("smoke").keypoint
    s = st.RunStore(tmp_path / "runs")
    hist = {"steps": [1], "loss": [1.0], "seconds": [0.1], "train_seconds": 1.0, "evals": [{"step": 1, "pck_0.05": 0.5}]}
    for method in ("heatmap", "regression"):
        for seed in (0, 1):
            s.put(st.new_record("keypoint", method, f"{method}_s{seed}", kcfg, seed, hist, OLD,
                                ignore=kcfg.unread_by(method), machine={"cpu_kind": "amx"}))
    seen = []

    def fake(rec, *a, **k):
        seen.append(rec.name)
        return {"name": rec.name, "verdict": "identical", "same_machine": True, "max_abs": 0.0,
                "validation": {"max_abs": 0.0}, "machine": {}, "stored_machine": {}, "precision": "bf16",
                "stored_precision": "bf16", "seconds": 1.0, "reported": []}

    monkeypatch.setattr("hwlib.study.verify.verify", fake)
    made = eq.prove(s, "keypoint", sample=1, path=eq.equivalence_file(s.root))
    assert {n.rsplit("_s", 1)[0] for n in seen} == {"heatmap", "regression"} and made[0]["verdict"] == "accepted"
    with pytest.raises(eq.EquivalenceError, match="regression"):
        eq.prove(st.RunStore(tmp_path / "runs"), "keypoint", runs=["heatmap_s0"],
                 path=tmp_path / "other-equivalence.json")


def test_rekey_carries_first_scheme_runs_over_and_nothing_else(tmp_path):
    cfg = load_profile("smoke").detector
    s = st.RunStore(tmp_path / "runs")
    legacy = st.closure_digest(codes.TRAINING_PATH["detector"], located=True)
    legacy_eval = st.closure_digest(codes.EVAL_PATH["detector"], located=True)
    assert legacy != codes.training_code("detector")
    d = _record(cfg, 0, legacy, name="old")
    spec = {"kind": "detector", "split": "test", "n": 4, "code": legacy_eval}
    d["evaluations"] = {st.evaluation_key(spec): {"spec": spec, "metrics": {"map_standard": 0.9}}}
    old_key = s.put(d).key
    s.put(_record(cfg, 1, OLD, name="foreign"))                     # another code: not provably today's, kept stale
    assert eq.rekey(s) == ["old_s0"]
    rec = obtain.stored_run("detector", "detector", cfg, 0, s)
    assert rec is not None and rec.data["rekeyed_from"] == {"training_key": old_key, "code": legacy}
    assert rec.data["history"] == d["history"]
    new_spec = dict(spec, code=codes.eval_code("detector"))
    assert rec.evaluation(new_spec)["metrics"] == {"map_standard": 0.9}
    assert len(list(s.root.glob("old_s0.*.json"))) == 1                # the old file is gone
    assert s.find("foreign_s1")[0].data["code"] == OLD
    assert eq.rekey(s) == []                                           # idempotent
