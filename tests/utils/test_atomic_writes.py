"""Every kind of file the suite writes survives a crash in the middle of its write.

Each writer is called twice on the same path: once normally (version 1), then with a fault injected halfway through
the bytes of the second write (``inject("write:<name>@1")``, the point :func:`nrsfm_kit.utils.io.atomic_write_bytes`
offers). Required: the second call raises, the file under the final name is still version 1 byte for byte, and no
temporary file is left in the folder. A crash during the very first write leaves no file at all under the final
name. Also: the writable/free-space check that every training entry point runs before any work.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from nrsfm_kit.utils.faults import InjectedFault, inject, parse_fault
from nrsfm_kit.utils.io import atomic_save_torch, atomic_write_json, atomic_write_text, check_writable


def _nrsfm(seed):
    from nrsfm_kit.data.types import NRSfMSequence

    g = torch.Generator().manual_seed(seed)
    S = torch.randn(5, 4, 3, generator=g, dtype=torch.float64)
    return NRSfMSequence(W=S[..., :2].clone(), visibility=torch.ones(5, 4, dtype=torch.bool), S=S)


def _writers():
    """name -> (file name, write(path, version))."""
    from nrsfm_kit.data.deepdeform import write_flow_binary
    from nrsfm_kit.data.imageio import write_color, write_depth_png, write_mask
    from nrsfm_kit.data.nrsfm import save_nrsfm_mat
    from nrsfm_kit.data.sintel import write_dpt, write_flo
    from nrsfm_kit.graph.io import write_edges, write_nodes
    from nrsfm_kit.metrics.reconstruction import write_mesh_ply
    from nrsfm_kit.tracking.io import write_ply
    from nrsfm_kit.train.state import write_checkpoint

    def r(v, *shape):
        return torch.rand(*shape, generator=torch.Generator().manual_seed(v))

    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    return {
        "checkpoint": ("checkpoint.pt", lambda p, v: write_checkpoint(p.parent, {"model": {"w": r(v, 3)}, "step": v},
                                                                       keep_previous=False)),
        "torch file": ("tracker.pt", lambda p, v: atomic_save_torch(p, {"w": r(v, 4)})),
        "json result": ("result.json", lambda p, v: atomic_write_json(p, {"e3d": float(v), "v": [v, v + 1]})),
        "html report": ("index.html", lambda p, v: atomic_write_text(p, f"<html><body>{v}</body></html>")),
        "mesh ply": ("mesh.ply", lambda p, v: write_mesh_ply(p, r(v, 4, 3), faces)),
        "point ply": ("points.ply", lambda p, v: write_ply(p, r(v, 6, 3))),
        "oflow": ("flow.oflow", lambda p, v: write_flow_binary(p, r(v, 4, 5, 2))),
        "flo": ("frame.flo", lambda p, v: write_flo(p, r(v, 4, 5, 2))),
        "dpt": ("frame.dpt", lambda p, v: write_dpt(p, r(v, 4, 5) + 1)),
        "depth png": ("depth.png", lambda p, v: write_depth_png(p, r(v, 4, 5) + 0.5)),
        "colour png": ("color.png", lambda p, v: write_color(p, r(v, 3, 4, 5))),
        "mask png": ("mask.png", lambda p, v: write_mask(p, r(v, 4, 5) > 0.5)),
        "nrsfm mat": ("seq.mat", lambda p, v: save_nrsfm_mat(p, _nrsfm(v))),
        "graph nodes": ("nodes.bin", lambda p, v: write_nodes(p, r(v, 5, 3))),
        "graph edges": ("edges.bin", lambda p, v: write_edges(p, torch.randint(0, 5, (5, 4),
                                                                                 generator=torch.Generator().manual_seed(v)))),
    }


WRITERS = _writers()


@pytest.mark.parametrize("kind", list(WRITERS))
def test_a_crash_mid_write_keeps_the_previous_file(kind, tmp_path):
    name, write = WRITERS[kind]
    path = tmp_path / name
    write(path, 1)
    before = path.read_bytes()
    write(tmp_path / "other" / name, 2)
    assert (tmp_path / "other" / name).read_bytes() != before, "the two versions must differ for the test to mean anything"
    with inject(f"write:{name}@1"), pytest.raises(InjectedFault):
        write(path, 2)
    assert path.read_bytes() == before, f"{kind}: the previous {name} was damaged by a failed write"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [name], f"{kind}: a partial file was left"


@pytest.mark.parametrize("kind", ["checkpoint", "json result", "oflow", "mesh ply"])
def test_a_crash_in_the_first_write_leaves_no_file(kind, tmp_path):
    name, write = WRITERS[kind]
    with inject(f"write:{name}@1"), pytest.raises(InjectedFault):
        write(tmp_path / name, 1)
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_keeps_the_previous_one(tmp_path):
    from nrsfm_kit.train.state import PREVIOUS, read_checkpoint, write_checkpoint

    write_checkpoint(tmp_path, {"model": {}, "step": 1})
    write_checkpoint(tmp_path, {"model": {}, "step": 2})
    assert read_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2
    assert read_checkpoint(tmp_path / PREVIOUS)["step"] == 1
    with inject("write:checkpoint.pt@1"), pytest.raises(InjectedFault):
        write_checkpoint(tmp_path, {"model": {}, "step": 3})
    assert read_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2  # a failed write rotates nothing
    assert read_checkpoint(tmp_path / PREVIOUS)["step"] == 1


def test_injection_counts_occurrences(tmp_path):
    with inject("write:a.json@2"):
        atomic_write_json(tmp_path / "a.json", {"v": 1})
        with pytest.raises(InjectedFault, match="occurrence 2"):
            atomic_write_json(tmp_path / "a.json", {"v": 2})
    assert (tmp_path / "a.json").read_text().count('"v": 1') == 1


@pytest.mark.parametrize("spec", ["saved", "saved@0", "saved@x", "@3", "", "saved@-1"])
def test_bad_fault_specs_are_refused(spec):
    with pytest.raises(ValueError, match="NRSFM_KIT_FAULT: expected KIND@N"):
        parse_fault(spec)
    with pytest.raises(ValueError, match="KIND@N"), inject(spec):
        pass


def test_bad_fault_action_is_refused():
    with pytest.raises(ValueError, match="action: expected one of"), inject("saved@1", action="explode"):
        pass


def test_environment_fault_with_a_bad_action_is_refused(monkeypatch):
    from nrsfm_kit.utils.faults import fault_point

    monkeypatch.setenv("NRSFM_KIT_FAULT", "saved@1")
    monkeypatch.setenv("NRSFM_KIT_FAULT_ACTION", "explode")
    with pytest.raises(ValueError, match="NRSFM_KIT_FAULT_ACTION: expected one of"):
        fault_point("saved")


# ------------------------------------------------------------------------------------------------------------------
# unwritable / full output locations fail before any work, naming the path


def test_check_writable_creates_the_folder(tmp_path):
    out = tmp_path / "a" / "b"
    assert check_writable(out) == out and out.is_dir()
    assert list(out.iterdir()) == []  # the probe file is gone


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(ValueError, match=r"out_dir: expected a folder, found a file at .*out"):
        check_writable(tmp_path / "out")
    with pytest.raises(ValueError, match=r"--out: expected a folder that can be created, found .*out/sub cannot be"):
        check_writable(tmp_path / "out" / "sub", "--out")


def test_a_full_file_system_is_named(tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1 << 20))
    with pytest.raises(ValueError, match=r"--out: expected at least 4.0 MiB free at .*run, found 1.00 MiB"):
        check_writable(tmp_path / "run", "--out")


def test_a_failing_write_is_named(tmp_path, monkeypatch):
    import errno
    import os

    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    try:
        with pytest.raises(ValueError, match=r"out_dir: expected a writable location, found .*run full"):
            check_writable(tmp_path / "run")
    finally:
        monkeypatch.setattr(os, "fsync", real)
    assert list((tmp_path / "run").iterdir()) == []


@pytest.mark.parametrize("argv", [
    ["nrsfm", "fit", "--method", "dnrsfm", "--epochs", "1", "--data", "synthetic:lowrank,frames=20,points=8", "--out", "{file}"],
    ["depth", "fit", "--sequence", "synthetic", "--smoke", "--steps", "2", "--out", "{file}"],
    ["track", "train", "--preset", "smoke", "--steps", "2", "--out", "{file}"],
    ["match", "train", "--preset", "smoke", "--steps", "2", "--out", "{file}"],
])
def test_cli_refuses_an_unusable_out_before_training(argv, tmp_path, capsys):
    from nrsfm_kit.cli import main

    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    argv = [a.replace("{file}", str(blocker / "run")) for a in argv]
    try:
        rc, text = main(argv), ""
    except (SystemExit, ValueError) as e:
        rc, text = getattr(e, "code", 1), str(e)
    text += capsys.readouterr().err
    assert rc not in (0, None), f"exit {rc}: {text}"
    assert "blocker" in text and "expected" in text, text
    assert blocker.read_text() == "not a folder"


def test_stale_temporaries_are_removed_by_the_next_run(tmp_path):
    from nrsfm_kit.train import TrainConfig, fit

    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 2)
    fit(model, lambda m, s: {"loss": m(x).pow(2).mean()}, opt, TrainConfig(steps=2, checkpoint_every=1,
                                                                          progress=False), out_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in names if n.endswith(".tmp")], names
    assert "checkpoint.pt" in names


def test_written_files_get_normal_permissions(tmp_path):
    import os

    p = atomic_write_text(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~mask)


def test_json_refuses_non_finite_values(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "r.json", {"e3d": float("nan")})
    assert not (tmp_path / "r.json").exists()
    assert list(tmp_path.iterdir()) == []
