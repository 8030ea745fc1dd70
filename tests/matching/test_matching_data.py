"""Patches, augmentation labels, non-rigid sampling and resizing of nrsfm_kit.matching.data."""

import math

import pytest
import torch

from nrsfm_kit.data.rgbd import synthetic_rgbd_pair
from nrsfm_kit.geometry import ransac_procrustes, so3_exp
from nrsfm_kit.matching.data import (
    PatchSampler,
    SamplingConfig,
    extract_patches,
    frame_image,
    image_to_patch,
    patch_to_image,
    prepare_pair,
    resize_pair,
    synthetic_matching_pairs,
)


@pytest.fixture(scope="module")
def pair():
    return synthetic_rgbd_pair(64, 96, seed=3, time_gap=0.8, t_source=1.0)


def test_patch_coordinates_round_trip():
    g = torch.Generator().manual_seed(0)
    c = torch.rand(20, 2, generator=g) * 50
    a = (torch.rand(20, generator=g) - 0.5) * 2
    f = torch.rand(20, generator=g) < 0.5
    p = torch.rand(20, 2, generator=g) * 31
    img = patch_to_image(p, c, 32, a, f)
    assert torch.allclose(image_to_patch(img, c, 32, a, f), p, atol=1e-5)
    # the patch centre maps onto the centre pixel
    ctr = torch.full((20, 2), 15.5)
    assert torch.allclose(patch_to_image(ctr, c, 32, a, f), c, atol=1e-5)


def test_extract_patches_reads_the_image(pair):
    img = frame_image(pair.source_color, pair.source_depth, pair.intrinsics)
    assert img.shape == (6, 64, 96)
    c = torch.tensor([[40.5, 30.5], [10.5, 20.5]])
    P = extract_patches(img, c, 16)
    assert P.shape == (2, 6, 16, 16)
    # un-rotated patch at a half-pixel centre is the image crop
    assert torch.allclose(P[0], img[:, 23:39, 33:49], atol=1e-5)
    # a flipped patch is the mirror image with X negated
    Pf = extract_patches(img, c, 16, flips=torch.tensor([True, False]))
    assert torch.allclose(Pf[0, :3], P[0, :3].flip(-1), atol=1e-5)
    assert torch.allclose(Pf[0, 3], -P[0, 3].flip(-1), atol=1e-5)
    assert torch.allclose(Pf[0, 4:], P[0, 4:].flip(-1), atol=1e-5)
    # outside the image: zeros
    far = extract_patches(img, torch.tensor([[500.0, 500.0]]), 8)
    assert float(far.abs().max()) == 0.0


def test_sampler_labels_point_at_the_true_match(pair):
    s = PatchSampler([pair], SamplingConfig(patch_size=32))
    b = s.sample(64, torch.Generator().manual_seed(1))
    assert b.source.shape == (64, 6, 32, 32) and b.target.shape == (64, 6, 32, 32)
    assert b.visible.any() and (~b.visible).any()  # outside-the-patch negatives exist
    assert torch.isnan(b.target_px[~b.visible]).all()
    # the target patch's Z at the labelled pixel is the true target depth (nearest sampling, few mm)
    vis = torch.nonzero(b.visible).squeeze(1)
    ij = b.target_px[vis].round().long()
    z = b.target[vis, 5, ij[:, 1], ij[:, 0]]
    err = (z - b.target_depth[vis]).abs()
    assert float(err.median()) < 0.01
    # the same generator seed gives the same batch (exact resume of training)
    b2 = s.sample(64, torch.Generator().manual_seed(1))
    assert torch.equal(b.source, b2.source) and torch.equal(b.visible, b2.visible)


def test_nonrigid_weights_follow_deviation_from_rigid_fit():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 3, generator=g, dtype=torch.float64)
    R = so3_exp(torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64))
    Y = X @ R.T + torch.tensor([0.1, 0.0, 0.2], dtype=torch.float64)
    Y[:40] += 0.3 * torch.randn(40, 3, generator=g, dtype=torch.float64)  # 20 % non-rigid outliers
    R2, t2, inl = ransac_procrustes(X, Y, threshold=0.01, generator=g)
    assert torch.allclose(R2, R, atol=1e-8)
    assert inl[40:].all() and not inl[:40].any()
    with pytest.raises(ValueError, match="at least 3"):
        ransac_procrustes(X[:2], Y[:2])


def test_prepare_pair_weights(pair):
    pp = prepare_pair(pair, SamplingConfig(patch_size=32))
    assert (pp.weights > 0).all()
    assert float(pp.weights.max()) > 2 * float(pp.weights.min())  # non-rigid points are preferred


def test_resize_pair_keeps_geometry(pair):
    small = resize_pair(pair, 0.5)
    assert small.source_depth.shape == (32, 48) and small.source_color.shape == (3, 32, 48)
    # a pixel's back-projection is unchanged up to the pixel footprint
    fx, fy, cx, cy = (float(v) for v in small.intrinsics)
    big = pair.intrinsics
    assert math.isclose(fx, float(big[0]) / 2) and math.isclose(cx, (float(big[2]) + 0.5) / 2 - 0.5)
    assert resize_pair(pair, 1.0) is pair
    with pytest.raises(ValueError, match="scale"):
        resize_pair(pair, 0.0)


def test_bad_input(pair):
    with pytest.raises(ValueError, match="patch_size"):
        SamplingConfig(patch_size=4)
    with pytest.raises(ValueError, match="flip_prob"):
        SamplingConfig(flip_prob=2.0)
    with pytest.raises(ValueError, match="pairs"):
        PatchSampler([])
    with pytest.raises(ValueError, match="image"):
        extract_patches(torch.zeros(3, 8, 8), torch.zeros(1, 2), 4)
    with pytest.raises(ValueError, match="centers"):
        extract_patches(torch.zeros(6, 8, 8), torch.zeros(1, 3), 4)
    with pytest.raises(ValueError, match="split"):
        synthetic_matching_pairs("nope", 1)
    with pytest.raises(ValueError, match="time_gap"):
        synthetic_matching_pairs("train", 1, time_gap=(1.0, 0.5))


def test_sparse_labels_train_like_dense_ones(pair, tmp_path):
    """DeepDeform's sparse match JSON -> prepared pairs -> patch batches whose labels hit the true match."""
    import json

    from nrsfm_kit.data.deepdeform import save_deepdeform_pair
    from nrsfm_kit.matching.data import deepdeform_training_pairs, prepare_sparse_pair
    from nrsfm_kit.metrics.matching import ground_truth_matches, sample_source_points

    px = sample_source_points(pair, 30, seed=0)
    tpx, _, ok = ground_truth_matches(pair, px)
    px, tpx = px[ok], tpx[ok]
    seq = save_deepdeform_pair(pair, tmp_path / "train" / "seq000", 0, 1, "cloth")
    rec = [{"seq_id": "seq000", "object_id": "cloth", "source_id": 0, "target_id": 1,
            "matches": [{"source_x": float(a), "source_y": float(b), "target_x": float(c), "target_y": float(d)}
                        for (a, b), (c, d) in zip(px.tolist(), tpx.tolist())]}]
    (tmp_path / "train_matches.json").write_text(json.dumps(rec))
    occ = [{"seq_id": "seq000", "object_id": "cloth", "source_id": 0, "target_id": 1,
            "occlusions": [{"source_x": float(px[0, 0]), "source_y": float(px[0, 1])}]}]
    (tmp_path / "train_occlusions.json").write_text(json.dumps(occ))
    pp = deepdeform_training_pairs(tmp_path, "train", progress=False)
    assert len(pp) == 1 and (~pp[0].visible).sum() == 1 and pp[0].visible.sum() >= 0.8 * len(px)
    b = PatchSampler(pp, SamplingConfig(patch_size=32), augment=False).sample(16, torch.Generator().manual_seed(0))
    vis = torch.nonzero(b.visible).squeeze(1)
    assert len(vis) > 0
    # un-augmented: the target patch is centred on the source pixel, the label is the match's offset from it
    lookup = {tuple(a): c for a, c in zip(px.tolist(), tpx.tolist())}
    expect = torch.tensor([lookup[tuple(b.source_px[k].tolist())] for k in vis.tolist()]) - b.source_px[vis] + 15.5
    torch.testing.assert_close(b.target_px[vis], expect.to(b.target_px.dtype))
    assert seq.is_dir()
    with pytest.raises(ValueError, match="target_px"):
        prepare_sparse_pair(pair, px, tpx[:-1])
    with pytest.raises(ValueError, match="source_px"):
        prepare_sparse_pair(pair, torch.zeros(0, 2), torch.zeros(0, 2))
    with pytest.raises(ValueError, match="target_px: expected pixels inside"):
        prepare_sparse_pair(pair, px[:1], torch.tensor([[1000.0, 5.0]]))
