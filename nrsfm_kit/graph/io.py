"""Binary graph files of the Neural Non-Rigid Tracking reference implementation (read and write).

Layouts (DeformableFriends/NeuralTracking ``utils/utils.py``; all little-endian, C order):

============================  ======================================  =========================
file (folder)                 header (uint32)                         payload
============================  ======================================  =========================
graph_nodes                   N                                       float32 (N, 3)
graph_edges                   N, K                                    int32 (N, K), -1 padding
graph_edges_weights           N, K                                    float32 (N, K)
graph_clusters                N, 1                                    int32 (N, 1)
graph_node_deformations       N                                       float32 (N, 3)
pixel_anchors                 A, W, H   (shape reversed)              int32 (H, W, A)
pixel_weights                 A, W, H   (shape reversed)              float32 (H, W, A)
============================  ======================================  =========================

A graph is stored as one file per folder, ``<root>/<folder>/<name>.bin`` (the reference names them
``<pair>_geodesic_0.05.bin``). Readers check that the file exists, that the header is complete, that the
payload size matches the header exactly (truncated or mis-headed files raise ``ValueError`` naming the
path, the expected and the found size) and that floats are finite. Writes are atomic.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from nrsfm_kit.graph.types import DeformationGraph
from nrsfm_kit.utils.io import atomic_write_bytes

__all__ = [
    "FOLDERS", "read_nodes", "write_nodes", "read_edges", "write_edges", "read_edge_weights",
    "write_edge_weights", "read_clusters", "write_clusters", "read_node_deformations",
    "write_node_deformations", "read_pixel_anchors", "write_pixel_anchors", "read_pixel_weights",
    "write_pixel_weights", "save_graph", "load_graph", "read_graph_core", "graph_from_arrays",
]

# folder of each array in the reference dataset layout
FOLDERS = {
    "nodes": "graph_nodes",
    "edges": "graph_edges",
    "edge_weights": "graph_edges_weights",
    "clusters": "graph_clusters",
    "node_deformations": "graph_node_deformations",
    "pixel_anchors": "pixel_anchors",
    "pixel_weights": "pixel_weights",
}

_U32 = np.dtype("<u4")
_F32 = np.dtype("<f4")
_I32 = np.dtype("<i4")


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _read(
    path, header_len: int, dtype: np.dtype, what: str, per_item: int = 1
) -> tuple[tuple[int, ...], np.ndarray]:
    """Read ``header_len`` uint32 then ``prod(header) * per_item`` values; strict size checks."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected a {what} file, found none")
    raw = path.read_bytes()
    hbytes = 4 * header_len
    if len(raw) < hbytes:
        raise ValueError(f"{path}: expected a {hbytes}-byte header ({what}), found a {len(raw)}-byte file")
    header = tuple(int(v) for v in np.frombuffer(raw[:hbytes], dtype=_U32))
    count = int(np.prod(header, dtype=np.int64)) * per_item
    expected = hbytes + count * dtype.itemsize
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "trailing bytes / wrong header"
        raise ValueError(
            f"{path}: expected {expected} bytes for header {header} ({what}), found {len(raw)} ({kind})"
        )
    data = np.frombuffer(raw[hbytes:], dtype=dtype).copy()
    if dtype.kind == "f" and not np.isfinite(data).all():
        raise ValueError(f"{path}: expected finite values ({what}), found {int((~np.isfinite(data)).sum())} non-finite")
    return header, data


def _write(path, header: tuple[int, ...], data: np.ndarray, dtype: np.dtype) -> Path:
    blob = np.asarray(header, dtype=_U32).tobytes() + np.ascontiguousarray(data, dtype=dtype).tobytes()
    return atomic_write_bytes(path, blob)


def _check(name: str, a: np.ndarray, ndim: int, last: int | None = None) -> np.ndarray:
    if a.ndim != ndim or (last is not None and a.shape[-1] != last):
        want = "(" + ", ".join(["*"] * (ndim - 1) + [str(last) if last is not None else "*"]) + ")"
        raise ValueError(f"{name}: expected shape {want}, found {a.shape}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{name}: expected finite values, found {int((~np.isfinite(a)).sum())} non-finite")
    return a


def _check_ids(name: str, a: np.ndarray) -> np.ndarray:
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer ids, found dtype {a.dtype}")
    if a.size and (a.min() < -1 or a.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{name}: expected ids in [-1, 2^31), found range [{a.min()}, {a.max()}]")
    return a


# --- node positions / deformations: header N, float32 (N, 3) --------------------------------------


def read_nodes(path) -> np.ndarray:
    """(N, 3) float32 node positions, metres."""
    (n,), data = _read(path, 1, _F32, "graph nodes", per_item=3)
    return data.reshape(n, 3)


def write_nodes(path, nodes) -> Path:
    """Write (N, 3) node positions (float32)."""
    a = _check("nodes", _np(nodes), 2, 3)
    return _write(path, (a.shape[0],), a, _F32)


def read_node_deformations(path) -> np.ndarray:
    """(N, 3) float32 node translations, metres (same layout as nodes)."""
    return read_nodes(path)


def write_node_deformations(path, deformations) -> Path:
    """Write (N, 3) node translations (float32)."""
    return write_nodes(path, deformations)


# --- edges / weights: header N, K -----------------------------------------------------------------


def read_edges(path) -> np.ndarray:
    """(N, K) int64 neighbour ids, -1 padding."""
    (n, k), data = _read(path, 2, _I32, "graph edges")
    out = data.reshape(n, k).astype(np.int64)
    if out.size and (out.min() < -1 or out.max() >= n):
        raise ValueError(f"{path}: expected edge ids in [-1, {n - 1}], found range [{out.min()}, {out.max()}]")
    return out


def write_edges(path, edges) -> Path:
    """Write (N, K) edges as int32."""
    a = _check_ids("edges", _check("edges", _np(edges), 2))
    return _write(path, a.shape, a, _I32)


def read_edge_weights(path) -> np.ndarray:
    """(N, K) float32 edge weights."""
    (n, k), data = _read(path, 2, _F32, "graph edge weights")
    return data.reshape(n, k)


def write_edge_weights(path, weights) -> Path:
    """Write (N, K) edge weights as float32."""
    a = _check("edge_weights", _np(weights), 2)
    return _write(path, a.shape, a, _F32)


# --- clusters: header N, 1 ------------------------------------------------------------------------


def read_clusters(path) -> np.ndarray:
    """(N,) int64 cluster id per node (stored as (N, 1) int32)."""
    (n, one), data = _read(path, 2, _I32, "graph clusters")
    if one != 1:
        raise ValueError(f"{path}: expected header (N, 1) for graph clusters, found ({n}, {one})")
    return data.astype(np.int64)


def write_clusters(path, clusters) -> Path:
    """Write (N,) cluster ids as an (N, 1) int32 array."""
    a = _np(clusters)
    a = _check_ids("clusters", a.reshape(-1, 1) if a.ndim == 1 else _check("clusters", a, 2, 1))
    return _write(path, a.shape, a, _I32)


# --- pixel anchors / weights: header (A, W, H), payload (H, W, A) ---------------------------------


def read_pixel_anchors(path) -> np.ndarray:
    """(H, W, A) int64 node ids per pixel, -1 invalid."""
    (a, w, h), data = _read(path, 3, _I32, "pixel anchors")
    out = data.reshape(h, w, a).astype(np.int64)
    if out.size and out.min() < -1:
        raise ValueError(f"{path}: expected anchor ids >= -1, found {out.min()}")
    return out


def write_pixel_anchors(path, anchors) -> Path:
    """Write (H, W, A) anchors as int32 (header A, W, H as the reference does)."""
    x = _check_ids("pixel_anchors", _check("pixel_anchors", _np(anchors), 3))
    return _write(path, x.shape[::-1], x, _I32)


def read_pixel_weights(path) -> np.ndarray:
    """(H, W, A) float32 skinning weights per pixel."""
    (a, w, h), data = _read(path, 3, _F32, "pixel weights")
    return data.reshape(h, w, a)


def write_pixel_weights(path, weights) -> Path:
    """Write (H, W, A) weights as float32 (header A, W, H)."""
    x = _check("pixel_weights", _np(weights), 3)
    return _write(path, x.shape[::-1], x, _F32)


# --- whole graphs ----------------------------------------------------------------------------------


def _paths(root, name: str) -> dict[str, Path]:
    root = Path(root)
    return {key: root / folder / f"{name}.bin" for key, folder in FOLDERS.items()}


def save_graph(root: str | os.PathLike, name: str, graph: DeformationGraph, node_deformations=None) -> dict:
    """Write ``graph`` as ``<root>/<folder>/<name>.bin`` files (reference layout); returns the paths.

    ``node_deformations`` (N, 3) metres is optional (the reference stores ground-truth node motion).
    """
    if not isinstance(graph, DeformationGraph):
        raise ValueError(f"graph: expected a DeformationGraph, found {type(graph).__name__}")
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"name: expected a file stem without folders, found {name!r}")
    try:  # every check before the first file is written: a bad graph leaves no partial set of files behind
        graph.validate()
    except ValueError as exc:
        raise ValueError(f"graph.{exc}") from None
    p = _paths(root, name)
    write_nodes(p["nodes"], graph.nodes)
    write_edges(p["edges"], graph.edges)
    write_edge_weights(p["edge_weights"], graph.edge_weights)
    write_clusters(p["clusters"], graph.clusters)
    write_pixel_anchors(p["pixel_anchors"], graph.pixel_anchors)
    write_pixel_weights(p["pixel_weights"], graph.pixel_weights)
    if node_deformations is not None:
        d = _check("node_deformations", _np(node_deformations), 2, 3)
        if d.shape[0] != graph.num_nodes:
            raise ValueError(f"node_deformations: expected shape ({graph.num_nodes}, 3), found {d.shape}")
        write_node_deformations(p["node_deformations"], d)
    else:
        p.pop("node_deformations")
    return p


def read_graph_core(paths: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(nodes, edges, edge_weights, clusters) from the files ``paths`` (keys as :data:`FOLDERS`), with their
    mutual consistency checked (node count, shapes, cluster ids); errors name the offending file."""
    nodes = read_nodes(paths["nodes"])
    edges = read_edges(paths["edges"])
    weights = read_edge_weights(paths["edge_weights"])
    clusters = read_clusters(paths["clusters"])
    n = nodes.shape[0]
    if edges.shape[0] != n:
        raise ValueError(f"{paths['edges']}: expected {n} rows (as {paths['nodes'].name}), found {edges.shape[0]}")
    if weights.shape != edges.shape:
        raise ValueError(f"{paths['edge_weights']}: expected shape {edges.shape} (as edges), found {weights.shape}")
    if clusters.shape[0] != n:
        raise ValueError(f"{paths['clusters']}: expected {n} nodes (as {paths['nodes']}), found {clusters.shape[0]}")
    if clusters.size and clusters.min() < 0:
        raise ValueError(f"{paths['clusters']}: expected cluster ids >= 0, found {clusters.min()}")
    return nodes, edges, weights, clusters


def graph_from_arrays(nodes, edges, weights, clusters, anchors, pweights, node_coverage: float) -> DeformationGraph:
    """A :class:`DeformationGraph` from checked numpy arrays (cluster sizes recomputed from the ids)."""
    sizes = np.bincount(clusters) if clusters.size else np.zeros(0, np.int64)
    return DeformationGraph(
        nodes=torch.from_numpy(nodes),
        edges=torch.from_numpy(edges),
        edge_weights=torch.from_numpy(weights),
        clusters=torch.from_numpy(clusters),
        cluster_sizes=torch.from_numpy(sizes.astype(np.int64)),
        pixel_anchors=torch.from_numpy(anchors),
        pixel_weights=torch.from_numpy(pweights),
        node_coverage=float(node_coverage),
    )


def load_graph(root: str | os.PathLike, name: str, node_coverage: float = 0.05) -> DeformationGraph:
    """Read a graph written by the reference implementation (or :func:`save_graph`).

    Cluster sizes are recomputed from the cluster ids; consistency between the files (node count,
    anchor ids, weights shape) is checked.
    """
    p = _paths(root, name)
    nodes, edges, weights, clusters = read_graph_core(p)
    anchors = read_pixel_anchors(p["pixel_anchors"])
    pweights = read_pixel_weights(p["pixel_weights"])
    n = nodes.shape[0]
    if pweights.shape != anchors.shape:
        raise ValueError(f"{p['pixel_weights']}: expected shape {anchors.shape} (as anchors), found {pweights.shape}")
    if anchors.size and anchors.max() >= n:
        raise ValueError(f"{p['pixel_anchors']}: expected anchor ids < {n} nodes, found {anchors.max()}")
    return graph_from_arrays(nodes, edges, weights, clusters, anchors, pweights, node_coverage)
