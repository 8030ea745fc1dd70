"""`nrsfm-kit match` (train / eval / pair / dense) end to end on small synthetic data, and its bad inputs."""

from __future__ import annotations

import json

import pytest
import torch

from nrsfm_kit.cli import main
from nrsfm_kit.data.deepdeform import read_flow_binary, save_deepdeform_pair
from nrsfm_kit.data.rgbd import synthetic_rgbd_pair


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("match") / "run"
    assert main(["match", "train", "--preset", "smoke", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def seq(tmp_path_factory):
    pair = synthetic_rgbd_pair(96, 128, objects=("cloth",), seed=0, time_gap=1.2, t_source=1.0)
    return save_deepdeform_pair(pair, tmp_path_factory.mktemp("dd") / "seq000", 0, 1, "cloth"), pair


def test_train_resumes_and_eval_writes_the_table(trained, tmp_path, capsys):
    assert (trained / "matcher.pt").is_file() and (trained / "heatmap" / "checkpoint.pt").is_file()
    assert (trained / "visibility" / "checkpoint.pt").is_file()
    capsys.readouterr()
    assert main(["match", "train", "--preset", "smoke", "--out", str(trained)]) == 0
    assert capsys.readouterr().out.count("already trained") == 2  # both stages resumed at their end
    js = tmp_path / "t.json"
    assert main(["match", "eval", "--preset", "smoke", "--checkpoint", str(trained / "matcher.pt"), "--json",
                 str(js)]) == 0
    table = json.loads(js.read_text())
    for m in ("learned", "sift", "orb", "akaze", "fpfh", "dis"):
        assert table[m]["num_matches"] > 0 and 0 <= table[m]["acc_2d"] <= 1
    assert set(table["beats_baselines"]) == {"mean_2d_px", "mean_3d_m", "acc_2d", "acc_3d"}
    assert "DIS optical flow" in capsys.readouterr().out


def test_pair_matches_and_tracks(trained, seq, tmp_path):
    d, pair = seq
    args = ["--source-color", str(d / "color/000000.jpg"), "--source-depth", str(d / "depth/000000.png"),
            "--target-color", str(d / "color/000001.jpg"), "--target-depth", str(d / "depth/000001.png"),
            "--intrinsics", str(d / "intrinsics.txt"), "--mask", str(d / "mask/000000_cloth.png"),
            "--checkpoint", str(trained / "matcher.pt")]
    out = tmp_path / "pair"
    assert main(["match", "pair", *args, "--track", "--out", str(out)]) == 0
    rec = json.loads((out / "matches.json").read_text())
    assert rec["matches"] and {"source_x", "source_y", "target_x", "target_y", "visibility", "accepted",
                               "node"} <= set(rec["matches"][0])
    flow, valid = read_flow_binary(out / "scene_flow.sflow")
    assert flow.shape == (96, 128, 3) and valid.any()
    assert (out / "deformed.ply").is_file() and (out / "result.json").is_file()
    out2 = tmp_path / "points"
    assert main(["match", "pair", *args, "--points", "20", "--out", str(out2)]) == 0
    assert len(json.loads((out2 / "matches.json").read_text())["matches"]) == 20


def test_dense_writes_labels(seq, tmp_path, capsys):
    d, pair = seq
    out = tmp_path / "labels"
    assert main(["match", "dense", "--seq", str(d), "--object", "cloth", "--source", "0", "--target", "1",
                 "--matches", "30", "--out", str(out)]) == 0
    flow, valid = read_flow_binary(out / "optical_flow" / "cloth_000000_000001.oflow")
    assert flow.shape == (96, 128, 2) and valid.any()
    res = json.loads(capsys.readouterr().out.splitlines()[0])
    ident = float(pair.optical_flow[pair.flow_valid & pair.source_mask].norm(dim=-1).median())
    assert res["median_epe_px"] < 0.5 * ident


def test_cli_bad_inputs(trained, seq, tmp_path, capsys):
    d, _ = seq
    assert main(["match", "train", "--preset", "nope", "--out", str(tmp_path)]) == 2
    assert "--preset" in capsys.readouterr().err
    assert main(["match", "eval", "--preset", "smoke", "--data", str(tmp_path / "nope")]) == 2
    assert "expected 'synthetic' or a DeepDeform root" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    torch.save({"x": 1}, bad)
    assert main(["match", "eval", "--preset", "smoke", "--checkpoint", str(bad)]) == 2
    assert "deepdeform-matcher" in capsys.readouterr().err
    assert main(["match", "eval", "--preset", "smoke", "--points", "0"]) == 2
    assert "--points" in capsys.readouterr().err
    args = ["--source-color", str(d / "color/000000.jpg"), "--source-depth", str(d / "depth/000000.png"),
            "--target-color", str(d / "color/000001.jpg"), "--target-depth", str(d / "depth/000001.png"),
            "--intrinsics", str(d / "intrinsics.txt"), "--checkpoint", str(trained / "matcher.pt")]
    assert main(["match", "pair", *args, "--points", "5", "--track", "--out", str(tmp_path / "x")]) == 2
    assert "num_points" in capsys.readouterr().err
    assert main(["match", "dense", "--seq", str(d), "--object", "nothing", "--source", "0", "--target", "1",
                 "--out", str(tmp_path / "y")]) == 2
    assert "nothing" in capsys.readouterr().err
