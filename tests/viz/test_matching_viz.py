import math

import numpy as np
import pytest
import torch

from nrsfm_kit.models.matcher import matcher_output
from nrsfm_kit.viz.matching import (
    flow_comparison_figure,
    heatmaps_figure,
    matches_figure,
    matching_table_figure,
    patch_pairs_figure,
    weights_image,
)


def _patches(k=3, s=16):
    p = torch.rand(k, 6, s, s)
    p[:, 5] = 1.0 + p[:, 5]
    p[0, 5, :2] = 0.0  # a depth hole
    return p


def test_patch_pairs_figure_panels_markers_and_holes():
    src, tgt = _patches(), _patches()
    tpx = torch.tensor([[3.0, 4.0], [float("nan"), float("nan")], [10.0, 2.0]])
    fig = patch_pairs_figure(src, tgt, tpx, visible=torch.tensor([True, False, False]), titles=["a", "b"],
                             max_rows=2)
    kinds = [t.type for t in fig.data]
    assert kinds.count("image") == 4 and kinds.count("heatmap") == 4  # 2 rows x (source, target)
    circles = [t for t in fig.data if t.type == "scatter" and t.name == "true match"]
    assert len(circles) == 2 and circles[0].x == (3.0,) and circles[0].y == (4.0,)  # row 1 only, both target panels
    assert sum(t.showlegend for t in circles) == 1
    assert fig.layout.annotations[0].text == "a: source RGB" and fig.layout.annotations[4].text == "b: source RGB"
    z = np.asarray(fig.data[1].z, dtype=float)
    assert np.isnan(z[:2]).all() and np.isfinite(z[2:]).all()  # Z = 0 is blank
    single = patch_pairs_figure(src[0], tgt[0])  # (6, S, S) alone
    assert [t.type for t in single.data].count("image") == 2
    with pytest.raises(ValueError, match="source: expected 6-channel"):
        patch_pairs_figure(src[:, :3], tgt[:, :3])
    with pytest.raises(ValueError, match="target: expected shape"):
        patch_pairs_figure(src, tgt[:2])
    with pytest.raises(ValueError, match="target_px"):
        patch_pairs_figure(src, tgt, tpx[:2])


def test_heatmaps_figure_marks_argmax_and_truth():
    logits = torch.full((2, 8, 8), -4.0)
    logits[1, 5, 2] = 6.0  # row 5, column 2 -> (x, y) = (2, 5)
    out = matcher_output(logits, torch.full((2, 8, 8), 1.25), torch.tensor([0.0, 2.0]))
    fig = heatmaps_figure(out, 1, target_px=torch.tensor([3.0, 5.0]))
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 4 and np.allclose(np.asarray(heat[2].z), out.heatmap[1].numpy())
    arg = [t for t in fig.data if t.name == "argmax of H"]
    assert len(arg) == 4 and arg[0].x == (2,) and arg[0].y == (5,)
    assert "V = 0.88" in fig.layout.title.text and "1.250 m" in fig.layout.title.text
    with pytest.raises(ValueError, match="index"):
        heatmaps_figure(out, 2)
    with pytest.raises(ValueError, match="target_px"):
        heatmaps_figure(out, 0, target_px=torch.zeros(3))


def test_weights_image_scatters_values():
    img = weights_image(torch.tensor([[0, 0], [2, 1]]), torch.tensor([0.5, 2.0]), (2, 3))
    assert img.shape == (2, 3) and img[0, 0] == 0.5 and img[1, 2] == 2.0
    assert np.isnan(img).sum() == 4
    with pytest.raises(ValueError, match="pixels: expected"):
        weights_image(torch.tensor([[3, 0]]), torch.tensor([1.0]), (2, 3))
    with pytest.raises(ValueError, match="pixels, values"):
        weights_image(torch.zeros(2, 2), torch.zeros(3), (2, 3))


def test_matching_table_figure_bars_per_metric():
    table = {"learned": {"mean_2d_px": 3.0, "mean_3d_m": 0.05, "acc_2d": 0.8, "acc_3d": math.nan},
             "sift": {"mean_2d_px": 6.0, "mean_3d_m": 0.2, "acc_2d": 0.7, "acc_3d": 0.6},
             "settings": {"pairs": 2}}
    fig = matching_table_figure(table, labels={"learned": "ours"})
    assert len(fig.data) == 4
    assert list(fig.data[0].x) == ["ours", "sift"] and list(fig.data[0].y) == [3.0, 6.0]
    assert list(fig.data[0].marker.color) == ["crimson", "steelblue"]
    assert list(fig.data[3].x) == ["sift"]  # NaN left out
    assert tuple(fig.layout.yaxis3.range) == (0, 1.1)
    fig = matching_table_figure(table, metrics=("acc_2d",), methods=["sift", "learned"])
    assert list(fig.data[0].x) == ["sift", "learned"]
    with pytest.raises(ValueError, match="methods"):
        matching_table_figure(table, methods=["orb"])
    with pytest.raises(ValueError, match="metrics"):
        matching_table_figure(table, metrics=("coverage",))


def test_matches_figure_groups_and_offsets():
    img = torch.rand(3, 10, 12)
    sp = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    tp = torch.tensor([[2.0, 2.0], [float("nan"), 0.0], [6.0, 7.0]])
    fig = matches_figure(img, img, sp, tp, accepted=torch.tensor([True, True, False]),
                         correct=torch.tensor([True, False, True]), gt_px=tp, gap=4)
    assert fig.data[0].type == "image" and np.asarray(fig.data[0].z).shape == (10, 28, 3)
    by = {t.name: t for t in fig.data[1:]}
    assert set(by) == {"rejected (1)", "accepted, correct (1)", "accepted, wrong (0)", "true match"}
    line = by["accepted, correct (1)"]
    assert list(line.x[:2]) == [1.0, 2.0 + 16] and list(line.y[:2]) == [2.0, 2.0]  # target shifted by W + gap
    assert by["rejected (1)"].line.dash == "dot"
    assert list(by["true match"].x) == [18.0, 22.0]  # the non-finite row is not drawn
    plain = matches_figure(img, img, sp, sp)
    assert [t.name for t in plain.data[1:]] == ["rejected (0)", "accepted (3)"]
    with pytest.raises(ValueError, match="target_color"):
        matches_figure(img, img[:, :5], sp, tp)
    with pytest.raises(ValueError, match="target_px"):
        matches_figure(img, img, sp, tp[:2])
    with pytest.raises(ValueError, match="accepted"):
        matches_figure(img, img, sp, tp, accepted=torch.ones(2, dtype=torch.bool))


def test_flow_comparison_figure_error_map():
    ref = torch.zeros(4, 5, 2)
    ref[..., 0] = 2.0
    pred = ref.clone()
    pred[0, 0] = torch.tensor([2.0, 30.0])
    pred[1, 1] = float("nan")
    valid = torch.ones(4, 5, dtype=torch.bool)
    valid[3] = False
    fig = flow_comparison_figure(ref, pred, valid, names=("released", "ours"), max_error=10)
    err = np.asarray(fig.data[2].z, dtype=float)
    assert err[0, 0] == 10.0 and err[0, 1] == 0.0  # clipped at max_error
    assert np.isnan(err[1, 1]) and np.isnan(err[3]).all()
    assert fig.layout.annotations[0].text == "released"
    with pytest.raises(ValueError, match="predicted"):
        flow_comparison_figure(ref, pred[..., :1], valid)
    with pytest.raises(ValueError, match="valid"):
        flow_comparison_figure(ref, pred, valid[:2])
    with pytest.raises(ValueError, match="max_error"):
        flow_comparison_figure(ref, pred, valid, max_error=0)
