"""Bad input: documented behaviour (masked, damped, or a clear error), never NaN in T or in gradients."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.solver import EnergyTerms, SolverConfig, solve_deformation
from nrsfm_kit.solver.synthetic import make_synthetic_tracking


def kw(s, **extra):
    return {"anchors": s.anchors, "anchor_weights": s.anchor_weights, **extra}


def run(s, corr=None, w=None, depth=None, points=None, cfg=None, **extra):
    corr = (s.correspondences if corr is None else corr).clone().requires_grad_()
    w = (s.weights if w is None else w).clone().requires_grad_()
    depth = (s.target_depth if depth is None else depth).clone().requires_grad_()
    cfg = cfg or SolverConfig(min_cluster_correspondences=5)
    T, info = solve_deformation(s.graph, s.source_points if points is None else points, corr, w, depth, s.intrinsics,
                                **kw(s), config=cfg, **extra)
    grads = torch.autograd.grad(T.translations.sum() + T.rotations.sum(), [corr, w, depth], allow_unused=True)
    for x in (T.rotations, T.translations, *[g for g in grads if g is not None]):
        assert torch.isfinite(x).all()
    return T, info, grads


def is_identity(T, mask):
    eye = torch.eye(3, dtype=T.rotations.dtype)
    return torch.allclose(T.rotations[mask], eye.expand_as(T.rotations[mask])) and bool(
        (T.translations[mask] == 0).all())


def test_no_valid_correspondences_gives_identity_and_empty_mask(tiny):
    nan = torch.full_like(tiny.correspondences, float("nan"))
    T, info, grads = run(tiny, corr=nan)
    assert not info["valid_nodes"].any() and not info["valid_points"].any()
    assert is_identity(T, torch.ones(T.translations.shape[:2], dtype=torch.bool))
    assert (grads[0] == 0).all()
    T, info, _ = run(tiny, w=torch.zeros_like(tiny.weights))
    assert not info["valid_nodes"].any()


def test_default_cluster_threshold_freezes_small_problems(tiny):
    T, info, _ = run(tiny, cfg=SolverConfig())  # 2000 correspondences per cluster (reference default)
    assert not info["valid_nodes"].any() and int(info["cluster_correspondences"].max()) < 2000


def test_nan_correspondences_are_masked(rigid):
    corr = rigid.correspondences.clone()
    corr[:, ::5, 0] = float("nan")
    cfg = SolverConfig(method="gn", min_cluster_correspondences=100)
    T, info, grads = run(rigid, corr=corr, cfg=cfg)
    assert not info["valid_points"][:, ::5].any()
    assert (grads[0][:, ::5] == 0).all()
    from nrsfm_kit.kernels.warp_field import warp_points_torch

    q = warp_points_torch(rigid.source_points, rigid.anchors, rigid.anchor_weights, rigid.graph.nodes,
                          T.rotations[0], T.translations[0])
    assert (q - rigid.target_points[0]).norm(dim=-1).max() < 1e-3  # still recovered from the others


def test_disconnected_cluster_without_data_is_frozen():
    s = make_synthetic_tracking(batch=1, grid=10, node_stride=3, size=0.2, sheets=2, image_size=(60, 160),
                                focal=120.0, motion="rigid", seed=4)
    P = s.source_points.shape[0]
    w = s.weights.clone()
    w[:, P // 2:] = 0  # the second sheet (cluster 1) loses its correspondences
    T, info, _ = run(s, w=w, cfg=SolverConfig(method="gn", min_cluster_correspondences=20), max_iter=5)
    valid = info["valid_nodes"][0]
    assert valid[s.graph.clusters == 0].all() and not valid[s.graph.clusters == 1].any()
    assert is_identity(T, info["valid_nodes"].logical_not())
    assert (T.translations[0, s.graph.clusters == 0].abs().sum(-1) > 0).all()


def test_points_behind_camera_and_invalid_source_depth(tiny):
    pts = tiny.source_points.clone()
    pts[:5, 2] = -0.5  # invalid source depth: masked
    pts[5:8, 2] = float("nan")
    _, info, _ = run(tiny, points=pts)
    assert not info["valid_points"][:, :8].any()
    # an initial motion that moves everything behind the camera: 2D rows masked, depth rows pull back
    from nrsfm_kit.solver import GraphMotion

    N = tiny.graph.num_nodes
    init = GraphMotion(torch.eye(3, dtype=torch.float64).expand(N, 3, 3), torch.tensor([0.0, 0.0, -3.0]).expand(N, 3).double())
    T, info, _ = run(tiny, init=init, cfg=SolverConfig(method="gn", min_cluster_correspondences=5), max_iter=4)
    assert info["energy_terms"]["2d"][:, 0].eq(0).all()


def test_singular_system_is_damped(tiny):
    # depth only, no regulariser, undamped GN: J^T J is rank deficient (x, y and rotations free)
    terms = EnergyTerms(lambda_2d=0.0, lambda_arap=0.0)
    T, info, _ = run(tiny, cfg=SolverConfig(method="gn", min_cluster_correspondences=5), terms=terms)
    assert torch.isfinite(info["energy"]).all()
    for solver in ("pcg",):
        T, info, _ = run(tiny, cfg=SolverConfig(method="gn", min_cluster_correspondences=5), terms=terms, solver=solver)


def test_invalid_target_depth_switches_the_depth_term_off(tiny):
    depth = tiny.target_depth.clone()
    depth[:] = float("nan")
    _, info, _ = run(tiny, depth=depth)
    assert (info["energy_terms"]["depth"] == 0).all() and (info["energy_terms"]["2d"][:, 0] > 0).all()


def test_clear_errors(tiny):
    s = tiny
    base = (s.graph, s.source_points, s.correspondences, s.weights, s.target_depth, s.intrinsics)

    def call(*a, **k):
        return solve_deformation(*a, **{**kw(s), **k})

    with pytest.raises(ValueError, match=r"correspondences: expected shape \(B, 49, 2\)"):
        call(s.graph, s.source_points, s.correspondences[..., :1].expand(2, -1, 2)[:, :10], *base[3:])
    with pytest.raises(ValueError, match="weights: expected finite"):
        call(*base[:3], torch.full_like(s.weights, float("nan")), *base[4:])
    with pytest.raises(ValueError, match="graph: expected a DeformationGraph"):
        call("graph", *base[1:])
    with pytest.raises(ValueError, match="intrinsics"):
        call(*base[:5], torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="target_normals: expected"):
        call(*base, terms=EnergyTerms(lambda_plane=1.0))
    with pytest.raises(ValueError, match="anchors: expected ids in"):
        solve_deformation(*base, anchors=s.anchors + 100, anchor_weights=s.anchor_weights)
    with pytest.raises(ValueError, match="correspondences: expected dtype"):
        call(s.graph, s.source_points, s.correspondences.float(), *base[3:])
    with pytest.raises(ValueError, match="solver"):
        call(*base, solver="qr")
    with pytest.raises(ValueError, match="method: expected one of"):
        SolverConfig(method="newton")
    with pytest.raises(ValueError, match="damping"):
        SolverConfig(damping=-1.0)
    with pytest.raises(ValueError, match="terms.lambda_2d"):
        EnergyTerms(lambda_2d=float("nan"))
    with pytest.raises(ValueError, match="config: expected a SolverConfig"):
        call(*base, config={"method": "gn"})
