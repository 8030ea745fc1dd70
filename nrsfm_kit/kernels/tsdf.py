"""Canonical TSDF integration under a deformation graph, and nearest-node queries: Warp kernels + torch references.

The maths is in :mod:`warp_kernels.tsdf` (voxel centre -> embedded deformation with the voxel's 4 nearest
nodes within ``influence`` -> camera pose -> nearest pixel -> projective signed distance -> capped running
average). Following the bridge template of :mod:`nrsfm_kit.kernels.warp_field`:

1. pure-torch references :func:`integrate_torch` and :func:`nearest_nodes_torch` (chunked, vectorised; used
   by the tests for parity and by notebook 07 to teach);
2. Warp launches through :func:`nrsfm_kit.kernels._bridge.launch` (device of the inputs, torch's stream),
   zero-copy views of the torch tensors, node lookups through a ``wp.HashGrid`` built per call;
3. public functions :func:`integrate` / :func:`nearest_nodes` that validate every argument (shapes,
   dtypes, devices, finiteness; errors name the argument, the expected and the found value).

Integration updates the volume **in place** and returns the (nx, ny, nz) bool mask of the updated voxels.
It is a state update, not a differentiable function of its inputs (the pixel lookup is discrete), so unlike
the warp-field bridge there is no autograd Function: parity is of values (tests/kernels/test_tsdf.py).
float32 only (the volume's dtype; a 256^3 float64 volume would need 0.8 GB more for nothing).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import warp as wp

import warp_kernels.tsdf as wk
from nrsfm_kit.kernels._bridge import contiguous, launch, warp_device, wview
from nrsfm_kit.utils.checks import check_positive, check_tensor

__all__ = ["integrate", "integrate_torch", "nearest_nodes", "nearest_nodes_torch", "VolumeGrid",
           "voxel_centres", "GraphMotionInput"]

_CHUNK = 1 << 15  # voxels per chunk of the torch reference (chunk x nodes distances in memory)


class VolumeGrid(NamedTuple):
    """Geometry of a uniform voxel grid: origin (3,) metres (corner of voxel (0, 0, 0)), voxel_size metres."""

    origin: tuple[float, float, float]
    voxel_size: float


class GraphMotionInput(NamedTuple):
    """The deformation that warps voxels: canonical node positions (N, 3) m, rotations (N, 3, 3),
    translations (N, 3) m, skinning sigma (m) and influence radius (m)."""

    nodes: torch.Tensor
    rotations: torch.Tensor
    translations: torch.Tensor
    sigma: float
    influence: float


def voxel_centres(shape: tuple[int, int, int], grid: VolumeGrid, *, dtype=torch.float32, device=None,
                  flat_range: tuple[int, int] | None = None) -> torch.Tensor:
    """Centres origin + (idx + 1/2) voxel_size of the voxels (row-major flat ids ``flat_range`` or all): (M, 3)."""
    nx, ny, nz = shape
    lo, hi = (0, nx * ny * nz) if flat_range is None else flat_range
    f = torch.arange(lo, hi, device=device)
    idx = torch.stack([f // (ny * nz), (f // nz) % ny, f % nz], -1).to(dtype)
    return torch.as_tensor(grid.origin, dtype=dtype, device=device) + (idx + 0.5) * float(grid.voxel_size)


def _skin(x: torch.Tensor, motion: GraphMotionInput) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q(x) (M, 3), supported (M,) bool) with the 4 nearest nodes within the influence radius."""
    nodes = motion.nodes.to(x.dtype)
    d = torch.cdist(x, nodes, compute_mode="donot_use_mm_for_euclid_dist")  # (M, N), exact
    k = min(4, nodes.shape[0])
    dd, kk = torch.topk(d, k, dim=1, largest=False)
    ok = dd <= motion.influence
    w = torch.where(ok, torch.exp(-dd**2 / (2.0 * motion.sigma**2)), torch.zeros_like(dd))
    wsum = w.sum(1, keepdim=True)
    supported = (wsum[:, 0] > 0) & ok[:, 0]
    w = w / wsum.clamp_min(torch.finfo(x.dtype).tiny)
    v = nodes[kk]
    moved = torch.einsum("maij,maj->mai", motion.rotations.to(x.dtype)[kk], x.unsqueeze(1) - v) + v + \
        motion.translations.to(x.dtype)[kk]
    return (w.unsqueeze(-1) * moved).sum(1), supported


def integrate_torch(sdf: torch.Tensor, weight: torch.Tensor, color: torch.Tensor, depth: torch.Tensor,
                    image: torch.Tensor, intrinsics: torch.Tensor, pose: torch.Tensor, grid: VolumeGrid,
                    trunc: float, max_weight: float, motion: GraphMotionInput | None = None) -> torch.Tensor:
    """Pure-torch reference of :func:`integrate` (same arguments, same in-place update, same return)."""
    nx, ny, nz = sdf.shape
    H, W = depth.shape
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    Rc, tc = pose[:3, :3].to(sdf.dtype), pose[:3, 3].to(sdf.dtype)
    F, Wt, C = sdf.view(-1), weight.view(-1), color.view(-1, 3)
    img = image.reshape(H * W, 3)
    upd = torch.zeros(nx * ny * nz, dtype=torch.bool, device=sdf.device)
    for lo in range(0, nx * ny * nz, _CHUNK):
        hi = min(lo + _CHUNK, nx * ny * nz)
        x = voxel_centres((nx, ny, nz), grid, dtype=sdf.dtype, device=sdf.device, flat_range=(lo, hi))
        ok = torch.ones(hi - lo, dtype=torch.bool, device=sdf.device)
        if motion is not None:
            x, ok = _skin(x, motion)
        y = x @ Rc.T + tc
        z = y[:, 2]
        ok = ok & (z > 0)
        zs = torch.where(ok, z, torch.ones_like(z))
        u = torch.floor(fx * y[:, 0] / zs + cx + 0.5)
        v = torch.floor(fy * y[:, 1] / zs + cy + 0.5)
        ok = ok & (u >= 0) & (v >= 0) & (u < W) & (v < H)
        pix = (v.clamp(0, H - 1) * W + u.clamp(0, W - 1)).long()
        dz = depth.reshape(-1)[pix]
        ok = ok & (dz > 0)
        eta = dz - z
        ok = ok & (eta >= -trunc)
        f = torch.clamp(eta / trunc, max=1.0)
        ids = torch.arange(lo, hi, device=sdf.device)[ok]
        w_old = Wt[ids]
        w_new = w_old + 1.0
        F[ids] = (F[ids] * w_old + f[ok]) / w_new
        C[ids] = (C[ids] * w_old.unsqueeze(-1) + img[pix[ok]]) / w_new.unsqueeze(-1)
        Wt[ids] = torch.clamp(w_new, max=max_weight)
        upd[lo:hi] = ok
    return upd.view(nx, ny, nz)


def nearest_nodes_torch(points: torch.Tensor, nodes: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch reference of :func:`nearest_nodes`: (ids (P,) int64, -1 when none within radius;
    distances (P,) metres, ``radius`` when none)."""
    ids, dist = [], []
    for lo in range(0, points.shape[0], _CHUNK):
        p = points[lo:lo + _CHUNK]
        if nodes.shape[0] == 0:
            ids.append(torch.full((p.shape[0],), -1, dtype=torch.int64, device=p.device))
            dist.append(torch.full((p.shape[0],), float(radius), dtype=p.dtype, device=p.device))
            continue
        d, k = torch.cdist(p, nodes.to(p.dtype), compute_mode="donot_use_mm_for_euclid_dist").min(1)
        ok = d <= radius
        ids.append(torch.where(ok, k, torch.full_like(k, -1)))
        dist.append(torch.where(ok, d, torch.full_like(d, float(radius))))
    if not ids:
        return torch.zeros(0, dtype=torch.int64, device=points.device), points.new_zeros(0)
    return torch.cat(ids), torch.cat(dist)


# ==================================================================================================
# validation + Warp launches
# ==================================================================================================


def _f32(name: str, x, spec, dims: dict, finite: bool = True) -> torch.Tensor:
    check_tensor(name, x, spec, dims=dims, finite=finite)
    if x.dtype != torch.float32:
        raise ValueError(f"{name}: expected dtype float32 (the TSDF volume's dtype), found {x.dtype}")
    return x


def _hash_grid(nodes: torch.Tensor, cell: float) -> wp.HashGrid:
    """A ``wp.HashGrid`` over the node positions with cells of ``cell`` metres (the query radius)."""
    g = wp.HashGrid(32, 32, 32, device=warp_device(nodes))  # hashed cells: collisions only cost extra checks
    g.build(wview(contiguous(nodes), wp.vec3), float(cell))
    return g


_BLOCK = 4  # voxels per block side of the support pre-test of the integration kernel


def _supported_blocks(shape: tuple[int, int, int], grid: VolumeGrid, motion: GraphMotionInput) -> torch.Tensor:
    """(bx, by, bz) int32: 1 where a node lies within ``influence`` + the half diagonal of a block of _BLOCK^3
    voxels from the block's centre (any voxel of an unflagged block is farther than ``influence`` from every node)."""
    B, vs = _BLOCK, float(grid.voxel_size)
    nb = tuple(-(-n // B) for n in shape)
    dev = motion.nodes.device
    centres = voxel_centres(nb, VolumeGrid(grid.origin, B * vs), device=dev)
    reach = float(motion.influence) + 0.5 * math.sqrt(3.0) * B * vs
    ids, _ = nearest_nodes(centres, motion.nodes, reach)
    return (ids >= 0).to(torch.int32).reshape(nb).contiguous()


def _check_same_device(named: dict) -> None:
    dev, first = None, None
    for name, x in named.items():
        if dev is None:
            dev, first = x.device, name
        elif x.device != dev:
            raise ValueError(f"{name}: expected device {dev} (as {first}), found {x.device}")


def _check_motion(motion: GraphMotionInput | None, dims: dict) -> GraphMotionInput | None:
    if motion is None:
        return None
    if not isinstance(motion, GraphMotionInput):
        raise ValueError(f"motion: expected a GraphMotionInput or None, found {type(motion).__name__}")
    nodes = _f32("motion.nodes", motion.nodes, ("N", 3), dims)
    R = _f32("motion.rotations", motion.rotations, ("N", 3, 3), dims)
    t = _f32("motion.translations", motion.translations, ("N", 3), dims)
    sigma = check_positive("motion.sigma", motion.sigma)
    infl = check_positive("motion.influence", motion.influence)
    return GraphMotionInput(contiguous(nodes), contiguous(R), contiguous(t), sigma, infl)


def integrate(sdf: torch.Tensor, weight: torch.Tensor, color: torch.Tensor, depth: torch.Tensor,
              image: torch.Tensor, intrinsics: torch.Tensor, pose: torch.Tensor, grid: VolumeGrid, trunc: float,
              max_weight: float, motion: GraphMotionInput | None = None, *, backend: str = "warp") -> torch.Tensor:
    """Integrate one RGB-D frame into a TSDF volume, in place (Warp kernel :func:`warp_kernels.tsdf.tsdf_integrate`).

    Args:
        sdf: (nx, ny, nz) float32 normalised signed distances F in [-1, 1] (1 = free space / unobserved).
        weight: (nx, ny, nz) float32 integration weights W (0 = never observed).
        color: (nx, ny, nz, 3) float32 RGB in [0, 1].
        depth: (H, W) float32 metres, <= 0 invalid (non-finite values are treated as invalid).
        image: (H, W, 3) float32 RGB of the frame in [0, 1] (channels last).
        intrinsics: (4,) fx, fy, cx, cy pixels.
        pose: (4, 4) world (canonical) -> camera transform of the frame.
        grid: :class:`VolumeGrid` (origin of voxel (0, 0, 0)'s corner, voxel size, metres).
        trunc: truncation distance, metres. max_weight: cap of W.
        motion: :class:`GraphMotionInput` (canonical nodes and their motion) or None (no deformation).
        backend: ``"warp"`` (the kernel) or ``"torch"`` (:func:`integrate_torch`).

    Returns:
        (nx, ny, nz) bool, the voxels updated by this frame.
    """
    if backend not in ("warp", "torch"):
        raise ValueError(f"backend: expected 'warp' or 'torch', found {backend!r}")
    dims: dict = {}
    _f32("sdf", sdf, ("X", "Y", "Z"), dims, finite=False)
    _f32("weight", weight, ("X", "Y", "Z"), dims, finite=False)
    _f32("color", color, ("X", "Y", "Z", 3), dims, finite=False)
    for name, t in (("sdf", sdf), ("weight", weight), ("color", color)):
        if not t.is_contiguous():
            raise ValueError(f"{name}: expected a contiguous tensor (updated in place), found a strided view")
    _f32("depth", depth, ("H", "W"), dims, finite=False)
    _f32("image", image, ("H", "W", 3), dims)
    intr = _f32("intrinsics", torch.as_tensor(intrinsics), (4,), dims)
    if not bool((intr[:2] > 0).all()):
        raise ValueError(f"intrinsics: expected focal lengths fx, fy > 0, found {intr[:2].tolist()}")
    pose = _f32("pose", pose, (4, 4), dims)
    if not isinstance(grid, VolumeGrid):
        raise ValueError(f"grid: expected a VolumeGrid, found {type(grid).__name__}")
    check_positive("grid.voxel_size", grid.voxel_size)
    if len(grid.origin) != 3 or not all(math.isfinite(float(o)) for o in grid.origin):
        raise ValueError(f"grid.origin: expected 3 finite metres, found {grid.origin!r}")
    trunc = check_positive("trunc", trunc)
    max_weight = check_positive("max_weight", max_weight)
    motion = _check_motion(motion, dims)
    named = {"sdf": sdf, "weight": weight, "color": color, "depth": depth, "image": image, "pose": pose}
    if motion is not None:
        named["motion.nodes"] = motion.nodes
    _check_same_device(named)
    depth = torch.where(torch.isfinite(depth), depth, torch.zeros_like(depth))
    if backend == "torch":
        return integrate_torch(sdf, weight, color, depth, image, intr, pose, grid, trunc, max_weight, motion)
    nx, ny, nz = sdf.shape
    updated = torch.zeros(nx, ny, nz, dtype=torch.int32, device=sdf.device)
    block_ok = torch.ones(1, 1, 1, dtype=torch.int32, device=sdf.device)
    if motion is not None and motion.nodes.shape[0] > 0:
        hg = _hash_grid(motion.nodes, motion.influence)
        gid, use, m = hg.id, 1, motion
        block_ok = _supported_blocks((nx, ny, nz), grid, motion)
    else:  # no deformation (one dummy node keeps the argument types valid)
        hg, gid, use = None, wp.uint64(0), 0
        z3 = torch.zeros(1, 3, dtype=torch.float32, device=sdf.device)
        m = GraphMotionInput(z3, torch.eye(3, device=sdf.device).unsqueeze(0), z3, 1.0, 1.0)
        if motion is not None:  # a graph without nodes supports no voxel
            return updated.bool()
    ic = intr.detach().cpu().tolist()
    P = pose.detach().cpu().double()
    launch(
        wk.tsdf_integrate,
        (nx, ny, nz),
        [wview(sdf), wview(weight), wview(color, wp.vec3), wview(contiguous(depth)), wview(contiguous(image), wp.vec3),
         wp.vec4(*ic), wp.mat33(*P[:3, :3].reshape(-1).tolist()), wp.vec3(*P[:3, 3].tolist()),
         wp.vec3(*(float(o) for o in grid.origin)), float(grid.voxel_size), float(trunc), float(max_weight), int(use),
         gid, wview(m.nodes, wp.vec3), wview(m.rotations, wp.mat33), wview(m.translations, wp.vec3),
         float(m.influence), float(m.sigma), wview(block_ok), int(_BLOCK)],
        [wview(updated)],
        like=sdf,
    )
    del hg
    return updated.bool()


def nearest_nodes(points: torch.Tensor, nodes: torch.Tensor, radius: float, *,
                  backend: str = "warp") -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest node of every point within ``radius`` metres (Warp kernel :func:`warp_kernels.tsdf.nearest_nodes`).

    Args:
        points: (P, 3) float32 metres. nodes: (N, 3) float32 metres (N may be 0). radius: metres.
        backend: ``"warp"`` or ``"torch"`` (:func:`nearest_nodes_torch`).

    Returns:
        (ids (P,) int64, -1 where no node is within ``radius``; distances (P,) float32, ``radius`` there).
    """
    if backend not in ("warp", "torch"):
        raise ValueError(f"backend: expected 'warp' or 'torch', found {backend!r}")
    dims: dict = {}
    _f32("points", points, ("P", 3), dims)
    _f32("nodes", nodes, ("N", 3), dims)
    radius = check_positive("radius", radius)
    _check_same_device({"points": points, "nodes": nodes})
    if backend == "torch" or points.shape[0] == 0 or nodes.shape[0] == 0:
        return nearest_nodes_torch(points, nodes, radius)
    P = points.shape[0]
    ids = torch.empty(P, dtype=torch.int64, device=points.device)
    dist = torch.empty(P, dtype=torch.float32, device=points.device)
    nodes = contiguous(nodes)
    hg = _hash_grid(nodes, radius)
    launch(wk.nearest_nodes, P, [wview(contiguous(points), wp.vec3), hg.id, wview(nodes, wp.vec3), float(radius)],
           [wview(ids), wview(dist)], like=points)
    del hg
    return ids, dist
