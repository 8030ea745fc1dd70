"""fuse_sequence: submission layout, checkpoints, exact resume after an interruption, refused checkpoints,
the real DeepDeform pair, and every correspondence source on a short run."""

from __future__ import annotations

import json

import pytest
import torch

from nrsfm_kit.fusion import FusionConfig, fuse_sequence
from nrsfm_kit.fusion.run import RESULT_FILE, STATE_FILE
from nrsfm_kit.fusion.synthetic import fusion_sequence
from nrsfm_kit.metrics.reconstruction import read_mesh_ply


@pytest.fixture(scope="module")
def seq():
    return fusion_sequence("smoke", pair_stride=3)  # matches 0 -> 3, 3 -> 6, 6 -> 9


CFG = dict(correspondences="dis", segment_length=6)  # segments 0-5 and 6-11: pairs 0 -> 3 and 6 -> 9 inside


def test_submission_layout_and_result_file(seq, tmp_path):
    res = fuse_sequence(seq, FusionConfig(**CFG), out_dir=tmp_path, progress=False)
    names = sorted(p.name for p in (tmp_path / "meshes").glob("*.ply"))
    sid = seq.seq_id
    expect = sorted(f"{sid}_{(f // 6) * 6 + 5:06d}_{f:06d}.ply" for f in range(12))
    assert names == expect
    # one vertex count and order per segment: the canonical mesh of the segment's end, warped
    for end, frames in ((5, range(0, 6)), (11, range(6, 12))):
        counts = {read_mesh_ply(tmp_path / "meshes" / f"{sid}_{end:06d}_{f:06d}.ply")[0].shape for f in frames}
        assert len(counts) == 1
    v, faces, col = read_mesh_ply(tmp_path / "meshes" / f"{sid}_000011_000011.ply")
    torch.testing.assert_close(v, res.meshes[11].vertices)
    assert col is not None and faces.shape[1] == 3
    out = json.loads((tmp_path / RESULT_FILE).read_text())
    assert len(out["frames"]) == 12 and out["config"]["correspondences"] == "dis"
    assert out["metrics"]["geometry_cm"] < 1.0 and out["metrics"]["deformation_cm"] < 4.0
    assert (tmp_path / "canonical.ply").is_file() and (tmp_path / STATE_FILE).is_file()


def test_interrupted_run_resumes_exactly(seq, tmp_path):
    full = fuse_sequence(seq, FusionConfig(**CFG), progress=False)
    a = tmp_path / "a"
    part = fuse_sequence(seq, FusionConfig(**CFG), out_dir=a, progress=False, checkpoint_every=3, stop_after=7)
    assert part.report is None and not (a / RESULT_FILE).exists()  # interrupted: no result yet
    written = sorted(p.name for p in (a / "meshes").glob("*.ply"))
    assert len(written) == 6  # the first segment (frames 0-5); frames 6-7 were not closed
    res = fuse_sequence(seq, FusionConfig(**CFG), out_dir=a, progress=False, checkpoint_every=3)
    assert res.resumed_from == 5  # the last checkpoint: the end of segment 0 (frame 8 was not reached)
    assert len(list((a / "meshes").glob("*.ply"))) == 12  # nothing lost, nothing duplicated
    for f in range(12):
        torch.testing.assert_close(res.meshes[f].vertices, full.meshes[f].vertices, atol=0, rtol=0)
    assert res.report.deformation_cm == pytest.approx(full.report.deformation_cm, abs=1e-9)
    # a finished run started again resumes at its end and recomputes nothing
    again = fuse_sequence(seq, FusionConfig(**CFG), out_dir=a, progress=False)
    assert again.resumed_from == 11 and again.report.geometry_cm == pytest.approx(res.report.geometry_cm)


def test_checkpoints_of_other_runs_are_refused(seq, tmp_path):
    fuse_sequence(seq, FusionConfig(**CFG), out_dir=tmp_path, progress=False, stop_after=2, checkpoint_every=1)
    with pytest.raises(ValueError, match=r"other settings \(\['keyframe_every'\]\)"):
        fuse_sequence(seq, FusionConfig(**CFG, keyframe_every=7), out_dir=tmp_path, progress=False)
    other = fusion_sequence("smoke", num_frames=6)
    with pytest.raises(ValueError, match="another sequence"):
        fuse_sequence(other, FusionConfig(**CFG), out_dir=tmp_path, progress=False)
    data = (tmp_path / STATE_FILE).read_bytes()
    (tmp_path / STATE_FILE).write_bytes(data[: len(data) // 2])  # a cut file
    with pytest.raises(ValueError, match="unreadable fusion checkpoint"):
        fuse_sequence(seq, FusionConfig(**CFG), out_dir=tmp_path, progress=False)
    res = fuse_sequence(seq, FusionConfig(**CFG), out_dir=tmp_path, progress=False, resume=False, stop_after=1)
    assert res.resumed_from is None


@pytest.mark.parametrize("source", ["nnrt", "deepdeform"])
def test_learned_sources_run(seq, source):
    """The shipped teaching tracker / matcher as keyframe correspondence sources on 4 frames."""
    short = fusion_sequence("smoke", num_frames=4)
    res = fuse_sequence(short, FusionConfig(correspondences=source), progress=False)
    assert all(r.keyframe_correspondences > 0 for r in res.records[1:])
    assert res.report.geometry_cm < 1.5


def test_real_deepdeform_pair(real_data):
    """seq258 (frames 0 and 110, the pair in $NRSFM_KIT_DATA) as a two-frame sequence. The deformation error uses
    50 matches sampled from the dataset's own dense alignment (.oflow) and the target mask that flow implies (the
    pair has no mask for frame 110). Measured (2026-12-02): deformation error identity 24.1 cm, pure ICP 23.9 cm,
    DIS keyframe correspondences 2.2 cm; geometry error 0.4-0.7 cm."""
    from scipy import ndimage

    from nrsfm_kit.data.deepdeform import load_deepdeform_pair
    from nrsfm_kit.data.deepdeform_sequence import SequenceMatches, load_deepdeform_sequence
    from nrsfm_kit.fusion.run import evaluate_meshes

    path = real_data("deepdeform", "train", "seq258")
    seq = load_deepdeform_sequence(path)
    assert seq.frame_ids == [0, 110] and seq.mask_available.tolist() == [True, False]
    pair = load_deepdeform_pair(path, 0, 110)
    m = pair.source_mask & pair.flow_valid
    ys, xs = m.nonzero(as_tuple=True)
    tgt = torch.stack([xs, ys], 1).float() + pair.optical_flow[ys, xs]
    t = tgt.round().long()
    ok = (t[:, 0] >= 0) & (t[:, 0] < 640) & (t[:, 1] >= 0) & (t[:, 1] < 480)
    tm = torch.zeros(480, 640, dtype=torch.bool)
    tm[t[ok, 1], t[ok, 0]] = True
    seq.masks[1] = torch.from_numpy(ndimage.binary_closing(tm.numpy(), iterations=2)) & (seq.depths[1] > 0)
    seq.mask_available[1] = True
    pick = torch.randperm(ys.numel(), generator=torch.Generator().manual_seed(0))[:50]
    seq.matches = [SequenceMatches(0, 110, torch.stack([xs, ys], 1).float()[pick], tgt[pick])]
    rep = {}
    for s in ("none", "dis"):
        res = fuse_sequence(seq, FusionConfig(correspondences=s), progress=False)
        rep[s] = res.report
    ident = evaluate_meshes(seq, {0: res.meshes[0], 1: res.meshes[0]})
    assert ident.deformation_cm > 15  # the pair really deforms (110 frames apart)
    assert rep["dis"].deformation_cm < 4.0 < rep["none"].deformation_cm
    assert rep["dis"].geometry_cm < 1.5 and rep["none"].geometry_cm < 1.5
