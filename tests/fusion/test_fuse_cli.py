"""`nrsfm-kit fuse` end to end (synthetic smoke sequence, a DeepDeform-format folder, resume) and its bad inputs."""

from __future__ import annotations

import json

import pytest

from nrsfm_kit.cli import main


def test_fuse_synthetic_writes_meshes_metrics_and_resumes(tmp_path, capsys):
    out, js = tmp_path / "run", tmp_path / "s.json"
    assert main(["fuse", "--sequence", "synthetic", "--preset", "smoke", "--frames", "6", "--correspondences", "dis",
                 "--out", str(out), "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "deformation error" in text and "geometry error" in text
    assert len(list((out / "meshes").glob("*.ply"))) == 6 and (out / "canonical.ply").is_file()
    s = json.loads(js.read_text())
    assert s["summary"]["frames"] == 6 and s["metrics"]["geometry_cm"] < 1.5
    assert main(["fuse", "--sequence", "synthetic", "--preset", "smoke", "--frames", "6", "--correspondences", "dis",
                 "--out", str(out)]) == 0
    assert "resumed after frame 5" in capsys.readouterr().out


def test_fuse_a_deepdeform_folder(tmp_path, capsys):
    from nrsfm_kit.fusion.synthetic import export_fusion_sequence

    seq_dir = export_fusion_sequence(tmp_path / "dd", "smoke", num_frames=5, pair_stride=2)
    out = tmp_path / "run"
    assert main(["fuse", "--sequence", str(seq_dir), "--out", str(out)]) == 0
    assert "deformation error" in capsys.readouterr().out
    assert len(list((out / "meshes").glob(f"{seq_dir.name}_000004_*.ply"))) == 5


@pytest.mark.parametrize("argv, match", [
    (["--sequence", "/no/such/folder"], "--sequence"),
    (["--sequence", "synthetic", "--keyframe-every", "0"], "--keyframe-every"),
    (["--sequence", "synthetic", "--frames", "0"], "--frames"),
    (["--sequence", "synthetic", "--correspondences", "dis", "--checkpoint", "{file}"], "--checkpoint"),
    (["--sequence", "synthetic", "--checkpoint", "/no/such.pt", "--correspondences", "nnrt"], "--checkpoint"),
    (["--sequence", "synthetic", "--voxel-size", "-1"], "--voxel-size"),
    (["--sequence", "synthetic", "--preset", "huge"], "preset"),
])
def test_fuse_bad_arguments(tmp_path, capsys, argv, match):
    f = tmp_path / "weights.pt"
    f.write_bytes(b"x")
    argv = [a.replace("{file}", str(f)) for a in argv]
    assert main(["fuse", *argv, "--out", str(tmp_path / "o")]) == 2
    assert match in capsys.readouterr().err


def test_fuse_out_blocked_by_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["fuse", "--sequence", "synthetic", "--out", str(blocker / "run")]) == 2
    assert "--out" in capsys.readouterr().err
