"""benchmarks/edm_heldout.py: the loss-variant choice on the tune videos and the loss option of the study."""

from __future__ import annotations

import json

import pytest

from nrsfm_kit.utils.testing import benchmark_script


@pytest.fixture(scope="module")
def study():
    with benchmark_script("edm_heldout") as module:
        yield module


def test_loss_report_chooses_the_lowest_mean_abs_rel(study, tmp_path):
    rows = []
    for v, const in ((1, 0.3), (2, 0.25)):
        for norm, trim in study.LOSS_GRID:
            err = 0.5 if trim == 0 else 0.1 + trim + (0.05 if norm == "mean" else 0.0) + 0.01 * v
            rows.append({"video": v, "normalization": norm, "trim": trim, "abs_rel": {"all": err, "static": err},
                         "constant": {"all": const}})
    (tmp_path / "loss_runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = study.loss_report(tmp_path)
    assert summary["chosen"] == "log:0.1"
    assert summary["variants"]["log:0.1"]["beats_constant"] == 2
    assert summary["variants"]["mean:0"]["beats_constant"] == 0
    assert abs(summary["constant_mean"] - 0.275) < 1e-12
    assert "log:0.1" in (tmp_path / "loss_report.md").read_text()
    assert json.loads((tmp_path / "loss_report.json").read_text())["chosen"] == "log:0.1"


def test_with_loss_sets_the_variant(study):
    from nrsfm_kit.edm.training import preset_config

    cfg, _ = preset_config(True)
    assert study._with_loss(cfg, None) is cfg
    out = study._with_loss(cfg, "log:0.2")
    assert out.loss.normalization == "log" and out.loss.trim == 0.2 and out.loss.lookup == cfg.loss.lookup
    with pytest.raises(ValueError, match="normalization"):
        study._with_loss(cfg, "max:0.2")
