"""``nrsfm-kit graph``: builds a graph from image files and writes the reference binary files."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from nrsfm_kit.cli import main
from nrsfm_kit.graph import build_graph
from nrsfm_kit.graph import io as gio
from nrsfm_kit.graph.synthetic import synthetic_depth


def _write_frame(tmp_path):
    depth, mask, intr = synthetic_depth(60, 80, "wave", extent=0.6)
    cv2.imwrite(str(tmp_path / "d.png"), np.round(depth * 1000).astype(np.uint16))
    cv2.imwrite(str(tmp_path / "m.png"), mask.astype(np.uint16) * 65535)
    K = np.eye(4)
    K[0, 0], K[1, 1], K[0, 2], K[1, 2] = intr
    np.savetxt(tmp_path / "K.txt", K)
    return np.round(depth * 1000).astype(np.uint16) / 1000.0, mask, intr


def test_graph_command_writes_loadable_files(tmp_path, capsys):
    depth, mask, intr = _write_frame(tmp_path)
    rc = main(["graph", "--depth", str(tmp_path / "d.png"), "--mask", str(tmp_path / "m.png"),
               "--intrinsics", str(tmp_path / "K.txt"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0 and "nodes, clusters" in out
    loaded = gio.load_graph(tmp_path / "out", "d_geodesic_0.05")
    expected = build_graph(depth.astype(np.float32), mask, intr)
    assert torch.equal(loaded.edges, expected.edges) and torch.allclose(loaded.nodes, expected.nodes)


def test_graph_command_bad_input_is_a_clean_error(tmp_path, capsys):
    _write_frame(tmp_path)
    rc = main(["graph", "--depth", str(tmp_path / "nope.png"), "--mask", str(tmp_path / "m.png"),
               "--intrinsics", str(tmp_path / "K.txt"), "--out", str(tmp_path / "out")])
    assert rc == 2 and "nope.png: expected a depth image, found none" in capsys.readouterr().err
    cv2.imwrite(str(tmp_path / "empty.png"), np.zeros((60, 80), np.uint16))
    rc = main(["graph", "--depth", str(tmp_path / "d.png"), "--mask", str(tmp_path / "empty.png"),
               "--intrinsics", str(tmp_path / "K.txt"), "--out", str(tmp_path / "out")])
    assert rc == 2 and "mask: expected at least one object pixel" in capsys.readouterr().err
    rc = main(["graph", "--depth", str(tmp_path / "d.png"), "--mask", str(tmp_path / "m.png"),
               "--intrinsics", str(tmp_path / "K.txt"), "--out", str(tmp_path / "out"), "--node-coverage", "0"])
    assert rc == 2 and "node_coverage: expected a finite value > 0" in capsys.readouterr().err
