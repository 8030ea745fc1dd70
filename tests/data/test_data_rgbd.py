"""Synthetic deforming RGB-D pairs/sequences: ground-truth consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nrsfm_kit.data import synthetic_rgbd_pair, synthetic_rgbd_sequence
from nrsfm_kit.geometry import backproject, pixel_grid, procrustes, project

H, W = 72, 96


@pytest.fixture(scope="module")
def pair():
    return synthetic_rgbd_pair(H, W, seed=2, time_gap=0.3, shading=0.0, dtype=torch.float64)


def _sample(img, uv):
    h, w = img.shape[-2:]
    g = torch.stack([2 * uv[..., 0] / (w - 1) - 1, 2 * uv[..., 1] / (h - 1) - 1], -1)
    return F.grid_sample(img[None], g[None], align_corners=True, mode="bilinear")[0]


def test_fields(pair):
    assert pair.source_color.shape == (3, H, W) and pair.target_depth.shape == (H, W)
    assert pair.optical_flow.shape == (H, W, 2) and pair.scene_flow.shape == (H, W, 3)
    assert pair.flow_valid.all()  # the room encloses the view
    assert set(pair.segmentation.unique().tolist()) == {0, 1, 2}
    assert torch.equal(pair.source_mask, pair.segmentation > 0)
    assert (pair.source_depth > 0).all() and torch.equal(pair.source_depth, pair.source_depth_clean)
    assert pair.object_names == ["wall", "floor", "cloth", "cylinder", "box"]
    # objects really move between the frames; the background does not
    static = pair.segmentation == 0
    assert pair.scene_flow[static].abs().max() < 1e-9
    assert pair.scene_flow[~static].norm(dim=-1).mean() > 0.01


def test_points_flow_projection_consistency(pair):
    grid = pixel_grid(H, W, dtype=torch.float64)
    # source points are the back-projected source depth
    X = backproject(grid, pair.source_depth_clean, pair.intrinsics)
    assert (X - pair.source_points).norm(dim=-1).max() < 1e-5
    # warping the source by the scene flow gives the target points; projecting them gives the flow
    assert torch.allclose(pair.source_points + pair.scene_flow, pair.target_points, atol=1e-12)
    uv = project(pair.target_points, pair.intrinsics)
    assert (uv - grid - pair.optical_flow).norm(dim=-1).max() < 1e-9


def test_warped_source_lands_on_target_surface(pair):
    import open3d as o3d

    scene = pair.scene
    verts = scene.vertices(pair.times[1])
    rc = scene.raycasting_scene(verts)
    pts = pair.target_points.reshape(-1, 3).numpy().astype(np.float32)
    dist = rc.compute_distance(o3d.core.Tensor(pts)).numpy()
    assert dist.max() < 1e-5  # metres: every warped point is on the target surface
    # and, where visible, it agrees with the target depth map (bilinear, away from depth edges)
    vis = pair.visibility
    uv = pixel_grid(H, W, dtype=torch.float64) + pair.optical_flow
    z_map = _sample(pair.target_depth[None], uv)[0]
    dz = (z_map - pair.target_points[..., 2]).abs()[vis]
    assert dz.median() < 1e-3 and (dz < 0.01).float().mean() > 0.97


def test_visibility_means_not_occluded(pair):
    vis, uvt = pair.visibility, pixel_grid(H, W, dtype=torch.float64) + pair.optical_flow
    inside = (uvt[..., 0] > -0.5) & (uvt[..., 0] < W - 0.5) & (uvt[..., 1] > -0.5) & (uvt[..., 1] < H - 0.5)
    assert not (vis & ~inside).any()
    hidden = inside & ~vis
    assert hidden.sum() > 0  # the box moves across the cloth: some pixels get occluded
    ui = uvt[..., 0].round().long().clamp(0, W - 1)
    vi = uvt[..., 1].round().long().clamp(0, H - 1)
    z_front = pair.target_depth[vi, ui]
    frac = (z_front[hidden] < pair.target_points[..., 2][hidden] - 1e-3).float().mean()
    assert frac > 0.9  # hidden points have something in front of them


def test_brightness_constancy(pair):
    grid = pixel_grid(H, W, dtype=torch.float64)
    warped = _sample(pair.target_color, grid + pair.optical_flow)
    m = pair.visibility
    err = (warped - pair.source_color).abs().mean(0)[m].mean()
    err0 = (pair.target_color - pair.source_color).abs().mean(0)[m].mean()
    assert err < 0.03 and err < 0.5 * err0


def test_node_translations(pair):
    ii, jj = torch.meshgrid(torch.arange(2, H, 7), torch.arange(3, W, 7), indexing="ij")
    nodes = pair.source_points[ii.flatten(), jj.flatten()]
    tr = pair.node_translations(nodes)
    assert tr.shape == nodes.shape and tr.dtype == nodes.dtype
    # nodes on the surface move exactly with the scene flow
    assert (tr - pair.scene_flow[ii.flatten(), jj.flatten()]).norm(dim=-1).max() < 1e-5
    # nodes of the rigid box move rigidly (exactly), static ones do not move
    ids = pair.source_object_ids[ii.flatten(), jj.flatten()]
    box = ids == pair.object_names.index("box")
    assert box.sum() >= 4
    R, t, _ = procrustes(nodes[box], nodes[box] + tr[box])
    assert (nodes[box] @ R.T + t - nodes[box] - tr[box]).norm(dim=-1).max() < 1e-6
    assert tr[ids == 0].abs().max() < 1e-9
    # a node slightly off the surface takes the displacement of its closest surface point
    n = torch.nn.functional.normalize(pair.source_points[ii.flatten(), jj.flatten()], dim=-1)
    off = pair.node_translations(nodes - 1e-4 * n)
    assert (off - tr).norm(dim=-1).median() < 1e-4
    with pytest.raises(ValueError, match=r"nodes: expected shape \(N, 3\)"):
        pair.node_translations(nodes[:, :2])


def test_kinect_noise_model():
    p = synthetic_rgbd_pair(H, W, seed=1, kinect_noise=True, dtype=torch.float64)
    holes = p.source_depth == 0
    assert 0.01 < holes.float().mean() < 0.4
    wall = (p.source_object_ids == 0) & ~holes
    z = p.source_depth_clean[wall]
    sigma = 0.0012 + 0.0019 * (z - 0.4) ** 2
    resid = (p.source_depth[wall] - z) / sigma
    assert abs(resid.std().item() - 1.0) < 0.2  # quantisation to 1 mm adds ~0.03 sigma here
    assert torch.equal(p.source_depth[~holes], (p.source_depth[~holes] * 1000).round() / 1000)
    # ground truth still refers to the clean geometry
    clean = synthetic_rgbd_pair(H, W, seed=1, dtype=torch.float64)
    assert torch.equal(clean.scene_flow, p.scene_flow)


def test_deterministic_and_seeded():
    a = synthetic_rgbd_pair(16, 20, seed=5)
    b = synthetic_rgbd_pair(16, 20, seed=5)
    c = synthetic_rgbd_pair(16, 20, seed=6)
    assert torch.equal(a.source_color, b.source_color) and torch.equal(a.optical_flow, b.optical_flow)
    assert not torch.equal(a.source_color, c.source_color)
    assert a.source_color.dtype == torch.float32


def test_sequence_and_its_pairs():
    seq = synthetic_rgbd_sequence(3, H // 2, W // 2, seed=2, fps=5.0, objects=("cloth", "box"))
    assert seq.colors.shape == (3, 3, H // 2, W // 2) and seq.depths.shape == (3, H // 2, W // 2)
    assert seq.masks.shape == (3, H // 2, W // 2) and seq.poses.shape == (3, 4, 4)
    assert seq.object_names == ["wall", "floor", "cloth", "box"]
    p = seq.pair(0, 2)
    assert torch.equal(p.source_color, seq.colors[0]) and torch.equal(p.target_color, seq.colors[2])
    q = synthetic_rgbd_pair(H // 2, W // 2, seed=2, time_gap=0.4, objects=("cloth", "box"))
    assert torch.allclose(p.optical_flow, q.optical_flow, atol=1e-4)
    nodes = p.source_points[p.source_mask][::25]
    assert torch.allclose(seq.node_translations(nodes, 0, 2), p.node_translations(nodes))
    back = seq.pair(2, 0)
    assert back.scene_flow[back.source_mask].norm(dim=-1).mean() > 0.005
    with pytest.raises(ValueError, match="j: expected a frame index in"):
        seq.pair(0, 3)
    with pytest.raises(ValueError, match="i: expected a frame index in"):
        seq.node_translations(nodes, -1, 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"height": 4}, "height"),
        ({"width": 10.5}, "width"),
        ({"objects": ("cloth", "cloth")}, "objects"),
        ({"objects": ("sphere",)}, "objects"),
        ({"time_gap": 0.0}, "time_gap"),
        ({"t_source": -1.0}, "t_source"),
        ({"shading": 2.0}, "shading"),
        ({"height": float("nan")}, r"height: expected an integer >= 8, found nan"),
        ({"width": "32"}, r"width: expected an integer >= 8, found '32'"),
        ({"seed": -1}, r"seed: expected an integer >= 0, found -1"),
        ({"seed": 1.5}, "seed"),
        ({"time_gap": float("inf")}, "time_gap"),
        ({"dtype": torch.int64}, r"dtype: expected a floating torch dtype"),
    ],
)
def test_pair_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic_rgbd_pair(**{"height": 16, "width": 16, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"num_frames": 1}, "num_frames"), ({"num_frames": float("nan")}, "num_frames"), ({"fps": -2}, "fps"),
     ({"dtype": torch.bool}, "dtype")],
)
def test_sequence_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic_rgbd_sequence(**{"height": 16, "width": 16, **kwargs})


def test_pairs_dataset_collates():
    from nrsfm_kit.data import SyntheticRGBDPairs

    ds = SyntheticRGBDPairs(3, 16, 20, seed=4, objects=("cloth", "box"))
    assert len(ds) == 3
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["optical_flow"].shape == (2, 16, 20, 2) and batch["flow_valid"].dtype == torch.bool
    assert not torch.equal(batch["source_color"][0], batch["source_color"][1])
    again = ds[1]
    assert torch.equal(again["scene_flow"], batch["scene_flow"][1])
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(ValueError, match="num_pairs"):
        SyntheticRGBDPairs(0)
    with pytest.raises(ValueError, match="time_gap_range"):
        SyntheticRGBDPairs(2, time_gap_range=(0.5, 0.1))


def test_barycentric_interpolation_readable(pair):
    """Eq. (5) by hand: target point = barycentric blend of the hit triangle's vertices at the target time."""
    verts = pair.scene.vertices(pair.times[1])
    ids, tri, bary = pair.source_object_ids, pair.source_triangle_ids, pair.source_barycentrics
    ys, xs = torch.meshgrid(torch.arange(0, H, 9), torch.arange(0, W, 11), indexing="ij")
    for y, x in zip(ys.flatten().tolist(), xs.flatten().tolist()):
        obj = pair.scene.objects[int(ids[y, x])]
        corners = torch.as_tensor(verts[int(ids[y, x])][obj.faces[int(tri[y, x])]])  # (3, 3)
        p = (bary[y, x][:, None] * corners).sum(0)
        assert torch.allclose(p, pair.target_points[y, x], atol=1e-12)  # static camera: world = camera
    assert torch.allclose(bary.sum(-1), torch.ones(H, W, dtype=bary.dtype))


def test_moving_camera_pair():
    p = synthetic_rgbd_pair(H, W, seed=3, camera_motion=1.0, time_gap=0.4, dtype=torch.float64)
    T_s, T_t = (torch.as_tensor(p.scene.pose_at(t)) for t in p.times)
    rel = T_t @ torch.linalg.inv(T_s)
    static = p.segmentation == 0
    # static points move only by the camera motion: X_t = R X_s + t in camera coordinates
    moved = p.source_points @ rel[:3, :3].T + rel[:3, 3]
    assert (moved - p.target_points)[static].norm(dim=-1).max() < 1e-6
    assert p.scene_flow[static].norm(dim=-1).mean() > 0.01
    grid = pixel_grid(H, W, dtype=torch.float64)
    assert (project(p.target_points, p.intrinsics) - grid - p.optical_flow).abs().max() < 1e-9
    # node translations use the same camera-frame convention
    ii, jj = torch.meshgrid(torch.arange(3, H, 9), torch.arange(4, W, 9), indexing="ij")
    nodes = p.source_points[ii.flatten(), jj.flatten()]
    assert (p.node_translations(nodes) - p.scene_flow[ii.flatten(), jj.flatten()]).norm(dim=-1).max() < 1e-5
    with pytest.raises(ValueError, match="camera_motion"):
        synthetic_rgbd_pair(16, 16, camera_motion=-1.0)


def test_node_translations_of_a_graph_built_on_the_source_frame(pair):
    """Issue 3: GT node translations for a deformation graph built on the source frame (nrsfm_kit.graph)."""
    from nrsfm_kit.graph.build import build_graph

    cloth = pair.source_object_ids == pair.object_names.index("cloth")
    graph = build_graph(pair.source_depth, cloth, pair.intrinsics, node_coverage=0.05)
    nodes = torch.as_tensor(graph.nodes, dtype=torch.float64)
    assert len(nodes) >= 8
    tr = pair.node_translations(nodes)
    # graph nodes are back-projected source pixels of the cloth: they move with their pixel's scene flow
    uv = project(nodes, pair.intrinsics).round().long()
    assert (pixel_grid(H, W, dtype=torch.float64)[uv[:, 1], uv[:, 0]] - project(nodes, pair.intrinsics)).abs().max() < 1e-3
    assert cloth[uv[:, 1], uv[:, 0]].all()
    sf = pair.scene_flow[uv[:, 1], uv[:, 0]]
    assert (tr - sf).norm(dim=-1).max() < 1e-5  # metres (float32 node positions)
    assert tr.norm(dim=-1).mean() > 0.005  # the cloth really deforms between the frames
    # non-finite nodes never flow on
    bad = nodes.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="nodes: expected finite"):
        pair.node_translations(bad)


def test_kinect_noise_bad_inputs():
    from nrsfm_kit.data.render import kinect_noise

    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"depth: expected shape \(H, W\)"):
        kinect_noise(np.ones((2, 3, 4)), None, rng)
    with pytest.raises(ValueError, match="depth: expected finite values >= 0"):
        kinect_noise(np.full((4, 4), np.nan), None, rng)
    with pytest.raises(ValueError, match=r"normals_dot_view: expected shape \(4, 4\)"):
        kinect_noise(np.ones((4, 4)), np.ones((3, 4)), rng)
    with pytest.raises(ValueError, match="hole_fraction"):
        kinect_noise(np.ones((4, 4)), None, rng, hole_fraction=1.5)
    out = kinect_noise(np.ones((16, 16)), None, rng, hole_fraction=0.0)
    assert np.isfinite(out).all() and (np.abs(out - 1) < 0.02).all()  # sigma(1 m) ~ 1.9 mm, no holes
