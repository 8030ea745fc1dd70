"""Ray-cast rendering of deforming triangle meshes with exact correspondences (Open3D RaycastingScene).

A :class:`DeformingScene` is a set of :class:`MeshObject` s whose vertices are functions of time
(fixed topology). Rendering a frame casts one ray per pixel centre through Open3D's
``RaycastingScene`` and keeps, for each pixel, the hit object, triangle id and barycentric coordinates.
Because the topology is fixed, the same (triangle, barycentrics) names the same material point at any
other time: evaluating it there gives exact scene flow, optical flow and (with an occlusion ray test)
visibility, without any image-space matching.

Conventions: world frame metres; camera pose ``T_cw`` (4, 4) world -> camera; camera frame x right,
y down, z forward; pixel (u, v) = (column, row) with integer coordinates at pixel centres; intrinsics
(fx, fy, cx, cy). Barycentrics (Embree/Open3D): p = (1 - b1 - b2) v0 + b1 v1 + b2 v2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nrsfm_kit.data.render.mesh import MeshObject, apply_pose
from nrsfm_kit.data.render.textures import sample_texture_mip, texture_footprint


@dataclass
class DeformingScene:
    """Objects plus a camera path.

    Attributes:
        objects: list of :class:`MeshObject`.
        intrinsics: (4,) fx, fy, cx, cy in pixels.
        height, width: image size in pixels.
        pose_at: t -> (4, 4) world -> camera pose; identity (static camera) by default.
        shading: headlight shading weight s in [0, 1]: colour = albedo (1 - s + s |n . ray|); 0 keeps
            brightness constancy exact (photometric losses), > 0 looks more three-dimensional.
    """

    objects: list[MeshObject]
    intrinsics: np.ndarray
    height: int
    width: int
    pose_at: Callable[[float], np.ndarray] = field(default=lambda t: np.eye(4))
    shading: float = 0.0
    _scenes: dict = field(default_factory=dict, repr=False)  # time -> RaycastingScene (small LRU)
    _rays: dict = field(default_factory=dict, repr=False)  # pose bytes -> rays

    def vertices(self, t: float) -> list[np.ndarray]:
        """World vertices of every object at time ``t`` seconds: a list of (V_k, 3) float64 arrays, metres."""
        return [np.asarray(o.vertices_at(t), dtype=np.float64) for o in self.objects]

    def scene_at(self, t: float, verts: list[np.ndarray] | None = None):
        """The Open3D RaycastingScene of time ``t`` (the last few are cached)."""
        key = float(t)
        if key not in self._scenes:
            if len(self._scenes) >= 3:
                self._scenes.pop(next(iter(self._scenes)))
            self._scenes[key] = self.raycasting_scene(self.vertices(t) if verts is None else verts)
        return self._scenes[key]

    def raycasting_scene(self, verts: list[np.ndarray]):
        import open3d as o3d

        scene = o3d.t.geometry.RaycastingScene()
        for v, o in zip(verts, self.objects):
            scene.add_triangles(
                o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(o.faces.astype(np.uint32))
            )
        return scene

    def camera_rays(self, T_cw: np.ndarray) -> np.ndarray:
        """(H, W, 6) float32 rays (origin, direction) with camera-z-unit directions (t_hit = depth)."""
        key = T_cw.tobytes()
        if key in self._rays:
            return self._rays[key]
        fx, fy, cx, cy = self.intrinsics
        v, u = np.mgrid[0 : self.height, 0 : self.width].astype(np.float64)
        d_cam = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1)
        R, t = T_cw[:3, :3], T_cw[:3, 3]
        origin = -R.T @ t
        d = d_cam @ R  # R^T d for row vectors
        rays = np.concatenate([np.broadcast_to(origin, d.shape), d], -1).astype(np.float32)
        if len(self._rays) > 8:
            self._rays.clear()
        self._rays[key] = rays
        return rays

    def render(self, t: float) -> Frame:
        """Ray-cast the scene at time ``t``: colour, depth, ids, barycentrics, camera-frame points."""
        verts = self.vertices(t)
        T_cw = np.asarray(self.pose_at(t), dtype=np.float64)
        scene = self.scene_at(t, verts)
        import open3d as o3d

        hit = scene.cast_rays(o3d.core.Tensor(self.camera_rays(T_cw)))
        gid = hit["geometry_ids"].numpy().astype(np.int64)
        tri = hit["primitive_ids"].numpy().astype(np.int64)
        valid = np.isfinite(hit["t_hit"].numpy()) & (gid != scene.INVALID_ID)
        gid = np.where(valid, gid, -1)
        tri = np.where(valid, tri, -1)
        b = hit["primitive_uvs"].numpy().astype(np.float64)
        bary = np.stack([1 - b[..., 0] - b[..., 1], b[..., 0], b[..., 1]], -1) * valid[..., None]
        frame = Frame(t=t, T_cw=T_cw, object_ids=gid, triangle_ids=tri, bary=bary, valid=valid)
        flat = gid.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(len(self.objects) + 1))
        frame.groups = [order[bounds[k] : bounds[k + 1]] for k in range(len(self.objects))]
        frame.points_world = self.interpolate(verts, frame)
        frame.points = apply_pose(T_cw, frame.points_world) * valid[..., None]
        frame.depth = np.where(valid, frame.points[..., 2], 0.0)
        n = hit["primitive_normals"].numpy().astype(np.float64) @ T_cw[:3, :3].T
        ray = frame.points / np.maximum(np.sqrt((frame.points**2).sum(-1, keepdims=True)), 1e-12)
        frame.normals = n * valid[..., None]
        frame.normal_dot_view = np.where(valid, np.abs((n * ray).sum(-1)), 0.0)
        frame.color = self.shade(frame)
        labels = np.full(gid.size, -1, dtype=np.int64)
        for idx, o in zip(frame.groups, self.objects):
            labels[idx] = o.label
        frame.labels = labels.reshape(gid.shape)
        return frame

    def interpolate(self, verts: list[np.ndarray], frame: Frame) -> np.ndarray:
        """World points (H, W, 3) of the frame's (triangle, barycentric) hits on vertices ``verts``."""
        out = np.zeros((frame.object_ids.size, 3))
        tri, bary = frame.triangle_ids.reshape(-1), frame.bary.reshape(-1, 3)
        for idx, v, o in zip(frame.pixel_groups(), verts, self.objects):
            if idx.size:
                corners = v[o.faces[tri[idx]]]  # (n, 3, 3)
                out[idx] = np.einsum("nk,nkd->nd", bary[idx], corners)
        return out.reshape(*frame.object_ids.shape, 3)

    def shade(self, frame: Frame) -> np.ndarray:
        """(H, W, 3) albedo colour of the hits, mip-mapped (trilinear) against texture aliasing.

        The albedo of a material point does not change under motion, so brightness constancy holds along
        the ground-truth flow up to the texture filtering.
        """
        HW = frame.object_ids.size
        col = np.zeros((HW, 3))
        uv_img = np.full((HW, 2), np.nan)
        tri, bary = frame.triangle_ids.reshape(-1), frame.bary.reshape(-1, 3)
        groups = frame.pixel_groups()
        for idx, o in zip(groups, self.objects):
            if idx.size:
                uv = np.einsum("nk,nkd->nd", bary[idx], o.uv[o.faces[tri[idx]]])
                uv_img[idx] = uv * np.array(o.texture.shape[1::-1])
        fp = texture_footprint(uv_img.reshape(*frame.object_ids.shape, 2), frame.object_ids).reshape(-1)
        for idx, o in zip(groups, self.objects):
            if idx.size:
                uv = uv_img[idx] / np.array(o.texture.shape[1::-1])
                col[idx] = sample_texture_mip(o.mips, uv, np.log2(np.maximum(fp[idx], 1.0)))
        col = col.reshape(*frame.object_ids.shape, 3)
        if self.shading > 0 and frame.normal_dot_view is not None:
            col *= (1 - self.shading + self.shading * frame.normal_dot_view)[..., None]
        return col

    def correspondences(self, src: Frame, t_target: float, target: Frame | None = None) -> dict:
        """Ground truth from the source frame's pixels to time ``t_target``.

        Returns dict with ``points`` (H, W, 3) target camera-frame positions of the source material
        points, ``scene_flow`` (H, W, 3) = points - source camera-frame points (metres),
        ``optical_flow`` (H, W, 2) pixels, ``flow_valid`` (H, W) (source hit and target point in front
        of the camera), ``in_view`` (projects inside the target image) and ``visibility`` (in view and not
        occluded in the target, tested by casting a ray from the target camera to the point).
        """
        verts = self.vertices(t_target)
        T_cw = np.asarray(self.pose_at(t_target), dtype=np.float64)
        pw = self.interpolate(verts, src)
        pc = apply_pose(T_cw, pw)
        fx, fy, cx, cy = self.intrinsics
        ok = src.valid & (pc[..., 2] > 1e-6)
        z = np.where(ok, pc[..., 2], 1.0)
        uv = np.stack([fx * pc[..., 0] / z + cx, fy * pc[..., 1] / z + cy], -1)
        v, u = np.mgrid[0 : self.height, 0 : self.width].astype(np.float64)
        flow = (uv - np.stack([u, v], -1)) * ok[..., None]
        in_view = ok & (uv[..., 0] > -0.5) & (uv[..., 0] < self.width - 0.5)
        in_view &= (uv[..., 1] > -0.5) & (uv[..., 1] < self.height - 0.5)
        visible = np.zeros_like(in_view)
        if in_view.any():
            import open3d as o3d

            scene = self.scene_at(t_target, verts)
            origin = -T_cw[:3, :3].T @ T_cw[:3, 3]
            d = pw[in_view] - origin
            rays = np.concatenate([np.broadcast_to(origin, d.shape), d], -1).astype(np.float32)
            # occluded when something is hit before the point (relative margin for self-intersection)
            tfar = 1.0 - 1e-4 - 2e-3 / np.maximum(np.linalg.norm(d, axis=-1), 1e-9)
            hit = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
            visible[in_view] = ~(hit < tfar)
        return {
            "points": pc * ok[..., None],
            "scene_flow": (pc - src.points) * ok[..., None],
            "optical_flow": flow,
            "flow_valid": ok,
            "in_view": in_view,
            "visibility": visible,
            "target_uv": uv * ok[..., None],
        }

    def closest_surface(self, points_world: np.ndarray, t: float):
        """(object ids, triangle ids, barycentrics (N, 3), closest points (N, 3)) on the scene at time t."""
        import open3d as o3d

        scene = self.scene_at(t)
        res = scene.compute_closest_points(o3d.core.Tensor(np.asarray(points_world, dtype=np.float32)))
        gid = res["geometry_ids"].numpy().astype(np.int64)
        tri = res["primitive_ids"].numpy().astype(np.int64)
        b = res["primitive_uvs"].numpy().astype(np.float64)
        bary = np.stack([1 - b[:, 0] - b[:, 1], b[:, 0], b[:, 1]], -1)
        return gid, tri, bary, res["points"].numpy().astype(np.float64)

    def surface_points(self, gid: np.ndarray, tri: np.ndarray, bary: np.ndarray, t: float) -> np.ndarray:
        """World points (N, 3) of material points (object, triangle, barycentrics) at time t."""
        verts = self.vertices(t)
        out = np.zeros((len(gid), 3))
        for k, (v, o) in enumerate(zip(verts, self.objects)):
            m = gid == k
            if m.any():
                out[m] = np.einsum("nk,nkd->nd", bary[m], v[o.faces[tri[m]]])
        return out


@dataclass
class Frame:
    """One rendered frame: per-pixel hit data (H, W) and derived images."""

    t: float
    T_cw: np.ndarray
    object_ids: np.ndarray  # (H, W) int, -1 no hit
    triangle_ids: np.ndarray  # (H, W) int, -1 no hit
    bary: np.ndarray  # (H, W, 3)
    valid: np.ndarray  # (H, W) bool
    points_world: np.ndarray | None = None  # (H, W, 3)
    points: np.ndarray | None = None  # (H, W, 3) camera frame
    depth: np.ndarray | None = None  # (H, W) metres, 0 = no hit
    color: np.ndarray | None = None  # (H, W, 3) in [0, 1]
    labels: np.ndarray | None = None  # (H, W) motion class, -1 no hit
    normals: np.ndarray | None = None  # (H, W, 3) camera-frame triangle normals
    normal_dot_view: np.ndarray | None = None  # (H, W) |n . ray| in [0, 1]
    groups: list | None = None  # per object: flat pixel indices of its hits

    def pixel_groups(self) -> list[np.ndarray]:
        """Flat pixel indices hitting each object (computed from ``object_ids`` when not cached)."""
        if self.groups is None:
            flat = self.object_ids.ravel()
            n = int(flat.max(initial=-1)) + 1
            self.groups = [np.flatnonzero(flat == k) for k in range(n)]
        return self.groups

