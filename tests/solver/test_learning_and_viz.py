"""Weight learning through the solver, RGB-D helpers' errors, tracking figures."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.solver.learning import learn_correspondence_weights, plant_outliers
from nrsfm_kit.solver.rgbd import flow_correspondences, scene_flow_error
from nrsfm_kit.solver.synthetic import make_synthetic_tracking


@pytest.fixture(scope="module")
def sheet():
    return make_synthetic_tracking(batch=1, grid=10, node_stride=3, size=0.3, image_size=(90, 120), focal=160.0, seed=5)


def test_learning_downweights_planted_outliers(sheet):
    corr, out = plant_outliers(sheet, fraction=0.25, magnitude=12.0)
    assert 0 < int(out.sum()) < out.numel()
    torch.testing.assert_close(corr[~out], sheet.correspondences[0][~out])
    res = learn_correspondence_weights(sheet, corr, out, steps=5, lr=0.5, progress=False)
    assert res.error_after < res.error_before
    assert float(res.weights[out].mean()) < float(res.weights[~out].mean()) - 0.05
    assert len(res.history) == 5 and res.history[-1]["loss"] < res.history[0]["loss"]


def test_rgbd_helpers_need_flows():
    from nrsfm_kit.data.types import RGBDPair

    z = torch.ones(4, 5)
    pair = RGBDPair(torch.zeros(3, 4, 5), torch.zeros(3, 4, 5), z, z, torch.tensor([5.0, 5.0, 2.0, 1.5]), name="x")
    with pytest.raises(ValueError, match="pair.optical_flow: expected"):
        flow_correspondences(pair)
    with pytest.raises(ValueError, match="pair.scene_flow: expected"):
        scene_flow_error(pair, None, None)


def test_tracking_figures(sheet):
    from nrsfm_kit.viz.tracking import alignment_figure, energy_figure, iterations_figure, weights_figure

    s = sheet
    fig = alignment_figure(s.source_points, s.target_points[0], s.target_points[0], nodes=s.graph.nodes)
    assert len(fig.data) == 5
    fig = iterations_figure([s.source_points, s.target_points[0]], s.target_points[0])
    assert len(fig.frames) == 2 and fig.layout.sliders
    assert len(energy_figure({"GN": torch.tensor([3.0, 1.0, 0.1])}).data) == 1
    assert len(weights_figure(torch.rand(10), torch.arange(10) < 3).data) == 2
