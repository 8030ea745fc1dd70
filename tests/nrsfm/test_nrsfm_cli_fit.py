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
    js = tmp_path / "m.json"
    assert main(["nrsfm", "fit", "--method", "dnrsfm", "--data", "synthetic:lowrank,frames=16,points=8", "--epochs",
                 "1", "--restarts", "2", "--selection", "reprojection", "--json", str(js), "--quiet"]) == 0
    assert json.loads(js.read_text())["restart_seed"] in (0, 1)
    with pytest.raises(SystemExit):  # argparse: exit 2, naming the flag and the choices
        main(["nrsfm", "fit", "--method", "dnrsfm", "--data", "synthetic:lowrank", "--selection", "best"])
    assert "--selection: invalid choice: 'best'" in capsys.readouterr().err


SPEC = "synthetic:lowrank,frames=16,points=8"


def _no_fit(monkeypatch):
    """Make any fit fail loudly: the errors below must come before any work starts."""
    import nrsfm_kit.nrsfm.fit as fit_module

    def boom(*a, **k):
        raise AssertionError("fit_nrsfm ran although the arguments were bad")

    monkeypatch.setattr(fit_module, "fit_nrsfm", boom)


def test_cli_em_ppca_zero_epochs_is_a_clean_error(monkeypatch, capsys, make_lowrank):
    _no_fit(monkeypatch)
    assert main(["nrsfm", "fit", "--method", "em-ppca", "--data", SPEC, "--epochs", "0"]) == 2
    assert "--epochs: expected >= 1 (EM iterations of em-ppca), found 0" in capsys.readouterr().err
    monkeypatch.undo()
    with pytest.raises(ValueError, match="epochs: expected >= 1 EM iteration for em-ppca, found 0"):
        fit_nrsfm(make_lowrank(F=6, P=6), "em-ppca", epochs=0)
    from nrsfm_kit.nrsfm.classical import EMPPCAConfig, em_ppca

    seq = make_lowrank(F=6, P=6)
    with pytest.raises(ValueError, match="iters: expected >= 1 EM iteration, found 0"):
        em_ppca(seq.W, seq.visibility, EMPPCAConfig(iters=0))


@pytest.mark.parametrize("extra, match", [
    (["--method", "tk", "--epochs", "3"], "--epochs: expected no value for tk"),
    (["--method", "tk", "--out", "run"], "--out: expected only with the learned methods"),
    (["--method", "em-ppca", "--restarts", "2"], "--restarts: expected only with the learned methods"),
    (["--method", "tk", "--selection", "method"], "--selection: expected only with the learned methods"),
    (["--method", "prrrn", "--epochs", "-1"], "--epochs: expected >= 0 (training epochs of prrrn), found -1"),
    (["--method", "prrrn", "--seed", "-2"], "--seed: expected an integer >= 0, found -2"),
])
def test_cli_flags_checked_before_work(extra, match, tmp_path, monkeypatch, capsys):
    _no_fit(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert main(["nrsfm", "fit", "--data", SPEC, *extra]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_json_directory_refused_before_the_fit(tmp_path, monkeypatch, capsys):
    _no_fit(monkeypatch)
    assert main(["nrsfm", "fit", "--method", "tk", "--data", SPEC, "--json", str(tmp_path)]) == 2
    assert f"--json: expected a file path to write, found a directory {tmp_path}" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["nrsfm", "fit", "--method", "tk", "--data", SPEC, "--json", str(tmp_path / "file" / "m.json")]) == 2
    assert "--json: expected a folder at" in capsys.readouterr().err


def test_cli_data_directory_says_it_is_a_directory(tmp_path, monkeypatch, capsys):
    _no_fit(monkeypatch)
    assert main(["nrsfm", "fit", "--method", "tk", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--data: expected an NRSfM .mat file or synthetic:<kind>[,k=v...], found a directory {tmp_path}" in err
    from nrsfm_kit.data import load_nrsfm_mat

    with pytest.raises(ValueError, match="expected an NRSfM .mat file, found a directory"):
        load_nrsfm_mat(tmp_path)


@pytest.mark.parametrize("spec, match", [
    ("synthetic:lowrank,frames=1", "--data: frames in 'synthetic:lowrank,frames=1': expected an integer >= 2"),
    ("synthetic:blob", "--data: kind in 'synthetic:blob': expected one of"),
    ("synthetic:lowrank,missing=1.5", "--data: missing in 'synthetic:lowrank,missing=1.5': expected a value in"),
])
def test_cli_synthetic_spec_errors_name_the_key(spec, match, capsys):
    assert main(["nrsfm", "fit", "--method", "tk", "--data", spec]) == 2
    assert match in capsys.readouterr().err


def test_cli_prints_and_writes_units(tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["nrsfm", "fit", "--method", "tk", "--data", "synthetic:skeleton,frames=6", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    units = json.loads(out.read_text())["units"]
    assert units == {"e3d": "unit-free", "e3d_seq": "unit-free", "mpjpe": "metres", "stress": "unit-free",
                     "reproj": "metres"}
    assert any(line.startswith("mpjpe") and line.rstrip().endswith("metres") for line in printed.splitlines())


def test_cli_out_folder_of_another_run_is_refused(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    base = ["nrsfm", "fit", "--data", SPEC, "--epochs", "1", "--out", str(run), "--quiet"]
    assert main([*base, "--method", "dnrsfm"]) == 0
    settings = json.loads((run / "settings.json").read_text())
    assert settings["method"] == "dnrsfm" and settings["sequence"]["points"] == 8
    capsys.readouterr()
    assert main([*base, "--method", "dnrsfm"]) == 0  # the same run resumes (nothing left to train)
    mtime = (run / "checkpoint.pt").stat().st_mtime_ns
    _no_fit(monkeypatch)
    assert main([*base, "--method", "prrrn"]) == 2  # another method: refused, not a state_dict error
    err = capsys.readouterr().err
    assert f"--out: expected a new folder or one written with the same settings, found {run / 'settings.json'}" in err
    assert "method: 'dnrsfm' there, 'prrrn' now" in err
    monkeypatch.undo()
    other = ["nrsfm", "fit", "--data", "synthetic:lowrank,frames=16,points=10", "--epochs", "1", "--out", str(run)]
    assert main([*other, "--method", "dnrsfm", "--quiet"]) == 2  # another sequence
    err = capsys.readouterr().err
    assert "sequence.points: 8 there, 10 now" in err and "sequence.sha256" in err
    assert main([*base, "--method", "dnrsfm", "--seed", "1"]) == 2
    assert "seed: 0 there, 1 now" in capsys.readouterr().err
    assert (run / "checkpoint.pt").stat().st_mtime_ns == mtime
    assert main([*base, "--method", "dnrsfm", "--epochs", "2"]) == 0  # the same run trains further
    assert json.loads((run / "metrics.json").read_text())["step"] == 2
    # a checkpoint without settings.json (another tool, an older version) is refused too
    (run / "settings.json").unlink()
    assert main([*base, "--method", "prrrn"]) == 2
    assert "without settings.json" in capsys.readouterr().err


def test_restarts_check_every_folder_before_training(tmp_path, make_lowrank):
    from nrsfm_kit.nrsfm.learned import LearnedFitConfig, fit_learned

    seq = make_lowrank(F=8, P=6)
    (tmp_path / "restart_1").mkdir()
    (tmp_path / "restart_1" / "checkpoint.pt").write_bytes(b"not ours")
    with pytest.raises(ValueError, match="restart_1/checkpoint.pt without settings.json"):
        fit_learned(seq, "prrrn", config=LearnedFitConfig(epochs=1, restarts=2, progress=False), out_dir=tmp_path)
    assert not (tmp_path / "restart_0").exists()  # restart 0 did not train first
