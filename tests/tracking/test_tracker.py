"""The learned tracker Theta = Omega(Phi, Psi, V): sampling, solves, gradients through the solver, training stages,
exact resume, evaluation, checkpoints and bad input."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from nrsfm_kit.solver.config import SolverConfig
from nrsfm_kit.tracking.data import (
    SPLIT_SEEDS,
    TrackingSample,
    node_translations_from_scene_flow,
    synthetic_tracking_pairs,
)
from nrsfm_kit.tracking.evaluate import ABLATION_ROWS, evaluate, paper_ordering, summarise
from nrsfm_kit.tracking.model import NeuralTracker, TrackerConfig, sample_targets
from nrsfm_kit.tracking.training import (
    StageConfig,
    load_tracker,
    preset,
    save_tracker,
    supervised_weight_targets,
    train_stage,
)
from nrsfm_kit.utils.testing import gradcheck64

SMALL = TrackerConfig(width=0.125, train_correspondences=500, solver=SolverConfig(min_cluster_correspondences=100))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return synthetic_tracking_pairs("train", 2, 64, 128, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


def _identity_epe(s: TrackingSample) -> float:
    sf = s.scene_flow[s.object_mask & (s.graph.pixel_anchors >= 0).any(-1) & (s.source_depth > 0)]
    sf = sf[torch.isfinite(sf).all(-1)]
    return float(sf.norm(dim=-1).mean()) * 1e3


def test_splits_are_disjoint_scenes(pairs):
    assert len({v for v in SPLIT_SEEDS.values()}) == 3
    assert pairs[0].name == "train-0" and pairs[1].name == "train-1"
    for s in pairs:
        s.validate()
        assert s.graph.num_nodes > 10
        assert torch.isfinite(s.node_translations).all()


def test_sample_targets_bilinear_values_validity_and_gradcheck():
    H, W = 4, 5
    pts = torch.rand(1, H, W, 3, dtype=torch.float64)
    valid = torch.ones(1, H, W, dtype=torch.bool)
    valid[0, 0, 0] = False
    corr = torch.tensor([[[[1.5, 2.25], [0.5, 0.5], [4.5, 1.0], [3.0, 3.0], [float("nan"), 1.0]]]],
                        dtype=torch.float64)  # (1, 1, 5, 2)
    y, ok, _ = sample_targets(corr, pts, valid)
    assert ok.tolist() == [[[True, False, False, True, False]]]  # a neighbour invalid / outside / NaN
    p = pts[0]
    expect = 0.75 * (0.5 * p[2, 1] + 0.5 * p[2, 2]) + 0.25 * (0.5 * p[3, 1] + 0.5 * p[3, 2])
    torch.testing.assert_close(y[0, 0, 0], expect)
    torch.testing.assert_close(y[0, 0, 3], p[3, 3])
    c = torch.tensor([[[[1.3, 2.4], [2.6, 0.7]]]], dtype=torch.float64, requires_grad=True)
    assert gradcheck64(lambda c_, q: sample_targets(c_, q, valid)[0], (c, pts), (0, 1))


def test_gt_correspondences_reach_the_solver_floor(pairs):
    tracker = NeuralTracker(SMALL)
    m = evaluate(tracker, pairs, correspondences="gt")
    ident = sum(_identity_epe(s) for s in pairs) / len(pairs)
    # exact correspondences: the graph + 3 LM iterations recover the motion to a few millimetres
    assert m["solved_pairs"] == 2
    assert m["epe_3d_mm"] < 10.0 and m["epe_3d_mm"] < 0.4 * ident
    assert m["graph_error_3d_mm"] < 12.0


def test_gradients_flow_through_the_solver_into_phi_and_psi(pairs):
    tracker = NeuralTracker(SMALL).train()
    batch, results = tracker.track(pairs[:1], weights=True)
    assert results[0].solved and 0 < results[0].used <= SMALL.train_correspondences
    loss = results[0].translations.square().sum() + 0 * batch["weights"].sum()
    loss.backward()
    gphi = sum(float(p.grad.abs().sum()) for p in tracker.phi.parameters() if p.grad is not None)
    gpsi = sum(float(p.grad.abs().sum()) for p in tracker.psi.parameters() if p.grad is not None)
    assert gphi > 0 and gpsi > 0  # the weights only enter the energy: Psi learns through the solve


def test_without_psi_weights_are_one(pairs):
    tracker = NeuralTracker(replace(SMALL, use_weights=False)).eval()
    with torch.no_grad():
        batch, _ = tracker.track(pairs[:1])
    assert torch.equal(batch["weights"], torch.ones_like(batch["weights"]))


def test_supervised_labels():
    y = torch.tensor([[0.0, 0, 0], [0.2, 0, 0], [0.5, 0, 0], [0.05, 0, 0]])
    p = torch.zeros(4, 3)
    sf = torch.zeros(4, 3)
    sf[3, 0] = float("nan")
    labels, has = supervised_weight_targets(y, torch.ones(4, dtype=torch.bool), p, sf)
    assert labels.tolist() == [1.0, 0.0, 0.0, 0.0] and has.tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="thresholds"):
        supervised_weight_targets(y, torch.ones(4, dtype=torch.bool), p, sf, (0.3, 0.1))


@pytest.mark.parametrize("stage", ["pretrain", "flow", "solver", "mask", "refine", "supervised"])
def test_every_stage_trains_only_its_network(pairs, stage):
    tracker = NeuralTracker(SMALL)
    before = copy.deepcopy(tracker.state_dict())
    res = train_stage(tracker, stage, pairs, StageConfig(steps=2, optimizer="adam", lr=1e-3, batch_size=2),
                      weights=preset("teaching").weights(stage), progress=False, log_every=1)
    assert res.step == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in res.history)
    moved = {n: any(not torch.equal(v, before[k]) for k, v in tracker.state_dict().items() if k.startswith(n))
             for n in ("phi", "psi")}
    trains = {"pretrain": {"phi"}, "flow": {"phi"}, "solver": {"phi"}, "mask": {"psi"}, "refine": {"phi", "psi"}, "supervised": {"psi"}}
    assert {n for n, m in moved.items() if m} == trains[stage]


def test_training_resumes_exactly(pairs, tmp_path):
    cfg = StageConfig(steps=4, optimizer="sgd", lr=1e-3, batch_size=1)
    w = preset("teaching").weights("solver")
    torch.manual_seed(0)
    a = NeuralTracker(SMALL)
    b = copy.deepcopy(a)
    train_stage(a, "solver", pairs, cfg, weights=w, seed=3, progress=False)
    train_stage(b, "solver", pairs, replace(cfg, steps=2), weights=w, seed=3, out_dir=tmp_path, progress=False,
                checkpoint_every=1)
    c = copy.deepcopy(b)  # a fresh process would rebuild the model; the checkpoint restores everything
    train_stage(c, "solver", pairs, cfg, weights=w, seed=3, out_dir=tmp_path, progress=False)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(c.state_dict()[k], v, rtol=0, atol=1e-6)


def test_checkpoint_round_trip_and_wrong_width(tmp_path):
    t = NeuralTracker(SMALL)
    path = save_tracker(tmp_path / "t.pt", t)
    u = load_tracker(path)
    assert u.config.width == SMALL.width
    assert not any(m.training for m in u.modules())  # loaded for inference, like the matcher's loader
    for k, v in t.state_dict().items():
        assert torch.equal(u.state_dict()[k], v)
    with pytest.raises(ValueError, match="width"):
        load_tracker(path, TrackerConfig(width=0.25))
    torch.save({"model": NeuralTracker(TrackerConfig(width=0.25)).state_dict()}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="another width or architecture"):
        load_tracker(tmp_path / "other.pt", SMALL)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_tracker(tmp_path / "missing.pt")


def test_bad_inputs(pairs):
    tracker = NeuralTracker(SMALL)
    with pytest.raises(ValueError, match="correspondences: expected one of"):
        tracker.track(pairs, correspondences="sift")
    with pytest.raises(ValueError, match="samples: expected at least one"):
        tracker.track([])
    other = replace(pairs[0], source_color=pairs[0].source_color[:, :, :64], target_color=pairs[0].target_color[:, :, :64],
                    source_depth=pairs[0].source_depth[:, :64], target_depth=pairs[0].target_depth[:, :64])
    with pytest.raises(ValueError, match="one image size per batch"):
        tracker.track([pairs[0], other])
    s = pairs[0]
    with pytest.raises(ValueError, match="divisible by 64"):
        tracker.correspond(s.source_color[None, :, :60], s.target_color[None, :, :60], s.target_depth[None, :60],
                           s.intrinsics[None], s.source_depth[None, :60])
    with pytest.raises(ValueError, match="object_mask"):
        replace(s, object_mask=torch.zeros_like(s.object_mask)).validate()
    with pytest.raises(ValueError, match="source_depth: expected some valid depth"):
        replace(s, source_depth=torch.full_like(s.source_depth, float("nan"))).validate()
    with pytest.raises(ValueError, match="width"):
        TrackerConfig(width=0)
    with pytest.raises(ValueError, match="stage"):
        train_stage(tracker, "flows", pairs, StageConfig(steps=1))
    with pytest.raises(ValueError, match="preset"):
        preset("huge")
    with pytest.raises(ValueError, match="split"):
        synthetic_tracking_pairs("holdout", 1, 64, 64)
    with pytest.raises(ValueError, match="height: expected a positive multiple of 64"):
        synthetic_tracking_pairs("train", 1, 60, 64)


def test_node_translations_from_scene_flow_reads_node_pixels():
    intr = torch.tensor([100.0, 100.0, 2.0, 2.0])
    sf = torch.arange(5 * 5 * 3, dtype=torch.float32).view(5, 5, 3)
    valid = torch.ones(5, 5, dtype=torch.bool)
    valid[0, 0] = False
    nodes = torch.tensor([[0.0, 0.0, 1.0], [0.01, -0.01, 1.0], [-0.02, -0.02, 1.0], [1.0, 0, 1.0]])
    t = node_translations_from_scene_flow(nodes, sf, valid, intr)
    torch.testing.assert_close(t[0], sf[2, 2])
    torch.testing.assert_close(t[1], sf[1, 3])
    assert torch.isnan(t[2]).all() and torch.isnan(t[3]).all()  # invalid pixel / outside the image


def test_ordering_checks_and_summary():
    rows = {"dis": 60, "phi_c": 50, "phi_cgw": 40, "phi_c+psi_sup": 30, "phi_cgw+psi_self": 20, "gt": 5}
    per_seed = {r: [{"epe_3d_mm": v, "graph_error_3d_mm": v}, {"epe_3d_mm": v + 2, "graph_error_3d_mm": v}]
                for r, v in rows.items()}
    s = summarise(per_seed)
    assert s["phi_c"]["epe_3d_mm"] == (51.0, 1.0) and set(s) == set(ABLATION_ROWS)
    assert all(paper_ordering(s).values())
    per_seed["phi_cgw"] = [{"epe_3d_mm": 55, "graph_error_3d_mm": 30}]
    checks = paper_ordering(summarise(per_seed))
    assert not checks["phi_cgw < phi_c (epe_3d_mm)"] and checks["phi_cgw < phi_c (graph_error_3d_mm)"]
