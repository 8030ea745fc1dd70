"""Dataset figures (nrsfm_kit.viz.data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nrsfm_kit.data import synthetic_nrsfm, synthetic_rgbd_pair, synthetic_rgbd_sequence
from nrsfm_kit.viz.data import (
    flow_arrows_2d,
    flow_to_rgb,
    image_row,
    keypoints_2d,
    rgbd_slider,
    scene_flow_figure,
    skeleton_animation,
)


def test_flow_to_rgb_directions():
    flow = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]]])
    rgb = flow_to_rgb(flow, valid=torch.tensor([[True, True, True, False]]))
    assert rgb.shape == (1, 4, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [255, 0, 0]  # +u: red (hue 0)
    assert rgb[0, 2].tolist() == [0, 255, 255]  # -u: cyan (hue 180)
    assert (rgb[0, 3] == 0).all()  # invalid: black
    with pytest.raises(ValueError, match=r"flow: expected shape \(H, W, 2\)"):
        flow_to_rgb(torch.zeros(4, 4, 3))


def test_figures_build():
    p = synthetic_rgbd_pair(24, 32, seed=0)
    assert len(image_row([p.source_color, p.source_depth, flow_to_rgb(p.optical_flow)]).data) == 3
    assert len(flow_arrows_2d(p.source_color, p.optical_flow, p.flow_valid, stride=8).data) == 3
    fig = scene_flow_figure(p.source_points, p.scene_flow, p.source_color, stride=4)
    assert len(fig.data) == 3
    seq = synthetic_rgbd_sequence(2, 16, 16, seed=0, objects=("box",))
    assert len(rgbd_slider(seq.colors, seq.depths).frames) == 2
    s = synthetic_nrsfm("skeleton", num_frames=6)
    anim = skeleton_animation(s.S_world, s.bones, step=2)
    assert len(anim.frames) == 3
    assert len(keypoints_2d(s.W[0], s.visibility[0], s.bones).data) == 2


def test_figure_bad_inputs():
    with pytest.raises(ValueError, match=r"flow: expected shape \(H, W, 2\), found \(4, 4\)"):
        flow_arrows_2d(torch.rand(3, 4, 4), torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"valid: expected shape \(4, 4\)"):
        flow_arrows_2d(torch.rand(3, 4, 4), torch.zeros(4, 4, 2), torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="stride"):
        flow_arrows_2d(torch.rand(3, 4, 4), torch.zeros(4, 4, 2), stride=0)
    with pytest.raises(ValueError, match=r"scene_flow: expected shape \(4, 4, 3\) to match points"):
        scene_flow_figure(torch.rand(4, 4, 3), torch.zeros(4, 5, 3))
    with pytest.raises(ValueError, match=r"points: expected shape \(H, W, 3\)"):
        scene_flow_figure(torch.rand(16, 3), torch.zeros(16, 3))
    with pytest.raises(ValueError, match=r"colors, depths: expected shapes"):
        rgbd_slider(torch.rand(2, 3, 4, 4), torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match=r"S: expected shape \(F, P, 3\)"):
        skeleton_animation(torch.rand(5, 3), [])
    with pytest.raises(ValueError, match=r"bones: expected joint indices in \[0, 3\)"):
        skeleton_animation(torch.rand(2, 3, 3), [(0, 3)])
    with pytest.raises(ValueError, match=r"visibility: expected shape \(3,\)"):
        keypoints_2d(torch.rand(3, 2), torch.ones(4, dtype=torch.bool))


def test_non_finite_values_are_not_drawn():
    P = torch.rand(4, 4, 3) + torch.tensor([0.0, 0.0, 1.0])
    S = torch.zeros(4, 4, 3) + 0.01
    S[0, 0] = float("nan")
    fig = scene_flow_figure(P, S, stride=1)
    assert np.isfinite(np.asarray(fig.data[0].x, dtype=float)).all()
    assert len(fig.data[2].x) == 15  # the NaN arrow is dropped, the 15 others drawn
