"""Sensor noise of synthetic depth maps: a Kinect-like corruption (axial noise, holes, millimetre quantisation)."""

from __future__ import annotations

import cv2
import numpy as np


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
