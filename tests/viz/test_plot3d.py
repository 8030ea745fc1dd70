import numpy as np
import pytest
import torch

from nrsfm_kit.viz import figure3d, frustum_lines, lines3d, scatter3d, skeleton_traces


def test_traces_and_figure():
    pts = torch.randn(10, 3)
    tr = scatter3d(pts, color=torch.rand(10, 3), name="pc")
    assert len(tr.x) == 10 and tr.marker.color[0].startswith("rgb(")
    ln = lines3d(pts[:3], pts[3:6])
    assert len(ln.x) == 9 and np.isnan(ln.x[2])
    sk = skeleton_traces(pts, [(0, 1), (1, 2)], name="gt")
    assert len(sk) == 2
    fr = frustum_lines([500, 500, 320, 240], image_size=(480, 640))
    assert len(fr.x) == 24
    fig = figure3d([tr, ln, *sk, fr], title="t")
    assert fig.layout.scene.aspectmode == "data" and len(fig.data) == 5
    with pytest.raises(ValueError, match="ends: expected shape"):
        lines3d(pts[:3], pts[:2])
