"""EPE 3D / Graph Error 3D (Neural Non-Rigid Tracking sec. 5.2): pooling, masks, pre-filter, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from nrsfm_kit.metrics.tracking import TrackingMetrics, epe_3d_terms, graph_error_3d_terms, keep_pair


def test_epe_masks_depth_range_and_non_finite_flow():
    p = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 7.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    sf = torch.tensor([[0.0, 0.0, 0.01]] * 2 + [[float("nan")] * 3, [0.0, 0.0, 0.0]], dtype=torch.float64)
    q = p.clone()
    s, n = epe_3d_terms(q, p, sf)
    assert n == 1 and abs(float(s) - 0.01) < 1e-15  # only the first point: 7 m too far, NaN flow, z = 0


def test_pooling_is_over_all_points_not_a_mean_of_pair_means():
    m = TrackingMetrics()
    p = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    m.update(p + torch.tensor([0.0, 0.0, 0.001], dtype=torch.float64), p, torch.zeros_like(p))
    p3 = p.expand(3, 3)
    m.update(p3 + torch.tensor([0.0, 0.0, 0.005], dtype=torch.float64), p3, torch.zeros_like(p3),
             torch.zeros(2, 3), torch.tensor([[0.0, 0.0, 0.003], [0.0, 0.004, 0.0]]))
    out = m.compute()
    assert out["pairs"] == 2 and out["points"] == 4 and out["nodes"] == 2
    assert math.isclose(out["epe_3d_mm"], (1 + 3 * 5) / 4, rel_tol=1e-9)
    assert math.isclose(out["graph_error_3d_mm"], 3.5, rel_tol=1e-6)
    assert math.isnan(TrackingMetrics().compute()["epe_3d_mm"])


def test_graph_error_and_prefilter_and_bad_inputs():
    s, n = graph_error_3d_terms(torch.zeros(3, 3), torch.tensor([[0.0, 0, 1], [float("nan")] * 3, [0, 0, 0]]),
                                torch.tensor([True, True, False]))
    assert n == 1 and float(s) == 1.0
    obj = torch.zeros(4, 4, dtype=torch.bool)
    obj[:2] = True
    occ = torch.zeros(4, 4, dtype=torch.bool)
    occ[0, :3] = True  # 3 of 8 object pixels occluded: 37.5 % > 30 %
    assert not keep_pair(obj, occ) and keep_pair(obj, occ, max_occluded=0.4)
    with pytest.raises(ValueError, match="object_mask: expected at least one object pixel"):
        keep_pair(torch.zeros(2, 2, dtype=torch.bool), torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="scene_flow: expected shape"):
        epe_3d_terms(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="gt_translations: expected a"):
        TrackingMetrics().update(torch.zeros(1, 3), torch.ones(1, 3), torch.zeros(1, 3), torch.zeros(2, 3))
