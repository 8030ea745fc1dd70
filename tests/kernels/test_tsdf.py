"""TSDF integration / nearest-node kernels: parity with the torch references, exact cases, bad inputs.

Integration is a state update (a discrete pixel lookup), not a differentiable function: parity is of values
(the updated F, W, C and the updated-voxel mask). Colours are a smooth image so that a voxel that projects within
float round-off of a pixel border (rounding to the other pixel) shows as a tiny colour difference only.
"""

from __future__ import annotations

import math

import pytest
import torch

from nrsfm_kit.geometry import so3_exp
from nrsfm_kit.kernels import tsdf as kt

H, W = 48, 64
INTR = torch.tensor([60.0, 60.0, 31.5, 23.5])
GRID = kt.VolumeGrid((-0.25, -0.2, 0.85), 0.0125)
SHAPE = (40, 32, 24)


def _frame(device):
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    depth = 1.0 + 0.05 * torch.sin(u / 9) * torch.cos(v / 7)
    depth[:3] = 0.0  # invalid rows
    depth[10, 10] = float("nan")  # non-finite = invalid
    img = torch.stack([u / W, v / H, 0.5 + 0 * u], -1)  # smooth colours
    return depth.to(device), img.to(device)


def _motion(device, n=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    nodes = torch.rand(n, 3, generator=g) * torch.tensor([0.5, 0.4, 0.3]) + torch.tensor([-0.25, -0.2, 0.85])
    R = so3_exp(0.1 * torch.randn(n, 3, generator=g)).float()
    t = 0.02 * torch.randn(n, 3, generator=g)
    return kt.GraphMotionInput(nodes.to(device), R.to(device), t.to(device), 0.05, 0.1)


def _state(device):
    return (torch.ones(SHAPE, device=device), torch.zeros(SHAPE, device=device),
            torch.zeros(*SHAPE, 3, device=device))


@pytest.mark.parametrize("with_graph", [False, True], ids=["rigid", "graph"])
def test_integrate_matches_the_torch_reference(device, with_graph):
    depth, img = _frame(device)
    motion = _motion(device) if with_graph else None
    pose = torch.eye(4, device=device)
    pose[:3, 3] = torch.tensor([0.01, -0.02, 0.03])
    outs = []
    for backend in ("warp", "torch"):
        s, w, c = _state(device)
        for _ in range(3):  # repeated frames exercise the running average
            upd = kt.integrate(s, w, c, depth, img, INTR.to(device), pose, GRID, 0.04, 2.0, motion, backend=backend)
        outs.append((s, w, c, upd))
    (s1, w1, c1, u1), (s2, w2, c2, u2) = outs
    assert int(u1.sum()) > 1000  # the frame really updates a band of voxels
    assert (u1 != u2).float().mean() < 1e-3
    same = u1 == u2
    torch.testing.assert_close(w1[same], w2[same], atol=0, rtol=0)
    # float32: 1e-6 m of round-off in the warped depth is 2.5e-5 of F (1 / trunc = 25 per metre)
    torch.testing.assert_close(s1[same], s2[same], atol=1e-4, rtol=0)
    torch.testing.assert_close(c1[same], c2[same], atol=0.05, rtol=0)  # a pixel of the smooth image apart at most
    assert float(w1.max()) == 2.0  # the weight cap (3 frames, cap 2)
    assert float(s1.min()) >= -1.0 and float(s1.max()) <= 1.0


def test_rigid_plane_gives_the_exact_signed_distance():
    """A fronto-parallel plane at 1 m: F(voxel) = clamp((1 - z) / trunc) exactly, colour = the image."""
    depth = torch.ones(H, W)
    img = torch.full((H, W, 3), 0.25)
    s, w, c = _state("cpu")
    upd = kt.integrate(s, w, c, depth, img, INTR, torch.eye(4), GRID, 0.04, 64.0)
    centres = kt.voxel_centres(SHAPE, GRID).reshape(*SHAPE, 3)
    z = centres[..., 2]
    expect = torch.clamp((1.0 - z) / 0.04, max=1.0)
    m = upd
    assert bool(m.any())
    torch.testing.assert_close(s[m], expect[m], atol=1e-5, rtol=0)
    assert bool((z[m] <= 1.04 + 1e-5).all())  # nothing beyond the truncation behind the surface
    torch.testing.assert_close(c[m], torch.full_like(c[m], 0.25))
    assert bool((w[m] == 1).all()) and bool((w[~m] == 0).all())


def test_identity_graph_motion_equals_no_motion_where_supported():
    depth, img = _frame("cpu")
    m = _motion("cpu", n=200)
    ident = kt.GraphMotionInput(m.nodes, torch.eye(3).expand(200, 3, 3).contiguous(), torch.zeros(200, 3), 0.05, 0.1)
    a, b = _state("cpu"), _state("cpu")
    ua = kt.integrate(*a, depth, img, INTR, torch.eye(4), GRID, 0.04, 64.0, None)
    ub = kt.integrate(*b, depth, img, INTR, torch.eye(4), GRID, 0.04, 64.0, ident)
    x = kt.voxel_centres(SHAPE, GRID)
    supported = (torch.cdist(x, m.nodes, compute_mode="donot_use_mm_for_euclid_dist").min(1).values <= 0.1).reshape(SHAPE)
    assert bool((ub <= (ua & supported)).all()) and bool(((ua & supported) <= ub).all())
    # Q(x) = x up to float round-off: a voxel projecting within round-off of a pixel border may read the
    # neighbouring pixel (a different depth): a few voxels in 10^4
    assert float(((a[0] - b[0]).abs()[ub] > 1e-5).float().mean()) < 1e-3


def test_translated_graph_moves_the_fused_surface():
    """Every node translated by +5 cm in z: the canonical surface is fused 5 cm in front of the depth."""
    depth = torch.ones(H, W)
    img = torch.zeros(H, W, 3)
    n = 400
    g = torch.Generator().manual_seed(1)
    nodes = torch.rand(n, 3, generator=g) * torch.tensor([0.5, 0.4, 0.3]) + torch.tensor([-0.25, -0.2, 0.85])
    mo = kt.GraphMotionInput(nodes, torch.eye(3).expand(n, 3, 3).contiguous(), torch.tensor([[0, 0, 0.05]]).expand(n, 3)
                             .contiguous(), 0.05, 0.1)
    s, w, c = _state("cpu")
    upd = kt.integrate(s, w, c, depth, img, INTR, torch.eye(4), GRID, 0.04, 64.0, mo)
    z = kt.voxel_centres(SHAPE, GRID).reshape(*SHAPE, 3)[..., 2]
    torch.testing.assert_close(s[upd], torch.clamp((0.95 - z[upd]) / 0.04, max=1.0), atol=1e-5, rtol=0)


def test_nearest_nodes_matches_the_torch_reference(device):
    g = torch.Generator().manual_seed(3)
    pts = (torch.rand(2000, 3, generator=g)).to(device)
    nodes = (torch.rand(80, 3, generator=g)).to(device)
    i1, d1 = kt.nearest_nodes(pts, nodes, 0.12)
    i2, d2 = kt.nearest_nodes_torch(pts, nodes, 0.12)
    assert bool((i1 >= 0).any()) and bool((i1 < 0).any())
    assert torch.equal(i1, i2)
    torch.testing.assert_close(d1, d2.float(), atol=1e-6, rtol=0)
    torch.testing.assert_close(d1[i1 < 0], torch.full_like(d1[i1 < 0], 0.12))
    ie, de = kt.nearest_nodes(pts, nodes[:0], 0.1)
    assert bool((ie == -1).all()) and bool((de == 0.1).all())


@pytest.mark.parametrize("case, match", [
    ("sdf_dtype", "sdf: expected dtype float32"),
    ("weight_shape", "weight"),
    ("color_shape", "color"),
    ("depth_ndim", "depth"),
    ("image_size", "image"),
    ("intrinsics", "intrinsics: expected focal lengths"),
    ("pose", "pose"),
    ("trunc", "trunc"),
    ("max_weight", "max_weight"),
    ("grid", "grid: expected a VolumeGrid"),
    ("motion_nan", "motion.translations"),
    ("motion_type", "motion: expected a GraphMotionInput"),
    ("backend", "backend"),
    ("strided", "contiguous"),
])
def test_integrate_bad_inputs(case, match):
    depth, img = _frame("cpu")
    s, w, c = _state("cpu")
    args = dict(sdf=s, weight=w, color=c, depth=depth, image=img, intrinsics=INTR, pose=torch.eye(4), grid=GRID,
                trunc=0.04, max_weight=64.0, motion=None)
    if case == "sdf_dtype":
        args["sdf"] = s.double()
    elif case == "weight_shape":
        args["weight"] = torch.zeros(3, 3, 3)
    elif case == "color_shape":
        args["color"] = torch.zeros(*SHAPE, 4)
    elif case == "depth_ndim":
        args["depth"] = depth[None]
    elif case == "image_size":
        args["image"] = img[:-1]
    elif case == "intrinsics":
        args["intrinsics"] = torch.tensor([0.0, 60.0, 30.0, 20.0])
    elif case == "pose":
        args["pose"] = torch.eye(3)
    elif case == "trunc":
        args["trunc"] = -1.0
    elif case == "max_weight":
        args["max_weight"] = math.nan
    elif case == "grid":
        args["grid"] = (0, 0, 0)
    elif case == "motion_nan":
        m = _motion("cpu")
        t = m.translations.clone()
        t[0, 0] = float("nan")
        args["motion"] = m._replace(translations=t)
    elif case == "motion_type":
        args["motion"] = (1, 2)
    elif case == "strided":
        args["sdf"] = torch.ones(SHAPE[2], SHAPE[1], SHAPE[0]).permute(2, 1, 0)
    kw = {"backend": "cuda"} if case == "backend" else {}
    with pytest.raises(ValueError, match=match):
        kt.integrate(**args, **kw)


def test_nearest_nodes_bad_inputs():
    with pytest.raises(ValueError, match="points"):
        kt.nearest_nodes(torch.zeros(5, 2), torch.zeros(3, 3), 0.1)
    with pytest.raises(ValueError, match="radius"):
        kt.nearest_nodes(torch.zeros(5, 3), torch.zeros(3, 3), 0.0)
    with pytest.raises(ValueError, match="float32"):
        kt.nearest_nodes(torch.zeros(5, 3, dtype=torch.float64), torch.zeros(3, 3), 0.1)
