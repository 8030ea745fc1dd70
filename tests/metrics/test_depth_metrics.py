"""Depth metrics: exact values on hand-made cases, median-scaling invariance, regions, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from nrsfm_kit.metrics.depth import depth_errors, depth_metrics, median_scale


def test_exact_values():
    gt = torch.tensor([1.0, 2.0, 4.0])
    pred = torch.tensor([1.0, 2.5, 2.0])
    m = depth_errors(pred, gt)
    assert m["abs_rel"] == pytest.approx((0 + 0.25 + 0.5) / 3)
    assert m["sq_rel"] == pytest.approx((0 + 0.25 / 2 + 4 / 4) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 0.25 + 4) / 3))
    assert m["rmse_log"] == pytest.approx(math.sqrt((0 + math.log(1.25) ** 2 + math.log(2) ** 2) / 3))
    assert m["a1"] == pytest.approx(1 / 3) and m["a2"] == pytest.approx(2 / 3) and m["a3"] == pytest.approx(2 / 3)


def test_median_scaling_invariance_and_perfect_prediction():
    g = torch.Generator().manual_seed(0)
    gt = 1 + 3 * torch.rand(2, 8, 10, generator=g)
    m = depth_metrics(7.5 * gt, gt)
    assert m["all"]["abs_rel"] < 1e-6 and m["all"]["a1"] == 1.0
    s = median_scale(7.5 * gt, gt)
    assert torch.allclose(s, torch.full((2,), 1 / 7.5))
    noisy = gt * (1 + 0.1 * torch.randn(2, 8, 10, generator=g))
    assert depth_metrics(noisy, gt)["all"]["abs_rel"] == pytest.approx(depth_metrics(3 * noisy, gt)["all"]["abs_rel"])


def test_regions_and_constant_baseline():
    gt = torch.ones(1, 4, 4)
    gt[0, :2] = 2.0
    seg = torch.zeros(1, 4, 4, dtype=torch.long)
    seg[0, :2, :2] = 2
    seg[0, :2, 2:] = 1
    pred = gt.clone()
    pred[0, :2, :2] = 3.0  # only the non-rigid part is wrong
    m = depth_metrics(pred, gt, segmentation=seg, median_scaling=False)
    assert m["static"]["abs_rel"] == 0 and m["rigid"]["abs_rel"] == 0
    assert m["nonrigid"]["abs_rel"] == pytest.approx(0.5) and m["dynamic"]["abs_rel"] == pytest.approx(0.25)
    const = depth_metrics(torch.ones_like(gt), gt)["all"]["abs_rel"]
    assert const > 0.2


def test_bad_inputs():
    gt = torch.ones(4, 4)
    with pytest.raises(ValueError, match=r"gt: expected shape \(\.\.\., H, W\) with \{'H': 3, 'W': 4\}, found \(4, 4\)"):
        depth_metrics(torch.ones(3, 4), gt)
    with pytest.raises(ValueError, match=r"pred: expected shape \(2, 4, 4\) like gt"):
        depth_metrics(torch.ones(4, 4), torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match=r"at least one valid"):
        depth_metrics(torch.ones(4, 4), torch.full((4, 4), float("nan")))
    with pytest.raises(ValueError, match=r"segmentation: expected shape"):
        depth_metrics(gt, gt, segmentation=torch.zeros(2, 2, dtype=torch.long))
