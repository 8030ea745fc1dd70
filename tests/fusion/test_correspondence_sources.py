"""Correspondence sources: DIS with and without its forward-backward consistency weights, the registry."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.fusion.correspondences import SOURCES, DISCorrespondences, FrameData, make_source
from nrsfm_kit.fusion.synthetic import fusion_sequence


def test_dis_weights_and_accuracy():
    seq = fusion_sequence("smoke", num_frames=3)
    p = seq.source.pair(0, 1)
    a = FrameData(seq.colors[0], seq.depths[0], seq.intrinsics)
    b = FrameData(seq.colors[1], seq.depths[1], seq.intrinsics)
    m = seq.masks[0] & p.flow_valid & p.visibility
    ys, xs = m.nonzero(as_tuple=True)
    px = torch.stack([xs, ys], 1).float()
    gt = px + p.optical_flow[ys, xs]
    tpx, w = DISCorrespondences()(a, b, px)
    assert bool((w == 1).all())
    tc, wc = DISCorrespondences(weights="consistency")(a, b, px)
    torch.testing.assert_close(tc, tpx)
    assert set(wc.unique().tolist()) <= {0.0, 1.0} and 0.3 < float(wc.mean()) < 1.0
    err = (tpx - gt).norm(dim=-1)
    # the consistent correspondences are the better ones
    assert float(err[wc == 1].median()) < float(err[wc == 0].median())
    with pytest.raises(ValueError, match="weights"):
        DISCorrespondences(weights="fb")
    with pytest.raises(ValueError, match="source_px"):
        DISCorrespondences()(a, b, torch.zeros(3))
    assert set(SOURCES) == {"none", "dis", "nnrt", "deepdeform"}
    assert not make_source("none").uses_correspondences and make_source("deepdeform").max_points == 100
