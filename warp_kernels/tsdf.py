"""Warp kernels of the canonical truncated signed distance field (TSDF) of non-rigid fusion.

Maths (KinectFusion's projective TSDF, Newcombe et al. 2011; carried to a deforming model by DynamicFusion,
Newcombe et al. 2015, and DeepDeform sec. 4 / Neural Non-Rigid Tracking sec. 4.5). A voxel with index
(i, j, k) has its centre in the canonical (model) frame at

    x = origin + (i + 1/2, j + 1/2, k + 1/2) voxel_size                                (Open3D's convention)

Integration of one depth frame D (pixels (u, v), metres) under the current deformation:

1. **warp** x into the live frame by the embedded deformation (eq. 2 of Neural Non-Rigid Tracking), with the
   voxel's own anchors: the (at most) 4 nearest graph nodes within ``influence`` metres (a ``wp.HashGrid``
   query over the canonical node positions), skinning weights alpha_a = exp(-|x - v_a|^2 / (2 sigma^2))
   normalised to sum 1:  Q(x) = sum_a alpha_a (R_a (x - v_a) + v_a + t_a). A voxel without a node within
   ``influence`` is *not supported* by the graph and is not updated. ``use_graph = 0`` skips the warp
   (Q(x) = x: the rigid / static case);
2. **camera**: y = R_cw Q(x) + t_cw (world -> camera pose of the frame);
3. **project**: (u, v) = round(fx y_x / y_z + cx, fy y_y / y_z + cy) (nearest pixel); skip when outside the
   image, y_z <= 0 or D(u, v) <= 0 (invalid depth);
4. **signed distance** along the optical axis (projective TSDF): eta = D(u, v) - y_z; skip when eta < -trunc
   (behind the surface, unobserved); tsdf = min(1, eta / trunc);
5. **running average** with a maximum weight (the capped weight turns it into an exponential moving average
   once the cap is reached, so the model follows a deforming surface; DeepDeform sec. 4):
       F <- (W F + tsdf) / (W + 1),   C <- (W C + c(u, v)) / (W + 1),   W <- min(W + 1, max_weight).

The field is a state update, not a differentiable function (the pixel lookup is discrete): there is no adjoint
kernel; :func:`nrsfm_kit.kernels.tsdf.integrate_torch` is the pure-torch reference checked for parity of values.
Every voxel is written by its own thread (no atomics): the kernel is deterministic on CPU and CUDA.
No torch import in this module: the bridge lives in :mod:`nrsfm_kit.kernels.tsdf`.
"""

from __future__ import annotations

import warp as wp

from warp_kernels.types import INDEX

wp.set_module_options({"enable_backward": False})

_FAR = 1.0e30


@wp.kernel
def tsdf_integrate(
    sdf: wp.array3d(dtype=wp.float32),
    weight: wp.array3d(dtype=wp.float32),
    color: wp.array3d(dtype=wp.vec3),
    depth: wp.array2d(dtype=wp.float32),
    image: wp.array2d(dtype=wp.vec3),
    intrinsics: wp.vec4,
    cam_rotation: wp.mat33,
    cam_translation: wp.vec3,
    origin: wp.vec3,
    voxel_size: float,
    trunc: float,
    max_weight: float,
    use_graph: int,
    grid: wp.uint64,
    nodes: wp.array(dtype=wp.vec3),
    rotations: wp.array(dtype=wp.mat33),
    translations: wp.array(dtype=wp.vec3),
    influence: float,
    sigma: float,
    block_ok: wp.array3d(dtype=wp.int32),
    block: int,
    updated: wp.array3d(dtype=wp.int32),
):
    """One depth frame into the TSDF (module docstring, steps 1-5); launch dim = (nx, ny, nz).

    ``block_ok`` flags the blocks of ``block``^3 voxels with a node within ``influence`` + the block's half
    diagonal of their centre (computed by the bridge): a voxel of an unflagged block has no node within
    ``influence`` (triangle inequality), so it skips the hash-grid query (the same result, most voxels far from
    the object cost nothing). ``updated[i, j, k]`` is set to 1 where the voxel was updated, 0 otherwise.
    """
    i, j, k = wp.tid()
    x = origin + wp.vec3(float(i) + 0.5, float(j) + 0.5, float(k) + 0.5) * voxel_size
    updated[i, j, k] = 0
    q = x
    if use_graph != 0:
        if block_ok[i / block, j / block, k / block] == 0:
            return  # no node within reach of the whole block: not supported
        # the 4 nearest nodes within ``influence`` (kept sorted by distance)
        d0 = float(_FAR)  # noqa: UP018 (a mutable Warp variable)
        d1 = float(_FAR)  # noqa: UP018 (a mutable Warp variable)
        d2 = float(_FAR)  # noqa: UP018 (a mutable Warp variable)
        d3 = float(_FAR)  # noqa: UP018 (a mutable Warp variable)
        k0 = int(-1)  # noqa: UP018 (a mutable Warp variable)
        k1 = int(-1)  # noqa: UP018 (a mutable Warp variable)
        k2 = int(-1)  # noqa: UP018 (a mutable Warp variable)
        k3 = int(-1)  # noqa: UP018 (a mutable Warp variable)
        query = wp.hash_grid_query(grid, x, influence)
        for n in query:
            d = wp.length(nodes[n] - x)
            if d <= influence and d < d3:
                if d < d0:
                    d3, k3 = d2, k2
                    d2, k2 = d1, k1
                    d1, k1 = d0, k0
                    d0, k0 = d, n
                elif d < d1:
                    d3, k3 = d2, k2
                    d2, k2 = d1, k1
                    d1, k1 = d, n
                elif d < d2:
                    d3, k3 = d2, k2
                    d2, k2 = d, n
                else:
                    d3, k3 = d, n
        if k0 < 0:
            return  # not supported by the graph: not updated
        s2 = 2.0 * sigma * sigma
        acc = wp.vec3(0.0, 0.0, 0.0)
        wsum = float(0.0)  # noqa: UP018 (a mutable Warp variable)
        for a in range(4):
            kk = k0
            dd = d0
            if a == 1:
                kk = k1
                dd = d1
            elif a == 2:
                kk = k2
                dd = d2
            elif a == 3:
                kk = k3
                dd = d3
            if kk >= 0:
                w = wp.exp(-dd * dd / s2)
                vn = nodes[kk]
                acc = acc + w * (rotations[kk] @ (x - vn) + vn + translations[kk])
                wsum = wsum + w
        if wsum <= 0.0:
            return
        q = acc / wsum
    y = cam_rotation @ q + cam_translation
    if y[2] <= 0.0:
        return
    pu = intrinsics[0] * y[0] / y[2] + intrinsics[2]
    pv = intrinsics[1] * y[1] / y[2] + intrinsics[3]
    ui = int(wp.floor(pu + 0.5))
    vi = int(wp.floor(pv + 0.5))
    if ui < 0 or vi < 0 or ui >= depth.shape[1] or vi >= depth.shape[0]:
        return
    dz = depth[vi, ui]
    if not (dz > 0.0):
        return
    eta = dz - y[2]
    if eta < -trunc:
        return
    f = wp.min(1.0, eta / trunc)
    w_old = weight[i, j, k]
    w_new = w_old + 1.0
    sdf[i, j, k] = (sdf[i, j, k] * w_old + f) / w_new
    color[i, j, k] = (color[i, j, k] * w_old + image[vi, ui]) / w_new
    weight[i, j, k] = wp.min(w_new, max_weight)
    updated[i, j, k] = 1


@wp.kernel
def nearest_nodes(
    points: wp.array(dtype=wp.vec3),
    grid: wp.uint64,
    nodes: wp.array(dtype=wp.vec3),
    radius: float,
    nearest: wp.array(dtype=INDEX),
    distance: wp.array(dtype=wp.float32),
):
    """Nearest node of every point within ``radius`` (-1 / ``radius`` when none); launch dim = P.

    Used to test which canonical surface points are no longer covered by the graph (graph growth).
    """
    p = wp.tid()
    x = points[p]
    best = float(_FAR)  # noqa: UP018 (a mutable Warp variable)
    bk = int(-1)  # noqa: UP018 (a mutable Warp variable)
    query = wp.hash_grid_query(grid, x, radius)
    for n in query:
        d = wp.length(nodes[n] - x)
        if d <= radius and d < best:
            best = d
            bk = n
    nearest[p] = INDEX(bk)
    if bk < 0:
        best = radius
    distance[p] = best
