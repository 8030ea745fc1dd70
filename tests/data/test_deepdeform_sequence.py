"""Whole DeepDeform sequences (nrsfm_kit/data/deepdeform_sequence.py): synthetic export, loading, bad inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from nrsfm_kit.data.deepdeform_sequence import (
    DeepDeformSequence,
    export_synthetic_sequence,
    load_deepdeform_sequence,
    synthetic_sequence,
)
from nrsfm_kit.data.imageio import write_depth_png, write_mask
from nrsfm_kit.data.rgbd import synthetic_rgbd_sequence
from nrsfm_kit.metrics import geometry_error

ARGS = dict(num_frames=6, height=60, width=80, pair_stride=2, matches_per_pair=20, seed=3)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("deepdeform")
    folder = export_synthetic_sequence(root, **ARGS)
    return root, folder


@pytest.fixture(scope="module")
def memory():
    return synthetic_sequence(**ARGS)


@pytest.fixture
def copy(exported, tmp_path):
    root, _ = exported
    shutil.copytree(root, tmp_path / "root")
    return tmp_path / "root" / "train" / "synth000"


def test_export_layout_and_round_trip(exported, memory):
    root, folder = exported
    assert folder == root / "train" / "synth000"
    for sub, name in (("color", "000005.jpg"), ("depth", "000005.png"), ("mask", "000005_cloth.png")):
        assert (folder / sub / name).is_file()
    assert np.loadtxt(folder / "intrinsics.txt").shape == (4, 4)
    recs = json.loads((root / "train_matches.json").read_text())
    assert [(r["source_id"], r["target_id"]) for r in recs] == [("000000", "000002"), ("000002", "000004")]
    assert recs[0]["source_color"] == "train/synth000/color/000000.jpg" and recs[0]["object_id"] == "cloth"
    assert set(recs[0]["matches"][0]) == {"source_x", "source_y", "target_x", "target_y"}

    seq = load_deepdeform_sequence(folder)
    assert isinstance(seq, DeepDeformSequence) and seq.frame_ids == list(range(6))
    assert seq.colors.shape == (6, 3, 60, 80) and seq.depths.shape == (6, 60, 80)
    assert seq.object_id == "cloth" and seq.name == "train/synth000" and seq.source is None
    assert (seq.depths - memory.depths).abs().max() <= 0.0005 + 1e-6  # mm PNG
    assert torch.equal(seq.masks, memory.masks) and seq.mask_available.all()
    assert memory.masks[0].sum() > 50
    assert torch.allclose(seq.intrinsics, memory.intrinsics)
    assert (seq.colors - memory.colors).abs().mean() < 0.03  # JPEG
    assert [(m.source_frame, m.target_frame) for m in seq.matches] == [(0, 2), (2, 4)]
    for a, b in zip(seq.matches, memory.matches):
        assert a.source_px.shape == (20, 2)
        assert (a.source_px - b.source_px).abs().max() < 1e-3 and (a.target_px - b.target_px).abs().max() < 1e-3


def test_matches_follow_the_ground_truth(memory):
    src = memory.source
    assert memory.mask_available.all() and memory.frame_ids == list(range(6))
    for m in memory.matches:
        i, j = memory.index_of(m.source_frame), memory.index_of(m.target_frame)
        pair = src.pair(i, j)
        c, r = m.source_px.long().unbind(1)
        assert torch.equal(m.source_px, m.source_px.round())  # source pixel centres
        assert memory.masks[i][r, c].all() and pair.visibility[r, c].all()
        assert (m.source_px + pair.optical_flow[r, c] - m.target_px).abs().max() < 1e-3
        tc, tr = (m.target_px + 0.5).floor().long().unbind(1)
        assert memory.masks[j][tr, tc].all()
        # the target pixel is the projection of the material point at the target time
        p = pair.target_points[r, c].double()
        fx, fy, cx, cy = memory.intrinsics.double()
        uv = torch.stack([fx * p[:, 0] / p[:, 2] + cx, fy * p[:, 1] / p[:, 2] + cy], 1)
        assert (uv - m.target_px.double()).abs().max() < 1e-3


def test_ground_truth_mesh_is_the_observed_surface(memory, exported):
    v, f = memory.ground_truth_mesh(3)
    assert v.shape[1] == 3 and f.shape[1] == 3 and f.max() < v.shape[0]
    err = geometry_error(memory.source.depths_clean[3], memory.masks[3], memory.intrinsics, v, erosion=0)
    assert err.numel() > 50 and err.max() < 0.015  # within the cloth's 1.75 cm vertex spacing
    with pytest.raises(ValueError, match="synthetic"):
        load_deepdeform_sequence(exported[1]).ground_truth_mesh(0)


def test_speed_scales_the_motion():
    a = synthetic_rgbd_sequence(3, 24, 32, objects=("cloth",), fps=10.0, seed=1)
    b = synthetic_rgbd_sequence(2, 24, 32, objects=("cloth",), fps=10.0, seed=1, speed=2.0)
    assert torch.allclose(a.depths[2], b.depths[1], atol=1e-6)
    assert not torch.allclose(a.depths[1], b.depths[1])


def test_frame_selection_and_label_filtering(copy):
    seq = load_deepdeform_sequence(copy, frames=[4, 2])
    assert seq.frame_ids == [4, 2] and seq.index_of(2) == 1
    assert [(m.source_frame, m.target_frame) for m in seq.matches] == [(2, 4)]
    seq = load_deepdeform_sequence(copy, frames=slice(0, 3))
    assert seq.frame_ids == [0, 1, 2] and [(m.source_frame, m.target_frame) for m in seq.matches] == [(0, 2)]
    # records of other sequences / objects are ignored; <seq>/matches.json wins over <root>/<split>_matches.json
    recs = json.loads((copy.parent.parent / "train_matches.json").read_text())
    other = [dict(r, seq_id="other") for r in recs] + [dict(recs[0], object_id="shirt")]
    (copy / "matches.json").write_text(json.dumps(other + recs[1:]))
    seq = load_deepdeform_sequence(copy)
    assert [(m.source_frame, m.target_frame) for m in seq.matches] == [(2, 4)]
    explicit = load_deepdeform_sequence(copy, labels=copy.parent.parent / "train_matches.json")
    assert len(explicit.matches) == 2
    # no masks at all: masks None, nothing available
    shutil.rmtree(copy / "mask")
    seq = load_deepdeform_sequence(copy, labels=copy.parent.parent / "train_matches.json")
    assert seq.masks is None and not seq.mask_available.any() and seq.object_id == "cloth"


def test_bad_inputs(copy, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_deepdeform_sequence(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no frames"):
        load_deepdeform_sequence(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="labels.json"):
        load_deepdeform_sequence(copy, labels=tmp_path / "labels.json")
    with pytest.raises(ValueError, match="frames"):
        load_deepdeform_sequence(copy, frames=[1, 1])

    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_deepdeform_sequence(copy, labels=bad_json)

    intr = (copy / "intrinsics.txt").read_text()
    (copy / "intrinsics.txt").write_text("fx fy garbage\n")
    with pytest.raises(ValueError, match="intrinsics.txt"):
        load_deepdeform_sequence(copy)
    (copy / "intrinsics.txt").unlink()
    with pytest.raises(FileNotFoundError, match="intrinsics.txt"):
        load_deepdeform_sequence(copy)
    (copy / "intrinsics.txt").write_text(intr)

    depth3 = copy / "depth" / "000003.png"
    write_depth_png(depth3, torch.ones(30, 40))
    with pytest.raises(ValueError, match="000003.png"):
        load_deepdeform_sequence(copy)
    depth3.unlink()
    with pytest.raises(FileNotFoundError, match=r"missing frames: frame 3 \(no depth/000003.png\)"):
        load_deepdeform_sequence(copy)
    assert load_deepdeform_sequence(copy, frames=[0, 1, 2]).num_frames == 3  # unaffected frames still load
    (copy / "color" / "000003.jpg").unlink()  # now consistent again
    assert load_deepdeform_sequence(copy).frame_ids == [0, 1, 2, 4, 5]

    write_mask(copy / "mask" / "000001_cloth.png", torch.zeros(10, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match="000001_cloth.png"):
        load_deepdeform_sequence(copy)
    write_mask(copy / "mask" / "000000_cloth.png", torch.zeros(60, 80, dtype=torch.bool))
    with pytest.raises(ValueError, match="000000_cloth.png.*first frame"):
        load_deepdeform_sequence(copy, frames=[0, 2])


def test_export_refuses_to_overwrite_and_merges_labels(exported, tmp_path):
    root, _ = exported
    shutil.copytree(root, tmp_path / "r")
    with pytest.raises(FileExistsError, match="synth000"):
        export_synthetic_sequence(tmp_path / "r", num_frames=3, height=24, width=32, pair_stride=1)
    export_synthetic_sequence(tmp_path / "r", seq_id="synth001", num_frames=3, height=24, width=32, pair_stride=1,
                              matches_per_pair=5)  # fmt: skip
    recs = json.loads((tmp_path / "r" / "train_matches.json").read_text())
    assert sorted({r["seq_id"] for r in recs}) == ["synth000", "synth001"]
    export_synthetic_sequence(tmp_path / "r", num_frames=3, height=24, width=32, pair_stride=1, overwrite=True)
    seq = load_deepdeform_sequence(tmp_path / "r" / "train" / "synth000")
    assert seq.frame_ids == [0, 1, 2] and len(seq.matches) == 2
    with pytest.raises(ValueError, match="object_name"):
        synthetic_sequence(object_name="dog")
    with pytest.raises(ValueError, match="pair_stride"):
        synthetic_sequence(pair_stride=0)
