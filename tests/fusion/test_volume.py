"""TSDFVolume: the rigid special case against Open3D, marching cubes on exact shapes, memory and state checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nrsfm_kit.fusion.volume import TSDFConfig, TSDFVolume, marching_cubes, vertex_normals, volume_bytes
from nrsfm_kit.kernels.tsdf import VolumeGrid


def _open3d_mesh(seq, n, origin, cfg):
    import open3d as o3d

    vol = o3d.pipelines.integration.UniformTSDFVolume(
        length=n * cfg.voxel_size, resolution=n, sdf_trunc=cfg.truncation,
        color_type=o3d.pipelines.integration.TSDFVolumeColorType.RGB8, origin=np.array(origin))
    H, W = seq.depths.shape[-2:]
    fx, fy, cx, cy = seq.intrinsics.tolist()
    K = o3d.camera.PinholeCameraIntrinsic(W, H, fx, fy, cx, cy)
    for i in range(seq.num_frames):
        col = np.ascontiguousarray((seq.colors[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(col), o3d.geometry.Image(seq.depths[i].numpy()), depth_scale=1.0, depth_trunc=10.0,
            convert_rgb_to_intensity=False)
        vol.integrate(rgbd, K, seq.poses[i].double().numpy())
    return vol.extract_triangle_mesh()


def _distances(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    import open3d as o3d

    tm = o3d.t.geometry.TriangleMesh()
    tm.vertex.positions = o3d.core.Tensor(vertices.astype(np.float32))
    tm.triangle.indices = o3d.core.Tensor(faces.astype(np.int32))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(tm)
    return scene.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()


@pytest.mark.parametrize("graph", [False, True], ids=["no-deformation", "identity-graph"])
def test_rigid_case_matches_open3d_uniform_tsdf(graph):
    """A static room seen along a known camera trajectory (4 poses), identity deformation: our canonical mesh and
    Open3D's UniformTSDFVolume mesh of the same frames agree to well below a voxel (mean and 95th percentile,
    both directions)."""
    from nrsfm_kit.data.rgbd import synthetic_rgbd_sequence
    from nrsfm_kit.kernels.tsdf import GraphMotionInput

    seq = synthetic_rgbd_sequence(4, 96, 128, objects=(), camera_motion=1.0, fps=2.0)
    assert float((seq.poses[-1, :3, 3] - seq.poses[0, :3, 3]).norm()) > 0.3  # the camera really moves
    n, cfg, origin = 64, TSDFConfig(voxel_size=0.04, truncation=0.12), (-1.28, -0.9, 1.5)
    vol = TSDFVolume.create((n, n, n), origin, cfg)
    motion = None
    if graph:  # nodes on a 10 cm lattice over the volume, identity motion: every voxel supported, Q(x) = x
        ax = torch.arange(0.05, n * cfg.voxel_size, 0.1)
        nodes = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3) + torch.tensor(origin)
        N = nodes.shape[0]
        motion = GraphMotionInput(nodes.float().contiguous(), torch.eye(3).expand(N, 3, 3).contiguous(),
                                  torch.zeros(N, 3), 0.05, 0.1)
    for i in range(seq.num_frames):
        vol.integrate(seq.depths[i], seq.colors[i], seq.intrinsics, pose=seq.poses[i], motion=motion)
    ours = vol.extract_mesh()
    ref = _open3d_mesh(seq, n, origin, cfg)
    rv, rf = np.asarray(ref.vertices), np.asarray(ref.triangles)
    assert ours.num_vertices > 1000 and len(rv) > 1000
    d1 = _distances(ours.vertices.numpy(), rv, rf)
    d2 = _distances(rv, ours.vertices.numpy(), ours.faces.numpy())
    for d in (d1, d2):
        assert d.mean() < 0.1 * cfg.voxel_size and np.percentile(d, 95) < cfg.voxel_size
    # colours agree on average (Open3D stores 8-bit colours)
    c_ref = np.asarray(ref.vertex_colors).mean(0)
    np.testing.assert_allclose(ours.colors.mean(0).numpy(), c_ref, atol=0.02)


def test_marching_cubes_of_an_exact_sphere_and_the_observed_mask():
    n, vs = 40, 0.01
    grid = VolumeGrid((-0.2, -0.2, -0.2), vs)
    idx = torch.stack(torch.meshgrid(*(torch.arange(n, dtype=torch.float32),) * 3, indexing="ij"), -1)
    x = torch.tensor(grid.origin) + (idx + 0.5) * vs
    r = x.norm(dim=-1)
    sdf = ((r - 0.12) / 0.04).clamp(-1, 1)
    weight = torch.ones(n, n, n)
    colour = torch.zeros(n, n, n, 3)
    colour[..., 0] = 1.0
    m = marching_cubes(sdf, weight, colour, grid)
    rad = m.vertices.norm(dim=-1)
    assert float((rad - 0.12).abs().max()) < 0.15 * vs  # linear interpolation error only
    torch.testing.assert_close(m.colors, colour[0, 0, 0].expand_as(m.colors))
    # every edge is shared by two faces: a closed surface
    e = torch.cat([m.faces[:, [0, 1]], m.faces[:, [1, 2]], m.faces[:, [2, 0]]]).sort(1).values
    _, counts = torch.unique(e, dim=0, return_counts=True)
    assert bool((counts == 2).all())
    normals = vertex_normals(m.vertices, m.faces)
    cos = (normals * m.vertices / rad.unsqueeze(-1)).sum(-1)
    assert float(cos.abs().min()) > 0.9  # radial (consistently oriented up to the global sign)
    assert len(set(torch.sign(cos).tolist())) == 1
    # half the volume never observed: no triangle there, and no spurious surface at the observed border
    w2 = weight.clone()
    w2[: n // 2] = 0
    m2 = marching_cubes(sdf, w2, colour, grid)
    assert m2.num_vertices > 0 and float(m2.vertices[:, 0].min()) >= -0.2 + (n // 2 - 1) * vs
    assert float((m2.vertices.norm(dim=-1) - 0.12).abs().max()) < 0.15 * vs
    empty = marching_cubes(sdf, torch.zeros(n, n, n), None, grid)
    assert empty.num_vertices == 0 and empty.colors is None


def test_volume_fitting_memory_error_and_state_round_trip():
    pts = torch.tensor([[0.0, 0.0, 1.0], [0.3, 0.2, 1.2]])
    cfg = TSDFConfig(voxel_size=0.02, margin=0.1)
    vol = TSDFVolume.around(pts, cfg)
    assert vol.shape == (25, 20, 20) and vol.nbytes == volume_bytes(vol.shape) == 25 * 20 * 20 * 20
    lo = torch.tensor(vol.origin)
    assert bool((lo <= pts.min(0).values - 0.1 + 1e-6).all())
    with pytest.raises(ValueError, match=r"does not fit in memory: it needs [0-9.]+ GiB"):
        TSDFVolume.create((4000, 4000, 4000), (0, 0, 0), TSDFConfig(max_voxels=10**12))
    with pytest.raises(ValueError, match="max_voxels"):
        TSDFVolume.create((600, 600, 600), (0, 0, 0))
    with pytest.raises(ValueError, match="shape: expected 3 voxel counts"):
        TSDFVolume.create((10, 10), (0, 0, 0))
    with pytest.raises(ValueError, match="origin"):
        TSDFVolume.create((10, 10, 10), (0, float("nan"), 0))
    with pytest.raises(ValueError, match="truncation"):
        TSDFConfig(voxel_size=0.02, truncation=0.01)
    with pytest.raises(ValueError, match="points"):
        TSDFVolume.around(torch.zeros(0, 3))
    vol.sdf.uniform_(-1, 1)
    vol.weight.fill_(3)
    back = TSDFVolume.from_state_dict(vol.state_dict())
    assert torch.equal(back.sdf, vol.sdf) and back.origin == vol.origin and back.config == vol.config
    bad = vol.state_dict()
    bad["weight"] = torch.zeros(2, 2, 2)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        TSDFVolume.from_state_dict(bad)
    with pytest.raises(ValueError, match="color"):
        vol.integrate(torch.ones(8, 8), torch.ones(3, 8, 9), torch.tensor([10.0, 10, 4, 4]))
