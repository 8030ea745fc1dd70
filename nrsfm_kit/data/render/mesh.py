"""Mesh primitives (grid and box triangulations), the textured :class:`MeshObject` whose vertices move with
time, the motion classes of its labels, and the rigid transforms that move vertices.

Conventions: world frame metres, points as rows; a (4, 4) pose T maps world -> camera.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nrsfm_kit.data.render.textures import texture_pyramid

STATIC, RIGID, NONRIGID = 0, 1, 2
LABEL_NAMES = {STATIC: "static", RIGID: "rigid", NONRIGID: "non-rigid"}


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


def apply_pose(T: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) rigid transform to points (..., 3)."""
    return p @ T[:3, :3].T + T[:3, 3]


def rotation(axis, angle: float) -> np.ndarray:
    """(3, 3) rotation about ``axis`` by ``angle`` radians (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K

