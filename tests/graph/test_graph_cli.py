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


def _args(tmp_path, **over):
    a = {"--depth": tmp_path / "d.png", "--mask": tmp_path / "m.png", "--intrinsics": tmp_path / "K.txt",
         "--out": tmp_path / "out"}
    a.update(over)
    return ["graph"] + [str(x) for kv in a.items() for x in kv]


def test_graph_command_bad_input_is_a_clean_error(tmp_path, capsys):
    _write_frame(tmp_path)
    assert main(_args(tmp_path, **{"--depth": tmp_path / "nope.png"})) == 2
    assert f"--depth: {tmp_path / 'nope.png'} does not exist (expected a depth PNG)" in capsys.readouterr().err
    cv2.imwrite(str(tmp_path / "empty.png"), np.zeros((60, 80), np.uint16))
    assert main(_args(tmp_path, **{"--mask": tmp_path / "empty.png"})) == 2
    assert f"--mask {tmp_path / 'empty.png'}: expected at least one object pixel" in capsys.readouterr().err
    assert main(_args(tmp_path) + ["--node-coverage", "0"]) == 2
    assert "--node-coverage: expected a finite value > 0, found 0.0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_graph_command_errors_name_the_flag_and_the_file(tmp_path, capsys):
    _write_frame(tmp_path)
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    assert main(_args(tmp_path, **{"--intrinsics": tmp_path / "bad.txt"})) == 2
    assert f"--intrinsics {tmp_path / 'bad.txt'}: expected a 4x4 or 3x3 intrinsics matrix" in capsys.readouterr().err
    (tmp_path / "words.txt").write_text("fx fy cx cy\n")
    assert main(_args(tmp_path, **{"--intrinsics": tmp_path / "words.txt"})) == 2
    assert f"--intrinsics {tmp_path / 'words.txt'}: expected a whitespace-separated numeric" in capsys.readouterr().err
    assert main(_args(tmp_path, **{"--intrinsics": tmp_path})) == 2
    assert f"--intrinsics: expected an intrinsics text file, found a directory {tmp_path}" in capsys.readouterr().err
    cv2.imwrite(str(tmp_path / "small.png"), np.ones((30, 40), np.uint16))
    assert main(_args(tmp_path, **{"--mask": tmp_path / "small.png"})) == 2
    assert "expected the size of --depth" in capsys.readouterr().err
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((60, 80, 3), np.uint8))
    assert main(_args(tmp_path, **{"--depth": tmp_path / "rgb.png"})) == 2
    assert f"--depth {tmp_path / 'rgb.png'}: expected a single-channel uint16 depth PNG" in capsys.readouterr().err
    assert main(_args(tmp_path) + ["--depth-scale", "1"]) == 2
    assert "--depth-scale 1: expected depths <= 100 m" in capsys.readouterr().err
    assert main(_args(tmp_path) + ["--node-coverage", "5"]) == 2  # one node: no edges
    assert "--node-coverage: expected a sigma small enough" in capsys.readouterr().err
    assert main(_args(tmp_path, **{"--out": tmp_path / "K.txt"})) == 2
    err = capsys.readouterr().err
    assert f"--out: expected a folder (existing or new) at {tmp_path / 'K.txt'}, found a file" in err
    assert not (tmp_path / "out").exists()


def test_graph_folder_is_described_by_data_info(tmp_path, capsys):
    _write_frame(tmp_path)
    assert main(_args(tmp_path) + ["--name", "g"]) == 0
    g = gio.load_graph(tmp_path / "out", "g")
    capsys.readouterr()
    assert main(["data", "info", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"nodes          {g.num_nodes:>7}" in out and "pixel anchors  80x60 pixels, 4 anchors per pixel" in out


def test_graph_command_on_the_real_frame(real_data, tmp_path, capsys):
    seq = real_data("deepdeform", "train", "seq258")
    rc = main(["graph", "--depth", str(seq / "depth" / "000000.png"), "--mask", str(seq / "mask" / "000000_shirt.png"),
               "--intrinsics", str(seq / "intrinsics.txt"), "--out", str(tmp_path)])
    assert rc == 0
    assert main(["data", "info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "000000_geodesic_0.05" in out and "pixel anchors  640x480 pixels" in out
