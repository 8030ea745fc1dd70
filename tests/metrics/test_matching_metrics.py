"""DeepDeform matching metrics: hand-computed values, pooling, rejected predictions, 3D points, ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nrsfm_kit.data.types import RGBDPair
from nrsfm_kit.metrics.matching import (
    ACC_2D_PX,
    ACC_3D_M,
    FLOW_ACC_PX,
    MatchingMetrics,
    check_source_pixels,
    ground_truth_matches,
    match_points_3d,
    matching_errors,
    sample_source_points,
)

NAN = float("nan")


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_thresholds_are_the_papers():
    assert (ACC_2D_PX, ACC_3D_M, FLOW_ACC_PX) == (10.0, 0.05, 20.0)


def test_hand_computed_example_with_rejection_hole_and_unevaluated_point():
    gt = _t([[10, 10], [0, 0], [5, 5], [1, 1], [2, 2]])
    # errors: 10 (6-8-10, exactly the 2D threshold), 20 (12-16-20, exactly the flow threshold), 0, rejected, not evaluated
    pred = _t([[16, 18], [12, 16], [5, 5], [NAN, NAN], [NAN, NAN]])
    pred_valid = torch.tensor([True, True, True, False, True])
    valid = torch.tensor([True, True, True, True, False])
    gxyz = _t([[0, 0, 1]] * 5)
    # 3D errors: 0.03, 0.07, hole (NaN row: no depth at the predicted pixel), rejected, not evaluated
    pxyz = _t([[0.03, 0, 1], [0, 0.07, 1], [NAN, NAN, NAN], [0, 0, 1], [NAN, NAN, NAN]])
    e = matching_errors(pred, gt, pxyz, gxyz, valid, pred_valid=pred_valid)
    assert e.err_2d[:3].tolist() == [10.0, 20.0, 0.0]
    assert e.err_2d[3] == math.inf and math.isnan(e.err_2d[4])
    assert e.err_3d[:2].tolist() == pytest.approx([0.03, 0.07], abs=1e-15)
    assert e.err_3d[2] == math.inf and e.err_3d[3] == math.inf and math.isnan(e.err_3d[4])

    m = MatchingMetrics()
    m.update(pred, gt, pxyz, gxyz, valid, pred_valid=pred_valid)
    r = m.compute()
    assert r["num_matches"] == 4 and r["num_valid"] == 3 and r["coverage"] == 0.75
    assert r["mean_2d_px"] == pytest.approx(10.0)  # (10 + 20 + 0) / 3: the rejected point is not averaged
    assert r["acc_2d"] == 0.5  # 10 and 0 of 4 (10 px inclusive, the rejected point fails)
    assert r["flow_acc_20px"] == 0.75  # 10, 20 (inclusive), 0 of 4
    assert r["num_matches_3d"] == 4 and r["num_valid_3d"] == 2 and r["coverage_3d"] == 0.5
    assert r["mean_3d_m"] == pytest.approx(0.05)
    assert r["acc_3d"] == 0.25  # only the 3 cm point of 4
    assert r["pairs"] == 1


def test_pooling_over_all_matches_differs_from_the_mean_of_pair_means():
    m = MatchingMetrics()
    m.update(_t([[1, 0]]), _t([[0, 0]]))  # pair A: one match, error 1
    m.update(_t([[3, 4], [0, 15], [12, 0]]), _t([[0, 0], [0, 0], [0, 0]]))  # pair B: errors 5, 15, 12
    r = m.compute()
    assert r["mean_2d_px"] == pytest.approx((1 + 5 + 15 + 12) / 4)  # 8.25
    assert r["mean_2d_px"] != pytest.approx((1 + (5 + 15 + 12) / 3) / 2)  # 5.83 = mean of pair means
    assert r["acc_2d"] == 0.5 and r["flow_acc_20px"] == 1.0 and r["pairs"] == 2
    assert math.isnan(r["mean_3d_m"]) and math.isnan(r["acc_3d"]) and r["num_matches_3d"] == 0
    m.reset()
    assert math.isnan(m.compute()["mean_2d_px"]) and m.compute()["num_matches"] == 0


def test_custom_thresholds_and_numpy_inputs():
    m = MatchingMetrics(acc_2d_px=2.0, acc_3d_m=0.5, flow_acc_px=3.0)
    m.update(np.array([[1.0, 0.0], [0.0, 2.5]]), np.zeros((2, 2)), np.zeros((2, 3)), np.full((2, 3), 0.25))
    r = m.compute()
    assert r["acc_2d"] == 0.5 and r["flow_acc_20px"] == 1.0 and r["acc_3d"] == 1.0
    assert r["mean_3d_m"] == pytest.approx(0.25 * math.sqrt(3))
    with pytest.raises(ValueError, match="acc_2d_px"):
        MatchingMetrics(acc_2d_px=0)


def test_everything_rejected_counts_as_failures_and_no_mean():
    r = MatchingMetrics()
    r.update(_t([[NAN, NAN]] * 2), _t([[0, 0]] * 2), pred_valid=torch.tensor([False, False]))
    out = r.compute()
    assert out["acc_2d"] == 0.0 and out["coverage"] == 0.0 and math.isnan(out["mean_2d_px"])
    assert out["num_matches"] == 2 and out["num_valid"] == 0


def test_bad_inputs():
    gt = _t([[0, 0], [1, 1]])
    with pytest.raises(ValueError, match="pred_px: expected finite values where valid & pred_valid"):
        matching_errors(_t([[0, 0], [NAN, 1]]), gt)
    with pytest.raises(ValueError, match="pred_px: expected finite"):
        matching_errors(_t([[0, 0], [math.inf, 1]]), gt, valid=torch.tensor([True, True]))
    matching_errors(_t([[0, 0], [NAN, 1]]), gt, valid=torch.tensor([True, False]))  # unevaluated: ignored
    with pytest.raises(ValueError, match="gt_px: expected finite values where valid"):
        matching_errors(gt, _t([[0, 0], [NAN, 1]]), pred_valid=torch.tensor([True, False]))
    with pytest.raises(ValueError, match=r"gt_px: expected shape \(K, 2\)"):
        matching_errors(gt, _t([[0, 0]]))
    with pytest.raises(ValueError, match="valid: expected a bool"):
        matching_errors(gt, gt, valid=torch.tensor([1, 0]))
    with pytest.raises(ValueError, match=r"pred_valid: expected shape \(2,\)"):
        matching_errors(gt, gt, pred_valid=torch.tensor([True]))
    with pytest.raises(ValueError, match="gt_xyz"):
        matching_errors(gt, gt, pred_xyz=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="pred_xyz: expected finite"):
        matching_errors(gt, gt, _t([[0, 0, 1], [NAN, 0, 1]]), torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="gt_xyz: expected finite"):
        matching_errors(gt, gt, torch.zeros(2, 3), _t([[0, 0, 1], [0, math.inf, 1]]))
    with pytest.raises(ValueError, match="pred_px: expected a torch.Tensor or numpy array"):
        matching_errors([[0, 0]], [[0, 0]])
    with pytest.raises(ValueError, match="errors: expected a MatchingErrors"):
        MatchingMetrics().update_errors({"err_2d": 1})


def _tiny_pair(**kw) -> RGBDPair:
    """3 x 4 pair, fx = fy = 2, cx = 1.5, cy = 1: depth 2 m everywhere but a hole at (x=3, y=0)."""
    H, W = 3, 4
    depth = torch.full((H, W), 2.0, dtype=torch.float64)
    depth[0, 3] = 0.0
    tdepth = torch.tensor([[1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0], [0.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    flow = torch.zeros(H, W, 2, dtype=torch.float64)
    flow[1, 1] = torch.tensor([0.5, -0.25], dtype=torch.float64)
    sflow = torch.zeros(H, W, 3, dtype=torch.float64)
    sflow[1, 1] = torch.tensor([0.01, 0.02, -0.03], dtype=torch.float64)
    vis = torch.ones(H, W, dtype=torch.bool)
    vis[2, 0] = False
    base = dict(source_color=torch.zeros(3, H, W), target_color=torch.zeros(3, H, W), source_depth=depth,
                target_depth=tdepth, intrinsics=torch.tensor([2.0, 2.0, 1.5, 1.0]), optical_flow=flow,
                scene_flow=sflow, flow_valid=torch.ones(H, W, dtype=torch.bool), visibility=vis)
    base.update(kw)
    return RGBDPair(**base)


def test_match_points_3d_nearest_bilinear_and_given_depth():
    pair = _tiny_pair()
    px = _t([[0.4, 0.4], [1.5, 0.0], [0.2, 1.8], [5.0, 0.0], [NAN, NAN]])
    xyz = match_points_3d(pair, px)
    assert xyz.shape == (5, 3) and xyz.dtype == torch.float64
    # (0.4, 0.4) -> pixel (0, 0), depth 1: (1 * (0.4 - 1.5) / 2, 1 * (0.4 - 1) / 2, 1)
    assert xyz[0].tolist() == pytest.approx([-0.55, -0.3, 1.0])
    assert xyz[1].tolist() == pytest.approx([0.0, -1.5, 3.0])  # (1.5, 0) rounds to (2, 0): depth 3
    assert torch.isnan(xyz[2:]).all()  # depth hole at (0, 2); outside the image; rejected
    bil = match_points_3d(pair, _t([[0.5, 0.5], [0.5, 1.5], [3.0, 2.0]]), interpolation="bilinear")
    assert bil[0, 2] == pytest.approx((1 + 2 + 2 + 3) / 4)
    assert bool(torch.isnan(bil[1]).all())  # a neighbour (0, 2) has no depth
    assert bil[2, 2] == pytest.approx(1.0)  # on the last pixel exactly
    per_point = match_points_3d(pair, _t([[1.5, 1.0], [0.0, 0.0]]), depth=_t([2.5, -1.0]))
    assert per_point[0].tolist() == pytest.approx([0.0, 0.0, 2.5]) and bool(torch.isnan(per_point[1]).all())
    as_map = match_points_3d(pair, _t([[0.0, 2.0]]), depth=torch.full((3, 4), 0.5))
    assert as_map[0, 2] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"depth: expected shape \(3, 4\)"):
        match_points_3d(pair, px, depth=torch.ones(2))
    with pytest.raises(ValueError, match="interpolation"):
        match_points_3d(pair, px, interpolation="cubic")
    with pytest.raises(ValueError, match="target_px"):
        match_points_3d(pair, torch.zeros(3))


def test_ground_truth_matches_by_hand():
    pair = _tiny_pair()
    tgt, xyz, ok = ground_truth_matches(pair, _t([[1.2, 0.6], [3.0, 0.0], [0.0, 2.0], [2.0, 2.0]]))
    assert ok.tolist() == [True, False, False, True]  # depth hole at (3, 0); (0, 2) not visible
    assert tgt[0].tolist() == pytest.approx([1.7, 0.35])  # source + flow at the integer pixel (1, 1)
    # X(1, 1) = 2 * ((1 - 1.5) / 2, (1 - 1) / 2, 1) = (-0.5, 0, 2), plus the scene flow
    assert xyz[0].tolist() == pytest.approx([-0.49, 0.02, 1.97])
    assert tgt[3].tolist() == [2.0, 2.0] and xyz[3].tolist() == pytest.approx([0.5, 1.0, 2.0])
    assert torch.isnan(tgt[1:3]).all() and torch.isnan(xyz[1:3]).all()
    no_3d = _tiny_pair(scene_flow=None, visibility=None)
    tgt, xyz, ok = ground_truth_matches(no_3d, _t([[0.0, 2.0]]))
    assert xyz is None and ok.tolist() == [True]  # no visibility: taken as visible
    with pytest.raises(ValueError, match="pair.optical_flow"):
        ground_truth_matches(_tiny_pair(optical_flow=None), _t([[0, 0]]))
    with pytest.raises(ValueError, match=r"source_px: expected finite pixels inside the 4 x 3 image.*index 1"):
        ground_truth_matches(pair, _t([[0, 0], [3.5, 0]]))
    with pytest.raises(ValueError, match="source_px: expected at least one point"):
        ground_truth_matches(pair, torch.zeros(0, 2))
    with pytest.raises(ValueError, match=r"source_px: expected points on valid source depth.*index 0"):
        check_source_pixels(pair, _t([[3, 0]]), require_depth=True)


def test_ground_truth_agrees_with_the_synthetic_generator():
    from nrsfm_kit.data.rgbd import synthetic_rgbd_pair
    from nrsfm_kit.geometry.pinhole import project

    pair = synthetic_rgbd_pair(48, 64, seed=2)
    px = sample_source_points(pair, 40, seed=0)
    assert px.shape == (40, 2) and bool((px == px.round()).all())
    xi, yi = px[:, 0].long(), px[:, 1].long()
    assert bool(pair.source_mask[yi, xi].all() & pair.flow_valid[yi, xi].all() & pair.visibility[yi, xi].all())
    tgt, xyz, ok = ground_truth_matches(pair, px)
    assert bool(ok.all())
    torch.testing.assert_close(xyz, pair.target_points[yi, xi], atol=1e-5, rtol=0)
    torch.testing.assert_close(project(xyz.double(), pair.intrinsics.double()), tgt.double(), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="num_points"):
        sample_source_points(pair, 0)
