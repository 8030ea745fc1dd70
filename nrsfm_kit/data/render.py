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

import cv2
import numpy as np
import torch

STATIC, RIGID, NONRIGID = 0, 1, 2
LABEL_NAMES = {STATIC: "static", RIGID: "rigid", NONRIGID: "non-rigid"}


# ----------------------------------------------------------------------------------------------
# textures
# ----------------------------------------------------------------------------------------------


def procedural_texture(rng: np.random.Generator, size: int = 256, base=None, contrast: float = 1.0) -> np.ndarray:
    """A rich, seamless (periodic) RGB albedo texture (size, size, 3) float32 in [0, 1].

    Fractal noise with a 1/f amplitude spectrum synthesised in the Fourier domain (hence exactly
    periodic: texture coordinates may wrap without seams), plus random sharp-edged discs and thin lines
    (drawn with wrap-around) that give well-localised features for optical flow and photometric losses.
    """
    base = rng.uniform(0.3, 0.7, size=3) if base is None else np.asarray(base, dtype=np.float64)
    import scipy.fft

    f = np.fft.fftfreq(size).astype(np.float32)[:, None]
    g = np.fft.rfftfreq(size).astype(np.float32)[None, :]
    radius = np.sqrt(f * f + g * g)
    amp = np.where(radius > 0, np.maximum(radius, 1.0 / size) ** -1.4, 0.0).astype(np.float32)
    amp[radius > 0.25] = 0.0  # no energy above half the Nyquist rate (no aliasing)
    # 4 fields: a luminance pattern shared by the channels and a weaker chroma pattern per channel
    re = rng.standard_normal((*amp.shape, 4), dtype=np.float32)
    im = rng.standard_normal((*amp.shape, 4), dtype=np.float32)
    spec = amp[..., None] * (re + 1j * im).astype(np.complex64)
    fields = scipy.fft.irfft2(spec, s=(size, size), axes=(0, 1))
    fields /= fields[::4, ::4].reshape(-1, 4).std(axis=0) + 1e-12  # a subsample estimates the std
    noise = (0.8 * fields[..., :1] + 0.35 * fields[..., 1:]) / 3
    tex = (base + 0.5 * contrast * noise).astype(np.float32)
    img = np.zeros((size, size, 3), np.float32)
    shifts = [(dx, dy) for dx in (-size, 0, size) for dy in (-size, 0, size)]
    n_disc = max(1, size * size // 2000)
    centres = rng.integers(0, size, (n_disc, 2)).tolist()
    radii = rng.integers(2, max(3, size // 28), n_disc).tolist()
    cols = rng.uniform(-0.4, 0.4, (n_disc, 3)).tolist()
    for (cx, cy), r, col in zip(centres, radii, cols):
        near_edge = min(cx, cy, size - cx, size - cy) < r + 1
        for dx, dy in shifts if near_edge else [(0, 0)]:
            cv2.circle(img, (cx + dx, cy + dy), r, tuple(col), -1, lineType=cv2.LINE_AA)
    for _ in range(max(1, size // 24)):
        p, q = rng.integers(0, size, 2), rng.integers(-size // 4, size // 4, 2)
        col = tuple(float(x) for x in rng.uniform(-0.3, 0.3, 3))
        for dx, dy in shifts:
            a = (int(p[0] + dx), int(p[1] + dy))
            cv2.line(img, a, (a[0] + int(q[0]), a[1] + int(q[1])), col, 1, lineType=cv2.LINE_AA)
    return np.clip(tex + np.float32(contrast) * img, 0.02, 0.98)


def sample_texture(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup with wrap-around: tex (S, S, 3), uv (N, 2) in texture units (period 1) -> (N, 3)."""
    S0, S1 = tex.shape[:2]
    n = uv.shape[0]
    cols = 1024  # cv2.remap wants maps with < 32767 rows / cols
    rows = -(-n // cols)
    maps = np.zeros((2, rows * cols), np.float32)
    maps[0, :n] = np.mod(uv[:, 0], 1.0) * S1 - 0.5
    maps[1, :n] = np.mod(uv[:, 1], 1.0) * S0 - 0.5
    out = cv2.remap(
        tex, maps[0].reshape(rows, cols), maps[1].reshape(rows, cols), cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP
    )
    return out.reshape(-1, tex.shape[2])[:n].astype(np.float64)


def texture_pyramid(tex: np.ndarray) -> list[np.ndarray]:
    """Mip-map levels of a periodic texture: 2x2 box averages while both sides are even and >= 8."""
    levels = [tex]
    while levels[-1].shape[0] % 2 == 0 and levels[-1].shape[1] % 2 == 0 and min(levels[-1].shape[:2]) >= 8:
        t = levels[-1]
        levels.append(t.reshape(t.shape[0] // 2, 2, t.shape[1] // 2, 2, -1).mean(axis=(1, 3)))
    return levels


def sample_texture_mip(levels: list[np.ndarray], uv: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Trilinear (mip-mapped) lookup: uv (N, 2) texture units, level (N,) >= 0 (log2 texels per pixel)."""
    level = np.clip(level, 0.0, len(levels) - 1.0)
    lo = np.floor(level).astype(np.int64)
    frac = (level - lo)[:, None]
    out = np.zeros((uv.shape[0], levels[0].shape[2]))
    for k in np.unique(lo):
        m = lo == k
        a = sample_texture(levels[k], uv[m])
        b = sample_texture(levels[min(k + 1, len(levels) - 1)], uv[m])
        out[m] = (1 - frac[m]) * a + frac[m] * b
    return out


def _footprint(uv_img: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """Per-pixel texture footprint (texels per pixel) from finite differences within the same object."""
    big = np.inf

    def axis_fp(ax: int) -> np.ndarray:
        d = np.linalg.norm(np.diff(uv_img, axis=ax), axis=-1)
        same = np.diff(obj, axis=ax) == 0
        d = np.where(same & np.isfinite(d), d, big)
        pad_lo = [(0, 0)] * 2
        pad_hi = [(0, 0)] * 2
        pad_lo[ax], pad_hi[ax] = (1, 0), (0, 1)
        return np.minimum(np.pad(d, pad_lo, constant_values=big), np.pad(d, pad_hi, constant_values=big))

    fp = np.maximum(axis_fp(0), axis_fp(1))
    fx, fy = axis_fp(1), axis_fp(0)
    fp = np.where(np.isinf(fx), fy, np.where(np.isinf(fy), fx, fp))
    return np.where(np.isfinite(fp), fp, 1.0)


# ----------------------------------------------------------------------------------------------
# meshes
# ----------------------------------------------------------------------------------------------


def grid_faces(rows: int, cols: int) -> np.ndarray:
    """Triangles (2 (rows-1)(cols-1), 3) of a rows x cols vertex grid (row-major vertex ids)."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    a = (r * cols + c).ravel()
    b, d, e = a + 1, a + cols, a + cols + 1
    return np.concatenate([np.stack([a, d, b], 1), np.stack([b, d, e], 1)]).astype(np.int64)


def box_mesh(size) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Axis-aligned box centred at 0: (24, 3) vertices (4 per face), (12, 3) faces, (24, 2) uv per face."""
    hx, hy, hz = np.asarray(size, dtype=np.float64) / 2
    verts, faces, uvs = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u_ax, v_ax = [k for k in range(3) if k != axis]
            h = np.array([hx, hy, hz])
            corners = []
            for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3)
                p[axis], p[u_ax], p[v_ax] = sign * h[axis], su * h[u_ax], sv * h[v_ax]
                corners.append(p)
            base = len(verts)
            verts += corners
            # outward-facing winding
            f = [[0, 1, 2], [0, 2, 3]] if sign * (1 if (axis != 1) else -1) > 0 else [[0, 2, 1], [0, 3, 2]]
            faces += [[base + i for i in tri] for tri in f]
            k = 2 * axis + (sign > 0)
            uvs += [[(k + 0.05) / 6, 0.05], [(k + 0.95) / 6, 0.05], [(k + 0.95) / 6, 0.95], [(k + 0.05) / 6, 0.95]]
    return np.array(verts), np.array(faces, dtype=np.int64), np.array(uvs)


@dataclass
class MeshObject:
    """A textured triangle mesh with fixed topology whose vertices move with time.

    Attributes:
        name: object name.
        faces: (T, 3) int vertex ids.
        uv: (V, 2) texture coordinates (texture units, wrap-around).
        texture: (S, S, 3) albedo in [0, 1].
        label: motion class, 0 static, 1 rigid, 2 non-rigid.
        vertices_at: t (seconds) -> (V, 3) world vertices in metres.
    """

    name: str
    faces: np.ndarray
    uv: np.ndarray
    texture: np.ndarray
    label: int
    vertices_at: Callable[[float], np.ndarray]
    _mips: list | None = field(default=None, repr=False)

    @property
    def mips(self) -> list[np.ndarray]:
        """Mip-map pyramid of the texture (computed once)."""
        if self._mips is None:
            self._mips = texture_pyramid(self.texture)
        return self._mips


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
        fp = _footprint(uv_img.reshape(*frame.object_ids.shape, 2), frame.object_ids).reshape(-1)
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


def apply_pose(T: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) rigid transform to points (..., 3)."""
    return p @ T[:3, :3].T + T[:3, 3]


def rotation(axis, angle: float) -> np.ndarray:
    """(3, 3) rotation about ``axis`` by ``angle`` radians (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def kinect_noise(
    depth: np.ndarray,
    normals_dot_view: np.ndarray | None,
    rng: np.random.Generator,
    *,
    hole_fraction: float = 0.01,
    edge_threshold: float = 0.05,
    grazing_cos: float = 0.1,
) -> np.ndarray:
    """Kinect-like corruption of a depth map (H, W) metres; 0 marks holes (as in DeepDeform PNGs).

    - axial noise sigma(z) = 0.0012 + 0.0019 (z - 0.4)^2 metres (Nguyen, Izadi, Lovell, 3DIMPVT 2012),
    - holes at depth discontinuities (neighbour difference > ``edge_threshold`` m, dilated 1 px),
    - holes at grazing angles (|n . v| < ``grazing_cos``) when ``normals_dot_view`` is given,
    - random dropout blobs covering about ``hole_fraction`` of the image,
    - quantisation to millimetres (the uint16 PNG storage).
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth: expected shape (H, W), found {depth.shape}")
    if not np.isfinite(depth).all() or (depth < 0).any():
        raise ValueError("depth: expected finite values >= 0 (metres, 0 = no surface)")
    if normals_dot_view is not None and np.shape(normals_dot_view) != depth.shape:
        raise ValueError(f"normals_dot_view: expected shape {depth.shape}, found {np.shape(normals_dot_view)}")
    for name, v in (("hole_fraction", hole_fraction), ("edge_threshold", edge_threshold), ("grazing_cos", grazing_cos)):
        if not (np.isfinite(v) and 0 <= v < (1 if name != "edge_threshold" else np.inf)):
            raise ValueError(f"{name}: expected a finite value in [0, {1 if name != 'edge_threshold' else 'inf'}), found {v!r}")
    d = depth.astype(np.float64).copy()
    valid = d > 0
    sigma = 0.0012 + 0.0019 * (d - 0.4) ** 2
    d = d + rng.standard_normal(d.shape) * sigma
    dmax = cv2.dilate(depth.astype(np.float32), np.ones((3, 3), np.uint8))
    dmin = -cv2.dilate(-depth.astype(np.float32), np.ones((3, 3), np.uint8))
    edges = (dmax - dmin) > edge_threshold
    holes = edges | ~valid
    if normals_dot_view is not None:
        holes |= np.abs(normals_dot_view) < grazing_cos
    if hole_fraction > 0:
        H, W = d.shape
        blob = np.zeros((H, W), np.uint8)
        area = 0.0
        while area < hole_fraction * H * W:
            r = int(rng.integers(2, max(3, min(H, W) // 20)))
            c = (int(rng.integers(0, W)), int(rng.integers(0, H)))
            cv2.circle(blob, c, r, 1, -1)
            area += np.pi * r * r
        holes |= blob.astype(bool)
    d = np.round(d * 1000.0) / 1000.0
    return np.where(holes, 0.0, np.maximum(d, 0.0))


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
