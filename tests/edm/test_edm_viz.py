"""Plotly helpers for depth / embeddings: figures build with the expected traces."""

from __future__ import annotations

import plotly.graph_objects as go
import torch

from nrsfm_kit.metrics.segmentation import roc_curve
from nrsfm_kit.viz.depth import loss_figure, maps_figure, point_cloud_figure, roc_figure


def test_depth_figures():
    H, W = 6, 8
    img = torch.rand(3, H, W)
    depth = 1 + torch.rand(H, W)
    fig = maps_figure({"rgb": img, "depth": depth})
    assert isinstance(fig, go.Figure) and [type(t).__name__ for t in fig.data] == ["Image", "Heatmap"]
    depth_bad = depth.clone()
    depth_bad[0, 0] = float("nan")  # masked, not plotted
    pc = point_cloud_figure({"a": depth, "b": depth_bad}, img, torch.tensor([5.0, 5.0, 3.5, 2.5]))
    assert len(pc.data) == 2 and len(pc.data[0].x) == H * W and len(pc.data[1].x) == H * W - 1
    gt = torch.zeros(50, dtype=torch.bool)
    gt[:20] = True
    roc = roc_figure({"s": roc_curve(gt.float() + 0.1 * torch.rand(50), gt)})
    assert "AUC" in roc.data[0].name
    lf = loss_figure({"run": [{"step": 1, "loss": 1.0, "stage": 1}, {"step": 2, "loss": 0.5, "stage": 2}]})
    assert list(lf.data[0].y) == [1.0, 0.5]
