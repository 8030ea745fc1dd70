"""Losses of Neural Non-Rigid Tracking (eq. 13-16): exact values on hand-made cases, gradcheck, bad input."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.tracking.losses import (
    PRESETS,
    LossWeights,
    correspondence_loss,
    downsample_flow,
    graph_loss,
    multiscale_epe_loss,
    robust_qnorm,
    valid_solves,
    warp_loss,
)


def test_robust_qnorm_value():
    d = torch.tensor([[[[0.3]], [[-0.2]]]], dtype=torch.float64)  # (1, 2, 1, 1)
    torch.testing.assert_close(robust_qnorm(d), torch.tensor([[[0.51**0.4]]], dtype=torch.float64))


def test_downsample_flow_keeps_only_fully_valid_footprints():
    flow = torch.arange(2 * 4 * 4, dtype=torch.float64).view(1, 2, 4, 4)
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, 0, 0] = False
    f, ok = downsample_flow(flow, valid, (2, 2))
    assert ok.tolist() == [[[False, True], [True, True]]]
    torch.testing.assert_close(f[0, :, 1, 1], flow[0, :, 2:, 2:].mean((-1, -2)) / 20)


def test_correspondence_loss_is_zero_at_the_truth_and_sums_levels():
    g = torch.Generator().manual_seed(0)
    gt = torch.randn(2, 2, 16, 16, generator=g, dtype=torch.float64) * 5
    valid = torch.ones(2, 16, 16, dtype=torch.bool)
    valid[:, :5, :3] = False  # an invalid block: coarse pixels over it are dropped, the others kept
    flows = [downsample_flow(gt, valid, (s, s))[0] for s in (16, 8, 4)]
    eps_term = 3 * 0.01**0.4  # a perfect prediction still pays eps^q per level
    torch.testing.assert_close(correspondence_loss(flows, gt, valid), torch.tensor(eps_term, dtype=torch.float64))
    off = [f + 0.1 for f in flows]
    assert correspondence_loss(off, gt, valid) > eps_term
    # non-finite ground truth outside the mask never reaches the loss
    gt_nan = gt.clone()
    gt_nan[~valid.unsqueeze(1).expand_as(gt)] = float("nan")
    assert torch.isfinite(correspondence_loss(off, gt_nan, valid))


def test_correspondence_loss_gradcheck():
    g = torch.Generator().manual_seed(1)
    gt = torch.randn(1, 2, 8, 8, generator=g, dtype=torch.float64)
    valid = torch.ones(1, 8, 8, dtype=torch.bool)
    preds = [torch.randn(1, 2, 8, 8, generator=g, dtype=torch.float64, requires_grad=True),
             torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradcheck(lambda a, b: correspondence_loss([a, b], gt, valid), preds)


def test_graph_and_warp_losses_and_invalidation():
    t = torch.zeros(2, 3, 3, dtype=torch.float64, requires_grad=True)
    gt = torch.tensor([[[0.1, 0, 0], [0, 0.2, 0], [0, 0, 0]], [[2.0, 0, 0], [0, 0, 0], [0, 0, 0]]],
                      dtype=torch.float64)
    node_valid = torch.tensor([[True, True, False], [True, True, True]])
    ok = valid_solves(t, gt, node_valid)
    assert ok.tolist() == [True, False]  # pair 1: mean error 0.67 m > 0.5 m
    torch.testing.assert_close(graph_loss(t, gt, node_valid, ok), torch.tensor((0.01 + 0.04) / 2,
                                                                               dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda x: graph_loss(x, gt, node_valid, ok), (t,))
    p = torch.zeros(1, 2, 3, dtype=torch.float64)
    sf = torch.tensor([[[0.0, 0.0, 0.1], [float("nan")] * 3]], dtype=torch.float64)
    q = torch.zeros(1, 2, 3, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(warp_loss(q, p, sf, torch.ones(1, 2, dtype=torch.bool)),
                               torch.tensor(0.01, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda x: warp_loss(x, p, sf, torch.ones(1, 2, dtype=torch.bool)), (q,))
    # nothing valid: a zero loss that still back-propagates (no NaN)
    z = graph_loss(t, gt, torch.zeros(2, 3, dtype=torch.bool))
    assert float(z.detach()) == 0.0 and z.requires_grad


def test_presets_and_bad_inputs():
    assert PRESETS["paper"]["solver"] == LossWeights(1.0, 5.0, 5.0)
    assert PRESETS["reference"]["solver"] == LossWeights(5.0, 2.0, 2.0)
    assert PRESETS["paper"]["mask"] == LossWeights(0.0, 1000.0, 1000.0)
    with pytest.raises(ValueError, match="lambda_graph: expected a finite value >= 0"):
        LossWeights(graph=-1.0)
    with pytest.raises(ValueError, match="flows: expected at least one level"):
        correspondence_loss([], torch.zeros(1, 2, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"flows\[0\]: expected shape"):
        correspondence_loss([torch.zeros(1, 3, 4, 4)], torch.zeros(1, 2, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="node_valid: expected shape"):
        graph_loss(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3), torch.ones(1, 4, dtype=torch.bool))


def test_multiscale_epe_loss_value_and_gradcheck():
    from nrsfm_kit.utils.testing import gradcheck64

    gt = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    gt[:, 0] = 20.0  # 1 in flow / 20 units
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    pred = [torch.zeros(1, 2, 4, 4, dtype=torch.float64), torch.zeros(1, 2, 2, 2, dtype=torch.float64)]
    pred[1][:, 1] = 1.0  # error (1, 1) -> sqrt 2
    torch.testing.assert_close(multiscale_epe_loss(pred, gt, valid), torch.tensor(1 + 2**0.5, dtype=torch.float64))
    p = torch.rand(1, 2, 2, 2, dtype=torch.float64) + 0.1
    assert gradcheck64(lambda x: multiscale_epe_loss([x], gt, valid), (p,), (0,))
    with pytest.raises(ValueError, match="flows"):
        multiscale_epe_loss([], gt, valid)
