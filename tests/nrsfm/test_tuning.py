"""The leave-one-out tuning protocol and the restart-selection study (nrsfm_kit.nrsfm.tuning)."""

from __future__ import annotations

import json

import pytest

from nrsfm_kit.nrsfm.tuning import leave_one_out, read_runs, score_table, selection_study, tuned_on_test

# candidate "b" is tuned to sequence s1 (great there, poor elsewhere); "a" is good everywhere
TABLE = {"a": {"s1": 0.10, "s2": 0.10, "s3": 0.10}, "b": {"s1": 0.01, "s2": 0.30, "s3": 0.05}}


def test_leave_one_out_never_uses_the_held_out_sequence():
    loo = leave_one_out(TABLE)
    assert loo["s1"]["chosen"] == "a" and loo["s1"]["score"] == 0.10  # b's 0.01 on s1 cannot choose b for s1
    assert loo["s2"]["chosen"] == "b" and loo["s2"]["score"] == 0.30  # without s2, b looks better: honest loss
    assert loo["s3"]["chosen"] == "a"
    oracle = tuned_on_test(TABLE)
    assert [oracle[s]["chosen"] for s in ("s1", "s2", "s3")] == ["b", "a", "b"]
    mean_loo = sum(v["score"] for v in loo.values()) / 3
    mean_oracle = sum(v["score"] for v in oracle.values()) / 3
    assert mean_oracle < mean_loo  # tuning on the test data looks better than it is
    assert list(leave_one_out(TABLE, held_out=["s2"])) == ["s2"]


def test_bad_tables():
    for table, match in (({}, "at least one candidate"), ({"a": {"s1": 1.0}}, "at least 2 sequences"),
                         ({"a": {"s1": 1.0, "s2": 1.0}, "b": {"s1": 1.0}}, "'b' without \\['s2'\\]"),
                         ({"a": {"s1": 1.0, "s2": float("nan")}}, "non-finite")):
        with pytest.raises(ValueError, match=match):
            leave_one_out(table)
    with pytest.raises(ValueError, match="held_out: expected sequences of the table"):
        leave_one_out(TABLE, held_out=["s9"])


def _run(seq, seed, e3d, reproj, measure, cand="c0", method="m"):
    return {"method": method, "candidate": cand, "sequence": seq, "seed": seed, "e3d": e3d, "reproj": reproj,
            "measure": measure}


def test_read_runs_score_table_and_selection(tmp_path):
    runs = [_run("s1", 0, 0.30, 0.10, 0.9), _run("s1", 1, 0.10, 0.105, 0.2), _run("s1", 2, 0.50, 0.50, 0.1),
            _run("s2", 0, 0.05, 0.01, 0.5), _run("s2", 1, 0.06, 0.02, 0.5),
            _run("s1", 0, 0.2, 0.1, 0.1, cand="c1")]
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in runs) + "\n")
    back = read_runs(path)
    assert back == runs
    assert score_table(back, "m") == {"c0": {"s1": 0.30, "s2": 0.05}, "c1": {"s1": 0.2}}
    st = selection_study(back, "m", "c0")
    assert list(st) == ["s1"]  # s2 has only two of the three seeds
    assert st["s1"]["best"] == 0.10 and st["s1"]["reproj"] == 0.30 and not st["s1"]["reproj_ok"]
    assert st["s1"]["reproj+measure"] == 0.10 and st["s1"]["reproj+measure_ok"]
    with pytest.raises(ValueError, match="expected 'stress' in every run"):
        score_table(back, "m", metric="stress")


def test_read_runs_bad_files(tmp_path):
    with pytest.raises(ValueError, match="found no file at"):
        read_runs(tmp_path / "none.jsonl")
    p = tmp_path / "bad.jsonl"
    p.write_text('{"method": "m"}\n')
    with pytest.raises(ValueError, match="line 1 .* without \\['candidate', 'sequence', 'seed'\\]"):
        read_runs(p)
    p.write_text("{not json\n")
    with pytest.raises(ValueError, match="invalid JSON on line 1"):
        read_runs(p)


def _case(e3d, reproj, m):
    return [{"e3d": e, "reproj": r, "m": x} for e, r, x in zip(e3d, reproj, m)]


def test_pick_run_and_selection_rule_loo():
    from nrsfm_kit.nrsfm.tuning import pick_run, selection_rule_loo

    # the run with the lowest reprojection is the worst; "m" finds the best one when the slack admits it
    a = _case([0.5, 0.1, 0.3], [0.01, 0.015, 0.03], [0.9, 0.1, 0.5])
    assert pick_run(a, "reproj", 0) == 0
    assert pick_run(a, "m", 0.1) == 0 and pick_run(a, "m", 1.0) == 1 and pick_run(a, "m", 10) == 1
    groups = {("x", "s1"): a, ("y", "s1"): a,
              ("x", "s2"): _case([0.4, 0.2], [0.01, 0.012], [0.8, 0.2]),
              ("x", "s3"): _case([0.1, 0.9], [0.01, 0.5], [0.3, 0.1])}  # here only the slack keeps "m" honest
    rules = [("reproj", 0.0), ("m", 1.0), ("m", 100.0)]
    out = selection_rule_loo(groups, rules)
    assert out["total"] == 4 and set(out["folds"]) == {"s1", "s2", "s3"}
    # without s3, m@1 and m@100 tie on cases and ratio: the earlier rule (m@1) wins; it keeps s3's good run
    assert out["folds"]["s3"]["rule"] == "m@1" and out["folds"]["s3"]["cases"]["x"]["ok"]
    assert out["folds"]["s1"]["rule"] == "m@1" and out["ok"] == 4
    assert out["chosen"] == {"m@1": 3} and out["mean_kept"] == pytest.approx((0.1 + 0.1 + 0.2 + 0.1) / 4)
    assert out["mean_first"] == pytest.approx((0.5 + 0.5 + 0.4 + 0.1) / 4)
    # the held-out sequence never chooses its own rule: a rule that only works on s1 is not chosen for s1
    g2 = {("x", "s1"): _case([0.5, 0.1], [0.01, 0.02], [0.9, 0.1]),
          ("x", "s2"): _case([0.1, 0.5], [0.01, 0.02], [0.9, 0.1])}
    out2 = selection_rule_loo(g2, [("reproj", 0.0), ("m", 1.0)])
    assert out2["folds"]["s1"]["rule"] == "reproj@0" and not out2["folds"]["s1"]["cases"]["x"]["ok"]
    with pytest.raises(ValueError, match="expected a value of 'q' in every run"):
        pick_run(a, "q", 1.0)
    with pytest.raises(ValueError, match="groups, rules: expected at least one of each"):
        selection_rule_loo({}, rules)
    with pytest.raises(ValueError, match=r"groups\[\('x', 's1'\)\]: expected at least one run"):
        selection_rule_loo({("x", "s1"): []}, rules)
