"""Synthetic non-rigid tracking problems with exact ground truth (tests, notebook, demo, benchmark).

A curved sheet (or several disconnected sheets) is sampled on a regular grid of vertices in front of a
pinhole camera; graph nodes are a coarser sub-grid; every vertex is anchored to its 4 nearest nodes
with the Gaussian skinning weights alpha ~ exp(-||p - v||^2 / (2 sigma^2)) (paper App. A). A ground
truth node motion (rigid, or a smooth non-rigid bend + twist) moves the vertices through the embedded
warp Q; the correspondences are the exact projections of the warped vertices and the target depth
map is ray cast (Open3D) from the warped mesh, so an exact solution of the data terms exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from nrsfm_kit.geometry import project_with_mask, so3_exp
from nrsfm_kit.graph.types import DeformationGraph
from nrsfm_kit.kernels.warp_field import warp_points_torch

__all__ = ["SyntheticTracking", "make_synthetic_tracking", "render_depth", "sheet_graph"]


@dataclass
class SyntheticTracking:
    """A synthetic frame pair with ground truth. B frame pairs share the source frame and the graph."""

    graph: DeformationGraph
    source_points: torch.Tensor  # (P, 3) metres
    anchors: torch.Tensor  # (P, 4) int64
    anchor_weights: torch.Tensor  # (P, 4)
    faces: np.ndarray  # (F, 3) triangles of the source mesh (vertex ids)
    correspondences: torch.Tensor  # (B, P, 2) exact target pixels
    weights: torch.Tensor  # (B, P) ones
    target_depth: torch.Tensor  # (B, H, W) metres, 0 = background
    target_points: torch.Tensor  # (B, P, 3) ground-truth warped points, metres
    target_normals: torch.Tensor  # (B, P, 3) unit normals of the warped mesh
    intrinsics: torch.Tensor  # (4,) fx, fy, cx, cy
    rotations: torch.Tensor  # (B, N, 3, 3) ground truth
    translations: torch.Tensor  # (B, N, 3) ground truth, metres


def sheet_graph(grid: int = 24, node_stride: int = 4, size: float = 0.4, depth: float = 1.0, sheets: int = 1,
                dtype=torch.float64):
    """Vertices, faces and the deformation graph of ``sheets`` curved sheets (one cluster each).

    Returns (points (P, 3), faces (F, 3) np.int64, graph, anchors (P, 4), anchor_weights (P, 4)).
    """
    from scipy.spatial import cKDTree

    lin = np.linspace(-size / 2, size / 2, grid)
    X, Y = np.meshgrid(lin, lin)
    Z = depth + 0.15 * (X**2 + Y**2) / size  # gently curved towards the camera's far side
    base = np.stack([X, Y, Z], -1).reshape(-1, 3)
    idx = np.arange(grid * grid).reshape(grid, grid)
    q = np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]], -1).reshape(-1, 4)
    base_faces = np.concatenate([q[:, [0, 2, 1]], q[:, [1, 2, 3]]], 0)
    sel = idx[::node_stride, ::node_stride].reshape(-1)
    spacing = size / (grid - 1) * node_stride
    sigma = spacing  # node coverage: every vertex within sigma of a node
    pts, faces, nodes, edges, ew, clusters, anc, aw = [], [], [], [], [], [], [], []
    gap = size * 1.5
    K = 6
    for s in range(sheets):
        off = np.array([s * gap - (sheets - 1) * gap / 2, 0.0, 0.0])
        P0 = sum(len(p) for p in pts)
        N0 = sum(len(n) for n in nodes)
        vp = base + off
        vn = vp[sel]
        pts.append(vp)
        faces.append(base_faces + P0)
        tree = cKDTree(vn)
        k = min(K + 1, len(vn))
        d, nb = tree.query(vn, k=k)
        e = np.full((len(vn), K), -1, dtype=np.int64)
        w = np.zeros((len(vn), K))
        e[:, : k - 1] = nb[:, 1:] + N0
        w[:, : k - 1] = np.exp(-d[:, 1:] ** 2 / (2 * sigma**2))
        w /= w.sum(1, keepdims=True)
        edges.append(e)
        ew.append(w)
        nodes.append(vn)
        clusters.append(np.full(len(vn), s))
        d, nb = tree.query(vp, k=4)
        a = np.exp(-d**2 / (2 * sigma**2))
        anc.append(nb + N0)
        aw.append(a / a.sum(1, keepdims=True))
    t = lambda x, dt=dtype: torch.as_tensor(np.concatenate(x, 0), dtype=dt)  # noqa: E731
    cl = t(clusters, torch.int64)
    graph = DeformationGraph(
        nodes=t(nodes), edges=t(edges, torch.int64), edge_weights=t(ew), clusters=cl,
        cluster_sizes=torch.bincount(cl), pixel_anchors=torch.full((1, 1, 4), -1, dtype=torch.int64),
        pixel_weights=torch.zeros(1, 1, 4, dtype=dtype), node_coverage=float(sigma),
    )
    return t(pts), np.concatenate(faces, 0), graph, t(anc, torch.int64), t(aw)


def render_depth(vertices: np.ndarray, faces: np.ndarray, intrinsics, height: int, width: int):
    """Ray-cast depth (H, W) metres and per-vertex unit normals (P, 3) of a triangle mesh (Open3D).

    Rays go through pixel centres at integer (u, v) (the convention of :mod:`nrsfm_kit.geometry`), with
    direction K^-1 (u, v, 1), so the hit distance is the depth z; misses are 0.
    """
    import open3d as o3d

    fx, fy, cx, cy = (float(v) for v in intrinsics)
    mesh = o3d.t.geometry.TriangleMesh()
    mesh.vertex.positions = o3d.core.Tensor(vertices.astype(np.float32))
    mesh.triangle.indices = o3d.core.Tensor(faces.astype(np.int32))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(mesh)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    dirs = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1)
    rays = np.concatenate([np.zeros_like(dirs), dirs], -1)
    hit = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    depth = np.where(np.isfinite(hit), hit, 0.0)
    lm = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices.astype(np.float64)),
                                   o3d.utility.Vector3iVector(faces.astype(np.int32)))
    lm.compute_vertex_normals()
    normals = np.asarray(lm.vertex_normals)
    return depth, normals


def _nonrigid_field(p: torch.Tensor, amp: float, size: float, Rg, tg):
    """Smooth deformation f(p) = Rg (p + bend(p)) + tg (metres): a bend, a twist and a bump."""
    x, y = p[..., 0] / size, p[..., 1] / size
    bend = torch.stack([
        0.3 * amp * torch.sin(math.pi * y),
        0.3 * amp * torch.sin(math.pi * x),
        amp * (torch.cos(math.pi * x) * torch.cos(math.pi * y) - 0.5 * (2 * x) ** 2),
    ], -1)
    return (Rg @ (p + bend).unsqueeze(-1)).squeeze(-1) + tg


def make_synthetic_tracking(*, batch: int = 1, grid: int = 24, node_stride: int = 4, size: float = 0.4,
                            depth: float = 1.0, motion: str = "nonrigid", amplitude: float = 0.04,
                            rotation: float = 0.15, translation: float = 0.03, image_size=(120, 160),
                            focal: float = 220.0, sheets: int = 1, seed: int = 0,
                            dtype=torch.float64) -> SyntheticTracking:
    """A synthetic tracking problem with exact ground truth (see the module docstring).

    Args:
        motion: "rigid" (one rotation of ``rotation`` rad about a random axis, a translation of
            ``translation`` m) or "nonrigid" (the same plus a smooth bend of ``amplitude`` m).
        image_size: (H, W) pixels; focal: fx = fy, principal point at the image centre.
    """
    if motion not in ("rigid", "nonrigid"):
        raise ValueError(f"motion: expected 'rigid' or 'nonrigid', found {motion!r}")
    g = torch.Generator().manual_seed(seed)
    pts, faces, graph, anc, aw = sheet_graph(grid, node_stride, size, depth, sheets, dtype)
    H, W = image_size
    intr = torch.tensor([focal, focal, (W - 1) / 2, (H - 1) / 2], dtype=dtype)
    nodes = graph.nodes
    Rs, ts, corrs, depths, tps, nrms = [], [], [], [], [], []
    for _ in range(batch):
        axis = torch.randn(3, generator=g, dtype=dtype)
        Rg = so3_exp(rotation * axis / axis.norm())
        tdir = torch.randn(3, generator=g, dtype=dtype)
        tg = translation * tdir / tdir.norm()
        if motion == "rigid":
            R = Rg.expand(len(nodes), 3, 3).clone()
            t = nodes @ Rg.T + tg - nodes
        else:
            amp = amplitude * (0.75 + 0.5 * float(torch.rand(1, generator=g)))
            f = lambda p, amp=amp, Rg=Rg, tg=tg: _nonrigid_field(p, amp, size, Rg, tg)  # noqa: E731
            Jf = torch.func.vmap(torch.func.jacrev(f))(nodes)  # (N, 3, 3)
            U, _, Vh = torch.linalg.svd(Jf)
            S = torch.ones(len(nodes), 3, dtype=dtype)
            S[:, 2] = torch.sign(torch.linalg.det(U @ Vh))
            R = U @ torch.diag_embed(S) @ Vh  # closest rotation to the local Jacobian
            t = f(nodes) - nodes
        tgt = warp_points_torch(pts, anc, aw, nodes, R, t)
        uv, _ = project_with_mask(tgt, intr)
        dmap, nrm = render_depth(tgt.numpy(), faces, intr.numpy(), H, W)
        Rs.append(R)
        ts.append(t)
        corrs.append(uv)
        depths.append(torch.as_tensor(dmap, dtype=dtype))
        tps.append(tgt)
        nrms.append(torch.as_tensor(nrm, dtype=dtype))
    st = torch.stack
    return SyntheticTracking(graph=graph, source_points=pts, anchors=anc, anchor_weights=aw, faces=faces,
                             correspondences=st(corrs), weights=torch.ones(batch, len(pts), dtype=dtype),
                             target_depth=st(depths), target_points=st(tps), target_normals=st(nrms),
                             intrinsics=intr, rotations=st(Rs), translations=st(ts))
