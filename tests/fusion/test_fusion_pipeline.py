"""Non-rigid fusion on the synthetic fast-motion sequence with exact ground truth: accuracy, the correspondence
term against pure ICP, the keyframe checks (delta, bi-directional, ignored keyframes, multi-keyframe), bad input."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.fusion import FusionConfig, NonRigidFusion, fuse_sequence
from nrsfm_kit.fusion.correspondences import CorrespondenceSource, make_source
from nrsfm_kit.fusion.synthetic import fusion_sequence


@pytest.fixture(scope="module")
def seq():
    return fusion_sequence("smoke")  # 12 frames, 128 x 192, speed 3 (fast motion), matches 0 -> 10


@pytest.fixture(scope="module")
def runs(seq):
    return {s: fuse_sequence(seq, FusionConfig(correspondences=s), progress=False) for s in ("none", "dis")}


def test_fusion_accuracy_and_correspondences_beat_icp_on_fast_motion(runs):
    """Measured (2026-12-02): deformation error none 5.95 cm, dis 2.03 cm; geometry 0.49 / 0.39 cm."""
    none, dis = runs["none"].report, runs["dis"].report
    assert dis.geometry_cm < 1.0 and none.geometry_cm < 1.0  # the fused surface fits every frame's depth
    assert dis.deformation_cm < 3.0
    assert dis.deformation_cm < 0.6 * none.deformation_cm  # pure ICP loses the fast arm
    res = runs["dis"]
    assert len(res.meshes) == 12 and res.canonical.num_vertices > 500
    recs = res.records
    assert recs[0].keyframes_used == 0 and all(r.keyframes_used >= 1 for r in recs[1:])
    assert all(r.keyframe_correspondences > 100 and r.associations > 100 for r in recs[1:])
    assert all(r.rejected.keys() >= {"weight", "depth", "bidirectional", "multi_keyframe"} for r in recs[1:])
    assert [k.frame for k in res.fusion.keyframes] == [0]  # every 50th frame
    assert runs["none"].records[1].keyframe_correspondences == 0 and not runs["none"].fusion.keyframes


class _Truth(CorrespondenceSource):
    """Ground-truth optical flow of the synthetic sequence (frames found by their colour images), with weights
    and deliberate errors to exercise the checks."""

    name = "truth"

    def __init__(self, seq, weight=1.0, backward_shift=0.0, forward_shift=None):
        self.seq, self.weight, self.backward_shift = seq, weight, backward_shift
        self.forward_shift = forward_shift or {}

    def _index(self, data):
        for i in range(self.seq.num_frames):
            if torch.equal(data.color, self.seq.colors[i].float()):
                return i
        raise AssertionError("frame not found")

    def match(self, source, target, source_px):
        i, j = self._index(source), self._index(target)
        p = self.seq.source.pair(i, j)
        r, c = source_px[:, 1].long(), source_px[:, 0].long()
        tpx = source_px + p.optical_flow[r, c]
        if i > j:  # the backward direction of the bi-directional check
            tpx = tpx + self.backward_shift
        elif i in self.forward_shift:
            tpx = tpx + self.forward_shift[i]
        w = torch.full((source_px.shape[0],), float(self.weight))
        return torch.where(p.flow_valid[r, c].unsqueeze(-1), tpx, torch.full_like(tpx, float("nan"))), w


def _run(seq, source, frames=4, **kw):
    fu = NonRigidFusion(seq.intrinsics, FusionConfig(correspondences="dis", keyframe_every=2, **kw), source=source)
    return fu, [fu.step(seq.colors[f], seq.depths[f], seq.masks[f]) for f in range(frames)]


def test_keyframe_checks(seq):
    # exact correspondences: nothing rejected by weight or bi-directional consistency, keyframes 0 and 2 used
    fu, recs = _run(seq, _Truth(seq))
    assert [k.frame for k in fu.keyframes] == [0, 2]
    assert recs[3].keyframes_used == 2 and recs[3].rejected["weight"] == 0  # keyframe 2 is also the previous frame
    assert recs[3].rejected["bidirectional"] <= 0.05 * recs[3].keyframe_correspondences
    # weights below delta = 0.35: every correspondence rejected, every keyframe ignored (> 50 % invalid)
    _, recs = _run(seq, _Truth(seq, weight=0.3), frames=3)
    assert recs[2].keyframe_correspondences == 0 and recs[2].keyframes_ignored == 2 and recs[2].rejected["weight"] > 0
    # a backward direction 60 px off (~0.45 m at 1.3 m): the bi-directional check rejects, keyframes ignored
    _, recs = _run(seq, _Truth(seq, backward_shift=60.0), frames=3)
    assert recs[2].rejected["bidirectional"] > 0 and recs[2].keyframes_ignored >= 1


def test_multi_keyframe_consistency_rejects_the_outlying_keyframe(seq):
    """Keyframe 0's correspondences permuted among its own targets (still on the object, consistent backwards, so
    they pass the depth and bi-directional checks) while keyframes 2 and 4 are exact: the permuted predictions
    far from the mean of the four keyframes (0, 2, 4 and the previous frame)' predictions of the same samples are rejected (> 0.15 m)."""

    class Permuted(_Truth):
        last = None

        def match(self, source, target, source_px):
            tpx, w = super().match(source, target, source_px)
            i, j = self._index(source), self._index(target)
            if i == 0:  # forward from keyframe 0: a fixed permutation of the targets
                perm = torch.randperm(tpx.shape[0], generator=torch.Generator().manual_seed(0))
                tpx = tpx[perm]
                self.last = (tpx.clone(), source_px.clone())
            elif j == 0 and self.last is not None:  # backward to keyframe 0: undo it
                fwd, spx = self.last
                d = torch.cdist(source_px, fwd)
                tpx = spx[d.argmin(1)]
            return tpx, w

    from nrsfm_kit.fusion.correspondences import FrameData
    from nrsfm_kit.fusion.pipeline import FrameRecord

    fu, _ = _run(seq, _Truth(seq), frames=6)  # tracked with exact correspondences; keyframes 0, 2, 4
    assert [k.frame for k in fu.keyframes] == [0, 2, 4]
    data = FrameData(seq.colors[6].float(), seq.depths[6].float(), fu.intrinsics)
    counts = {}
    for name, source in (("exact", _Truth(seq)), ("permuted", Permuted(seq))):
        fu.source = source
        rec = FrameRecord(6, torch.empty(0), torch.empty(0), 0)
        ids, _, _, _ = fu._keyframe_correspondences(data, seq.masks[6], rec)
        assert rec.keyframes_used == 4  # keyframes 0, 2, 4 and the previous frame 5
        counts[name] = (rec.rejected["multi_keyframe"], ids.numel())
    assert counts["exact"][0] <= 0.01 * counts["exact"][1]
    assert counts["permuted"][0] > 100  # measured: 215 of ~580 permuted (those > 0.2 m off: 3/4 of it from the mean)


def test_fusion_bad_inputs(seq):
    with pytest.raises(ValueError, match="correspondences: expected one of"):
        FusionConfig(correspondences="sift")
    with pytest.raises(ValueError, match="keyframe_every"):
        FusionConfig(keyframe_every=0)
    with pytest.raises(ValueError, match="min_correspondence_weight"):
        FusionConfig(min_correspondence_weight=1.5)
    with pytest.raises(ValueError, match="checkpoint"):
        make_source("dis", "weights.pt")
    with pytest.raises(ValueError, match="device: expected 'cpu' or"):
        FusionConfig(device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA available: False"):
            FusionConfig(device="cuda")
    fu = NonRigidFusion(seq.intrinsics)
    with pytest.raises(ValueError, match="mask: expected object pixels with valid depth in the first frame"):
        fu.step(seq.colors[0], seq.depths[0], torch.zeros_like(seq.masks[0]))
    with pytest.raises(ValueError, match="depth"):
        NonRigidFusion(seq.intrinsics).step(seq.colors[0], seq.depths[0][:-1], None)
    with pytest.raises(ValueError, match="source: expected a CorrespondenceSource"):
        NonRigidFusion(seq.intrinsics, source="dis")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_volume_on_cuda_matches_cpu(seq):
    """The TSDF on the GPU (FusionConfig.device): the same meshes as on the CPU, up to float round-off."""
    short = fusion_sequence("smoke", num_frames=4)
    a = fuse_sequence(short, FusionConfig(correspondences="none"), progress=False)
    b = fuse_sequence(short, FusionConfig(correspondences="none", device="cuda"), progress=False)
    assert abs(a.report.geometry_cm - b.report.geometry_cm) < 0.05
    assert abs(a.canonical.num_vertices - b.canonical.num_vertices) <= 0.01 * a.canonical.num_vertices
