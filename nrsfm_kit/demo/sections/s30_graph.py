"""Demo section: embedded deformation graph on a synthetic RGB-D surface, warp field Q in Warp."""

from __future__ import annotations

import torch

from nrsfm_kit.demo import DemoSection

ORDER = 30
TITLE = "Deformation graph + warp field (Neural Non-Rigid Tracking §3)"


def run(smoke: bool) -> DemoSection:
    from nrsfm_kit.geometry import depth_to_points, random_rotation
    from nrsfm_kit.graph import build_graph_with_info
    from nrsfm_kit.graph.build import coverage_distances
    from nrsfm_kit.graph.synthetic import bend_field, node_motion_from_field, synthetic_depth
    from nrsfm_kit.kernels.warp_field import arap_residuals, warp_point_image, warp_point_image_torch
    from nrsfm_kit.viz.graph import graph_figure

    sec = DemoSection(TITLE)
    H, W = (90, 120) if smoke else (240, 320)
    sec.step("depth mesh, erosion, node sampling, edges, anchors")
    depth, mask, intr = synthetic_depth(H, W, "wave", extent=0.6)
    graph, info = build_graph_with_info(depth, mask, intr)
    sigma = graph.node_coverage
    sec.text = (f"A {W}x{H} synthetic wave seen by a pinhole camera: depth mesh, erosion, sigma-coverage "
                f"sampling (sigma = {sigma} m), geodesic edges (Dijkstra), clusters and 4 pixel anchors; "
                "then the warp field Q (Warp kernel) under a rigid motion and a smooth bend.")
    sec.add("nodes", graph.num_nodes, unit="count")
    sec.add("clusters (nodes per cluster)", str(graph.cluster_sizes.tolist()), unit="count")
    cov = float(coverage_distances(info.mesh.vertices[info.non_eroded], graph.nodes.double().numpy()).max())
    sec.add("max vertex-to-node distance", cov, target=f"<= sigma = {sigma}", ok=cov <= sigma + 1e-6, unit="m")
    has = (graph.pixel_anchors >= 0).any(-1)
    werr = float((graph.pixel_weights.sum(-1)[has] - 1).abs().max())
    sec.add("anchor weight sum error", werr, target="< 1e-5", ok=werr < 1e-5, unit="ratio")

    sec.step("warp field Q (Warp kernel) under a rigid motion and a bend")
    pts, _ = depth_to_points(torch.from_numpy(depth).double(), torch.from_numpy(intr))
    nodes = graph.nodes.double()
    w = graph.pixel_weights.double()
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
    Rg = random_rotation(1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)[0]
    T = torch.tensor([0.05, -0.02, 0.1], dtype=torch.float64)
    R = Rg.expand(graph.num_nodes, 3, 3).contiguous()
    t = nodes @ Rg.T + T - nodes
    rigid = float((warp_point_image(pts, graph.pixel_anchors, w, nodes, R, t) - (pts @ Rg.T + T))[has].abs().max())
    sec.add("rigid motion: max |Q(p) - (Rp + T)|", rigid, target="< 1e-9", ok=rigid < 1e-9, unit="m")
    arap = float(arap_residuals(nodes, graph.edges, R, t).abs().max())
    sec.add("rigid motion: max ARAP residual", arap, target="< 1e-9", ok=arap < 1e-9, unit="m")

    centre = nodes.mean(0)
    field = lambda p: bend_field(p, centre, 0.5, (0.01, 0.02, 0.0))  # noqa: E731
    R, t = node_motion_from_field(nodes, field)
    Q = warp_point_image(pts, graph.pixel_anchors, w, nodes, R, t)
    err = float((Q - field(pts)).norm(dim=-1)[has].mean())
    sec.add("bend (0.5 rad/m): mean |Q(p) - f(p)|", 1e3 * err, target="< 2", ok=err < 2e-3, unit="mm")
    ref = warp_point_image_torch(pts, graph.pixel_anchors, w, nodes, R, t)
    parity = float((Q - ref).abs().max())
    sec.add("Warp vs torch reference, max difference (float64)", parity, target="< 1e-12", ok=parity < 1e-12, unit="m")

    valid = torch.from_numpy(mask) & has
    sec.figures.append(graph_figure(graph, pts, valid, weight_node=graph.num_nodes // 2,
                                    title="nodes (by cluster), edges and the skinning weight of one node"))
    return sec
