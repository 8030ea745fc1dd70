"""DeepDeform loader: binary flow images, frame pairs, JSON labels, real sample."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nrsfm_kit.data import synthetic_rgbd_pair
from nrsfm_kit.data.deepdeform import (
    DeepDeformPairs,
    load_deepdeform_labels,
    load_deepdeform_pair,
    read_flow_binary,
    save_deepdeform_pair,
    write_flow_binary,
)
from nrsfm_kit.geometry import backproject, pixel_grid, project


@pytest.fixture(scope="module")
def synth():
    return synthetic_rgbd_pair(40, 56, seed=3, time_gap=0.3)


def test_flow_binary_round_trip(tmp_path):
    flow = torch.randn(5, 7, 2)
    valid = torch.rand(5, 7) > 0.3
    p = write_flow_binary(tmp_path / "a.oflow", flow, valid)
    raw = p.read_bytes()
    assert np.frombuffer(raw[:12], "<u4").tolist() == [7, 5, 2]  # width, height, channels
    assert np.isneginf(np.frombuffer(raw, "<f4", offset=12).reshape(2, 5, 7)[0][~valid.numpy()]).all()
    f, v = read_flow_binary(p, channels=2)
    assert torch.equal(v, valid) and torch.equal(f[v], flow[v]) and (f[~v] == 0).all()


def test_flow_binary_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.oflow"):
        read_flow_binary(tmp_path / "missing.oflow")
    (tmp_path / "short.oflow").write_bytes(b"\x01\x00")
    with pytest.raises(ValueError, match=r"short\.oflow: expected a 12-byte header"):
        read_flow_binary(tmp_path / "short.oflow")
    p = write_flow_binary(tmp_path / "t.oflow", torch.zeros(4, 4, 2))
    (tmp_path / "trunc.oflow").write_bytes(p.read_bytes()[:-4])
    with pytest.raises(ValueError, match=r"trunc\.oflow: header says 4x4x2"):
        read_flow_binary(tmp_path / "trunc.oflow")
    with pytest.raises(ValueError, match=r"t\.oflow: expected 3 channels, found 2"):
        read_flow_binary(p, channels=3)
    nan = np.zeros((2, 4, 4), "<f4")
    nan[0, 1, 1] = np.nan
    (tmp_path / "nan.oflow").write_bytes(np.array([4, 4, 2], "<u4").tobytes() + nan.tobytes())
    with pytest.raises(ValueError, match=r"nan\.oflow: expected finite values or -inf"):
        read_flow_binary(tmp_path / "nan.oflow")
    # the writer refuses to produce such files (non-finite where valid) and mismatched masks
    with pytest.raises(ValueError, match=r"flow: expected finite values where valid"):
        write_flow_binary(tmp_path / "w.oflow", torch.from_numpy(nan.transpose(1, 2, 0).copy()))
    valid = torch.ones(4, 4, dtype=torch.bool)
    valid[1, 1] = False  # the NaN pixel is marked invalid: written as -inf, read back as invalid
    f, v = read_flow_binary(write_flow_binary(tmp_path / "ok.oflow", torch.from_numpy(nan.transpose(1, 2, 0).copy()), valid))
    assert torch.equal(v, valid) and torch.isfinite(f).all()
    with pytest.raises(ValueError, match=r"valid: expected shape \(4, 4\)"):
        write_flow_binary(tmp_path / "m.oflow", torch.zeros(4, 4, 2), torch.ones(3, 4, dtype=torch.bool))


def test_pair_round_trip(tmp_path, synth):
    seq = save_deepdeform_pair(synth, tmp_path / "train" / "seq000", 0, 5, "box")
    got = load_deepdeform_pair(seq, 0, 5)  # object id found from the flow file name
    assert got.name == "seq000:box:000000->000005"
    assert torch.allclose(got.intrinsics, synth.intrinsics)
    assert (got.source_depth - synth.source_depth).abs().max() <= 0.0005 + 1e-6  # mm quantisation
    assert (got.source_color - synth.source_color).abs().mean() < 0.03  # jpg
    v = synth.flow_valid
    assert torch.equal(got.flow_valid, v)
    assert torch.equal(got.optical_flow[v], synth.optical_flow[v])
    assert torch.equal(got.scene_flow[v], synth.scene_flow[v])
    assert torch.equal(got.source_mask, synth.source_mask)
    ds = DeepDeformPairs(tmp_path, "train")
    assert len(ds) == 1 and ds[0]["optical_flow"].shape == (40, 56, 2)


def test_pair_missing_and_bad_files(tmp_path, synth):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_deepdeform_pair(tmp_path / "nowhere", 0, 1)
    seq = save_deepdeform_pair(synth, tmp_path / "s", 0, 1, "obj")
    (seq / "depth" / "000001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"000001\.png: depth image not found"):
        load_deepdeform_pair(seq, 0, 1)
    seq = save_deepdeform_pair(synth, tmp_path / "s2", 0, 1, "obj")
    (seq / "intrinsics.txt").write_text("1 2 3\n4 5 6\n")
    with pytest.raises(ValueError, match=r"intrinsics\.txt: expected a 4x4 or 3x3"):
        load_deepdeform_pair(seq, 0, 1)
    (seq / "intrinsics.txt").write_text("1 0 0 0\n0 nan 0 0\n0 0 1 0\n0 0 0 1\n")
    with pytest.raises(ValueError, match=r"intrinsics\.txt: expected finite"):
        load_deepdeform_pair(seq, 0, 1)
    for bad, name in ((1.5, "source_id"), (True, "source_id"), (-2, "source_id"), ("1.5", "source_id")):
        with pytest.raises(ValueError, match=rf"{name}: expected an integer frame id >= 0, found"):
            load_deepdeform_pair(seq, bad, 1)  # 1.5 was read as frame 1 before
    with pytest.raises(ValueError, match=r"target_id: expected an integer frame id >= 0, found 2\.5"):
        load_deepdeform_pair(seq, 0, 2.5)
    seq = save_deepdeform_pair(synth, tmp_path / "s3", 0, 1, "obj")
    assert load_deepdeform_pair(seq, 0.0, "000001") is not None  # an integral float and a zero-padded id are fine
    write_flow_binary(seq / "optical_flow" / "obj_000000_000001.oflow", torch.zeros(8, 8, 2))
    with pytest.raises(ValueError, match=r"obj_000000_000001\.oflow: flow size \(8, 8\) differs"):
        load_deepdeform_pair(seq, 0, 1)
    write_flow_binary(seq / "optical_flow" / "other_000000_000001.oflow", torch.zeros(8, 8, 2))
    with pytest.raises(ValueError, match="several objects"):
        load_deepdeform_pair(seq, 0, 1)
    (seq / "color" / "000000.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"000000\.jpg: not a readable image"):
        load_deepdeform_pair(seq, 0, 1, "obj")


def _write_labels(root):
    common = {"seq_id": "seq000", "object_id": "box", "source_id": "000000", "target_id": "000005",
              "source_color": "train/seq000/color/000000.jpg", "target_color": "train/seq000/color/000005.jpg",
              "source_depth": "train/seq000/depth/000000.png", "target_depth": "train/seq000/depth/000005.png"}  # fmt: skip
    matches = [{**common, "matches": [{"source_x": 10, "source_y": 12.5, "target_x": 13, "target_y": 11}] * 3}]
    occl = [{**common, "occlusions": [{"source_x": 1, "source_y": 2}, {"source_x": 3, "source_y": 4}]}]
    dense = [{**common, "optical_flow": "train/seq000/optical_flow/box_000000_000005.oflow",
              "scene_flow": "train/seq000/scene_flow/box_000000_000005.sflow"}]  # fmt: skip
    masks = [{"seq_id": "seq000", "object_id": "box", "frame_id": "000000", "mask": "train/seq000/mask/000000_box.png"}]
    for kind, rec in (("matches", matches), ("occlusions", occl), ("dense", dense), ("masks", masks)):
        (root / f"train_{kind}.json").write_text(json.dumps(rec))


def test_labels(tmp_path, synth):
    save_deepdeform_pair(synth, tmp_path / "train" / "seq000", 0, 5, "box")
    _write_labels(tmp_path)
    m = load_deepdeform_labels(tmp_path, "train", "matches")
    assert len(m) == 1 and m[0].source_pixels.shape == (3, 2)
    assert m[0].source_pixels[0].tolist() == [10.0, 12.5] and m[0].target_pixels[0].tolist() == [13.0, 11.0]
    assert m[0].paths["source_color"].is_file()
    o = load_deepdeform_labels(tmp_path, "train", "occlusions")
    assert o[0].source_pixels.tolist() == [[1.0, 2.0], [3.0, 4.0]] and o[0].target_pixels is None
    d = load_deepdeform_labels(tmp_path, "train", "dense")
    f, v = read_flow_binary(d[0].paths["optical_flow"])
    assert torch.equal(f[v], synth.optical_flow[v])
    k = load_deepdeform_labels(tmp_path, "train", "masks")
    assert k[0].source_id == "000000" and k[0].target_id is None and k[0].paths["mask"].is_file()


def test_labels_bad(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        load_deepdeform_labels(tmp_path, "train", "flows")
    with pytest.raises(FileNotFoundError, match=r"val_matches\.json"):
        load_deepdeform_labels(tmp_path, "val", "matches")
    (tmp_path / "train_matches.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"train_matches\.json: not valid JSON"):
        load_deepdeform_labels(tmp_path, "train", "matches")
    (tmp_path / "train_matches.json").write_text(json.dumps([{"seq_id": "a", "source_id": 0}]))
    with pytest.raises(ValueError, match=r"record 0: missing keys \['target_id', 'matches'\]"):
        load_deepdeform_labels(tmp_path, "train", "matches")
    rec = {"seq_id": "a", "source_id": 0, "target_id": 1, "matches": [{"source_x": 1}]}
    (tmp_path / "train_matches.json").write_text(json.dumps([rec]))
    with pytest.raises(ValueError, match="record 0: expected entries with keys"):
        load_deepdeform_labels(tmp_path, "train", "matches")


def test_real_deepdeform_pair(real_data):
    seq = real_data("deepdeform", "train", "seq258")
    p = load_deepdeform_pair(seq, 0, 110)
    assert p.source_color.shape == (3, 480, 640) and p.source_depth.shape == (480, 640)
    assert p.optical_flow.shape == (480, 640, 2) and p.scene_flow.shape == (480, 640, 3)
    assert torch.allclose(p.intrinsics, torch.tensor([575.548, 577.46, 323.172, 236.417]))
    v = p.flow_valid
    assert 0.05 < v.float().mean() < 0.5 and p.source_mask is not None
    assert (p.source_depth[v] > 0).all() and 0.3 < p.source_depth[v].median() < 3.0
    # the dataset's own GT is consistent: projecting source + scene flow gives source + optical flow
    g = pixel_grid(480, 640)
    Y = backproject(g, p.source_depth, p.intrinsics)[v] + p.scene_flow[v]
    err = (project(Y, p.intrinsics) - (g + p.optical_flow)[v]).norm(dim=-1)
    assert err.median() < 1.0 and err.quantile(0.95) < 3.0
    ui = project(Y, p.intrinsics).round().long()
    zt = p.target_depth[ui[:, 1].clamp(0, 479), ui[:, 0].clamp(0, 639)]
    ok = zt > 0
    assert (zt[ok] - Y[ok, 2]).abs().median() < 0.01  # lands on the target surface (metres)
