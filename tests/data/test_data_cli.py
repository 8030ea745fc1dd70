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
    assert "DeepDeform sequence, 2 colour frames" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "nothing.mat")]) == 2
    assert "nothing.mat: not found" in capsys.readouterr().err
    (tmp_path / "x.txt").write_text("hi")
    assert main(["data", "info", str(tmp_path / "x.txt")]) == 2
    with pytest.raises(SystemExit):
        main(["data", "synth", "rgbd-pair", str(tmp_path), "--size", "big"])


def test_cli_bad_values_exit_2_with_the_argument_named(tmp_path, capsys):
    assert main(["data", "synth", "nrsfm", str(tmp_path / "s.mat"), "--frames", "1"]) == 2
    assert "num_frames: expected an integer >= 2, found 1" in capsys.readouterr().err
    assert main(["data", "synth", "mocap", str(tmp_path / "m"), "--frames", "0"]) == 2
    assert "num_frames: expected an integer >= 1, found 0" in capsys.readouterr().err
    assert main(["data", "synth", "video", str(tmp_path / "v"), "--size", "4x4"]) == 2
    assert "height: expected an integer >= 8, found 4" in capsys.readouterr().err
    assert not (tmp_path / "s.mat").exists() and not (tmp_path / "v").exists()
