"""The view-pair EDM loss: correspondences from flow, masking, pair sampling, backends, bad input."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.edm.loss import (
    EDMLossConfig,
    bilinear_lookup,
    edm_view_pair_loss,
    flow_targets,
    frame_pair_points,
    sample_pairs,
)
from nrsfm_kit.geometry import depth_to_points, project

INTR = torch.tensor([40.0, 40.0, 15.5, 11.5], dtype=torch.float64)


def _rigid_pair(H=24, W=32, seed=0):
    """A slanted, bumpy surface seen from two camera poses: exact depth and flow."""
    g = torch.Generator().manual_seed(seed)
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    d0 = 2.0 + 0.02 * u + 0.3 * torch.sin(u / 5) * torch.cos(v / 4)
    pts, _ = depth_to_points(d0, INTR)
    ang = 0.03
    R = torch.tensor([[1, 0, 0], [0, torch.cos(torch.tensor(ang)), -torch.sin(torch.tensor(ang))],
                      [0, torch.sin(torch.tensor(ang)), torch.cos(torch.tensor(ang))]], dtype=torch.float64)
    t = torch.tensor([0.08, -0.03, 0.05], dtype=torch.float64)
    p1 = pts @ R.T + t
    uv1 = project(p1, INTR)
    grid = torch.stack([u, v], -1)
    flow = uv1 - grid
    # depth of view 1 sampled on its own pixel grid: re-render by inverse-warping (smooth surface)
    from scipy.interpolate import griddata

    d1 = griddata(uv1.reshape(-1, 2).numpy(), p1[..., 2].reshape(-1).numpy(), grid.reshape(-1, 2).numpy(),
                  method="linear")
    d1 = torch.from_numpy(d1).reshape(H, W)
    d1 = torch.where(torch.isfinite(d1), d1, torch.full_like(d1, float("nan")))
    _ = g
    return d0, d1, flow


def test_flow_targets_mask_outside_and_nonfinite():
    flow = torch.zeros(4, 5, 2)
    flow[0, 0] = torch.tensor([-1.0, 0.0])  # leaves the image
    flow[1, 1] = torch.tensor([float("nan"), 0.0])
    flow[2, 2] = torch.tensor([1.5, 1.0])
    tgt, ok = flow_targets(flow)
    assert not ok[0, 0] and not ok[1, 1] and ok[2, 2]
    assert torch.allclose(tgt[2, 2], torch.tensor([3.5, 3.0]))
    assert int(ok.sum()) == 18


def test_bilinear_lookup_exact_on_linear_image():
    H, W = 6, 7
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    img = (2 * u + 3 * v + 1)[None]
    uv = torch.tensor([[0.5, 0.25], [5.9, 4.1], [0.0, 0.0]], dtype=torch.float64)
    out = bilinear_lookup(img, uv)[:, 0]
    assert torch.allclose(out, 2 * uv[:, 0] + 3 * uv[:, 1] + 1)


def test_ground_truth_depth_beats_wrong_depth_on_rigid_scene():
    d0, d1, flow = _rigid_pair()
    cfg = EDMLossConfig(num_pairs=20000)
    g = lambda: torch.Generator().manual_seed(0)
    d1f = d1  # NaN where view 1 sees no surface: masked by the loss (documented)
    gt = edm_view_pair_loss(d0, d1f, flow, INTR, config=cfg, generator=g())
    flat = edm_view_pair_loss(torch.ones_like(d0), torch.ones_like(d1), flow, INTR, config=cfg, generator=g())
    assert float(gt) < 0.5 * float(flat)
    # scale invariance per view
    s = edm_view_pair_loss(3 * d0, 0.5 * d1, flow, INTR, config=cfg, generator=g())
    assert abs(float(s) - float(gt)) < 1e-6
    # torch reference backend agrees with Warp
    r = edm_view_pair_loss(d0, d1f, flow, INTR, config=cfg, generator=g(), backend="torch")
    assert abs(float(r) - float(gt)) < 1e-9


def test_gradient_flows_to_both_depths_and_embeddings():
    d0, d1, flow = _rigid_pair()
    d1 = torch.where(torch.isfinite(d1), d1, torch.ones_like(d1))
    a = d0.clone().requires_grad_()
    b = d1.clone().requires_grad_()
    emb = torch.rand(3, *d0.shape, dtype=torch.float64, requires_grad=True)
    loss = edm_view_pair_loss(a, b, flow, INTR, emb, config=EDMLossConfig(num_pairs=2000, beta=0.1))
    loss.backward()
    for t in (a, b, emb):
        assert t.grad is not None and torch.isfinite(t.grad).all() and float(t.grad.abs().sum()) > 0


def test_local_sampling_stays_inside_radius():
    ok = torch.ones(20, 30, dtype=torch.bool)
    index, i, j = sample_pairs(ok, 5000, sampling="local", radius=3, generator=torch.Generator().manual_seed(0))
    pi, pj = index[i], index[j]
    dy, dx = (pi // 30 - pj // 30).abs(), (pi % 30 - pj % 30).abs()
    assert int(dx.max()) <= 3 and int(dy.max()) <= 3 and bool((i != j).all())
    _, i2, j2 = sample_pairs(ok, 5000, generator=torch.Generator().manual_seed(0))
    assert bool((i2 != j2).all()) and i2.numel() == 5000


def test_nonfinite_depth_is_masked_not_propagated():
    d0, d1, flow = _rigid_pair()
    a = d0.clone()
    a[3:6, 4:9] = float("nan")  # documented masking: these pixels give no pairs
    xk, xl, ok = frame_pair_points(a, torch.where(torch.isfinite(d1), d1, torch.zeros_like(d1)), flow, INTR)
    assert not ok[3:6, 4:9].any() and torch.isfinite(xk).all() and torch.isfinite(xl).all()
    loss = edm_view_pair_loss(a, torch.where(torch.isfinite(d1), d1, torch.zeros_like(d1)), flow, INTR,
                              config=EDMLossConfig(num_pairs=1000))
    assert torch.isfinite(loss)


def test_bad_inputs():
    d0, d1, flow = _rigid_pair()
    with pytest.raises(ValueError, match=r"flow: expected shape .* \(the flow must match the depth/image size\)"):
        edm_view_pair_loss(d0, d0, flow[:-1], INTR)
    with pytest.raises(ValueError, match=r"depth_l: expected shape"):
        edm_view_pair_loss(d0, d0[:, :-1], flow, INTR)
    far = torch.full_like(flow, 1000.0)  # every flow vector points outside the image
    with pytest.raises(ValueError, match=r"expected at least 2 usable pixels.*found 0"):
        edm_view_pair_loss(d0, d0, far, INTR)
    with pytest.raises(ValueError, match=r"embeddings: expected shape \(3, 24, 32\)"):
        edm_view_pair_loss(d0, d0, flow, INTR, torch.rand(2, 24, 32, dtype=torch.float64))
    with pytest.raises(ValueError, match="sampling"):
        EDMLossConfig(sampling="grid")
    with pytest.raises(ValueError, match="backend"):
        edm_view_pair_loss(d0, d0, flow, INTR, backend="jax")


def test_loss_landscape_on_nonrigid_video_has_gt_as_local_minimum():
    """On the synthetic non-rigid video the (mean-normalised, rigid) EDM loss is informative around the
    ground truth: GT depth beats a constant depth and is the minimum along the path depth^p (flattened
    p < 1 / exaggerated p > 1 contrast). Measured (4 frames 48x64, 20k pairs): GT 0.053, constant 0.164,
    p=0.5 0.070, p=2 0.105. (Training from scratch nevertheless finds other depth maps with a lower loss,
    0.01-0.03, because 29% of the pixels move independently of the camera: see notebook 12.) Pinned to the
    "room" scene at camera_motion 2 (the setting these figures were measured on); the depth task now uses
    the cluttered scene, where the exact GT depth is not a good reference for the sampled loss: its bilinear
    lookup across the many depth discontinuities costs more than the smooth learnt maps (notebook 12)."""
    from nrsfm_kit.edm.training import synthetic_video

    video = synthetic_video(4, 48, 64, scene="room", camera_motion=2.0)
    vis = video.flow_visibility.bool()
    cfg = EDMLossConfig(num_pairs=20_000, beta=0.0)

    def loss(depth, emb=None):
        g = torch.Generator().manual_seed(0)
        return sum(float(edm_view_pair_loss(depth[k], depth[k + 1], video.flow[k], video.intrinsics,
                                            None if emb is None else emb[k], config=cfg, valid=vis[k],
                                            generator=g, backend="torch")) for k in range(3)) / 3

    gt = video.depth
    l_gt = loss(gt)
    assert l_gt < 0.5 * loss(torch.full_like(gt, float(gt.median())))
    for p in (0.5, 1.5, 2.0):
        assert l_gt < loss(gt**p), p
    # embeddings that separate the motions (from the labels) remove the non-rigid residual
    emb = torch.stack([3.0 * (video.segmentation[:-1] == c).float() for c in range(3)], 1)
    assert loss(gt, emb) < 0.7 * l_gt


def test_residual_scaled_beta():
    """beta_scale="residual": the regulariser weight is beta * mean |r| of the pairs (the rigid loss value),
    detached (a constant for the backward pass, by design); the gradient w.r.t. the embeddings is exact
    (gradcheck, float64) and depths still receive a finite gradient."""
    from nrsfm_kit.edm.loss import residual_level
    from nrsfm_kit.kernels.edm_loss import edm_pair_loss_reference

    g = torch.Generator().manual_seed(0)
    n = 40
    xk = torch.randn(n, 3, generator=g, dtype=torch.float64)
    xl = xk + 0.1 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    i, j = torch.randint(0, n, (200,), generator=g), torch.randint(0, n, (200,), generator=g)
    level = residual_level(xk, xl, i, j)
    assert abs(level - float(edm_pair_loss_reference(xk, xl, i, j))) < 1e-6  # = the rigid loss (all w = 1)
    with pytest.raises(ValueError, match="finite"):
        residual_level(xk.clone().fill_(float("inf")), xl, i, j)

    d0, d1, flow = _rigid_pair(H=8, W=10)
    d1 = torch.where(torch.isfinite(d1), d1, torch.ones_like(d1))
    emb = torch.rand(3, 8, 10, generator=g, dtype=torch.float64)
    a, b = d0.clone().requires_grad_(), d1.clone().requires_grad_()
    m = emb.clone().requires_grad_()
    rel = EDMLossConfig(num_pairs=300, beta=0.5, beta_scale="residual")

    def loss(cfg, a, b, m):
        return edm_view_pair_loss(a, b, flow, INTR, m, config=cfg, generator=torch.Generator().manual_seed(1),
                                  backend="torch")

    assert torch.autograd.gradcheck(lambda m: loss(rel, d0, d1, m), (m,), eps=1e-6, atol=1e-5)
    loss(rel, a, b, m).backward()
    assert torch.isfinite(a.grad).all() and float(a.grad.abs().sum()) > 0
    # same value as the absolute beta set to beta * level of the same pairs; the Warp backend agrees
    xk, xl, ok = frame_pair_points(d0, d1, flow, INTR)
    index, i, j = sample_pairs(ok, 300, generator=torch.Generator().manual_seed(1))
    lev = residual_level(xk[index], xl[index], i, j)
    absolute = EDMLossConfig(num_pairs=300, beta=0.5 * lev)
    assert abs(float(loss(rel, d0, d1, emb)) - float(loss(absolute, d0, d1, emb))) < 1e-10
    warp = edm_view_pair_loss(d0, d1, flow, INTR, emb, config=rel, generator=torch.Generator().manual_seed(1))
    assert abs(float(warp) - float(loss(rel, d0, d1, emb))) < 1e-8
    with pytest.raises(ValueError, match="beta_scale"):
        EDMLossConfig(beta_scale="relative")


def test_smooth_correspondences_masks_discontinuities():
    from nrsfm_kit.edm.loss import smooth_correspondences

    d = torch.full((10, 12), 2.0, dtype=torch.float64)
    d[:, 6:] = 3.0  # a step between columns 5 and 6
    flow = torch.zeros(10, 12, 2, dtype=torch.float64)
    m = smooth_correspondences(d, d, flow)
    assert not m[:, 5:7].any() and m[:, :5].all() and m[:, 7:].all()
    flow[..., 0] = 2.0  # targets two columns right: pixels landing next to the step in view l are masked
    m2 = smooth_correspondences(d, d, flow)
    assert not m2[:, 3:7].any() and m2[:, :3].all() and not m2[:, 10:].any()  # 10, 11 leave the image
    assert smooth_correspondences(d, d, torch.zeros_like(flow), rel=0.6).all()
    with pytest.raises(ValueError, match="rel"):
        smooth_correspondences(d, d, flow, rel=0.0)
    with pytest.raises(ValueError, match="depth_l"):
        smooth_correspondences(d, d[:, :5], flow)
    bad = d.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="depth_k"):
        smooth_correspondences(bad, d, flow)


def test_depth_lookup_bilinear_on_smooth_and_drops_depth_edges():
    from nrsfm_kit.edm.loss import depth_lookup

    H, W = 6, 8
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    d = 2.0 + 0.01 * u + 0.005 * v  # smooth slope: exact bilinear values, nothing dropped
    uv = torch.tensor([[0.5, 0.25], [6.9, 4.1], [0.0, 0.0], [7.0, 5.0]], dtype=torch.float64)
    out, smooth = depth_lookup(d, uv)
    assert torch.allclose(out, 2.0 + 0.01 * uv[:, 0] + 0.005 * uv[:, 1]) and smooth.all()
    assert torch.allclose(out, bilinear_lookup(d[None], uv)[:, 0])
    step = torch.where(u < 4, torch.full_like(u, 2.0), torch.full_like(u, 4.0))  # depth edge between 3 and 4
    out, smooth = depth_lookup(step, torch.tensor([[3.4, 2.0], [3.0, 2.0], [1.5, 2.5], [4.0, 1.0]], dtype=torch.float64))
    # 3.4 blends both sides of the edge: dropped; 3.0 reads column 3 alone (weight 0 on column 4): kept
    assert smooth.tolist() == [False, True, True, True] and float(out[1]) == 2.0 and float(out[3]) == 4.0
    with pytest.raises(ValueError, match="rel"):
        depth_lookup(d, uv, rel=0.0)


def test_depth_lookup_gradcheck_float64():
    from nrsfm_kit.edm.loss import depth_lookup

    g = torch.Generator().manual_seed(0)
    d = (2.0 + 0.05 * torch.rand(5, 6, generator=g, dtype=torch.float64)).requires_grad_()
    uv = (torch.rand(7, 2, generator=g, dtype=torch.float64) * torch.tensor([5.0, 4.0], dtype=torch.float64))
    uv = uv.clamp(0.05, None).requires_grad_()
    _, smooth = depth_lookup(d, uv)
    assert smooth.all()
    assert torch.autograd.gradcheck(lambda a, b: depth_lookup(a, b)[0], (d, uv), eps=1e-6, atol=1e-8)


def test_edge_lookup_drops_straddling_targets_and_prefers_ground_truth():
    d = torch.full((10, 12), 2.0, dtype=torch.float64)
    d[:, 6:] = 3.0  # a step between columns 5 and 6
    flow = torch.zeros(10, 12, 2, dtype=torch.float64)
    flow[..., 0] = 0.5  # every target half-way between two columns
    _, _, ok = frame_pair_points(d, d, flow, INTR, lookup="edge")
    _, _, ok_bil = frame_pair_points(d, d, flow, INTR)  # the default: bilinear, every target kept
    assert not ok[:, 5].any() and ok[:, :5].all() and ok[:, 6:11].all()  # column 11 leaves the image
    assert ok_bil[:, 5].all()
    with pytest.raises(ValueError, match="lookup"):
        frame_pair_points(d, d, flow, INTR, lookup="nearest")
    with pytest.raises(ValueError, match="lookup"):
        EDMLossConfig(lookup="cubic")
    with pytest.raises(ValueError, match="lookup_rel"):
        EDMLossConfig(lookup_rel=0.0)


def test_log_normalization_and_trim_through_the_view_loss():
    """``normalization="log"`` and ``trim`` reach the kernels: Warp = torch reference, and the options are checked."""
    d0, d1, flow = _rigid_pair()
    d0, d1 = d0.requires_grad_(True), torch.nan_to_num(d1, nan=2.0).requires_grad_(True)
    emb = torch.rand(3, *d0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for norm, trim in (("log", 0.0), ("log", 0.3), ("mean", 0.3)):
        cfg = EDMLossConfig(num_pairs=500, beta=0.1, beta_scale="residual", normalization=norm, trim=trim)
        vals, grads = [], []
        for backend in ("warp", "torch"):
            g = torch.Generator().manual_seed(0)
            loss = edm_view_pair_loss(d0, d1, flow, INTR, emb, config=cfg, generator=g, backend=backend)
            vals.append(float(loss))
            grads.append(torch.autograd.grad(loss, (d0, d1)))
        assert abs(vals[0] - vals[1]) < 1e-10, (norm, trim, vals)
        for a, b in zip(grads[0], grads[1], strict=True):
            assert torch.allclose(a, b, atol=1e-10), (norm, trim)
    # trimming can only lower the data term of the same pairs
    g = torch.Generator().manual_seed(0)
    full = float(edm_view_pair_loss(d0, d1, flow, INTR, config=EDMLossConfig(num_pairs=500, normalization="log"),
                                    generator=g))
    g = torch.Generator().manual_seed(0)
    cut = float(edm_view_pair_loss(d0, d1, flow, INTR, generator=g,
                                   config=EDMLossConfig(num_pairs=500, normalization="log", trim=0.3)))
    assert cut < full
    for bad in (1.0, -0.2, "0.1"):
        with pytest.raises(ValueError, match="trim"):
            EDMLossConfig(trim=bad)
    with pytest.raises(ValueError, match="normalization"):
        EDMLossConfig(normalization="max")
