"""``nrsfm-kit data`` subcommands."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.cli import main
from nrsfm_kit.data import load_cmu_mocap, load_deepdeform_pair, load_nrsfm_mat, load_sintel_scene


def test_synth_and_info(tmp_path, capsys):
    assert main(["data", "synth", "rgbd-pair", str(tmp_path / "dd"), "--size", "24x32"]) == 0
    pair = load_deepdeform_pair(tmp_path / "dd", 0, 1)
    assert pair.source_color.shape == (3, 24, 32) and pair.optical_flow is not None
    assert main(["data", "synth", "nrsfm", str(tmp_path / "s.mat"), "--frames", "20"]) == 0
    assert load_nrsfm_mat(tmp_path / "s.mat").W.shape == (20, 31, 2)
    assert main(["data", "synth", "mocap", str(tmp_path / "m"), "--frames", "5", "--motion", "bending"]) == 0
    assert load_cmu_mocap(tmp_path / "m" / "synthetic.asf", tmp_path / "m" / "synthetic_bending.amc").joints.shape == (
        5, 31, 3)  # fmt: skip
    assert main(["data", "synth", "video", str(tmp_path / "v"), "--frames", "2", "--size", "16x24"]) == 0
    v = load_sintel_scene(tmp_path / "v", "synthetic")
    assert v.frames.shape == (2, 3, 16, 24) and torch.isfinite(v.flow).all()
    capsys.readouterr()
    assert main(["data", "info", str(tmp_path / "s.mat")]) == 0
    assert "20 frames x 31 points" in capsys.readouterr().out
    assert main(["data", "info", str(tmp_path / "dd" / "optical_flow" / "synthetic_000000_000001.oflow")]) == 0
    assert main(["data", "info", str(tmp_path / "dd")]) == 0
    out = capsys.readouterr().out
    assert "DeepDeform sequence, 2 colour frames, 32x24 pixels" in out
    counts = {line.split()[0] + line.split()[1]: line.split()[2] for line in out.splitlines()[2:] if
              line.split()[0] in ("colour", "depth", "optical", "scene")}
    assert counts == {"colourframes": "2", "depthframes": "2", "opticalflow": "1", "sceneflow": "1"}, out
    assert "masks              1  objects: synthetic" in out and "labels             0" in out


def test_cli_errors(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "nothing.mat")]) == 2
    assert "nothing.mat: not found" in capsys.readouterr().err
    (tmp_path / "x.txt").write_text("hi")
    assert main(["data", "info", str(tmp_path / "x.txt")]) == 2
    with pytest.raises(SystemExit):
        main(["data", "synth", "rgbd-pair", str(tmp_path), "--size", "big"])


def test_cli_bad_values_exit_2_with_the_flag_named(tmp_path, capsys):
    assert main(["data", "synth", "nrsfm", str(tmp_path / "s.mat"), "--frames", "1"]) == 2
    assert "error: --frames: expected an integer >= 2, found 1" in capsys.readouterr().err
    assert main(["data", "synth", "mocap", str(tmp_path / "m"), "--frames", "0"]) == 2
    assert "error: --frames: expected an integer >= 1, found 0" in capsys.readouterr().err
    assert main(["data", "synth", "video", str(tmp_path / "v"), "--size", "4x4"]) == 2
    assert "error: --size (height): expected an integer >= 8, found 4" in capsys.readouterr().err
    assert not (tmp_path / "s.mat").exists() and not (tmp_path / "v").exists()


def test_synth_refuses_options_of_other_samples_and_bad_outputs(tmp_path, capsys):
    assert main(["data", "synth", "mocap", str(tmp_path / "m"), "--kind", "lowrank"]) == 2
    assert "--kind: expected only with nrsfm, found it with mocap" in capsys.readouterr().err
    assert main(["data", "synth", "rgbd-pair", str(tmp_path / "p"), "--frames", "3"]) == 2
    assert "--frames: expected only with nrsfm / mocap / video, found it with rgbd-pair" in capsys.readouterr().err
    assert main(["data", "synth", "nrsfm", str(tmp_path), "--frames", "5"]) == 2  # a directory as OUT.mat
    assert f"OUT: expected a file path to write, found a directory {tmp_path}" in capsys.readouterr().err
    (tmp_path / "f").write_text("x")
    assert main(["data", "synth", "video", str(tmp_path / "f" / "v")]) == 2
    assert "OUT: expected a folder (existing or new)" in capsys.readouterr().err
    assert main(["data", "synth", "nrsfm", str(tmp_path / "s.mat"), "--seed", "-1"]) == 2
    assert "--seed: expected an integer >= 0, found -1" in capsys.readouterr().err
    assert not any(p.name != "f" for p in tmp_path.iterdir())


def test_info_on_a_graph_folder(tmp_path, capsys):
    from nrsfm_kit.graph import build_graph
    from nrsfm_kit.graph.io import save_graph
    from nrsfm_kit.graph.synthetic import synthetic_depth

    depth, mask, intr = synthetic_depth(40, 52, "wave", extent=0.6)
    g = build_graph(depth, mask, intr)
    save_graph(tmp_path / "g", "frame_geodesic_0.05", g)
    assert main(["data", "info", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    n, k = g.edges.shape
    assert "deformation graph folder, 1 graph" in out and "frame_geodesic_0.05" in out
    assert f"nodes          {n:>7}" in out
    assert f"edges          {int((g.edges >= 0).sum()):>7}  ({k} neighbours per node" in out
    assert f"clusters       {len(g.cluster_sizes):>7}  sizes {g.cluster_sizes.tolist()}" in out
    assert f"pixel anchors  52x40 pixels, 4 anchors per pixel, {int((g.pixel_anchors >= 0).any(-1).sum())}" in out
    # one of its .bin files describes that graph
    assert main(["data", "info", str(tmp_path / "g" / "graph_edges" / "frame_geodesic_0.05.bin")]) == 0
    assert f"nodes          {n:>7}" in capsys.readouterr().out


def test_info_on_a_deepdeform_sequence_counts_labels(tmp_path, capsys):
    import json

    seq = tmp_path / "root" / "train" / "seq001"
    assert main(["data", "synth", "rgbd-pair", str(seq), "--size", "24x32"]) == 0
    labels = [{"seq_id": "seq001", "object_id": "synthetic", "source_id": 0, "target_id": 1, "matches": []},
              {"seq_id": "seq001", "object_id": "synthetic", "source_id": 0, "target_id": 1, "matches": []},
              {"seq_id": "seq999", "object_id": "x", "source_id": 0, "target_id": 1, "matches": []}]
    (tmp_path / "root" / "train_matches.json").write_text(json.dumps(labels))
    capsys.readouterr()
    assert main(["data", "info", str(seq)]) == 0
    out = capsys.readouterr().out
    assert f"labels             2  records of seq001 in {tmp_path / 'root' / 'train_matches.json'}" in out, out


def test_info_on_the_real_deepdeform_sequence(real_data, capsys):
    seq = real_data("deepdeform", "train", "seq258")
    assert main(["data", "info", str(seq)]) == 0
    out = capsys.readouterr().out
    assert "DeepDeform sequence, 2 colour frames, 640x480 pixels" in out
    assert "masks              1  objects: shirt" in out and "shirt 000000->000110" in out


def test_info_errors_name_the_path(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["data", "info", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'empty'}: expected a .mat" in err and "found another folder" in err
    (tmp_path / "dir.mat").mkdir()
    assert main(["data", "info", str(tmp_path / "dir.mat")]) == 2
    assert "found another folder" in capsys.readouterr().err
