"""Binary graph files in the Neural Non-Rigid Tracking layout: exact bytes, round trips, corrupt files."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from nrsfm_kit.graph import build_graph
from nrsfm_kit.graph import io as gio
from nrsfm_kit.graph.synthetic import synthetic_depth


@pytest.fixture(scope="module")
def graph():
    depth, mask, intr = synthetic_depth(60, 80, "wave", extent=0.6)
    return build_graph(depth, mask, intr)


def test_byte_layout_matches_the_reference_struct_packing(tmp_path):
    """The reference writes struct.pack('I', ...) headers then '={n}f' / '={n}i' payloads."""
    nodes = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    edges = np.array([[1, -1], [0, -1]], dtype=np.int32)
    anchors = np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4) - 1
    ref_nodes = struct.pack("I", 2) + struct.pack("=6f", *nodes.ravel())
    ref_edges = struct.pack("I", 2) + struct.pack("I", 2) + struct.pack("=4i", *edges.ravel())
    ref_anchors = struct.pack("III", 4, 3, 2) + struct.pack("=24i", *anchors.ravel())  # header (A, W, H)
    ref_clusters = struct.pack("II", 2, 1) + struct.pack("=2i", 0, 0)
    assert gio.write_nodes(tmp_path / "n.bin", nodes).read_bytes() == ref_nodes
    assert gio.write_edges(tmp_path / "e.bin", edges).read_bytes() == ref_edges
    assert gio.write_pixel_anchors(tmp_path / "a.bin", anchors).read_bytes() == ref_anchors
    assert gio.write_clusters(tmp_path / "c.bin", np.zeros(2, np.int64)).read_bytes() == ref_clusters
    np.testing.assert_array_equal(gio.read_pixel_anchors(tmp_path / "a.bin"), anchors)
    np.testing.assert_array_equal(gio.read_nodes(tmp_path / "n.bin"), nodes)


def test_graph_round_trip(tmp_path, graph):
    deform = torch.randn(graph.num_nodes, 3) * 0.01
    paths = gio.save_graph(tmp_path, "shirt_000000_000110_geodesic_0.05", graph, node_deformations=deform)
    assert paths["nodes"] == tmp_path / "graph_nodes" / "shirt_000000_000110_geodesic_0.05.bin"
    assert all(p.is_file() for p in paths.values())
    g2 = gio.load_graph(tmp_path, "shirt_000000_000110_geodesic_0.05", node_coverage=graph.node_coverage)
    for name in ("nodes", "edges", "edge_weights", "clusters", "cluster_sizes", "pixel_anchors", "pixel_weights"):
        a, b = getattr(graph, name), getattr(g2, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name
    np.testing.assert_array_equal(gio.read_node_deformations(paths["node_deformations"]), deform.numpy())


def test_corrupt_and_missing_files(tmp_path, graph):
    p = gio.write_edges(tmp_path / "e.bin", graph.edges)
    raw = p.read_bytes()
    (tmp_path / "trunc.bin").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match=r"trunc.bin: expected \d+ bytes for header \(\d+, 8\) .*found \d+ \(truncated\)"):
        gio.read_edges(tmp_path / "trunc.bin")
    (tmp_path / "long.bin").write_bytes(raw + b"\0\0\0\0")
    with pytest.raises(ValueError, match="trailing bytes / wrong header"):
        gio.read_edges(tmp_path / "long.bin")
    (tmp_path / "hdr.bin").write_bytes(raw[:6])
    with pytest.raises(ValueError, match="hdr.bin: expected a 8-byte header"):
        gio.read_edges(tmp_path / "hdr.bin")
    (tmp_path / "big.bin").write_bytes(struct.pack("II", 10**6, 8) + raw[8:])  # mis-headed
    with pytest.raises(ValueError, match="big.bin: expected 32000008 bytes"):
        gio.read_edges(tmp_path / "big.bin")
    bad_ids = graph.edges.clone()
    bad_ids[0, 0] = graph.num_nodes + 5
    gio.write_edges(tmp_path / "ids.bin", bad_ids)
    with pytest.raises(ValueError, match=r"ids.bin: expected edge ids in \[-1, \d+\]"):
        gio.read_edges(tmp_path / "ids.bin")
    (tmp_path / "cl.bin").write_bytes(struct.pack("II", 2, 2) + struct.pack("=4i", 0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"cl.bin: expected header \(N, 1\) for graph clusters, found \(2, 2\)"):
        gio.read_clusters(tmp_path / "cl.bin")
    (tmp_path / "nan.bin").write_bytes(struct.pack("I", 1) + struct.pack("=3f", 0.0, float("nan"), 1.0))
    with pytest.raises(ValueError, match=r"nan.bin: expected finite values \(graph nodes\), found 1 non-finite"):
        gio.read_nodes(tmp_path / "nan.bin")
    with pytest.raises(FileNotFoundError, match="missing.bin: expected a graph nodes file, found none"):
        gio.read_nodes(tmp_path / "missing.bin")
    with pytest.raises(FileNotFoundError, match="graph_nodes"):
        gio.load_graph(tmp_path, "nothing")


def test_inconsistent_graph_folder_and_bad_writes(tmp_path, graph):
    gio.save_graph(tmp_path, "g", graph)
    gio.write_nodes(tmp_path / "graph_nodes" / "g.bin", graph.nodes[:-1])  # one node fewer than edges
    with pytest.raises(ValueError, match=r"graph_edges/g.bin: expected \d+ rows \(as g.bin\)"):
        gio.load_graph(tmp_path, "g")
    with pytest.raises(ValueError, match=r"nodes: expected shape \(\*, 3\), found \(4, 2\)"):
        gio.write_nodes(tmp_path / "x.bin", np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="nodes: expected finite values"):
        gio.write_nodes(tmp_path / "x.bin", np.full((4, 3), np.inf, np.float32))
    with pytest.raises(ValueError, match="edges: expected integer ids"):
        gio.write_edges(tmp_path / "x.bin", np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="graph: expected a DeformationGraph"):
        gio.save_graph(tmp_path, "g", {"nodes": 1})
    with pytest.raises(ValueError, match="name: expected a file stem"):
        gio.save_graph(tmp_path, "a/b", graph)
    with pytest.raises(ValueError, match=r"node_deformations: expected shape \(\d+, 3\)"):
        gio.save_graph(tmp_path, "g", graph, node_deformations=torch.zeros(2, 3))
