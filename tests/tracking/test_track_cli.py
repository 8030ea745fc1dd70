"""`nrsfm-kit track` (train / eval / pair / ablation), pair tracking on the real DeepDeform pair, flip augmentation."""

from __future__ import annotations

import json

import pytest
import torch

from nrsfm_kit.cli import main
from nrsfm_kit.data.deepdeform import read_flow_binary
from nrsfm_kit.tracking.data import synthetic_tracking_pairs
from nrsfm_kit.tracking.pair import crop_size_for, read_rgbd_pair, track_pair
from nrsfm_kit.tracking.training import flip_sample, preset


def test_flip_sample_is_exact():
    s = synthetic_tracking_pairs("train", 1, 64, 128, progress=False)[0]
    f = flip_sample(s, True, True)
    assert torch.equal(f.source_color, s.source_color.flip([-1, -2]))
    # the flow at the mirrored pixel points the mirrored way
    torch.testing.assert_close(f.optical_flow[63 - 5, 127 - 7], s.optical_flow[5, 7] * torch.tensor([-1.0, -1.0]))
    assert flip_sample(s, False, False) is s


def test_crop_size_for():
    assert crop_size_for(480, 640) == (448, 640)
    with pytest.raises(ValueError, match="at least 64"):
        crop_size_for(50, 640)


def test_train_then_eval_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["track", "train", "--stage", "flow", "--preset", "smoke", "--out", str(out), "--steps", "2"])
    assert rc == 0, capsys.readouterr().err
    assert (out / "tracker.pt").is_file() and (out / "flow" / "checkpoint.pt").is_file()
    rc = main(["track", "train", "--stage", "flow", "--preset", "smoke", "--out", str(out), "--steps", "2"])
    assert rc == 0 and "already trained" in capsys.readouterr().out  # resumes: nothing left to do
    js = tmp_path / "eval.json"
    rc = main(["track", "eval", "--preset", "smoke", "--checkpoint", str(out / "tracker.pt"), "--json", str(js)])
    assert rc == 0
    m = json.loads(js.read_text())
    assert m["pairs"] == preset("smoke").test_pairs and m["epe_3d_mm"] > 0
    rc = main(["track", "eval", "--preset", "smoke", "--correspondences", "gt", "--json", str(js)])
    assert rc == 0 and json.loads(js.read_text())["epe_3d_mm"] < m["epe_3d_mm"]


def test_cli_bad_inputs(tmp_path, capsys):
    assert main(["track", "eval", "--preset", "smoke"]) == 2
    assert "--checkpoint: expected a tracker.pt" in capsys.readouterr().err
    assert main(["track", "eval", "--data", str(tmp_path / "nope"), "--correspondences", "dis"]) == 2
    assert "expected 'synthetic' or a DeepDeform root" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    torch.save({"something": 1}, bad)
    assert main(["track", "eval", "--preset", "smoke", "--checkpoint", str(bad)]) == 2
    assert "expected a neural-tracker checkpoint" in capsys.readouterr().err
    assert main(["track", "train", "--preset", "nope", "--out", str(tmp_path)]) == 2
    assert "--preset nope: expected one of" in capsys.readouterr().err


@pytest.fixture
def seq258(real_data):
    return real_data("deepdeform", "train", "seq258")


def _files(d, s="000000", t="000110"):
    return [str(d / "color" / f"{s}.jpg"), str(d / "depth" / f"{s}.png"), str(d / "color" / f"{t}.jpg"),
            str(d / "depth" / f"{t}.png"), str(d / "intrinsics.txt")]


def test_track_real_pair_with_dis_writes_dataset_layout(seq258, tmp_path, capsys):
    sc, sd, tc, td, intr = _files(seq258)
    out = tmp_path / "pair"
    rc = main(["track", "pair", "--source-color", sc, "--source-depth", sd, "--target-color", tc, "--target-depth", td,
               "--intrinsics", intr, "--mask", str(seq258 / "mask" / "000000_shirt.png"), "--correspondences", "dis",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    for f in ("deformed.ply", "scene_flow.sflow", "optical_flow.oflow", "graph_motion.npz", "result.json"):
        assert (out / f).is_file()
    pred, valid = read_flow_binary(out / "scene_flow.sflow")
    gt, gv = read_flow_binary(seq258 / "scene_flow" / "shirt_000000_000110.sflow")
    assert pred.shape == gt.shape == (480, 640, 3)
    both = valid & gv
    assert int(both.sum()) > 40_000
    epe = float((pred - gt)[both].norm(dim=-1).mean())
    ident = float(gt[both].norm(dim=-1).mean())
    # DIS correspondences + the solver: measured 33.9 mm against 235 mm of the identity motion
    assert epe < 0.25 * ident and epe < 0.05
    res = json.loads((out / "result.json").read_text())
    assert res["solved"] and res["crop"] == [16, 0, 448, 640] and res["energy"][-1] < res["energy"][0]


def test_track_real_pair_reads_a_graph_folder_and_derives_the_object(seq258, tmp_path):
    from nrsfm_kit.graph import build_graph
    from nrsfm_kit.graph.io import save_graph

    pair = read_rgbd_pair(*_files(seq258), str(seq258 / "mask" / "000000_shirt.png"))
    g = build_graph(pair.source_depth, pair.source_mask, pair.intrinsics)
    save_graph(tmp_path / "graph", "shirt_000000_geodesic_0.05", g)
    no_mask = read_rgbd_pair(*_files(seq258))
    s = track_pair(no_mask, tmp_path / "out", correspondences="dis", graph_dir=tmp_path / "graph")
    assert s["solved"] and s["nodes"] == g.num_nodes
    # the object comes from the nodes (2 sigma): about the mask's size, far less than all valid depth
    assert 0.5 * int(pair.source_mask.sum()) < s["tracked_points"] < 1.6 * int(pair.source_mask.sum())


def test_track_pair_bad_inputs(seq258, tmp_path):
    sc, sd, tc, td, intr = _files(seq258)
    pair = read_rgbd_pair(sc, sd, tc, td, intr)
    with pytest.raises(ValueError, match="tracker: expected a trained NeuralTracker"):
        track_pair(pair, tmp_path, correspondences="learned")
    with pytest.raises(ValueError, match="correspondences: expected 'learned' or 'dis'"):
        track_pair(pair, tmp_path, correspondences="sift")
    import cv2
    import numpy as np

    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((240, 320), np.uint16))
    with pytest.raises(ValueError, match="expected the source depth's size"):
        read_rgbd_pair(sc, sd, tc, str(small), intr)
    empty = tmp_path / "empty.png"
    cv2.imwrite(str(empty), np.zeros((480, 640), np.uint16))
    with pytest.raises(ValueError, match="expected object pixels"):
        read_rgbd_pair(sc, sd, tc, td, intr, str(empty))
    with pytest.raises(ValueError, match="expected some valid depth"):
        read_rgbd_pair(sc, str(empty), tc, td, intr)
    (tmp_path / "graph" / "graph_nodes").mkdir(parents=True)
    with pytest.raises(FileNotFoundError):
        track_pair(pair, tmp_path / "o", correspondences="dis", graph_dir=tmp_path / "graph")


def test_eval_on_the_real_deepdeform_pair(real_data, tmp_path):
    root = real_data("deepdeform")
    js = tmp_path / "dd.json"
    assert main(["track", "eval", "--data", str(root), "--split", "train", "--correspondences", "gt",
                 "--json", str(js)]) == 0
    m = json.loads(js.read_text())
    assert m["pairs"] == 1 and m["epe_3d_mm"] < 10 and m["graph_error_3d_mm"] < 20  # measured 4.9 / 10.8 mm
