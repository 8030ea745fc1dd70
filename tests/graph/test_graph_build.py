"""Deformation graph construction: each step against brute force / hand-made cases, end-to-end properties
on synthetic surfaces with exact ground truth and on the real DeepDeform frame, and bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from nrsfm_kit.geometry import depth_to_points
from nrsfm_kit.graph import GraphConfig, build_graph, build_graph_with_info
from nrsfm_kit.graph.build import (
    compute_clusters,
    coverage_distances,
    depth_to_mesh,
    edges_from_distances,
    erode_mesh,
    euclidean_anchors,
    geodesic_distances,
    mesh_adjacency,
    remap_edges,
    remove_weak_nodes,
    sample_nodes,
)
from nrsfm_kit.graph.synthetic import bend_field, node_motion_from_field, synthetic_depth
from nrsfm_kit.kernels.warp_field import arap_residuals, warp_point_image

SIGMA = 0.05


@pytest.fixture(scope="module")
def wave():
    depth, mask, intr = synthetic_depth(90, 120, "wave", extent=0.6)
    graph, info = build_graph_with_info(depth, mask, intr)
    return depth, mask, intr, graph, info


def _check_graph_invariants(graph, info, K=8):
    graph.validate()
    N = graph.num_nodes
    e, w = graph.edges.numpy(), graph.edge_weights.numpy()
    valid = e >= 0
    assert e.shape == (N, K) and w.shape == (N, K)
    assert (valid.sum(1) >= 2).all() and (valid.sum(1) <= K).all()  # clean-up: > 1 neighbour
    assert (e < N).all() and (e != np.arange(N)[:, None]).all()  # no self edges, ids in range
    assert (np.diff(valid.astype(int), axis=1) <= 0).all()  # padding is trailing
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    assert (w[~valid] == 0).all() and (w[valid] > 0).all()
    sizes = graph.cluster_sizes.numpy()
    assert sizes.sum() == N and (sizes >= 3).all()
    np.testing.assert_array_equal(np.bincount(graph.clusters.numpy()), sizes)
    pa, pw = graph.pixel_anchors.numpy(), graph.pixel_weights.numpy()
    has = (pa >= 0).any(-1)
    np.testing.assert_allclose(pw.sum(-1)[has], 1.0, atol=1e-6)
    assert (pw[pa < 0] == 0).all() and (pa < N).all()
    # sigma-coverage: every non-eroded vertex lies within sigma of a sampled node; after the clean-up,
    # of a final node too unless the only nodes covering it were removed (weak / small cluster)
    V = info.mesh.vertices[info.non_eroded]
    cov = coverage_distances(V, info.mesh.vertices[info.sampled_vertex_ids])
    assert cov.max() <= graph.node_coverage + 1e-6
    final = coverage_distances(V, graph.nodes.double().numpy())
    if len(info.removed_weak) + len(info.removed_small_cluster) == 0:
        assert final.max() <= graph.node_coverage + 1e-6
    else:
        removed = info.sampled_vertex_ids[np.concatenate([info.removed_weak, info.removed_small_cluster])]
        near_removed = coverage_distances(V, info.mesh.vertices[removed]) <= graph.node_coverage
        assert (final[~near_removed] <= graph.node_coverage + 1e-6).all()


# ---------------------------------------------------------------------------------------------- mesh


def test_mesh_of_a_flat_grid_and_the_triangle_edge_limit():
    H, W = 3, 4
    pts = np.zeros((H, W, 3))
    pts[..., 0], pts[..., 1] = np.meshgrid(np.arange(W) * 0.01, np.arange(H) * 0.01)
    pts[..., 2] = 1.0
    valid = np.ones((H, W), bool)
    mesh = depth_to_mesh(pts, valid, 0.05)
    assert len(mesh.vertices) == 12 and len(mesh.faces) == 2 * (H - 1) * (W - 1)
    np.testing.assert_array_equal(mesh.vertex_pixels[5], [1, 1])  # row-major, (u, v)
    assert mesh.pixel_vertex[2, 3] == 11
    # an invalid pixel removes the (up to 6) triangles around it; a depth jump removes long triangles
    valid[1, 1] = False
    assert len(depth_to_mesh(pts, valid, 0.05).faces) == 12 - 6
    pts[:, 2:, 2] = 1.2
    valid[1, 1] = True
    faces = depth_to_mesh(pts, valid, 0.05).faces
    assert len(faces) == 2 * 2 * 2  # only the quads left and right of the jump survive
    assert np.ptp(pts.reshape(-1, 3)[np.asarray(faces)][..., 2], axis=1).max() == 0


def test_erosion_peels_the_boundary():
    H, W = 12, 12
    pts = np.zeros((H, W, 3))
    pts[..., 0], pts[..., 1] = np.meshgrid(np.arange(W) * 0.01, np.arange(H) * 0.01)
    pts[..., 2] = 1.0
    mesh = depth_to_mesh(pts, np.ones((H, W), bool), 0.05)
    V = len(mesh.vertices)
    assert erode_mesh(mesh.faces, V, 0, 4).all()
    one = erode_mesh(mesh.faces, V, 1, 4).reshape(H, W)
    assert not one[0].any() and not one[:, 0].any() and one[2:-2, 2:-2].all()  # corners / edges go
    many = erode_mesh(mesh.faces, V, 10, 4).reshape(H, W)
    assert many.sum() < one.sum()
    assert not erode_mesh(mesh.faces, V, 10, 7).any()  # interior vertices have exactly 6 faces


# ---------------------------------------------------------------------------------------------- nodes


def _greedy_brute_force(vertices, candidates, sigma):
    nodes = []
    for i in np.flatnonzero(candidates):
        if all(((vertices[i] - vertices[j]) ** 2).sum() > sigma**2 for j in nodes):
            nodes.append(i)
    return np.array(nodes)


def test_node_sampling_matches_the_reference_greedy_rule():
    rng = np.random.default_rng(0)
    vertices = rng.uniform(0, 0.3, size=(400, 3))
    cand = rng.uniform(size=400) < 0.8
    ids = sample_nodes(vertices, cand, SIGMA)
    np.testing.assert_array_equal(ids, _greedy_brute_force(vertices, cand, SIGMA))
    assert coverage_distances(vertices[cand], vertices[ids]).max() <= SIGMA
    d = np.linalg.norm(vertices[ids][:, None] - vertices[ids][None], axis=-1)
    assert d[~np.eye(len(ids), dtype=bool)].min() > SIGMA
    assert sample_nodes(vertices, np.zeros(400, bool), SIGMA).size == 0


# --------------------------------------------------------------------------------------- geodesics


def test_geodesic_distances_on_a_plane_bounded_by_euclidean():
    H, W, h = 20, 20, 0.01
    pts = np.zeros((H, W, 3))
    pts[..., 0], pts[..., 1] = np.meshgrid(np.arange(W) * h, np.arange(H) * h)
    pts[..., 2] = 1.0
    mesh = depth_to_mesh(pts, np.ones((H, W), bool), 0.05)
    adj = mesh_adjacency(mesh.vertices, mesh.faces)
    assert adj.nnz == 2 * (H * (W - 1) + W * (H - 1) + (H - 1) * (W - 1))  # h + v + one diagonal
    src, vid, dist = geodesic_distances(adj, np.array([0, 210]), limit=0.1, chunk=1)
    eu = np.linalg.norm(mesh.vertices[vid] - mesh.vertices[np.array([0, 210])[src]], axis=1)
    assert (dist >= eu - 1e-12).all() and (dist <= np.sqrt(2) * eu + 1e-12).all() and dist.max() <= 0.1
    # straight along the grid the geodesic is exact
    along = (src == 0) & (vid < W)
    np.testing.assert_allclose(dist[along], eu[along], atol=1e-12)


def test_edges_from_distances_nearest_first_and_weights():
    d = np.array([[0, 1, 2, np.inf], [1, 0, 3, 4], [2, 3, 0, np.inf], [np.inf, 4, np.inf, 0]]) * 0.01
    e, w, dist = edges_from_distances(d, 2, SIGMA)
    np.testing.assert_array_equal(e, [[1, 2], [0, 2], [0, 1], [1, -1]])
    expected = np.exp(-np.array([0.01, 0.02]) ** 2 / (2 * SIGMA**2))
    np.testing.assert_allclose(w[0], expected / expected.sum())
    np.testing.assert_allclose(w[3], [1, 0])
    assert np.isinf(dist[3, 1])


def test_weak_node_removal_is_iterative_and_remaps():
    # 0-1-2 triangle + 3 hanging on 2 + 4 hanging on 3: 4 has 1 neighbour, then 3 is left with 1
    e = np.array([[1, 2, -1], [0, 2, -1], [0, 1, 3], [4, -1, -1], [3, -1, -1]])
    keep = remove_weak_nodes(e)
    np.testing.assert_array_equal(keep, [1, 1, 1, 0, 0])
    w = np.where(e >= 0, 1.0, 0.0)
    e2, w2, _ = remap_edges(e, w / w.sum(1, keepdims=True), np.ones(e.shape), keep)
    np.testing.assert_array_equal(e2, [[1, 2, -1], [0, 2, -1], [0, 1, -1]])
    np.testing.assert_allclose(w2.sum(1), 1.0)


def test_clusters_of_the_symmetrised_graph():
    e = np.array([[1, -1], [-1, -1], [3, -1], [4, -1], [-1, -1], [-1, -1]])
    labels, sizes = compute_clusters(e)
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 1, 2])
    np.testing.assert_array_equal(sizes, [2, 3, 1])


def test_euclidean_anchors_match_brute_force():
    rng = np.random.default_rng(1)
    pts, nodes = rng.normal(size=(50, 3)) * 0.1, rng.normal(size=(9, 3)) * 0.1
    a, w = euclidean_anchors(pts, nodes, 4, SIGMA)
    d = np.linalg.norm(pts[:, None] - nodes[None], axis=-1)
    np.testing.assert_array_equal(a, np.argsort(d, axis=1)[:, :4])
    g = np.exp(-np.take_along_axis(d, a, 1) ** 2 / (2 * SIGMA**2))
    np.testing.assert_allclose(w, g / g.sum(1, keepdims=True), rtol=1e-9)
    a2, w2 = euclidean_anchors(pts, nodes[:2], 4, SIGMA)  # fewer nodes than anchors: padding
    assert (a2[:, 2:] == -1).all() and (w2[:, 2:] == 0).all()
    np.testing.assert_allclose(w2.sum(1), 1.0)


# -------------------------------------------------------------------------------------- end to end


def test_build_graph_on_a_synthetic_wave(wave):
    depth, mask, intr, graph, info = wave
    _check_graph_invariants(graph, info)
    assert graph.num_nodes > 30 and len(graph.cluster_sizes) == 1
    pa = graph.pixel_anchors.numpy()
    assert not (pa >= 0).any(-1)[~mask].any()  # anchors only on the object
    assert (pa >= 0).any(-1)[mask].mean() > 0.97
    # nodes are mesh vertices (pixels of the surface)
    np.testing.assert_allclose(graph.nodes.numpy(), info.mesh.vertices[info.node_vertex_ids], atol=1e-6)
    # torch inputs give the same graph
    g2 = build_graph(torch.from_numpy(depth), torch.from_numpy(mask), torch.from_numpy(intr))
    assert torch.equal(g2.edges, graph.edges) and torch.equal(g2.pixel_anchors, graph.pixel_anchors)


def test_geodesic_graph_does_not_bridge_a_depth_step_but_euclidean_does():
    depth, mask, intr = synthetic_depth(90, 120, "step", extent=0.6)  # two sheets 8 cm apart, < 2 sigma in 3D
    geo = build_graph(depth, mask, intr)
    euc = build_graph(depth, mask, intr, geodesic=False)
    assert len(geo.cluster_sizes) == 2 and len(euc.cluster_sizes) == 1
    left = geo.nodes[:, 2] < 1.04
    e = geo.edges
    assert (left[e.clamp(min=0)] == left[:, None])[e >= 0].all()  # no geodesic edge crosses the step


def test_small_clusters_are_removed_or_raise():
    depth, mask, intr = synthetic_depth(90, 120, "step", extent=0.6)
    with pytest.raises(ValueError, match=r"clusters: expected every cluster to have >= 40 nodes, found sizes"):
        build_graph(depth, mask, intr, min_cluster_size=40, small_clusters="raise")
    with pytest.raises(ValueError, match="removing them leaves no node"):
        build_graph(depth, mask, intr, min_cluster_size=40)
    sizes = build_graph(depth, mask, intr).cluster_sizes.tolist()
    assert len(sizes) == 2 and sizes[0] > sizes[1]
    g, info = build_graph_with_info(depth, mask, intr, min_cluster_size=sizes[1] + 1)
    assert g.cluster_sizes.tolist() == [sizes[0]] and len(info.removed_small_cluster) == sizes[1]
    far = torch.from_numpy(depth > 1.04)  # pixels of the removed (far) sheet lose their anchors
    assert (g.pixel_anchors[far] == -1).all() and (g.pixel_anchors[~far & torch.from_numpy(mask)] >= 0).any()


@pytest.mark.parametrize("kind", ["wave", "sphere"])
def test_warp_field_on_built_graph_rigid_exact_and_bend_accurate(kind):
    """Exact for a rigid motion; for a smooth bend (node motion from the field) mean error < 2 mm."""
    depth, mask, intr = synthetic_depth(60, 80, kind)
    graph = build_graph(depth, mask, intr)
    pts, _ = depth_to_points(torch.from_numpy(depth).double(), torch.from_numpy(intr))
    ok = (graph.pixel_anchors >= 0).any(-1)
    nodes, w = graph.nodes.double(), graph.pixel_weights.double()
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)  # float32 weights sum to 1 within 1e-7: renormalise
    # rigid
    Rg = torch.linalg.matrix_exp(torch.tensor([[0, -0.3, 0.2], [0.3, 0, -0.1], [-0.2, 0.1, 0]], dtype=torch.float64))
    T = torch.tensor([0.05, -0.02, 0.1], dtype=torch.float64)
    R = Rg.expand(graph.num_nodes, 3, 3).contiguous()
    t = nodes @ Rg.T + T - nodes
    Q = warp_point_image(pts, graph.pixel_anchors, w, nodes, R, t)
    assert (Q - (pts @ Rg.T + T))[ok].abs().max() < 1e-9
    assert arap_residuals(nodes, graph.edges, R, t).abs().max() < 1e-9
    # smooth bend (kappa = 0.5 rad/m) with a shift: several cm of motion, mm accuracy
    centre = nodes.mean(0)
    field = lambda p: bend_field(p, centre, 0.5, (0.01, 0.02, 0.0))  # noqa: E731
    R, t = node_motion_from_field(nodes, field)
    err = (warp_point_image(pts, graph.pixel_anchors, w, nodes, R, t) - field(pts)).norm(dim=-1)[ok]
    motion = (field(pts) - pts).norm(dim=-1)[ok]
    assert motion.mean() > 0.02
    assert err.mean() < 2e-3, f"mean warp error {err.mean():.2e} m"


def test_config_defaults_are_the_reference_ones():
    c = GraphConfig()
    assert (c.node_coverage, c.max_triangle_edge, c.erosion_iterations, c.min_neighbours, c.num_neighbours,
            c.num_anchors, c.geodesic, c.min_cluster_size) == (0.05, 0.05, 10, 4, 8, 4, True, 3)


# ------------------------------------------------------------------------------------------ real data


def test_real_deepdeform_frame(real_data):
    seq = real_data("deepdeform", "train", "seq258")
    depth = cv2.imread(str(seq / "depth" / "000000.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000.0
    mask = cv2.imread(str(seq / "mask" / "000000_shirt.png"), cv2.IMREAD_UNCHANGED) > 0
    intr = np.loadtxt(seq / "intrinsics.txt")
    graph, info = build_graph_with_info(depth, mask, intr)
    _check_graph_invariants(graph, info)
    assert 50 < graph.num_nodes < 300
    assert graph.pixel_anchors.shape == (480, 640, 4)
    has = (graph.pixel_anchors >= 0).any(-1).numpy()
    assert not has[~mask].any() and has[mask].mean() > 0.95
    print(f"seq258: {graph.num_nodes} nodes, clusters {graph.cluster_sizes.tolist()}")


# ------------------------------------------------------------------------------------------ bad input


def test_bad_inputs():
    depth, mask, intr = synthetic_depth(60, 80, "wave", extent=0.6)
    with pytest.raises(ValueError, match=r"mask: expected at least one object pixel, found an empty mask"):
        build_graph(depth, np.zeros_like(mask), intr)
    with pytest.raises(ValueError, match=r"depth: expected valid \(finite, > 0\) depth inside the mask, found none"):
        build_graph(np.zeros_like(depth), mask, intr)
    with pytest.raises(ValueError, match=r"depth: expected valid .* found none"):
        build_graph(np.full_like(depth, np.nan), mask, intr)
    with pytest.raises(ValueError, match=r"mask: expected shape \(60, 80\) \(as depth\), found \(60, 79\)"):
        build_graph(depth, mask[:, :-1], intr)
    with pytest.raises(ValueError, match=r"node_coverage: expected a finite value > 0, found 0"):
        build_graph(depth, mask, intr, node_coverage=0)
    with pytest.raises(ValueError, match=r"node_coverage: expected a finite value > 0, found -0.1"):
        build_graph(depth, mask, intr, node_coverage=-0.1)
    with pytest.raises(ValueError, match=r"depth: expected metres \(<= 100\), found max"):
        build_graph(depth * 1000, mask, intr)
    with pytest.raises(ValueError, match=r"depth: expected shape \(H, W\)"):
        build_graph(depth[None], mask, intr)
    with pytest.raises(ValueError, match="intrinsics: expected shape"):
        build_graph(depth, mask, intr[:3])
    with pytest.raises(ValueError, match=r"build_graph: unknown parameter\(s\) \['sigma'\]"):
        build_graph(depth, mask, intr, sigma=0.1)
    with pytest.raises(ValueError, match="small_clusters: expected 'remove' or 'raise'"):
        build_graph(depth, mask, intr, small_clusters="keep")
    with pytest.raises(ValueError, match="num_neighbours: expected an integer >= 1"):
        build_graph(depth, mask, intr, num_neighbours=0)
    tiny = np.zeros_like(mask)
    tiny[28:31, 38:41] = True  # 3x3 pixels: erosion removes everything
    with pytest.raises(ValueError, match="mask: every vertex was eroded"):
        build_graph(depth, tiny, intr)
    single = np.zeros_like(mask)
    single[30, 40] = True
    with pytest.raises(ValueError, match="depth: no triangle with edges <= max_triangle_edge"):
        build_graph(depth, single, intr)
    # NaN / negative depth inside the mask is documented as invalid (masked), not silently used
    noisy = depth.copy()
    noisy[15, 20], noisy[16, 20] = np.nan, -1.0
    g = build_graph(noisy, mask, intr)
    assert (g.pixel_anchors[15, 20] == -1).all() and (g.pixel_anchors[16, 20] == -1).all()
    assert torch.isfinite(g.nodes).all() and torch.isfinite(g.pixel_weights).all()


def test_graph_validate(wave):
    *_, graph, _ = wave
    assert graph.validate() is graph
    assert graph.to(dtype=torch.float64).validate().nodes.dtype == torch.float64
    import dataclasses

    bad = dataclasses.replace(graph, edges=graph.edges.clone())
    bad.edges[0, 0] = graph.num_nodes
    with pytest.raises(ValueError, match=r"edges: expected ids in \[-1, \d+\]"):
        bad.validate()
    with pytest.raises(ValueError, match=r"edge_weights: expected shape \(N, K\)"):
        dataclasses.replace(graph, edge_weights=graph.edge_weights[:-1]).validate()
    with pytest.raises(ValueError, match="cluster_sizes: expected the node counts"):
        dataclasses.replace(graph, cluster_sizes=graph.cluster_sizes + 1).validate()
    with pytest.raises(ValueError, match="pixel_anchors: expected an integer tensor"):
        dataclasses.replace(graph, pixel_anchors=graph.pixel_anchors.float()).validate()
    nan = graph.nodes.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="nodes: expected finite values"):
        dataclasses.replace(graph, nodes=nan).validate()


def test_anchor_weight_distance_option(wave):
    depth, mask, intr, graph, info = wave
    g2 = build_graph(depth, mask, intr, anchor_weight_distance="euclidean")
    assert torch.equal(g2.pixel_anchors, graph.pixel_anchors)  # same (geodesic) anchors, other weights
    pa, has = g2.pixel_anchors, (g2.pixel_anchors >= 0).any(-1)
    pts = torch.from_numpy(info.mesh.vertices)[torch.from_numpy(info.mesh.pixel_vertex)[has]]
    a = pa[has]
    d = (pts[:, None] - g2.nodes.double()[a.clamp(min=0)]).norm(dim=-1)
    w = torch.where(a >= 0, torch.exp(-(d**2) / (2 * SIGMA**2)), torch.zeros_like(d))
    torch.testing.assert_close(g2.pixel_weights[has].double(), w / w.sum(1, keepdim=True), atol=1e-6, rtol=0)
    assert not torch.allclose(g2.pixel_weights, graph.pixel_weights)  # geodesic >= Euclidean distances
    with pytest.raises(ValueError, match="anchor_weight_distance: expected 'geodesic' or 'euclidean'"):
        build_graph(depth, mask, intr, anchor_weight_distance="l1")


def test_step_functions_bad_inputs():
    pts, valid = np.zeros((4, 5, 3)), np.ones((4, 5), bool)
    with pytest.raises(ValueError, match=r"valid: expected shape \(H, W\)"):
        depth_to_mesh(pts, valid[None])
    with pytest.raises(ValueError, match=r"points: expected shape \(H, W, 3\) with \{'H': 4, 'W': 5\}, found \(4, 6, 3\)"):
        depth_to_mesh(np.zeros((4, 6, 3)), valid)
    bad = pts.copy()
    bad[1, 1, 2] = np.nan
    with pytest.raises(ValueError, match="points: expected finite values at valid pixels"):
        depth_to_mesh(bad, valid)
    with pytest.raises(ValueError, match="max_triangle_edge: expected a finite value > 0"):
        depth_to_mesh(pts, valid, 0.0)
    with pytest.raises(ValueError, match=r"faces: expected ids in \[0, 2\], found range \[0, 5\]"):
        erode_mesh(np.array([[0, 1, 5]]), 3)
    with pytest.raises(ValueError, match="faces: expected integer ids, found dtype float64"):
        erode_mesh(np.zeros((2, 3)), 3)
    with pytest.raises(ValueError, match="iterations: expected an integer >= 0"):
        erode_mesh(np.array([[0, 1, 2]]), 3, iterations=-1)
    with pytest.raises(ValueError, match=r"candidates: expected shape \(V\) with \{'V': 4\}, found \(3,\)"):
        sample_nodes(np.zeros((4, 3)), np.ones(3, bool), SIGMA)
    with pytest.raises(ValueError, match="vertices: expected finite values"):
        sample_nodes(np.full((4, 3), np.inf), np.ones(4, bool), SIGMA)
    with pytest.raises(ValueError, match="node_coverage: expected a finite value > 0"):
        sample_nodes(np.zeros((4, 3)), np.ones(4, bool), -1.0)
    with pytest.raises(ValueError, match="adjacency: expected a square scipy sparse matrix"):
        geodesic_distances(np.eye(3), np.array([0]), 0.1)
    adj = mesh_adjacency(np.eye(3), np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match=r"sources: expected ids in \[0, 2\]"):
        geodesic_distances(adj, np.array([3]), 0.1)
    with pytest.raises(ValueError, match=r"node_dist: expected shape \(N, N\)"):
        edges_from_distances(np.zeros((3, 4)), 2, SIGMA)
    with pytest.raises(ValueError, match="node_dist: expected distances >= 0"):
        edges_from_distances(-np.ones((3, 3)), 2, SIGMA)
    with pytest.raises(ValueError, match=r"edges: expected ids in \[-1, 1\], found range \[-1, 7\]"):
        remove_weak_nodes(np.array([[1, -1], [7, 0]]))
    with pytest.raises(ValueError, match=r"edges: expected ids in \[-1, 1\]"):
        compute_clusters(np.array([[1, -2], [0, -1]]))
    with pytest.raises(ValueError, match=r"nodes: expected shape \(\*, 3\)"):
        euclidean_anchors(np.zeros((5, 3)), np.zeros((4, 2)), 4, SIGMA)


def test_mesh_adjacency_lengths_whatever_the_face_orientation():
    v = np.array([[0, 0, 1.0], [0.01, 0, 1.0], [0, 0.02, 1.0], [0.01, 0.02, 1.0]])
    consistent = np.array([[0, 2, 1], [1, 2, 3]])  # shared edge 1-2 traversed both ways
    flipped = np.array([[0, 2, 1], [2, 1, 3]])  # shared edge traversed the same way twice
    for faces in (consistent, flipped):
        A = mesh_adjacency(v, faces).toarray()
        np.testing.assert_allclose(A, A.T)
        np.testing.assert_allclose(A[1, 2], np.linalg.norm(v[1] - v[2]))
        np.testing.assert_allclose(A[0, 1], 0.01)
        assert (A > 0).sum() == 2 * 5  # 5 undirected edges


def test_shuffled_sampling_keeps_coverage_and_is_seeded(wave):
    depth, mask, intr, graph, info = wave
    g1, i1 = build_graph_with_info(depth, mask, intr, shuffle_seed=3)
    g2 = build_graph(depth, mask, intr, shuffle_seed=3)
    assert torch.equal(g1.nodes, g2.nodes) and torch.equal(g1.edges, g2.edges)
    assert not torch.equal(g1.nodes, graph.nodes)
    _check_graph_invariants(g1, i1)
    assert len(i1.removed_weak) == 1  # this order leaves one node with a single neighbour: removed
    rng = np.random.default_rng(0)
    v = rng.uniform(0, 0.3, size=(300, 3))
    ids = sample_nodes(v, np.ones(300, bool), SIGMA, shuffle_seed=1)
    perm = np.random.default_rng(1).permutation(300)
    np.testing.assert_array_equal(ids, perm[_greedy_brute_force(v[perm], np.ones(300, bool), SIGMA)])
