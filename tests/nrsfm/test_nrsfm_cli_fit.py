"""`nrsfm-kit nrsfm fit` and fit_nrsfm: synthetic specs, .mat files, JSON output, errors; demo section."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io

from nrsfm_kit.cli import main
from nrsfm_kit.nrsfm import fit_nrsfm
from nrsfm_kit.nrsfm.cli import load_sequence


def test_cli_synthetic_em_ppca_writes_json(tmp_path, capsys):
    out = tmp_path / "m.json"
    code = main(["nrsfm", "fit", "--method", "em-ppca", "--data", "synthetic:lowrank,frames=40,points=12,rank=2,seed=1",
                 "--epochs", "40", "--json", str(out), "--quiet"])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["method"] == "em-ppca" and metrics["frames"] == 40
    assert metrics["e3d"] < 0.05, metrics
    assert "e3d" in capsys.readouterr().out


def test_cli_mat_file_tk(tmp_path, make_lowrank):
    seq = make_lowrank(F=20, P=10, rigid=True)
    path = tmp_path / "rigid.mat"
    scipy.io.savemat(path, {"X": seq.S.numpy().transpose(2, 1, 0)})  # (3, P, F) camera frame
    out = tmp_path / "tk.json"
    assert main(["nrsfm", "fit", "--method", "tk", "--data", str(path), "--json", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["e3d"] < 1e-4


def test_cli_learned_method_with_checkpoints(tmp_path):
    out = tmp_path / "run"
    code = main(["nrsfm", "fit", "--method", "prrrn", "--data", "synthetic:lowrank,frames=16,points=8",
                 "--epochs", "1", "--out", str(out), "--quiet"])
    assert code == 0 and (out / "checkpoint.pt").exists() and (out / "metrics.json").exists()


@pytest.mark.parametrize(
    "data, match",
    [
        ("synthetic:", "--data: expected synthetic:<kind>"),
        ("synthetic:lowrank,frames", "--data: expected key=value"),
        ("synthetic:lowrank,bogus=1", "--data: expected a key among"),
        ("synthetic:lowrank,frames=abc", "--data: expected int for frames"),
        ("/nonexistent/file.mat", "does not exist"),
    ],
)
def test_cli_bad_data(data, match, capsys):
    assert main(["nrsfm", "fit", "--method", "tk", "--data", data]) == 2
    assert match in capsys.readouterr().err


def test_unreadable_mat_layout(tmp_path, capsys):
    path = tmp_path / "bad.mat"
    scipy.io.savemat(path, {"Y": np.zeros((3, 4))})
    assert main(["nrsfm", "fit", "--method", "tk", "--data", str(path)]) == 2
    assert "expected a variable 'X'" in capsys.readouterr().err


def test_fit_nrsfm_bad_method(make_lowrank):
    with pytest.raises(ValueError, match="method: expected one of"):
        fit_nrsfm(make_lowrank(F=5, P=6), "svd")


def test_fit_nrsfm_bad_sequence():
    with pytest.raises(ValueError, match="seq: expected an NRSfMSequence"):
        fit_nrsfm("pickup.mat", "tk")


def test_load_sequence_synthetic_spec():
    seq = load_sequence("synthetic:skeleton,frames=8,noise=0.1,missing=0.1,seed=3")
    assert seq.W.shape == (8, 31, 2) and not bool(seq.visibility.all())


def test_real_sequence_em_ppca(real_data):
    seq = load_sequence(str(real_data("nrsfm", "pickup.mat")))
    assert seq.W.shape == (357, 41, 2)
    _, met = fit_nrsfm(seq, "tk")
    # measured 0.344 (rigid model of a deforming body): a sanity bound
    assert met["e3d"] < 0.45, met


def test_demo_section_smoke():
    from nrsfm_kit.demo.sections import s60_nrsfm

    sec = s60_nrsfm.run(smoke=True)
    names = [r[0] for r in sec.rows]
    assert any("EM-PPCA" in n for n in names) and sec.figures
    assert sec.passed, sec.rows


def test_real_sequence_face_em_ppca(real_data):
    seq = load_sequence(str(real_data("nrsfm", "face.mat")))
    _, met = fit_nrsfm(seq, "em-ppca", epochs=60)
    # measured e3D 0.020 (100 iterations), TK 0.029
    assert met["e3d"] < 0.04, met


def test_cli_restarts(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["nrsfm", "fit", "--method", "prrrn", "--data", "synthetic:lowrank,frames=16,points=8",
                 "--epochs", "1", "--restarts", "2", "--out", str(out), "--quiet"])
    assert code == 0 and (out / "restart_1" / "checkpoint.pt").exists()
    assert "restart_seed" in capsys.readouterr().out
    assert main(["nrsfm", "fit", "--method", "prrrn", "--data", "synthetic:lowrank,frames=16,points=8",
                 "--restarts", "0"]) == 2
    assert "--restarts: expected >= 1, found 0" in capsys.readouterr().err
