"""DeepDeform matcher losses (sec. 3): exact values on hand-made cases, masking, gradcheck, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nrsfm_kit.matching.losses import (
    MatcherLossConfig,
    depth_loss,
    gaussian_heatmap,
    heatmap_loss,
    matcher_loss,
    visibility_loss,
)
from nrsfm_kit.models.matcher import matcher_output
from nrsfm_kit.utils.testing import gradcheck64

D64 = torch.float64


def _out(logits, depth=None, vis=None):
    b, s = logits.shape[0], logits.shape[-1]
    depth = torch.ones(b, s, s, dtype=logits.dtype) if depth is None else depth
    vis = torch.zeros(b, dtype=logits.dtype) if vis is None else vis
    return matcher_output(logits, depth, vis)


def test_config_defaults_and_validation():
    cfg = MatcherLossConfig()
    assert (cfg.sigma, cfg.heatmap_weight, cfg.lambda_nll, cfg.lambda_depth, cfg.lambda_visibility) == \
        (7.0, 10.0, 10.0, 100.0, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        MatcherLossConfig(sigma=0)
    with pytest.raises(ValueError, match="lambda_depth"):
        MatcherLossConfig(lambda_depth=-1)


def test_gaussian_heatmap_values():
    G = gaussian_heatmap(torch.tensor([[2.0, 1.0], [0.5, 3.25]], dtype=D64), 5, sigma=1.5)
    assert G.shape == (2, 5, 5)
    assert G[0, 1, 2] == 1.0 and int(G[0].argmax()) == 1 * 5 + 2  # row 1, column 2
    torch.testing.assert_close(G[0, 3, 4], torch.tensor(math.exp(-(2**2 + 2**2) / (2 * 1.5**2)), dtype=D64))
    torch.testing.assert_close(G[1, 3, 0], torch.tensor(math.exp(-(0.5**2 + 0.25**2) / (2 * 1.5**2)), dtype=D64))
    assert ((G > 0) & (G <= 1)).all()
    px = torch.tensor([[2.3, 1.7]], dtype=D64)
    assert gradcheck64(lambda p: gaussian_heatmap(p, 6, 2.0), [px], [0])


def test_heatmap_loss_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 6, generator=g, dtype=D64)
    G = gaussian_heatmap(torch.tensor([[2.0, 3.0], [4.5, 1.0]], dtype=D64), 6, 1.5)
    cfg = MatcherLossConfig()
    w = 1 + 10 * G
    p = torch.sigmoid(logits)
    bce = (w * -(G * p.log() + (1 - G) * (1 - p).log())).mean((1, 2))
    gn = G / G.sum((1, 2), keepdim=True)
    log_sm = torch.log_softmax(logits.flatten(1), 1).view_as(logits)
    nll = -(w * gn * log_sm).sum((1, 2)) / (w * gn).sum((1, 2))
    want = (bce + 10 * nll).mean()
    torch.testing.assert_close(heatmap_loss(_out(logits), G, cfg), want)
    # only visible samples count
    vis = torch.tensor([False, True])
    torch.testing.assert_close(heatmap_loss(_out(logits), G, cfg, vis), bce[1] + 10 * nll[1])


def test_heatmap_loss_prefers_the_true_peak():
    s, true = 16, torch.tensor([[5.0, 9.0]], dtype=D64)
    G = gaussian_heatmap(true, s, 7.0)
    ys, xs = torch.meshgrid(torch.arange(s, dtype=D64), torch.arange(s, dtype=D64), indexing="ij")

    def peak(x, y):
        return (8.0 - ((xs - x) ** 2 + (ys - y) ** 2) / 4.0)[None]

    right = heatmap_loss(_out(peak(5, 9)), G)
    wrong = heatmap_loss(_out(peak(12, 2)), G)
    assert right < wrong
    out = _out(peak(5, 9))
    k = int(out.heatmap[0].flatten().argmax())
    assert (k % s, k // s) == (5, 9)


def test_depth_loss_formula_and_masking():
    g = torch.Generator().manual_seed(1)
    depth = torch.rand(3, 5, 5, generator=g, dtype=D64) + 0.5
    G = gaussian_heatmap(torch.tensor([[1.0, 1.0], [3.0, 2.0], [0.0, 4.0]], dtype=D64), 5, 1.0)
    d = torch.tensor([0.8, 1.2, float("nan")], dtype=D64)  # the invisible sample may carry NaN
    vis = torch.tensor([True, True, False])
    per = (G * (depth - d.view(-1, 1, 1)) ** 2).sum((1, 2)) / G.sum((1, 2))
    got = depth_loss(_out(torch.zeros(3, 5, 5, dtype=D64), depth), d, G, vis)
    torch.testing.assert_close(got, per[:2].mean())
    # a constant depth equal to the target costs nothing
    const = torch.full((3, 5, 5), 1.2, dtype=D64)
    assert float(depth_loss(_out(torch.zeros(3, 5, 5, dtype=D64), const), torch.full((3,), 1.2, dtype=D64), G)) == 0


def test_visibility_loss_value():
    logit = torch.tensor([2.0, -1.0, 0.5], dtype=D64)
    vis = torch.tensor([True, False, False])
    want = (F.softplus(-logit[0]) + F.softplus(logit[1]) + F.softplus(logit[2])) / 3
    torch.testing.assert_close(visibility_loss(_out(torch.zeros(3, 4, 4, dtype=D64), vis=logit), vis), want)


def test_losses_gradcheck_float64():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 6, 6, generator=g, dtype=D64)
    depth = torch.rand(2, 6, 6, generator=g, dtype=D64) + 0.5
    vlog = torch.randn(2, generator=g, dtype=D64)
    px = torch.tensor([[2.2, 3.1], [4.0, 0.6]], dtype=D64)
    G = gaussian_heatmap(px, 6, 2.0)
    cfg = MatcherLossConfig(sigma=2.0)
    vis = torch.tensor([True, False])
    td = torch.tensor([0.9, 1.3], dtype=D64)
    assert gradcheck64(lambda lg, gg: heatmap_loss(_out(lg), gg, cfg), [logits, G], [0, 1])
    assert gradcheck64(lambda lg: heatmap_loss(_out(lg), G, cfg, vis), [logits], [0])
    assert gradcheck64(lambda dd, t: depth_loss(_out(logits, dd), t, G), [depth, td], [0, 1])
    assert gradcheck64(lambda v: visibility_loss(_out(logits, vis=v), vis), [vlog], [0])
    # the full loss, w.r.t. the raw outputs and the target pixel, through gaussian_heatmap
    for stage in ("heatmap_depth", "visibility", "all"):
        assert gradcheck64(lambda lg, dd, v, p, st=stage: matcher_loss(matcher_output(lg, dd, v), p, td, vis, cfg,
                                                                       stage=st)["loss"],
                           [logits, depth, vlog, px], [0, 1, 2, 3])


def test_matcher_loss_stages_and_terms():
    g = torch.Generator().manual_seed(3)
    out = _out(torch.randn(2, 8, 8, generator=g, dtype=D64), torch.rand(2, 8, 8, generator=g, dtype=D64) + 0.5,
               torch.randn(2, generator=g, dtype=D64))
    px = torch.tensor([[3.0, 4.0], [1.0, 6.0]], dtype=D64)
    td = torch.tensor([1.0, 0.7], dtype=D64)
    vis = torch.tensor([True, True])
    cfg = MatcherLossConfig(sigma=2.0, lambda_depth=3.0, lambda_visibility=0.5)
    res = {st: matcher_loss(out, px, td, vis, cfg, stage=st) for st in ("heatmap_depth", "visibility", "all")}
    t = res["all"]
    G = gaussian_heatmap(px, 8, 2.0)
    torch.testing.assert_close(t["heatmap"], heatmap_loss(out, G, cfg, vis))
    torch.testing.assert_close(t["depth"], depth_loss(out, td, G, vis))
    torch.testing.assert_close(t["visibility"], visibility_loss(out, vis))
    torch.testing.assert_close(res["heatmap_depth"]["loss"], t["heatmap"] + 3.0 * t["depth"])
    torch.testing.assert_close(res["visibility"]["loss"], 0.5 * t["visibility"])
    torch.testing.assert_close(t["loss"], res["heatmap_depth"]["loss"] + res["visibility"]["loss"])


def test_no_visible_sample_gives_zero_without_nan():
    logits = torch.randn(2, 6, 6, dtype=D64, requires_grad=True)
    depth = (torch.rand(2, 6, 6, dtype=D64) + 0.5).requires_grad_(True)
    vlog = torch.zeros(2, dtype=D64, requires_grad=True)
    px = torch.full((2, 2), float("nan"), dtype=D64)  # as PatchSampler labels invisible samples
    td = torch.full((2,), float("nan"), dtype=D64)
    vis = torch.zeros(2, dtype=torch.bool)
    res = matcher_loss(matcher_output(logits, depth, vlog), px, td, vis, stage="all")
    assert float(res["heatmap"].detach()) == 0.0 and float(res["depth"].detach()) == 0.0
    torch.testing.assert_close(res["visibility"], torch.tensor(math.log(2), dtype=D64))
    res["loss"].backward()
    for t in (logits, depth, vlog):
        assert torch.isfinite(t.grad).all()
    assert float(logits.grad.abs().max()) == 0.0 and float(depth.grad.abs().max()) == 0.0


def test_bad_inputs_name_the_argument():
    out = _out(torch.zeros(2, 6, 6))
    px, td, vis = torch.full((2, 2), 3.0), torch.ones(2), torch.ones(2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"target_px: expected shape \(2, 2\), found \(2, 3\)"):
        matcher_loss(out, torch.zeros(2, 3), td, vis)
    with pytest.raises(ValueError, match=r"target_depth: expected shape \(2\), found \(3,\)"):
        matcher_loss(out, px, torch.ones(3), vis)
    with pytest.raises(ValueError, match="visible: expected dtype torch.bool"):
        matcher_loss(out, px, td, torch.ones(2))
    with pytest.raises(ValueError, match=r"visible: expected shape \(2\)"):
        matcher_loss(out, px, td, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="stage"):
        matcher_loss(out, px, td, vis, stage="heatmap")
    bad = px.clone()
    bad[0, 0] = float("nan")  # NaN in a *visible* row raises
    with pytest.raises(ValueError, match="target_px: expected finite values"):
        matcher_loss(out, bad, td, vis)
    with pytest.raises(ValueError, match="target_depth: expected finite values"):
        matcher_loss(out, px, torch.tensor([1.0, float("inf")]), vis)
    with pytest.raises(ValueError, match=r"G: expected shape \(2, 6, 6\)"):
        heatmap_loss(out, torch.zeros(2, 5, 5))
    with pytest.raises(ValueError, match=r"out.logits: expected shape \(B, S, S\)"):
        heatmap_loss(out._replace(logits=torch.zeros(2, 6, 5)), torch.zeros(2, 6, 6))
    with pytest.raises(ValueError, match="out: expected a MatcherOutput"):
        heatmap_loss(torch.zeros(2, 6, 6), torch.zeros(2, 6, 6))
    with pytest.raises(ValueError, match="target_px: expected shape"):
        gaussian_heatmap(torch.zeros(2), 6)
    with pytest.raises(ValueError, match="size"):
        gaussian_heatmap(torch.zeros(2, 2), 0)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_heatmap(torch.zeros(2, 2), 6, sigma=-1.0)
