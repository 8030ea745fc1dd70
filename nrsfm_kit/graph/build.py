"""Embedded deformation graph from one RGB-D frame (Neural Non-Rigid Tracking §3 and App. A).

The construction follows the paper's reference implementation (DeformableFriends/NeuralTracking,
``create_graph_data.py`` + ``csrc/cpu/graph_proc.cpp``), re-derived and vectorised with numpy/scipy:

1. :func:`depth_to_mesh`: every 2x2 pixel quad gives two triangles, a triangle is kept when all three
   vertices are valid and all its edges are <= ``max_triangle_edge`` metres; vertices are the valid
   pixels in row-major order (the vertex <-> pixel map is kept).
2. :func:`erode_mesh`: ``iterations`` times, drop the faces that touch a vertex with fewer than
   ``min_neighbours`` incident faces; the vertices of the surviving faces are "non-eroded".
3. :func:`sample_nodes`: greedy sigma-coverage over the non-eroded vertices in row-major order: a vertex
   becomes a node unless an existing node lies within sigma (so every non-eroded vertex is within
   sigma of a node, and nodes are more than sigma apart).
4. :func:`geodesic_distances` + :func:`edges_from_distances`: Dijkstra over the mesh edge graph
   (``scipy.sparse.csgraph.dijkstra``) from every node up to 2 sigma (the reference's max influence;
   the reference stops a node's search once it has found K neighbours, we always search the full
   2 sigma so that every vertex sees all nodes within reach when its anchors are chosen),
   the K = 8 geodesically nearest nodes become edges with weights exp(-d^2 / (2 sigma^2)) normalised
   per node, -1 padding; :func:`euclidean_edges` is the Euclidean K-NN option (cKDTree).
5. :func:`remove_weak_nodes`: iteratively drop nodes with <= 1 valid neighbour; ids are remapped.
   (As in the reference, the vertices only such a node covered lose their sigma-coverage: the coverage
   guarantee of step 3 is about the sampled nodes; ``GraphBuildInfo`` lists the removed ones.)
6. :func:`compute_clusters`: connected components of the symmetrised edge graph, with sizes; clusters
   smaller than ``min_cluster_size`` (3, the reference's limit) are removed (or raise, on request).
7. :func:`geodesic_anchors` / :func:`euclidean_anchors`: every vertex's 4 nearest nodes, skinning
   weights alpha = C exp(-d^2 / (2 sigma^2)) normalised to sum 1; d is the geodesic distance in geodesic
   mode (as the reference's ``compute_pixel_anchors_geodesic`` does) unless ``anchor_weight_distance =
   "euclidean"`` (the ||v - p|| of the paper's formula), and ||v - p|| in Euclidean mode; -1 / 0 for
   pixels without anchors.

Public entry point: :func:`build_graph` (numpy or torch inputs) -> :class:`DeformationGraph`;
:func:`build_graph_with_info` also returns every intermediate (mesh, erosion mask, node vertex ids).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from nrsfm_kit.graph.types import DeformationGraph
from nrsfm_kit.utils.checks import check_finite, check_positive, check_shape

__all__ = [
    "GraphConfig", "GraphBuildInfo", "Mesh", "build_graph", "build_graph_with_info", "depth_to_mesh",
    "erode_mesh", "sample_nodes", "mesh_adjacency", "geodesic_distances", "edges_from_distances",
    "euclidean_edges", "remove_weak_nodes", "compute_clusters", "geodesic_anchors", "euclidean_anchors",
    "coverage_distances",
]


def _arr(name: str, x, spec, dims: dict | None = None, kind: str = "f", finite: bool = True) -> np.ndarray:
    """Check a numpy / torch input of a step function: shape ``spec``, kind ("f" float, "i" integer,
    "b" bool-like) and finiteness; return it as a numpy array."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    check_shape(name, a, spec, dims)
    if kind == "f" and a.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected real numbers, found dtype {a.dtype}")
    if kind == "i" and a.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer ids, found dtype {a.dtype}")
    if kind == "f" and finite:
        check_finite(name, a)
    return a


def _ids(name: str, a: np.ndarray, lo: int, n: int) -> np.ndarray:
    if a.size and (a.min() < lo or a.max() >= n):
        raise ValueError(f"{name}: expected ids in [{lo}, {n - 1}], found range [{a.min()}, {a.max()}]")
    return a


# ==================================================================================================
# configuration
# ==================================================================================================


@dataclass
class GraphConfig:
    """Graph construction parameters; defaults are those of the reference ``create_graph_data.py``."""

    node_coverage: float = 0.05  # sigma, metres (NODE_COVERAGE = 0.05)
    max_triangle_edge: float = 0.05  # metres (MAX_TRIANGLE_DISTANCE = 0.05)
    erosion_iterations: int = 10  # (EROSION_NUM_ITERATIONS = 10)
    min_neighbours: int = 4  # incident faces to survive erosion (EROSION_MIN_NEIGHBORS = 4)
    num_neighbours: int = 8  # K edges per node (NUM_NEIGHBORS = 8)
    num_anchors: int = 4  # anchors per pixel (GRAPH_K = 4 in graph_proc.h)
    geodesic: bool = True  # geodesic edges / anchors ("geodesic" graphs of the released data)
    max_influence: float = 2.0  # Dijkstra radius in units of sigma (maxInfluence = 2 * nodeCoverage)
    # distance inside the skinning weights of geodesic anchors: "geodesic" (reference code) or
    # "euclidean" (||v - p||, the paper's formula); Euclidean graphs always use ||v - p||
    anchor_weight_distance: str = "geodesic"
    min_cluster_size: int = 3  # the reference refuses clusters of <= 2 nodes (MIN_CLUSTER_SIZE = 3)
    small_clusters: str = "remove"  # "remove" (documented filtering) or "raise"
    remove_weak: bool = True  # drop nodes with <= 1 neighbour (REMOVE_NODES_WITH_NOT_ENOUGH_NEIGHBORS)
    dijkstra_chunk: int = 16  # nodes per Dijkstra batch (memory: chunk x vertices float64)
    shuffle_seed: int | None = None  # random sampling order (SAMPLE_RANDOM_SHUFFLE = False: None)

    def __post_init__(self) -> None:
        check_positive("node_coverage", self.node_coverage)
        check_positive("max_triangle_edge", self.max_triangle_edge)
        check_positive("max_influence", self.max_influence)
        for name in ("erosion_iterations", "min_neighbours"):
            v = getattr(self, name)
            if int(v) != v or v < 0:
                raise ValueError(f"{name}: expected an integer >= 0, found {v!r}")
        for name in ("num_neighbours", "num_anchors", "min_cluster_size", "dijkstra_chunk"):
            v = getattr(self, name)
            if int(v) != v or v < 1:
                raise ValueError(f"{name}: expected an integer >= 1, found {v!r}")
        if self.anchor_weight_distance not in ("geodesic", "euclidean"):
            raise ValueError(
                f"anchor_weight_distance: expected 'geodesic' or 'euclidean', found {self.anchor_weight_distance!r}"
            )
        if self.small_clusters not in ("remove", "raise"):
            raise ValueError(f"small_clusters: expected 'remove' or 'raise', found {self.small_clusters!r}")


@dataclass
class Mesh:
    """Triangle mesh of a depth map.

    Attributes:
        vertices: (V, 3) float64 metres, the valid pixels in row-major order.
        faces: (F, 3) int64 vertex ids.
        vertex_pixels: (V, 2) int64 pixel (u, v) = (column, row) of each vertex.
        pixel_vertex: (H, W) int64 vertex id of each pixel, -1 where invalid.
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_pixels: np.ndarray
    pixel_vertex: np.ndarray


@dataclass
class GraphBuildInfo:
    """Intermediate results of :func:`build_graph_with_info` (for teaching, tests and debugging).

    Attributes:
        mesh: the full (non-eroded) mesh.
        non_eroded: (V,) bool, vertices that survive erosion (node candidates).
        sampled_vertex_ids: (S,) vertex ids of the sampled nodes before clean-up.
        node_vertex_ids: (N,) vertex id of every final node.
        removed_weak: ids (in the sampled numbering) of nodes dropped for having <= 1 neighbour.
        removed_small_cluster: ids (sampled numbering) dropped with clusters < min_cluster_size.
        config: the parameters used.
    """

    mesh: Mesh
    non_eroded: np.ndarray
    sampled_vertex_ids: np.ndarray
    node_vertex_ids: np.ndarray
    removed_weak: np.ndarray
    removed_small_cluster: np.ndarray
    config: GraphConfig


# ==================================================================================================
# 1. mesh from depth, 2. erosion, 3. node sampling
# ==================================================================================================


def depth_to_mesh(points: np.ndarray, valid: np.ndarray, max_triangle_edge: float = 0.05) -> Mesh:
    """Triangle mesh with pixelwise connectivity.

    Args:
        points: (H, W, 3) camera-frame point image, metres.
        valid: (H, W) bool, pixels that carry a point (inside the mask, depth > 0 and finite).
        max_triangle_edge: longest allowed triangle edge, metres.

    Returns:
        :class:`Mesh`. Quad (y, x) gives triangles (00, 10, 01) and (01, 10, 11) (rows first digit),
        kept when their three vertices are valid and all edges are <= ``max_triangle_edge``.
    """
    dims: dict = {}
    valid = _arr("valid", valid, ("H", "W"), dims, kind="b").astype(bool)
    points = _arr("points", points, ("H", "W", 3), dims, finite=False)
    check_positive("max_triangle_edge", max_triangle_edge)
    if not np.isfinite(points[valid]).all():
        raise ValueError("points: expected finite values at valid pixels, found non-finite ones")
    H, W = valid.shape
    pixel_vertex = np.full((H, W), -1, dtype=np.int64)
    ys, xs = np.nonzero(valid)  # row-major order
    pixel_vertex[ys, xs] = np.arange(ys.size)
    vertices = np.asarray(points, dtype=np.float64)[ys, xs]
    i00, i01 = pixel_vertex[:-1, :-1], pixel_vertex[:-1, 1:]
    i10, i11 = pixel_vertex[1:, :-1], pixel_vertex[1:, 1:]
    tri = np.concatenate(
        [np.stack([i00, i10, i01], -1).reshape(-1, 3), np.stack([i01, i10, i11], -1).reshape(-1, 3)]
    )
    tri = tri[(tri >= 0).all(1)]
    if tri.size:
        p = vertices[tri]  # (F, 3, 3)
        e2 = np.stack([((p[:, 0] - p[:, 1]) ** 2).sum(-1), ((p[:, 1] - p[:, 2]) ** 2).sum(-1),
                       ((p[:, 2] - p[:, 0]) ** 2).sum(-1)], -1)
        tri = tri[(e2 <= max_triangle_edge**2).all(1)]
    return Mesh(vertices, tri.reshape(-1, 3), np.stack([xs, ys], -1).astype(np.int64), pixel_vertex)


def erode_mesh(faces: np.ndarray, num_vertices: int, iterations: int = 10, min_neighbours: int = 4) -> np.ndarray:
    """Mesh erosion of the reference: (V,) bool mask of the vertices of the surviving faces.

    Each iteration counts the faces incident to every vertex and drops the faces touching a vertex
    with fewer than ``min_neighbours`` of them (all faces are tested against the same counts).
    """
    faces = _ids("faces", _arr("faces", faces, (None, 3), kind="i"), 0, int(num_vertices))
    for name, v in (("iterations", iterations), ("min_neighbours", min_neighbours)):
        if int(v) != v or v < 0:
            raise ValueError(f"{name}: expected an integer >= 0, found {v!r}")
    for _ in range(int(iterations)):
        if faces.size == 0:
            break
        count = np.bincount(faces.ravel(), minlength=num_vertices)
        keep = (count[faces] >= min_neighbours).all(1)
        if keep.all():
            break  # fixed point: further iterations change nothing
        faces = faces[keep]
    out = np.zeros(num_vertices, dtype=bool)
    out[faces.ravel()] = True
    return out


def sample_nodes(
    vertices: np.ndarray, candidates: np.ndarray, node_coverage: float, shuffle_seed: int | None = None
) -> np.ndarray:
    """Greedy sigma-coverage sampling (reference ``sample_nodes``).

    Candidates are visited in index order (or, with ``shuffle_seed``, in a random order drawn from it:
    the reference's ``SAMPLE_RANDOM_SHUFFLE``, off by default); one becomes a node unless a node already
    lies within ``node_coverage`` (<=). Implemented with a KD-tree: each new node marks its sigma-ball as
    covered, and the next node is the first uncovered candidate in the visiting order.

    Args:
        vertices: (V, 3) metres. candidates: (V,) bool. node_coverage: sigma, metres.
        shuffle_seed: None (index order) or the seed of the random visiting order.

    Returns:
        (N,) int64 vertex ids of the nodes, in the order they were chosen (increasing without shuffle).
    """
    dims: dict = {}
    vertices = _arr("vertices", vertices, ("V", 3), dims)
    candidates = _arr("candidates", candidates, ("V",), dims, kind="b").astype(bool)
    check_positive("node_coverage", node_coverage)
    cand = np.flatnonzero(candidates)
    if cand.size == 0:
        return np.zeros(0, dtype=np.int64)
    if shuffle_seed is not None:
        cand = cand[np.random.default_rng(int(shuffle_seed)).permutation(cand.size)]
    pts = vertices[cand]
    tree = cKDTree(pts)
    covered = np.zeros(cand.size, dtype=bool)
    chosen: list[int] = []
    start, window = 0, 4096
    while start < cand.size:
        free = np.flatnonzero(~covered[start:start + window])  # next uncovered candidate, searched in windows
        if free.size == 0:
            start += window
            continue
        nxt = start + int(free[0])
        chosen.append(nxt)
        covered[tree.query_ball_point(pts[nxt], node_coverage)] = True
        start = nxt + 1
    return cand[np.asarray(chosen, dtype=np.int64)]


def coverage_distances(vertices: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """(V,) Euclidean distance from every vertex to its nearest node (inf without nodes), metres."""
    vertices = _arr("vertices", vertices, (None, 3))
    nodes = _arr("nodes", nodes, (None, 3))
    if len(nodes) == 0:
        return np.full(len(vertices), np.inf)
    return cKDTree(np.asarray(nodes, dtype=np.float64)).query(vertices, k=1)[0]


# ==================================================================================================
# 4. geodesic distances and edges
# ==================================================================================================


def mesh_adjacency(vertices: np.ndarray, faces: np.ndarray) -> sp.csr_matrix:
    """(V, V) symmetric sparse matrix of mesh edge lengths (metres), the graph Dijkstra runs on."""
    vertices = _arr("vertices", vertices, (None, 3))
    V = len(vertices)
    f = _ids("faces", _arr("faces", faces, (None, 3), kind="i"), 0, V)
    # each face contributes its three directed edges; in a consistently oriented mesh (as depth_to_mesh
    # builds) an interior edge appears once in each direction, so there are no duplicates to merge
    a = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    b = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    w = np.maximum(np.sqrt(((vertices[a] - vertices[b]) ** 2).sum(1)), 1e-12)  # csgraph: 0 = no edge
    half = sp.csr_matrix((w, (a, b)), shape=(V, V))
    if half.nnz < len(w):  # inconsistent orientation: csr summed duplicates, turn sums back into lengths
        half.data /= sp.csr_matrix((np.ones_like(w), (a, b)), shape=(V, V)).data
    return half.maximum(half.T).tocsr()


def geodesic_distances(
    adjacency: sp.csr_matrix, sources: np.ndarray, limit: float, chunk: int = 16
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geodesic (shortest mesh path) distances from every source vertex, up to ``limit`` metres.

    Runs ``scipy.sparse.csgraph.dijkstra`` on batches of ``chunk`` sources (memory chunk x V float64;
    16 was fastest on the 640x480 benchmark frames, ahead of 64 and of per-batch Euclidean-ball subgraphs).
    ``adjacency`` is treated as undirected (symmetrised once if it is not symmetric).

    Returns:
        Sparse COO triplets ``(source_index (M,), vertex_id (M,), distance (M,))`` of every finite
        distance <= limit; ``source_index`` indexes ``sources``.
    """
    if not sp.issparse(adjacency) or adjacency.shape[0] != adjacency.shape[1]:
        raise ValueError(f"adjacency: expected a square scipy sparse matrix, found {type(adjacency).__name__}")
    sources = _ids("sources", _arr("sources", sources, (None,), kind="i"), 0, adjacency.shape[0])
    check_positive("limit", limit)
    if int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk: expected an integer >= 1, found {chunk!r}")
    adjacency = sp.csr_matrix(adjacency)
    if (adjacency != adjacency.T).nnz:  # symmetrise once, then run the cheaper directed search per batch
        adjacency = adjacency.maximum(adjacency.T).tocsr()
    rows, cols, dists = [], [], []
    for s in range(0, len(sources), chunk):
        D = dijkstra(adjacency, directed=True, indices=sources[s:s + chunk], limit=limit)
        r, c = np.nonzero(np.isfinite(D))
        rows.append(r + s)
        cols.append(c)
        dists.append(D[r, c])
    if not rows:
        z = np.zeros(0, dtype=np.int64)
        return z, z, np.zeros(0)
    return np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64), np.concatenate(dists)


def _gaussian(d: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-(d**2) / (2.0 * sigma**2))


def _normalise_rows(w: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Normalise rows to sum 1 over ``valid`` entries; uniform where every Gaussian underflowed."""
    w = np.where(valid, w, 0.0)
    s = w.sum(1, keepdims=True)
    n = valid.sum(1, keepdims=True)
    uniform = np.where(valid, 1.0 / np.maximum(n, 1), 0.0)
    return np.where(s > 0, w / np.where(s > 0, s, 1.0), uniform)


def _k_smallest(dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row the k smallest finite entries of a (R, C) matrix (inf = absent): (ids -1 padded, dists)."""
    R, C = dist.shape
    k_eff = min(k, C)
    if k_eff == 0:
        return np.full((R, k), -1, dtype=np.int64), np.full((R, k), np.inf)
    part = np.argpartition(dist, k_eff - 1, axis=1)[:, :k_eff] if k_eff < C else np.tile(np.arange(C), (R, 1))
    d = np.take_along_axis(dist, part, 1)
    order = np.argsort(d, axis=1, kind="stable")
    ids = np.take_along_axis(part, order, 1)
    d = np.take_along_axis(d, order, 1)
    ids = np.where(np.isfinite(d), ids, -1)
    if k_eff < k:
        ids = np.pad(ids, ((0, 0), (0, k - k_eff)), constant_values=-1)
        d = np.pad(d, ((0, 0), (0, k - k_eff)), constant_values=np.inf)
    return ids.astype(np.int64), d


def edges_from_distances(node_dist: np.ndarray, num_neighbours: int, node_coverage: float):
    """Edges from a (N, N) node-to-node distance matrix (inf = unreachable, diagonal ignored).

    Returns:
        edges (N, K) int64 (nearest first, -1 padding), weights (N, K) float64 exp(-d^2/(2 sigma^2))
        normalised per node (0 on padding), distances (N, K) float64 metres (inf on padding).
    """
    d = np.array(_arr("node_dist", node_dist, ("N", "N"), finite=False), dtype=np.float64, copy=True)
    if np.isnan(d).any() or (d < 0).any():
        raise ValueError("node_dist: expected distances >= 0 (inf = unreachable), found NaN or negative values")
    if int(num_neighbours) != num_neighbours or num_neighbours < 1:
        raise ValueError(f"num_neighbours: expected an integer >= 1, found {num_neighbours!r}")
    check_positive("node_coverage", node_coverage)
    np.fill_diagonal(d, np.inf)
    edges, dist = _k_smallest(d, num_neighbours)
    valid = edges >= 0
    w = _normalise_rows(_gaussian(np.where(valid, dist, 0.0), node_coverage), valid)
    return edges, w, dist


def euclidean_edges(nodes: np.ndarray, num_neighbours: int, node_coverage: float):
    """Euclidean K-NN edges (cKDTree), same outputs as :func:`edges_from_distances`."""
    nodes = _arr("nodes", nodes, (None, 3))
    N = len(nodes)
    k = min(num_neighbours + 1, N)
    if N == 0:
        return (np.zeros((0, num_neighbours), np.int64), np.zeros((0, num_neighbours)),
                np.zeros((0, num_neighbours)))
    dd, ii = cKDTree(nodes).query(nodes, k=k)
    dd, ii = dd.reshape(N, k), ii.reshape(N, k)
    dist = np.full((N, N), np.inf)
    np.put_along_axis(dist, ii, dd, 1)
    return edges_from_distances(dist, num_neighbours, node_coverage)


# ==================================================================================================
# 5. clean-up, 6. clusters
# ==================================================================================================


def remove_weak_nodes(edges: np.ndarray) -> np.ndarray:
    """Iteratively mark nodes with <= 1 valid neighbour (neighbours not yet removed) as removed.

    Returns:
        (N,) bool mask of the nodes kept.
    """
    edges = _arr("edges", edges, ("N", None), kind="i")
    N = len(edges)
    _ids("edges", edges, -1, N)
    keep = np.ones(N, dtype=bool)
    while True:
        valid = (edges >= 0) & keep[np.clip(edges, 0, None)] if N else edges >= 0
        weak = keep & (valid.sum(1) <= 1)
        if not weak.any():
            return keep
        keep &= ~weak


def remap_edges(edges: np.ndarray, weights: np.ndarray, dist: np.ndarray, keep: np.ndarray):
    """Drop removed nodes: keep rows of kept nodes, remap ids, compact neighbours left, renormalise."""
    new_id = np.cumsum(keep) - 1
    e, w, d = edges[keep], weights[keep], dist[keep]
    ok = (e >= 0) & keep[np.clip(e, 0, None)]
    order = np.argsort(~ok, axis=1, kind="stable")  # valid neighbours first, original order kept
    e, w, d, ok = (np.take_along_axis(x, order, 1) for x in (e, w, d, ok))
    e = np.where(ok, new_id[np.clip(e, 0, None)], -1)
    s = np.where(ok, w, 0.0).sum(1, keepdims=True)
    w = np.where(ok, w / np.where(s > 0, s, 1.0), 0.0)
    w = np.where((s > 0) | ~ok, w, _normalise_rows(np.zeros_like(w), ok))
    return e, w, np.where(ok, d, np.inf)


def compute_clusters(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the symmetrised edge graph.

    Returns:
        clusters (N,) int64 component id per node (ids in order of their smallest node id),
        sizes (C,) int64 nodes per component.
    """
    edges = _arr("edges", edges, ("N", None), kind="i")
    N = len(edges)
    _ids("edges", edges, -1, N)
    if N == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    r, c = np.nonzero(edges >= 0)
    g = sp.coo_matrix((np.ones(r.size), (r, edges[r, c])), shape=(N, N))
    _, labels = connected_components(g, directed=True, connection="weak")
    # relabel in order of first appearance (smallest node id), as the reference does
    _, first = np.unique(labels, return_index=True)
    rank = np.empty_like(first)
    rank[np.argsort(first)] = np.arange(first.size)
    labels = rank[labels].astype(np.int64)
    return labels, np.bincount(labels).astype(np.int64)


# ==================================================================================================
# 7. pixel anchors
# ==================================================================================================


def geodesic_anchors(
    src: np.ndarray, vid: np.ndarray, dist: np.ndarray, node_ids: np.ndarray, num_vertices: int,
    num_anchors: int, node_coverage: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per vertex the ``num_anchors`` geodesically nearest nodes and their skinning weights.

    Args:
        src, vid, dist: COO triplets of :func:`geodesic_distances` (source index, vertex id, metres).
        node_ids: (S,) int64, final node id of each source (-1 = removed source, ignored).

    Returns:
        anchors (V, A) int64 (-1 padding), weights (V, A) float64 exp(-d^2/(2 sigma^2)) normalised to 1.
    """
    nid = node_ids[src]
    ok = nid >= 0
    nid, vid, dist = nid[ok], vid[ok], dist[ok]
    # one float64 sort by (vertex, distance): key = vertex id + distance scaled into [0, 0.5)
    scale = 0.5 / (float(dist.max()) + 1e-12) if dist.size else 1.0
    order = np.argsort(vid + dist * scale)
    nid, vid, dist = nid[order], vid[order], dist[order]
    starts = np.searchsorted(vid, vid, side="left")
    rank = np.arange(vid.size) - starts
    sel = rank < num_anchors
    anchors = np.full((num_vertices, num_anchors), -1, dtype=np.int64)
    d = np.zeros((num_vertices, num_anchors))
    anchors[vid[sel], rank[sel]] = nid[sel]
    d[vid[sel], rank[sel]] = dist[sel]
    valid = anchors >= 0
    return anchors, _normalise_rows(_gaussian(d, node_coverage), valid)


def euclidean_anchors(points: np.ndarray, nodes: np.ndarray, num_anchors: int, node_coverage: float):
    """Per point the ``num_anchors`` Euclidean-nearest nodes (cKDTree) with normalised Gaussian weights.

    Args:
        points: (M, 3) metres. nodes: (N, 3) metres.

    Returns:
        anchors (M, A) int64 (-1 padding when N < A), weights (M, A) float64 summing to 1.
    """
    points = _arr("points", points, (None, 3))
    nodes = _arr("nodes", nodes, (None, 3))
    if int(num_anchors) != num_anchors or num_anchors < 1:
        raise ValueError(f"num_anchors: expected an integer >= 1, found {num_anchors!r}")
    check_positive("node_coverage", node_coverage)
    M, N = len(points), len(nodes)
    anchors = np.full((M, num_anchors), -1, dtype=np.int64)
    w = np.zeros((M, num_anchors))
    if M == 0 or N == 0:
        return anchors, w
    k = min(num_anchors, N)
    dd, ii = cKDTree(nodes).query(points, k=k)
    dd, ii = dd.reshape(M, k), ii.reshape(M, k)
    anchors[:, :k] = ii
    d = np.zeros((M, num_anchors))
    d[:, :k] = dd
    return anchors, _normalise_rows(_gaussian(d, node_coverage), anchors >= 0)


# ==================================================================================================
# entry point
# ==================================================================================================


def _as_numpy(name: str, x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name}: expected an array or tensor, found {type(x).__name__}") from None


def _prepare(depth, mask, intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Validate inputs; return the (H, W, 3) point image and the (H, W) validity mask."""
    from nrsfm_kit.geometry import as_intrinsics, backproject

    d = _as_numpy("depth", depth)
    if d.ndim != 2:
        raise ValueError(f"depth: expected shape (H, W) in metres, found {d.shape}")
    if not (np.issubdtype(d.dtype, np.floating) or np.issubdtype(d.dtype, np.integer)):
        raise ValueError(f"depth: expected a numeric array (metres), found dtype {d.dtype}")
    m = _as_numpy("mask", mask)
    if m.shape != d.shape:
        raise ValueError(f"mask: expected shape {d.shape} (as depth), found {m.shape}")
    m = m.astype(bool)
    if not m.any():
        raise ValueError(f"mask: expected at least one object pixel, found an empty mask of shape {m.shape}")
    intr = as_intrinsics(intrinsics, dtype=torch.float64)
    if intr.shape != (4,):
        raise ValueError(f"intrinsics: expected one camera (4,), 3x3 or 4x4, found {tuple(intr.shape)}")
    d = d.astype(np.float64)
    finite = np.isfinite(d)
    if finite.any() and d[finite].max() > 100.0:
        raise ValueError(
            f"depth: expected metres (<= 100), found max {d[finite].max():.4g}; "
            "DeepDeform PNGs are millimetres: divide by 1000"
        )
    valid = m & finite & (np.where(finite, d, 0.0) > 0)
    if not valid.any():
        raise ValueError(
            f"depth: expected valid (finite, > 0) depth inside the mask, found none of {int(m.sum())} mask pixels"
        )
    ys, xs = np.nonzero(valid)
    uv = torch.from_numpy(np.stack([xs, ys], -1).astype(np.float64))
    pts = np.zeros(d.shape + (3,))
    pts[ys, xs] = backproject(uv, torch.from_numpy(d[ys, xs]), intr).numpy()
    return pts, valid


def build_graph_with_info(depth, mask, intrinsics, config: GraphConfig | None = None, **overrides):
    """:func:`build_graph` that also returns a :class:`GraphBuildInfo` with every intermediate."""
    cfg = config or GraphConfig()
    if overrides:
        known = {f.name for f in fields(GraphConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"build_graph: unknown parameter(s) {unknown}, expected some of {sorted(known)}")
        cfg = GraphConfig(**{**cfg.__dict__, **overrides})
    sigma = float(cfg.node_coverage)
    points, valid = _prepare(depth, mask, intrinsics)
    H, W = valid.shape

    mesh = depth_to_mesh(points, valid, cfg.max_triangle_edge)
    V = len(mesh.vertices)
    if len(mesh.faces) == 0:
        raise ValueError(
            f"depth: no triangle with edges <= max_triangle_edge={cfg.max_triangle_edge} m among "
            f"{V} valid pixels (too sparse or noisy depth)"
        )
    non_eroded = erode_mesh(mesh.faces, V, cfg.erosion_iterations, cfg.min_neighbours)
    if not non_eroded.any():
        raise ValueError(
            f"mask: every vertex was eroded (erosion_iterations={cfg.erosion_iterations}, "
            f"min_neighbours={cfg.min_neighbours}); the object region is too small or thin"
        )
    sampled = sample_nodes(mesh.vertices, non_eroded, sigma, cfg.shuffle_seed)
    S = len(sampled)

    K = int(cfg.num_neighbours)
    if cfg.geodesic:
        adj = mesh_adjacency(mesh.vertices, mesh.faces)
        src, vid, gd = geodesic_distances(adj, sampled, cfg.max_influence * sigma, cfg.dijkstra_chunk)
        vertex_node = np.full(V, -1, dtype=np.int64)
        vertex_node[sampled] = np.arange(S)
        at_node = vertex_node[vid] >= 0
        node_dist = np.full((S, S), np.inf)
        node_dist[src[at_node], vertex_node[vid[at_node]]] = gd[at_node]
        edges, ew, ed = edges_from_distances(node_dist, K, sigma)
    else:
        edges, ew, ed = euclidean_edges(mesh.vertices[sampled], K, sigma)

    keep = remove_weak_nodes(edges) if cfg.remove_weak else np.ones(S, dtype=bool)
    removed_weak = np.flatnonzero(~keep)
    if not keep.any():
        raise ValueError(f"node_coverage: expected a sigma small enough for nodes with >= 2 neighbours, found "
                         f"{sigma} m, at which all {S} sampled nodes have <= 1 neighbour")
    e2, w2, d2 = remap_edges(edges, ew, ed, keep)
    clusters, sizes = compute_clusters(e2)
    small = sizes < cfg.min_cluster_size
    removed_small = np.zeros(0, dtype=np.int64)
    if small.any():
        msg = (f"clusters: expected every cluster to have >= {cfg.min_cluster_size} nodes, found sizes "
               f"{sizes[small].tolist()} (of {sizes.tolist()})")
        if cfg.small_clusters == "raise":
            raise ValueError(msg)
        keep2 = ~small[clusters]
        if not keep2.any():
            raise ValueError(msg + "; removing them leaves no node")
        removed_small = np.flatnonzero(keep)[~keep2]
        e2, w2, d2 = remap_edges(e2, w2, d2, keep2)
        clusters, sizes = compute_clusters(e2)
        keep[removed_small] = False
    final_ids = np.full(S, -1, dtype=np.int64)
    final_ids[keep] = np.arange(int(keep.sum()))
    node_vertex_ids = sampled[keep]
    nodes = mesh.vertices[node_vertex_ids]

    A = int(cfg.num_anchors)
    if cfg.geodesic:
        va, vw = geodesic_anchors(src, vid, gd, final_ids, V, A, sigma)
        if cfg.anchor_weight_distance == "euclidean":
            ok = va >= 0
            d = np.linalg.norm(mesh.vertices[:, None] - nodes[np.clip(va, 0, None)], axis=-1)
            vw = _normalise_rows(_gaussian(np.where(ok, d, 0.0), sigma), ok)
    else:
        va, vw = euclidean_anchors(mesh.vertices, nodes, A, sigma)
    pixel_anchors = np.full((H, W, A), -1, dtype=np.int64)
    pixel_weights = np.zeros((H, W, A))
    u, v = mesh.vertex_pixels[:, 0], mesh.vertex_pixels[:, 1]
    pixel_anchors[v, u] = va
    pixel_weights[v, u] = vw

    graph = DeformationGraph(
        nodes=torch.from_numpy(nodes.astype(np.float32)),
        edges=torch.from_numpy(e2.astype(np.int64)),
        edge_weights=torch.from_numpy(w2.astype(np.float32)),
        clusters=torch.from_numpy(clusters),
        cluster_sizes=torch.from_numpy(sizes),
        pixel_anchors=torch.from_numpy(pixel_anchors),
        pixel_weights=torch.from_numpy(pixel_weights.astype(np.float32)),
        node_coverage=sigma,
    )
    info = GraphBuildInfo(mesh, non_eroded, sampled, node_vertex_ids, removed_weak, removed_small, cfg)
    return graph, info


def build_graph(
    depth,
    mask,
    intrinsics,
    node_coverage: float = 0.05,
    max_triangle_edge: float = 0.05,
    erosion_iterations: int = 10,
    min_neighbours: int = 4,
    num_neighbours: int = 8,
    geodesic: bool = True,
    **kwargs,
) -> DeformationGraph:
    """Embedded deformation graph of the object in one RGB-D frame (defaults of the reference code).

    Args:
        depth: (H, W) depth in metres (numpy or torch; 0 / non-finite = invalid).
        mask: (H, W) object mask (non-zero / True = object).
        intrinsics: (fx, fy, cx, cy), 3x3 or 4x4 matrix, pixels.
        node_coverage: sigma, metres: sampling radius and Gaussian width of all weights.
        max_triangle_edge: longest triangle edge of the depth mesh, metres.
        erosion_iterations, min_neighbours: mesh erosion (boundary vertices do not become nodes).
        num_neighbours: K edges per node.
        geodesic: geodesic (Dijkstra over the mesh) edges and anchors; False for Euclidean K-NN.
        **kwargs: further :class:`GraphConfig` fields (num_anchors, min_cluster_size, small_clusters, ...).

    Returns:
        :class:`DeformationGraph` with nodes (N, 3) metres, edges / edge_weights (N, K), clusters (N,),
        cluster_sizes (C,), pixel_anchors / pixel_weights (H, W, A).

    Raises:
        ValueError: empty mask, no valid depth in the mask, shape mismatch, sigma <= 0, depth not in
            metres, clusters smaller than ``min_cluster_size`` with ``small_clusters="raise"``.
    """
    if "config" in kwargs:
        raise ValueError("config: pass a GraphConfig to build_graph_with_info, or its fields to build_graph")
    graph, _ = build_graph_with_info(
        depth, mask, intrinsics,
        node_coverage=node_coverage, max_triangle_edge=max_triangle_edge,
        erosion_iterations=erosion_iterations, min_neighbours=min_neighbours,
        num_neighbours=num_neighbours, geodesic=geodesic, **kwargs,
    )
    return graph
