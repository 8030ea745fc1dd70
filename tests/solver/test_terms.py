"""Residual terms as units: a new term in one class, robust losses (IRLS), the image-sampled terms in solves."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.geometry import project
from nrsfm_kit.kernels.warp_field import warp_points_torch
from nrsfm_kit.solver import EnergyTerms, SolverConfig, prepare_problem, solve_deformation, solve_problem
from nrsfm_kit.solver.robust import ROBUST_LOSSES, Robust, robust_loss
from nrsfm_kit.solver.terms import (
    Depth,
    Heatmap,
    Photometric,
    PointSet,
    PointTerm,
    PointToPlane,
    PointToPoint,
    Silhouette,
)
from nrsfm_kit.utils.testing import assert_parity


def kw(s, **extra):
    return {"anchors": s.anchors, "anchor_weights": s.anchor_weights, **extra}


def errors(s, T, b=None):
    Bn = T.rotations.shape[0]
    q = torch.stack([warp_points_torch(s.source_points, s.anchors, s.anchor_weights, s.graph.nodes,
                                       T.rotations[k], T.translations[k]) for k in range(Bn)])
    return (q - s.target_points[:Bn]).norm(dim=-1)


class MyPointToPlane(PointTerm):
    """A user's new term, one class: point-to-plane written in plain torch (both backends)."""

    def __init__(self, points, target, normals, weight=1.0, w=None):
        super().__init__(points, weight, w, name="my_plane")
        self.target, self.normals = target, normals

    def residual(self, q, backend):
        w = self.row_weight
        r = (w * (self.normals * (q - self.target)).sum(-1)).unsqueeze(-1)
        return r, (w.unsqueeze(-1) * self.normals).unsqueeze(-2)


def _plane_problem(s, outliers: bool, term_cls, loss="huber", weight_grad="stop"):
    """Point-to-plane + weak point-to-point (no 2D / depth), 10 % of the targets 5 cm off when ``outliers``."""
    tp = s.target_points.clone()
    if outliers:
        g = torch.Generator().manual_seed(0)
        bad = torch.rand(tp.shape[:2], generator=g) < 0.1
        tp = tp + bad.unsqueeze(-1) * 0.05 * s.target_normals
    prob = prepare_problem(s.graph, s.source_points, s.correspondences, s.weights, s.target_depth, s.intrinsics,
                           terms=EnergyTerms(lambda_2d=0.0, lambda_depth=0.0, lambda_arap=1.0),
                           min_cluster_correspondences=100, **kw(s))
    ps = PointSet.make(s.source_points.expand(tp.shape[0], -1, -1), s.anchors, s.anchor_weights)
    # a sheet slides freely under point-to-plane alone: a weak point-to-point term pins it (as DynamicFusion)
    terms = [PointToPoint(ps, tp, weight=0.1), term_cls(ps, tp, s.target_normals, weight=1.0)]
    if loss is not None:
        terms = [Robust(t, loss, scale=0.005, weight_grad=weight_grad) for t in terms]
    return prob.with_terms(terms)


def test_new_term_in_one_class_is_solved_and_equals_the_builtin(rigid):
    cfg = SolverConfig(method="gn", max_iter=8, min_cluster_correspondences=100)
    T_mine, h_mine = solve_problem(_plane_problem(rigid, True, MyPointToPlane), cfg)
    T_ref, h_ref = solve_problem(_plane_problem(rigid, True, PointToPlane), cfg)
    torch.testing.assert_close(T_mine.translations, T_ref.translations, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(T_mine.rotations, T_ref.rotations, atol=1e-6, rtol=1e-5)
    assert "my_plane" in h_mine and "plane" in h_ref
    # robust: with 10 % outliers Huber stays below 1 mm, plain least squares does not
    err_robust = errors(rigid, T_mine)
    T_ls, _ = solve_problem(_plane_problem(rigid, True, PointToPlane, loss=None), cfg)
    err_ls = errors(rigid, T_ls)
    assert err_robust.mean() < 1e-3, f"{err_robust.mean() * 1e3:.3f} mm"
    assert err_ls.mean() > 3 * err_robust.mean(), (err_ls.mean(), err_robust.mean())


def test_new_term_parity_with_builtin_kernel(rigid):
    """The user's torch residual vs the Warp point-to-plane kernel: values and gradients (float64)."""
    prob = _plane_problem(rigid, False, MyPointToPlane, loss=None)
    mine = prob.terms[-1]
    ref = PointToPlane(mine.points, mine.target, mine.normals, weight=1.0)
    q = mine.points.points + 0.01
    assert_parity(lambda q: mine.residual(q, "warp"), lambda q: ref.residual(q, "warp"), [q], [0], tol=1e-12)


def _robust_plane(s, w, tp, weight_grad, scale=0.002):
    ps = PointSet.make(s.source_points.expand(2, -1, -1), s.anchors, s.anchor_weights)
    return Robust(PointToPlane(ps, tp, s.target_normals, weight=1.0, w=w), "cauchy", scale, weight_grad=weight_grad)


def _tiny_problem(s, extra):
    return prepare_problem(s.graph, s.source_points, s.correspondences, s.weights, s.target_depth, s.intrinsics,
                           terms=EnergyTerms(), min_cluster_correspondences=5, extra_terms=extra, **kw(s))


def test_robust_solve_gradcheck_through_weights_unrolled(tiny):
    """weight_grad="through" + unrolled backward is the exact derivative of the IRLS iterations."""
    s = tiny
    cfg = SolverConfig(min_cluster_correspondences=5, max_iter=2, backward="unrolled")

    def f(w, tp):
        T, _ = solve_problem(_tiny_problem(s, [_robust_plane(s, w, tp, "through")]), cfg)
        return T.translations

    w = s.weights.clone().requires_grad_()
    tp = (s.target_points + 0.003).clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (w, tp), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_stop_gradient_equals_the_frozen_weight_solve(tiny):
    """weight_grad="stop" (implicit): the gradient of a weighted least-squares solve whose IRLS weights are
    frozen at the solution: equal to the plain term with w_eff = w sqrt(omega*) held constant."""
    s = tiny
    cfg = SolverConfig(min_cluster_correspondences=5, max_iter=4, backward="implicit")
    tp = s.target_points + 0.003
    w = s.weights.clone().requires_grad_()
    term = _robust_plane(s, w, tp, "stop")
    T, _ = solve_problem(_tiny_problem(s, [term]), cfg)
    g_robust = torch.autograd.grad(T.translations.sum(), w)[0]
    # the IRLS weights at the solution T* (the last iteration's point, from which the differentiable step starts)
    with torch.no_grad():
        T_star, _ = solve_problem(_tiny_problem(s, [_robust_plane(s, s.weights, tp, "stop")]),
                                  SolverConfig(min_cluster_correspondences=5, max_iter=4, backward="unrolled"))
        r = term.term.values(s.graph.nodes, T_star.rotations, T_star.translations)
        sw = term.loss.sqrt_weight((r**2).sum(-1) / term.scale**2)  # (B, P)
    w2 = s.weights.clone().requires_grad_()
    ps = term.term.points
    plain = PointToPlane(ps, tp, s.target_normals, weight=1.0, w=w2 * sw)
    T2, _ = solve_problem(_tiny_problem(s, [plain]), SolverConfig(min_cluster_correspondences=5, max_iter=0,
                                                                   backward="implicit"), init=T_star)
    torch.testing.assert_close(T2.translations, T.translations)
    torch.testing.assert_close(torch.autograd.grad(T2.translations.sum(), w2)[0], g_robust)


def test_weight_grad_modes_differ_and_stop_detaches(tiny):
    s = tiny
    grads = {}
    for mode in ("stop", "through"):
        w = s.weights.clone().requires_grad_()
        prob = prepare_problem(s.graph, s.source_points, s.correspondences, s.weights, s.target_depth, s.intrinsics,
                               terms=EnergyTerms(lambda_2d=0.0), min_cluster_correspondences=5, **kw(s))
        ps = PointSet.make(s.source_points.expand(2, -1, -1), s.anchors, s.anchor_weights)
        term = Robust(PointToPlane(ps, s.target_points + 0.004, s.target_normals, w=w), "huber", 0.001,
                      weight_grad=mode)
        T, _ = solve_problem(prob.with_terms([term]), SolverConfig(min_cluster_correspondences=5))
        grads[mode] = torch.autograd.grad(T.translations.sum(), w)[0]
    assert (grads["stop"] - grads["through"]).abs().max() > 1e-6


@pytest.mark.parametrize("name", sorted(ROBUST_LOSSES))
def test_irls_weight_is_rho_prime_and_rho_is_quadratic_near_zero(name):
    loss = robust_loss(name)
    s = torch.tensor([1e-6, 0.3, 0.9, 1.5, 4.0, 30.0], dtype=torch.float64, requires_grad=True)
    (drho,) = torch.autograd.grad(loss.rho(s).sum(), s)
    torch.testing.assert_close(loss.weight(s.detach()), drho)
    small = torch.tensor([1e-8], dtype=torch.float64)
    torch.testing.assert_close(loss.rho(small), small, rtol=1e-6, atol=0)


def test_lm_accept_reject_uses_the_robust_energy(rigid):
    cfg = SolverConfig(method="lm", adaptive_damping=True, max_iter=6, min_cluster_correspondences=100)
    prob = _plane_problem(rigid, True, PointToPlane, loss="tukey")
    _, hist = solve_problem(prob, cfg)
    total = torch.stack(hist["total"], -1)
    assert (total[:, 1:] <= total[:, :-1] + 1e-12).all()  # never accepts a robust-energy increase
    # the reported plane energy is the Tukey energy: bounded by (number of points) x c^2 / 3
    assert (torch.stack(hist["plane"], -1) <= rigid.source_points.shape[0] * 0.005**2 / 3 + 1e-12).all()


def _texture(uv):
    u, v = uv[..., 0], uv[..., 1]
    return torch.stack([0.5 + 0.4 * torch.sin(u / 9.0) * torch.cos(v / 11.0), 0.5 + 0.4 * torch.cos(u / 13.0),
                        0.5 + 0.4 * torch.sin((u + v) / 10.0)], -1)


def _image_case(s):
    H, W = s.target_depth.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(H, dtype=s.intrinsics.dtype), torch.arange(W, dtype=s.intrinsics.dtype),
                            indexing="ij")
    uv_true = project(s.target_points, s.intrinsics)
    return H, W, torch.stack([xx, yy], -1), uv_true, s.intrinsics.expand(s.target_depth.shape[0], 4)


def _near_truth(s, offset=(0.01, -0.008, 0.0)):
    """The ground-truth node motions with every node shifted by ~1.3 cm (a few pixels): a start that
    depth + ARAP alone cannot correct (the shift is parallel to the image plane)."""
    from nrsfm_kit.solver import GraphMotion

    return GraphMotion(s.rotations, s.translations + torch.tensor(offset, dtype=s.translations.dtype))


def _depth_arap_problem(s, extra_terms):
    terms = EnergyTerms(lambda_2d=0.0, lambda_depth=1.0, lambda_arap=1.0)
    return prepare_problem(s.graph, s.source_points, s.correspondences, s.weights, s.target_depth, s.intrinsics,
                           terms=terms, min_cluster_correspondences=100, extra_terms=extra_terms, **kw(s))


def test_photometric_term_recovers_motion_without_2d(rigid):
    s = rigid
    H, W, grid, uv_true, intr = _image_case(s)
    B = s.target_depth.shape[0]
    image = _texture(grid).expand(B, H, W, 3)
    ps = PointSet.make(s.source_points.expand(B, -1, -1), s.anchors, s.anchor_weights)
    colors = _texture(uv_true)  # brightness constancy: the source colour is the target colour at the true pixel
    cfg = SolverConfig(method="lm", adaptive_damping=True, max_iter=12, min_cluster_correspondences=100)
    init = _near_truth(s)
    T0, _ = solve_problem(_depth_arap_problem(s, []), cfg, init=init)
    T, hist = solve_problem(_depth_arap_problem(s, [Photometric(ps, image, colors, intr, weight=10.0)]), cfg, init=init)
    e0, e = errors(s, T0).mean(), errors(s, T).mean()
    assert e < 0.2 * e0 and e < 1e-3, (e0, e)
    assert (hist["photometric"][-1] < 0.05 * hist["photometric"][0]).all()


def test_heatmap_term_recovers_motion(rigid):
    """DeepDeform sec. 4.2: one heatmap (Gaussian, std 7 px) per sparse match around its true pixel."""
    s = rigid
    H, W, grid, uv_true, intr = _image_case(s)
    B = s.target_depth.shape[0]
    idx = torch.arange(0, s.source_points.shape[0], 4)
    k = idx.numel()
    size = 64
    offset = (uv_true[:, idx] - size / 2).round()
    yy, xx = torch.meshgrid(torch.arange(size, dtype=uv_true.dtype), torch.arange(size, dtype=uv_true.dtype),
                            indexing="ij")
    c = (uv_true[:, idx] - offset)[..., None, None, :]
    heat = torch.exp(-((xx - c[..., 0]) ** 2 + (yy - c[..., 1]) ** 2) / (2 * 7.0**2))  # (B, k, size, size)
    ps = PointSet.make(s.source_points[idx].expand(B, -1, -1), s.anchors[idx], s.anchor_weights[idx])
    term = Heatmap(ps, heat.contiguous(), intr, offset=offset, weight=1.0)
    assert term.map_index.tolist() == list(range(k))
    cfg = SolverConfig(method="lm", adaptive_damping=True, max_iter=15, min_cluster_correspondences=100)
    init = _near_truth(s)
    T0, _ = solve_problem(_depth_arap_problem(s, []), cfg, init=init)
    T, _ = solve_problem(_depth_arap_problem(s, [term]), cfg, init=init)
    e0, e = errors(s, T0).mean(), errors(s, T).mean()
    assert e < 0.1 * e0 and e < 2e-3, (e0, e)


def test_silhouette_term_pulls_points_into_the_mask(rigid):
    s = rigid
    H, W, grid, uv_true, intr = _image_case(s)
    B = s.target_depth.shape[0]
    mask = torch.zeros(B, H, W, dtype=torch.bool)
    px = uv_true.round().long()
    for b in range(B):
        ok = (px[b, :, 0] >= 0) & (px[b, :, 0] < W) & (px[b, :, 1] >= 0) & (px[b, :, 1] < H)
        mask[b, px[b, ok, 1], px[b, ok, 0]] = True
    mask = torch.nn.functional.max_pool2d(mask.float()[:, None], 5, 1, 2)[:, 0] > 0  # close the footprint
    ps = PointSet.make(s.source_points.expand(B, -1, -1), s.anchors, s.anchor_weights)
    term = Silhouette(ps, mask, intr, weight=1.0)
    prob = _depth_arap_problem(s, [term])
    cfg = SolverConfig(method="lm", adaptive_damping=True, max_iter=10, min_cluster_correspondences=100)
    T, hist = solve_problem(prob, cfg)
    assert hist["silhouette"][0].min() > 0
    assert (hist["silhouette"][-1] < 0.05 * hist["silhouette"][0]).all(), hist["silhouette"]


def test_extra_terms_through_solve_deformation(rigid):
    s = rigid
    ps = PointSet.make(s.source_points.expand(2, -1, -1), s.anchors, s.anchor_weights)
    extra = Depth(ps, s.target_points[..., 2], weight=0.5, name="my_depth")
    cfg = SolverConfig(method="gn", min_cluster_correspondences=100)
    T, info = solve_deformation(s.graph, s.source_points, s.correspondences, s.weights, s.target_depth, s.intrinsics,
                                **kw(s), config=cfg, max_iter=5, extra_terms=[extra])
    assert "my_depth" in info["energy_terms"] and set(info["energy_terms"]) >= {"2d", "depth", "arap", "sparse"}
    assert errors(s, T).max() < 1e-3


def test_solve_deformation_keeps_config_solver_and_iterations(rigid):
    s = rigid
    cfg = SolverConfig(method="gn", min_cluster_correspondences=100, max_iter=2, linear_solver="pcg")
    _, info = solve_deformation(s.graph, s.source_points, s.correspondences, s.weights, s.target_depth, s.intrinsics,
                                **kw(s), config=cfg)
    assert info["iterations"] == 2
    _, info = solve_deformation(s.graph, s.source_points, s.correspondences, s.weights, s.target_depth, s.intrinsics,
                                **kw(s), config=cfg, max_iter=4)
    assert info["iterations"] == 4


def test_term_bad_inputs(rigid):
    s = rigid
    ps = PointSet.make(s.source_points.expand(2, -1, -1), s.anchors, s.anchor_weights)
    with pytest.raises(ValueError, match=r"plane.normals: expected shape"):
        PointToPlane(ps, s.target_points, s.target_normals[..., :2])
    with pytest.raises(ValueError, match="plane.weight: expected a finite value >= 0"):
        PointToPlane(ps, s.target_points, s.target_normals, weight=-1.0)
    with pytest.raises(ValueError, match="loss: expected one of"):
        Robust(PointToPlane(ps, s.target_points, s.target_normals), "l1")
    with pytest.raises(ValueError, match="scale: expected a finite value > 0"):
        Robust(PointToPlane(ps, s.target_points, s.target_normals), "huber", scale=0.0)
    with pytest.raises(ValueError, match="term: expected a ResidualTerm"):
        Robust("plane")
    with pytest.raises(ValueError, match="points: expected a PointSet"):
        PointToPlane(s.source_points, s.target_points, s.target_normals)
    with pytest.raises(ValueError, match="heatmap.map_index: expected one heatmap per point"):
        Heatmap(ps, torch.zeros(2, 3, 8, 8, dtype=s.source_points.dtype), s.intrinsics.expand(2, 4))
    prob = _depth_arap_problem(s, [])
    with pytest.raises(ValueError, match=r"extra_terms\[0\]: expected a ResidualTerm"):
        prob.with_terms(["depth"])
    with pytest.raises(ValueError, match="prob.terms: expected at least one residual term"):
        solve_problem(prepare_problem(s.graph, s.source_points, s.correspondences, s.weights, s.target_depth,
                                      s.intrinsics, terms=EnergyTerms(lambda_2d=0, lambda_depth=0, lambda_arap=0),
                                      **kw(s)), SolverConfig())


def test_arap_term_follows_the_dtype_of_the_nodes(tiny):
    from nrsfm_kit.solver.terms import Arap

    s = tiny
    term = Arap(s.graph.edges)  # default float32 scales, float64 problem
    N = s.graph.nodes.shape[0]
    R = torch.eye(3, dtype=torch.float64).expand(1, N, 3, 3).contiguous()
    t = torch.full((1, N, 3), 0.01, dtype=torch.float64)
    blk = term.linearize(s.graph.nodes, R, t)
    assert blk.r.dtype == torch.float64 and term.values(s.graph.nodes, R, t).dtype == torch.float64
