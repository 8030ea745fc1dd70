"""Procedural deforming objects for the synthetic RGB-D and monocular-video generators.

All objects are given in a world frame equal to the first camera frame (x right, y down, z forward,
metres), as functions of time t in seconds. Sizes and speeds are chosen to resemble the DeepDeform
captures (objects 1-2 m away, a few centimetres of motion between frames 0.1-0.2 s apart).
"""

from __future__ import annotations

import math

import numpy as np

from nrsfm_kit.data.render import (
    NONRIGID,
    RIGID,
    STATIC,
    DeformingScene,
    MeshObject,
    box_mesh,
    grid_faces,
    procedural_texture,
    rotation,
)

OBJECTS = ("cloth", "cylinder", "box")
SCENES = ("room", "cluttered")


def _plane(corner, du, dv, res: int, texture_period: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A res x res vertex grid spanning corner + [0, 1] du + [0, 1] dv: vertices, faces, uv (period in m)."""
    s, t = np.meshgrid(np.linspace(0, 1, res), np.linspace(0, 1, res))
    s, t = s.ravel(), t.ravel()
    du, dv = np.asarray(du, dtype=np.float64), np.asarray(dv, dtype=np.float64)
    v = np.asarray(corner, dtype=np.float64) + s[:, None] * du + t[:, None] * dv
    uv = np.stack([s * np.linalg.norm(du), t * np.linalg.norm(dv)], 1) / texture_period
    return v, grid_faces(res, res), uv


def background(rng: np.random.Generator, depth: float = 2.6, half: float = 2.6, floor_y: float = 0.55) -> list:
    """A textured back wall at z = ``depth`` and a floor at y = ``floor_y`` (static).

    Both are 9 x 9 vertex grids (small triangles keep float32 barycentrics precise) with a seamless texture
    repeating every 1.6 m.
    """
    wall_v, wall_f, wall_uv = _plane([-half, -half, depth], [2 * half, 0, 0], [0, 2 * half, 0], 9, 1.6)
    floor_v, floor_f, floor_uv = _plane([-half, floor_y, 0.3], [2 * half, 0, 0], [0, 0, depth - 0.3], 9, 1.6)
    return [
        MeshObject("wall", wall_f, wall_uv, procedural_texture(rng, 256, base=(0.62, 0.58, 0.5), contrast=0.8),
                   STATIC, lambda t, v=wall_v: v),
        MeshObject("floor", floor_f, floor_uv, procedural_texture(rng, 256, base=(0.45, 0.38, 0.3), contrast=0.8),
                   STATIC, lambda t, v=floor_v: v),
    ]


def static_box(rng: np.random.Generator, name: str, center, size, yaw: float = 0.0) -> MeshObject:
    """A static textured box of ``size`` (m) centred at ``center`` (m), turned by ``yaw`` radians about y."""
    v0, faces, uv = box_mesh(size)
    v = v0 @ rotation([0, 1, 0], yaw).T + np.asarray(center, dtype=np.float64)
    return MeshObject(name, faces, uv, procedural_texture(rng, 256, contrast=0.9), STATIC,
                      lambda t, v=v: v)


def clutter(rng: np.random.Generator, depth: float = 2.6, floor_y: float = 0.55) -> list:
    """Static geometry that makes the room non-planar (the ``"cluttered"`` scene, label 0).

    A left side wall at x = -1.3 m (a corner with the back wall), two pillars standing on the floor, a crate,
    a stack and a low step on the floor, a shelf box on the back wall, a cabinet and a lamp box up high:
    surfaces at 1.3-2.6 m whose depth differs from the two room planes, so that a moving camera sees parallax
    beyond a homography over most of the image (the wall alone let a tilted plane explain the static flow
    about as well as the truth; see notebook 12).
    """
    side_v, side_f, side_uv = _plane([-1.3, -2.6, 0.3], [0, 0, depth - 0.3], [0, 2.6 + floor_y, 0], 9, 1.6)
    objs = [MeshObject("side wall", side_f, side_uv, procedural_texture(rng, 256, base=(0.55, 0.6, 0.62),
                                                                        contrast=0.8), STATIC,
                       lambda t, v=side_v: v)]
    specs = [  # name, centre (x, y, z), size (x, y, z), yaw
        ("pillar", (0.85, floor_y - 0.7, 2.0), (0.3, 1.4, 0.3), 0.4),
        ("crate", (-0.85, floor_y - 0.2, 1.45), (0.4, 0.4, 0.4), 0.5),
        ("step", (0.35, floor_y - 0.09, 2.1), (0.8, 0.18, 0.45), -0.2),
        ("stack", (-0.45, floor_y - 0.35, 2.3), (0.35, 0.7, 0.35), 0.3),
        ("shelf", (0.1, -0.55, depth - 0.15), (0.7, 0.22, 0.3), 0.0),
        ("left pillar", (-1.0, floor_y - 0.9, 2.15), (0.3, 1.8, 0.3), -0.3),
        ("cabinet", (-0.65, -0.7, 2.05), (0.45, 0.35, 0.35), 0.25),
        ("lamp box", (0.5, -0.85, 1.95), (0.3, 0.25, 0.3), -0.4),
    ]
    for name, c, size, yaw in specs:
        objs.append(static_box(rng, name, c, size, yaw))
    return objs


def cloth(
    rng: np.random.Generator,
    center=(-0.3, -0.1, 1.6),
    size=(0.7, 0.6),
    res: int = 41,
    amplitude: float = 0.06,
    speed: float = 1.0,
) -> MeshObject:
    """A textured sheet that bends about its vertical axis and carries a travelling wave.

    Vertex (s, r) (sheet coordinates, metres) at time t::

        bend(t) = 0.6 sin(0.9 speed t + p0)             (curvature, 1/m)
        z = z0 + bend(t) s^2 + A (0.4 + r/h + 0.5) sin(2 pi s / 0.5 - 2.5 speed t + p1)
                 + 0.5 A sin(2 pi r / 0.45 + 1.7 speed t + p2)
        x = x0 + s (1 - 0.5 bend(t)^2 s^2 / 3),  y = y0 + r + 0.02 sin(1.3 speed t) s
    """
    w, h = size
    s, r = np.meshgrid(np.linspace(-w / 2, w / 2, res), np.linspace(-h / 2, h / 2, res))
    s, r = s.ravel(), r.ravel()
    faces = grid_faces(res, res)
    uv = np.stack([(s + w / 2) / w, (r + h / 2) / h], 1) * np.array([w / 0.7, h / 0.7])
    p0, p1, p2 = rng.uniform(0, 2 * math.pi, 3)
    c = np.asarray(center, dtype=np.float64)

    def verts(t: float) -> np.ndarray:
        bend = 0.6 * math.sin(0.9 * speed * t + p0)
        z = c[2] + bend * s**2
        z = z + amplitude * (0.4 + r / h + 0.5) * np.sin(2 * math.pi * s / 0.5 - 2.5 * speed * t + p1)
        z = z + 0.5 * amplitude * np.sin(2 * math.pi * r / 0.45 + 1.7 * speed * t + p2)
        x = c[0] + s * (1 - 0.5 * bend**2 * s**2 / 3)
        y = c[1] + r + 0.02 * math.sin(1.3 * speed * t) * s
        return np.stack([x, y, z], 1)

    return MeshObject("cloth", faces, uv, procedural_texture(rng, 256, base=(0.25, 0.45, 0.75)), NONRIGID, verts)


def bending_cylinder(
    rng: np.random.Generator,
    base=(0.12, 0.05, 1.3),
    length: float = 0.5,
    radius: float = 0.06,
    rings: int = 25,
    segments: int = 32,
    speed: float = 1.0,
    sway: float = 0.0,
) -> MeshObject:
    """A capped cylinder (an "arm") fixed at its base that bends in the image plane like an elbow.

    ``sway`` > 0 moves the base too (a shoulder): base(t) = base + sway (sin(1.3 speed t), 0.5 sin(0.9 speed t), 0)
    metres, so that every part of the arm moves (0 keeps the base fixed).

    The centreline is an arc of constant curvature kappa(t) = theta(t) / L with
    theta(t) = 0.9 + 0.7 sin(1.1 speed t + p) radians: c(s) = (sin(kappa s), -(1 - cos(kappa s))) / kappa,
    the surface c(s) + rho (cos(phi) N(s) + sin(phi) B) with N the in-plane normal and B = z.
    """
    a = np.linspace(0, length, rings)
    # segments + 1 columns: the last duplicates the first position with texture u = 1 (no seam)
    phi = np.linspace(0, 2 * math.pi, segments + 1)
    A, PHI = np.meshgrid(a, phi, indexing="ij")
    A, PHI = A.ravel(), PHI.ravel()
    cols = segments + 1
    faces = []
    for i in range(rings - 1):
        for j in range(segments):
            p, q = i * cols + j, i * cols + j + 1
            faces += [[p, q, p + cols], [q, q + cols, p + cols]]
    n_side = rings * cols
    # end caps: a centre vertex per end, fan triangles
    c0, c1 = n_side, n_side + 1
    last = (rings - 1) * cols
    for j in range(segments):
        faces.append([c0, j + 1, j])
        faces.append([c1, last + j, last + j + 1])
    faces = np.array(faces, dtype=np.int64)
    circ = 2 * math.pi * radius
    uv = np.concatenate([np.stack([A / circ, PHI / (2 * math.pi)], 1), [[0.0, 0.0], [length / circ, 0.5]]])
    p = rng.uniform(0, 2 * math.pi)
    b = np.asarray(base, dtype=np.float64)
    rho = np.concatenate([np.full(n_side, radius), [0.0, 0.0]])
    s_all = np.concatenate([A, [0.0, length]])
    ph_all = np.concatenate([PHI, [0.0, 0.0]])

    def verts(t: float) -> np.ndarray:
        theta = 0.9 + 0.7 * math.sin(1.1 * speed * t + p)
        k = theta / length
        b_t = b + sway * np.array([math.sin(1.3 * speed * t), 0.5 * math.sin(0.9 * speed * t), 0.0])
        ks = k * s_all
        centre = np.stack([np.sin(ks) / k, -(1 - np.cos(ks)) / k, np.zeros_like(ks)], 1)
        N = np.stack([-np.sin(ks), -np.cos(ks), np.zeros_like(ks)], 1)  # in-plane normal
        B = np.array([0.0, 0.0, 1.0])
        return b_t + centre + rho[:, None] * (np.cos(ph_all)[:, None] * N + np.sin(ph_all)[:, None] * B)

    return MeshObject("cylinder", faces, uv, procedural_texture(rng, 256, base=(0.8, 0.45, 0.3)), NONRIGID, verts)


def rigid_box(
    rng: np.random.Generator,
    center=(0.05, 0.3, 1.05),
    size=(0.2, 0.16, 0.18),
    velocity=(0.12, -0.05, 0.05),
    angular_velocity: float = 0.8,
    speed: float = 1.0,
) -> MeshObject:
    """A textured box moving rigidly: X(t) = R(axis, w t) X_0 + c + v t (w rad/s, v m/s)."""
    v0, faces, uv = box_mesh(size)
    axis = rng.standard_normal(3)
    R0 = rotation(rng.standard_normal(3), rng.uniform(0, math.pi))
    v0 = v0 @ R0.T
    c = np.asarray(center, dtype=np.float64)
    vel = np.asarray(velocity, dtype=np.float64)

    def verts(t: float) -> np.ndarray:
        R = rotation(axis, angular_velocity * speed * t)
        return v0 @ R.T + c + vel * speed * t

    return MeshObject("box", faces, uv, procedural_texture(rng, 256, base=(0.35, 0.7, 0.35)), RIGID, verts)


# the movers of the "cluttered" scene: smaller and a little farther than in the "room" (a minority of the
# pixels, about 10 % instead of 29 %), same motion laws except that the arm's
# base moves too (in the "room" the pixels near the fixed base are labelled non-rigid but barely move)
CLUTTERED_MOVERS = {
    "cloth": {"center": (-0.25, -0.2, 1.75), "size": (0.42, 0.36), "res": 31},
    "cylinder": {"base": (0.2, 0.0, 1.45), "length": 0.34, "radius": 0.055, "sway": 0.12},
    "box": {"center": (0.1, 0.3, 1.25), "size": (0.14, 0.12, 0.13)},
}


def default_intrinsics(height: int, width: int) -> np.ndarray:
    """(fx, fy, cx, cy) with a 60 degree horizontal field of view, principal point at the centre."""
    f = 0.5 * width / math.tan(math.radians(30))
    return np.array([f, f, (width - 1) / 2, (height - 1) / 2])


def build_scene(
    objects=OBJECTS,
    height: int = 240,
    width: int = 320,
    seed: int = 0,
    speed: float = 1.0,
    camera_motion: float = 0.0,
    intrinsics=None,
    scene: str = "room",
) -> DeformingScene:
    """Background + the requested objects (``"cloth"``, ``"cylinder"``, ``"box"``).

    ``scene="room"`` is a back wall and a floor (two planes); ``"cluttered"`` adds the static geometry of
    :func:`clutter` (textures from a second random stream, so the room's textures, the movers' phases and the
    camera path are those of ``"room"`` for the same seed) and uses the smaller movers of
    ``CLUTTERED_MOVERS``.

    ``camera_motion`` > 0 moves the camera along a smooth path (sideways sway of ``0.3 camera_motion`` m,
    forward and downward drift for 1.5 s that then oscillates within 0.2-0.4 ``camera_motion`` m, a small
    pan); 0 keeps it static (the RGB-D generators).
    """
    bad = [o for o in objects if o not in OBJECTS]
    if bad or len(set(objects)) != len(objects):
        raise ValueError(f"objects: expected distinct names from {OBJECTS}, found {tuple(objects)}")
    if scene not in SCENES:
        raise ValueError(f"scene: expected one of {SCENES}, found {scene!r}")
    rng = np.random.default_rng(seed)
    objs = background(rng)
    if scene == "cluttered":
        objs += clutter(np.random.default_rng([seed, 1]))
    make = {"cloth": cloth, "cylinder": bending_cylinder, "box": rigid_box}
    movers = CLUTTERED_MOVERS if scene == "cluttered" else {}
    for name in OBJECTS:  # fixed order so that seeds map to the same textures
        obj = make[name](rng, speed=speed, **movers.get(name, {}))
        if name in objects:
            objs.append(obj)
    intr = default_intrinsics(height, width) if intrinsics is None else np.asarray(intrinsics, dtype=np.float64)
    out = DeformingScene(objs, intr, int(height), int(width))
    if camera_motion > 0:
        ph = rng.uniform(0, 2 * math.pi)

        def pose(t: float) -> np.ndarray:
            # camera centre path (world) and a pan about y: T_cw = [R | -R c]
            sway = 0.3 * (math.sin(0.8 * t + ph) - math.sin(ph))
            # drift forward (0.2 m/s) and down (0.03 m/s) for 1.5 s, then oscillate (C1) so that long
            # sequences stay inside the room and in front of the objects
            drift = t if t <= 1.5 else 1.5 + 0.5 * math.sin((t - 1.5) / 0.5)
            cpos = camera_motion * np.array([sway, 0.03 * drift, 0.2 * drift])
            R = rotation([0, 1, 0], camera_motion * 0.08 * math.sin(0.6 * t))
            T = np.eye(4)
            T[:3, :3] = R
            T[:3, 3] = -R @ cpos
            return T

        out.pose_at = pose
    return out
