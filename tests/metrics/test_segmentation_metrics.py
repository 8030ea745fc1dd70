"""Segmentation metrics and the embedding-based motion segmentation."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.edm.segmentation import best_threshold, motion_scores, segment_motion, static_embedding
from nrsfm_kit.metrics.segmentation import roc_curve, segmentation_scores


def test_scores_exact():
    gt = torch.tensor([[1, 1, 0, 0]], dtype=torch.bool)
    pred = torch.tensor([[1, 0, 1, 0]], dtype=torch.bool)
    s = segmentation_scores(pred, gt)
    assert s["acc"] == 0.5 and s["iou"] == pytest.approx(1 / 3)
    assert s["precision"] == 0.5 and s["recall"] == 0.5
    assert segmentation_scores(gt, gt)["iou"] == 1.0


def test_roc_perfect_and_random():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2000, generator=g) > 0.7
    perfect = gt.float() + 0.01 * torch.rand(2000, generator=g)
    assert roc_curve(perfect, gt)["auc"] > 0.99
    rnd = roc_curve(torch.rand(2000, generator=g), gt)["auc"]
    assert 0.4 < rnd < 0.6


def test_embedding_segmentation_recovers_a_moving_blob():
    H, W = 24, 32
    emb = torch.full((3, H, W), 0.2)
    gt = torch.zeros(H, W, dtype=torch.bool)
    gt[8:16, 10:20] = True
    emb[:, gt] = torch.tensor([0.9, 0.1, 0.6])[:, None]
    emb += 0.02 * torch.randn(3, H, W, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(static_embedding(emb, 2), torch.full((3,), 0.2), atol=0.03)
    pred = segment_motion(emb, 0.3, border=2)
    s = segmentation_scores(pred, gt)
    assert s["iou"] == 1.0 and s["acc"] == 1.0
    assert roc_curve(motion_scores(emb, 2), gt)["auc"] > 0.99
    t, iou = best_threshold(motion_scores(emb, 2), gt)
    assert iou == 1.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="pred: expected shape"):
        segmentation_scores(torch.zeros(3, dtype=torch.bool), torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="pred: expected a bool"):
        segmentation_scores(torch.rand(4), torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="both moving and static"):
        roc_curve(torch.rand(4), torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="border"):
        static_embedding(torch.rand(3, 8, 8), border=4)
