import numpy as np
import pytest
import torch

from nrsfm_kit.viz.learned_tracking import ablation_figure, stage_curves_figure, weight_vs_error_figure


def test_stage_curves_figure_draws_present_keys_per_stage():
    hist = {"flow": [{"step": 5, "loss": 2.0, "l_corr": 2.0}, {"step": 10, "loss": 1.5, "l_corr": 1.5}],
            "mask": [{"step": 5, "loss": 9.0, "l_graph": 1e-3, "l_warp": None}]}
    fig = stage_curves_figure(hist)
    names = [(t.name, t.xaxis) for t in fig.data]
    assert names == [("loss", "x"), ("l_corr", "x"), ("loss", "x2"), ("l_graph", "x2")]  # l_warp: only None
    assert list(fig.data[1].y) == [2.0, 1.5] and list(fig.data[1].x) == [5, 10]
    assert [t.showlegend for t in fig.data] == [True, True, False, True]
    assert fig.layout.yaxis.type == "log"
    with pytest.raises(ValueError, match="histories"):
        stage_curves_figure({})


def test_ablation_figure_bars_and_error_bars():
    summary = {"dis": {"label": "DIS", "epe_3d_mm": [30.0, 1.0], "graph_error_3d_mm": [20.0, 0.5]},
               "gt": {"label": "GT", "epe_3d_mm": [8.0, 0.0], "graph_error_3d_mm": [6.0, 0.0]}}
    live = {"dis": {"epe_3d_mm": 31.0, "graph_error_3d_mm": 21.0}, "phi_c": {"epe_3d_mm": 25.0,
                                                                             "graph_error_3d_mm": 18.0}}
    fig = ablation_figure({"3 seeds": summary, "this run": live}, rows=["dis", "phi_c", "gt"])
    assert len(fig.data) == 4  # 2 tables x 2 metrics
    epe_summary, _, epe_live, _ = fig.data
    assert list(epe_summary.x) == ["DIS", "GT"] and list(epe_summary.y) == [30.0, 8.0]
    assert list(epe_summary.error_y.array) == [1.0, 0.0]
    assert list(epe_live.x) == ["DIS", "phi_c"] and epe_live.error_y.array is None
    stored = {"dis": {"epe_3d_mm": [None, None], "graph_error_3d_mm": [20.0, 0.5]}}  # a non-finite mean (JSON null)
    fig = ablation_figure({"stored": stored})
    assert len(fig.data[0].x) == 0 and list(fig.data[1].y) == [20.0]
    with pytest.raises(ValueError, match="metric"):
        ablation_figure({"bad": {"dis": {"epe_3d_mm": [1.0, 2.0, 3.0], "graph_error_3d_mm": 1.0}}})


def test_weight_vs_error_figure_bins():
    err = torch.tensor([1.0, 2.0, 15.0, 40.0, 500.0, float("nan")])
    w = np.array([0.9, 0.8, 0.5, 0.2, 0.0, 1.0])
    fig = weight_vs_error_figure({"psi": w}, err, edges=[0, 10, 30, 100])
    counts, mean = fig.data
    assert list(counts.y) == [2, 1, 1, 1]
    assert np.allclose(list(mean.y), [0.85, 0.5, 0.2, 0.0])
    with pytest.raises(ValueError, match="edges"):
        weight_vs_error_figure({"psi": w}, err, edges=[0, 0])
    with pytest.raises(ValueError, match=r"weights\['psi'\]"):
        weight_vs_error_figure({"psi": w[:3]}, err, edges=[0, 10])
