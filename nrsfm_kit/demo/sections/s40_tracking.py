"""Demo section: differentiable Gauss-Newton non-rigid tracking (Neural Non-Rigid Tracking §4.3, App. B)."""

from __future__ import annotations

import torch

from nrsfm_kit.demo import DemoSection

ORDER = 40
TITLE = "Differentiable Gauss-Newton tracking (Neural Non-Rigid Tracking §4.3)"


def run(smoke: bool) -> DemoSection:
    from nrsfm_kit.kernels.warp_field import warp_points_torch
    from nrsfm_kit.solver import EnergyTerms, SolverConfig, solve_deformation
    from nrsfm_kit.solver.learning import learn_correspondence_weights, plant_outliers, warp_error
    from nrsfm_kit.solver.synthetic import make_synthetic_tracking
    from nrsfm_kit.viz.tracking import alignment_figure, energy_figure, weights_figure

    sec = DemoSection(TITLE)
    grid = 11 if smoke else 24
    s = make_synthetic_tracking(batch=1, grid=grid, node_stride=3 if smoke else 4, size=0.3 if smoke else 0.4,
                                image_size=(90, 120) if smoke else (120, 160), focal=160.0 if smoke else 220.0,
                                motion="nonrigid", seed=3)
    P, N = s.source_points.shape[0], s.graph.num_nodes
    sec.text = (f"A curved sheet ({P} points, {N} graph nodes) bends and moves; correspondences are exact "
                "projections and the target depth is ray cast. The solver recovers the node motions from "
                "2D + depth + ARAP (eq. 8-11) with analytic Jacobians in Warp kernels, and gradients flow "
                "back through the linear solves (App. B.2).")
    common = {"anchors": s.anchors, "anchor_weights": s.anchor_weights}
    args = (s.graph, s.source_points, s.correspondences[0], s.weights[0], s.target_depth[0], s.intrinsics)

    sec.step("GN and LM solves, 6 iterations each")
    curves, T_gn = {}, None
    for name, cfg in (("GN", SolverConfig(method="gn")), ("LM (damping 0.1, reference)", SolverConfig()),
                      ("LM adaptive", SolverConfig(method="lm", adaptive_damping=True))):
        cfg.min_cluster_correspondences = 50
        T, info = solve_deformation(*args, **common, terms=EnergyTerms(lambda_arap=0.001), max_iter=6, config=cfg)
        curves[name] = info["energy"]
        if name == "GN":
            T_gn = T
    err = float(warp_error(s, T_gn))
    sec.add("GN, 6 iterations: mean point error", 1e3 * err, target="< 1", ok=err < 1e-3, unit="mm")
    drop = float(curves["GN"][-1] / curves["GN"][0])
    sec.add("GN energy ratio last / first", drop, target="< 1e-4", ok=drop < 1e-4, unit="ratio")

    sec.step("Warp vs torch backends, forward and backward")
    cfg_w = SolverConfig(min_cluster_correspondences=50, backend="warp")
    cfg_t = SolverConfig(min_cluster_correspondences=50, backend="torch")
    corr = s.correspondences[0].clone().requires_grad_()
    Tw, _ = solve_deformation(s.graph, s.source_points, corr, *args[3:], **common, config=cfg_w)
    gw = torch.autograd.grad(Tw.translations.sum(), corr)[0]
    corr2 = s.correspondences[0].clone().requires_grad_()
    Tt, _ = solve_deformation(s.graph, s.source_points, corr2, *args[3:], **common, config=cfg_t)
    gt = torch.autograd.grad(Tt.translations.sum(), corr2)[0]
    par_t = float((Tw.translations - Tt.translations).detach().abs().max())
    par_g = float((gw - gt).abs().max())
    sec.add("Warp vs torch reference: max |difference| of the node translations (float64)", par_t, target="< 1e-9",
            ok=par_t < 1e-9, unit="m")
    sec.add("Warp vs torch reference: max |difference| of d(sum t)/d(correspondences) (float64)", par_g,
            target="< 1e-9", ok=par_g < 1e-9, unit="m/px")
    cfg_p = SolverConfig(min_cluster_correspondences=50, linear_solver="pcg", cg_tol=1e-10)
    Tp, _ = solve_deformation(*args, **common, solver="pcg", config=cfg_p)
    pd = float((Tp.translations - Tw.translations).detach().abs().max())
    sec.add("PCG vs dense Cholesky: max |dt|", pd, target="< 1e-6", ok=pd < 1e-6, unit="m")

    sec.step(f"learning correspondence weights through the solver ({4 if smoke else 40} steps)")
    corr_o, out = plant_outliers(s, fraction=0.2, magnitude=12.0)
    res = learn_correspondence_weights(s, corr_o, out, steps=4 if smoke else 40, progress=False)
    sec.add("weight learning: warp error before -> after",
            f"{1e3 * res.error_before:.2f} -> {1e3 * res.error_after:.2f}", target="decreases",
            ok=res.error_after < res.error_before, unit="mm")
    wo, wi = float(res.weights[out].mean()), float(res.weights[~out].mean())
    sec.add("mean learned weight: outliers / inliers", f"{wo:.2f} / {wi:.2f}", target="outliers lower", ok=wo < wi,
            unit="weight in [0, 1]")

    warped = warp_points_torch(s.source_points, s.anchors, s.anchor_weights, s.graph.nodes, T_gn.rotations,
                               T_gn.translations)
    sec.figures.append(alignment_figure(s.source_points, warped, s.target_points[0], nodes=s.graph.nodes,
                                        title="GN alignment: source (grey), target (green), warped source (red)"))
    sec.figures.append(energy_figure(curves, title="energy per iteration: GN vs LM"))
    sec.figures.append(weights_figure(res.weights, out))
    return sec
