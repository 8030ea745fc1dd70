"""Matcher training (App. A.2): stages, exact resume, checkpoints, presets, bad input."""

import pytest
import torch

from nrsfm_kit.data.rgbd import synthetic_rgbd_pair
from nrsfm_kit.matching.training import (
    MatcherStage,
    MatcherTrainingPreset,
    load_matcher,
    matcher_preset,
    save_matcher,
    train_matcher,
)
from nrsfm_kit.models.matcher import MatcherConfig, SiameseMatcher


@pytest.fixture(scope="module")
def pairs():
    return [synthetic_rgbd_pair(64, 96, seed=s, time_gap=0.6, t_source=1.0) for s in (1, 2)]


def _params(m):
    return torch.cat([p.detach().reshape(-1) for p in m.parameters()])


def test_resume_is_exact(pairs, tmp_path):
    p = matcher_preset("smoke")
    torch.manual_seed(0)
    m0 = SiameseMatcher(p.matcher)
    init = {k: v.clone() for k, v in m0.state_dict().items()}
    full, _ = train_matcher(p, pairs, out_dir=tmp_path / "a", stages=("heatmap",), steps=4, progress=False,
                            matcher=m0)
    m1 = SiameseMatcher(p.matcher)
    m1.load_state_dict(init)
    train_matcher(p, pairs, out_dir=tmp_path / "b", stages=("heatmap",), steps=2, progress=False, matcher=m1)
    m2 = SiameseMatcher(p.matcher)
    m2.load_state_dict(init)
    resumed, res = train_matcher(p, pairs, out_dir=tmp_path / "b", stages=("heatmap",), steps=4, progress=False,
                                 matcher=m2)
    assert res["heatmap"].resumed_from == 2
    assert torch.equal(_params(full), _params(resumed))


def test_visibility_stage_trains_only_the_visibility_head(pairs):
    p = matcher_preset("smoke")
    m = SiameseMatcher(p.matcher)
    vis_ids = {id(q) for q in m.visibility_parameters()}
    before = {n: q.detach().clone() for n, q in m.named_parameters()}
    train_matcher(p, pairs, stages=("visibility",), steps=3, progress=False, matcher=m)
    changed = {n for n, q in m.named_parameters() if not torch.equal(q.detach(), before[n])}
    named = dict(m.named_parameters())
    assert changed and all(id(named[n]) in vis_ids for n in changed)
    assert all(q.requires_grad for q in m.parameters())  # unfrozen again after training


def test_heatmap_stage_lowers_the_loss_and_logs_validation(pairs):
    p = matcher_preset("smoke")
    p.log_every = 1
    m, res = train_matcher(p, pairs, val_pairs=pairs[:1], stages=("heatmap",), steps=12, progress=False)
    h = res["heatmap"].history
    assert len(h) == 12 and "val_err_px" in h[-1]
    first, last = sum(e["loss"] for e in h[:3]) / 3, sum(e["loss"] for e in h[-3:]) / 3
    assert last < first


def test_save_load_round_trip(tmp_path):
    m = SiameseMatcher(MatcherConfig.teaching())
    path = save_matcher(tmp_path / "m.pt", m, note="x")
    m2 = load_matcher(path)
    assert not m2.training
    assert torch.equal(_params(m), _params(m2))
    torch.save({"kind": "other"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="deepdeform-matcher"):
        load_matcher(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_matcher(tmp_path / "missing.pt")


def test_presets_and_bad_input(pairs):
    assert matcher_preset("paper").matcher.patch_size == 224
    assert matcher_preset("paper").stages["heatmap"].optimizer == "sgd"
    assert matcher_preset("paper").stages["heatmap"].lr_step == 30_000
    with pytest.raises(ValueError, match="preset"):
        matcher_preset("nope")
    with pytest.raises(ValueError, match="optimizer"):
        MatcherStage(10, optimizer="rmsprop")
    with pytest.raises(ValueError, match="sampling.patch_size"):
        from nrsfm_kit.matching.data import SamplingConfig

        MatcherTrainingPreset("x", MatcherConfig.teaching(), {}, sampling=SamplingConfig(patch_size=32))
    with pytest.raises(ValueError, match="stages"):
        train_matcher(matcher_preset("smoke"), pairs, stages=("nope",), progress=False)
    with pytest.raises(ValueError, match="matcher"):
        train_matcher(matcher_preset("smoke"), pairs, matcher=SiameseMatcher(MatcherConfig(patch_size=32)),
                      progress=False)
