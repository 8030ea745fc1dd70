"""The scale anchor (ours): (mean log d - log sqrt(d_min d_max))^2, the gauge term of the depth pre-training.

Gradchecked in float64; its gradient with respect to log d is the same for every pixel (a pure change of scale,
along which the EDM loss is constant: checked on the loss itself); zero at the range centre; bad inputs refused;
the configs' weights checked; pre-training adds it to every sample's loss.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from nrsfm_kit.edm.loss import EDMLossConfig, edm_view_pair_loss, scale_anchor_loss


def test_gradcheck_float64():
    d = (torch.rand(2, 5, 6, dtype=torch.float64) * 3 + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: scale_anchor_loss(x, 0.5, 10.0), (d,))


def test_value_and_pure_scale_gradient():
    lo, hi = 0.5, 8.0
    centre = math.sqrt(lo * hi)
    assert float(scale_anchor_loss(torch.full((4, 4), centre, dtype=torch.float64), lo, hi)) == pytest.approx(0, abs=1e-24)
    d = torch.rand(3, 4, 5, dtype=torch.float64) + 0.7
    want = (d.log().mean() - math.log(centre)) ** 2
    assert float(scale_anchor_loss(d, lo, hi)) == pytest.approx(float(want), rel=1e-12)
    logd = d.log().requires_grad_()
    scale_anchor_loss(logd.exp(), lo, hi).backward()
    g = logd.grad
    assert torch.allclose(g, g.flatten()[0].expand_as(g), rtol=1e-12)  # the same for every pixel: a scale change


def test_the_edm_loss_is_blind_to_what_the_anchor_fixes():
    g = torch.Generator().manual_seed(0)
    H, W = 12, 16
    dk = torch.rand(H, W, generator=g, dtype=torch.float64) + 1.0
    dl = torch.rand(H, W, generator=g, dtype=torch.float64) + 1.0
    flow = torch.randn(H, W, 2, generator=g, dtype=torch.float64)
    K = torch.tensor([[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]], dtype=torch.float64)
    cfg = EDMLossConfig(num_pairs=500, beta=0.0)

    def loss(scale):
        return float(edm_view_pair_loss(dk * scale, dl * scale, flow, K, None, config=cfg,
                                        generator=torch.Generator().manual_seed(1), backend="torch"))

    assert loss(3.0) == pytest.approx(loss(1.0), rel=1e-9)  # a global scale: the EDM loss does not see it
    assert float(scale_anchor_loss(dk * 3.0, 0.5, 10.0)) != pytest.approx(float(scale_anchor_loss(dk, 0.5, 10.0)))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="min_depth, max_depth: expected 0 < min_depth < max_depth, found 2.0, 1.0"):
        scale_anchor_loss(torch.ones(3, 3), 2.0, 1.0)
    with pytest.raises(ValueError, match=r"depth: expected > 0 everywhere, found min -1"):
        scale_anchor_loss(-torch.ones(3, 3), 0.5, 10.0)
    with pytest.raises(ValueError, match="depth"):
        scale_anchor_loss(torch.full((3, 3), float("nan")), 0.5, 10.0)
    from nrsfm_kit.edm.pretrain import PretrainConfig
    from nrsfm_kit.edm.training import TwoStageConfig

    with pytest.raises(ValueError, match=r"scale_anchor: expected a weight >= 0, found -0.1"):
        PretrainConfig(scale_anchor=-0.1)
    with pytest.raises(ValueError, match=r"scale_anchor: expected a weight >= 0, found nan"):
        TwoStageConfig(scale_anchor=float("nan"))


def test_pretraining_adds_the_anchor_to_the_loss():
    from nrsfm_kit.edm.pretrain import PretrainConfig, pretrain_corpus

    base = PretrainConfig(frames=3, height=32, width=48, steps=1, net_width=8, backend="torch", log_every=1,
                          progress=False, loss=EDMLossConfig(num_pairs=1000, beta=0.3, beta_scale="residual"))
    on = pretrain_corpus(1, base)
    off = pretrain_corpus(1, dataclasses.replace(base, scale_anchor=0.0))
    # the same draws and initial weights: the first step's loss differs by the anchor term alone (> 0: the
    # untrained net is not at the range centre)
    assert on.history[0]["loss"] > off.history[0]["loss"]
    assert PretrainConfig().scale_anchor == 0.1


def test_test_time_training_with_the_anchor():
    from nrsfm_kit.edm.training import fit_sequence, preset_config, synthetic_video

    cfg, size = preset_config(True)
    video = synthetic_video(size["frames"], size["height"], size["width"])
    a = fit_sequence(video, "rigid", dataclasses.replace(cfg, scale_anchor=1.0), backend="torch")
    b = fit_sequence(video, "rigid", cfg, backend="torch")
    assert a.history[0]["loss"] > b.history[0]["loss"]  # the anchor is in the loss of every stage
    assert bool(torch.isfinite(a.depth).all())


def test_scale_anchor_flags(tmp_path, capsys):
    import json

    from nrsfm_kit.cli import main

    pre = ["depth", "pretrain", "--corpus", "synthetic", "--videos", "1", "--smoke", "--steps", "1", "--quiet"]
    assert main([*pre, "--scale-anchor", "-1", "--out", str(tmp_path / "bad")]) == 2
    assert "--scale-anchor: expected a finite value >= 0, found -1.0" in capsys.readouterr().err
    assert main([*pre, "--scale-anchor", "0", "--out", str(tmp_path / "off")]) == 0
    assert json.loads((tmp_path / "off" / "settings.json").read_text())["scale_anchor"] == 0.0
    fit = ["depth", "fit", "--sequence", "synthetic", "--smoke", "--variant", "rigid", "--quiet"]
    assert main([*fit, "--scale-anchor", "nan"]) == 2
    assert "--scale-anchor: expected a finite value >= 0, found nan" in capsys.readouterr().err
