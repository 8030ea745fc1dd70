"""The readable torch reference of the Open3D ray caster (brute-force Moller-Trumbore), for tests and teaching."""

from __future__ import annotations

import numpy as np
import torch

from nrsfm_kit.data.render.scene import DeformingScene


def raycast_reference(
    scene: DeformingScene, t: float, chunk: int = 128, dtype: torch.dtype = torch.float64
) -> dict[str, torch.Tensor]:
    """Brute-force Moller-Trumbore ray casting in torch: the readable reference of the Open3D renderer.

    Every pixel ray (camera-z-unit direction, so the hit distance is the depth) is intersected with every
    triangle of every object at time ``t``; the nearest positive hit wins. Cost O(pixels x triangles):
    meant for small images (tests, teaching, the benchmark), not for data generation.

    For a ray o + s d and a triangle (v0, v1, v2) with e1 = v1 - v0, e2 = v2 - v0::

        p = d x e2,  det = e1 . p,  b1 = (o - v0) . p / det,  q = (o - v0) x e1,
        b2 = d . q / det,  s = e2 . q / det,  hit iff det != 0, b1 >= 0, b2 >= 0, b1 + b2 <= 1, s > 0.

    Returns dict of (H, W) ``depth`` (0 = miss), ``object_ids`` / ``triangle_ids`` (-1 = miss) and
    ``bary`` (H, W, 3) with p = bary[0] v0 + bary[1] v1 + bary[2] v2.
    """
    verts = scene.vertices(t)
    T_cw = np.asarray(scene.pose_at(t), dtype=np.float64)
    rays = torch.as_tensor(scene.camera_rays(T_cw).reshape(-1, 6), dtype=dtype)
    o, d = rays[:, :3], rays[:, 3:]
    tris, obj_of, tri_of = [], [], []
    for k, (v, ob) in enumerate(zip(verts, scene.objects)):
        tris.append(torch.as_tensor(v[ob.faces], dtype=dtype))
        obj_of.append(torch.full((len(ob.faces),), k, dtype=torch.int64))
        tri_of.append(torch.arange(len(ob.faces)))
    tri = torch.cat(tris)  # (T, 3, 3)
    obj_of, tri_of = torch.cat(obj_of), torch.cat(tri_of)
    v0, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    n = o.shape[0]
    best = torch.full((n,), float("inf"), dtype=dtype)
    arg = torch.full((n,), -1, dtype=torch.int64)
    b1s, b2s = torch.zeros(n, dtype=dtype), torch.zeros(n, dtype=dtype)
    for a in range(0, n, chunk):
        oc, dc = o[a : a + chunk, None], d[a : a + chunk, None]  # (c, 1, 3)
        p = torch.linalg.cross(dc.expand(-1, len(tri), -1), e2[None].expand(len(dc), -1, -1))
        det = (e1[None] * p).sum(-1)
        ok = det.abs() > 1e-12
        inv = 1.0 / torch.where(ok, det, torch.ones_like(det))
        s0 = oc - v0[None]
        b1 = (s0 * p).sum(-1) * inv
        q = torch.linalg.cross(s0, e1[None].expand_as(s0))
        b2 = (dc * q).sum(-1) * inv
        s = (e2[None] * q).sum(-1) * inv
        hit = ok & (b1 >= 0) & (b2 >= 0) & (b1 + b2 <= 1) & (s > 1e-9)
        s = torch.where(hit, s, torch.full_like(s, float("inf")))
        smin, idx = s.min(dim=1)
        sl = slice(a, a + len(dc))
        best[sl], arg[sl] = smin, torch.where(torch.isfinite(smin), idx, torch.full_like(idx, -1))
        rows = torch.arange(len(dc))
        b1s[sl], b2s[sl] = b1[rows, idx], b2[rows, idx]
    miss = arg < 0
    H, W = scene.height, scene.width
    safe = arg.clamp_min(0)
    bary = torch.stack([1 - b1s - b2s, b1s, b2s], -1) * (~miss)[:, None]
    return {
        "depth": torch.where(miss, torch.zeros_like(best), best).reshape(H, W),
        "object_ids": torch.where(miss, -1, obj_of[safe]).reshape(H, W),
        "triangle_ids": torch.where(miss, -1, tri_of[safe]).reshape(H, W),
        "bary": bary.reshape(H, W, 3),
    }
