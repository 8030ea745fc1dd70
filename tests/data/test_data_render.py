"""The Open3D ray caster against the brute-force torch Moller-Trumbore reference."""

from __future__ import annotations

import numpy as np
import torch

from nrsfm_kit.data.render import raycast_reference
from nrsfm_kit.data.scenes import build_scene


def test_open3d_matches_reference_raycaster():
    scene = build_scene(("box", "cylinder"), height=18, width=24, seed=1)
    frame = scene.render(0.4)
    ref = raycast_reference(scene, 0.4)
    hit = ref["object_ids"].numpy() >= 0
    both = hit & frame.valid
    assert both.mean() > 0.99  # cracks between triangles are rare
    same = (ref["object_ids"].numpy() == frame.object_ids) & (ref["triangle_ids"].numpy() == frame.triangle_ids)
    assert same.mean() > 0.97  # ties on shared edges may pick either triangle
    assert np.abs(ref["depth"].numpy() - frame.depth)[both].max() < 1e-5
    assert np.abs(ref["bary"].numpy() - frame.bary)[same].max() < 1e-4  # Embree works in float32
    assert set(np.unique(frame.object_ids[same]).tolist()) >= {0, 2}  # wall and box both covered
    assert ref["depth"].dtype == torch.float64
