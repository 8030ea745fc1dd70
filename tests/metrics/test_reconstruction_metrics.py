"""DeepDeform reconstruction metrics (nrsfm_kit/metrics/reconstruction.py): exact cases with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from nrsfm_kit.metrics import (
    MISSING_MESH_M,
    ReconstructionReport,
    benchmark_score,
    carry_points,
    carry_weights,
    deformation_error,
    geometry_error,
    read_mesh_ply,
    segment_scores,
    submission_name,
    write_mesh_ply,
)

H, W = 40, 50
INTR = torch.tensor([100.0, 100.0, 24.5, 19.5], dtype=torch.float64)


def plane(z: float = 1.0) -> torch.Tensor:
    return torch.full((H, W), z, dtype=torch.float64)


def rect_mask(r0=10, r1=30, c0=10, c1=40) -> torch.Tensor:
    m = torch.zeros(H, W, dtype=torch.bool)
    m[r0:r1, c0:c1] = True
    return m


def grid_vertices(z: float, spacing: float = 0.002, half_x: float = 0.3, half_y: float = 0.25) -> torch.Tensor:
    xs = np.arange(-half_x, half_x + 1e-9, spacing)
    ys = np.arange(-half_y, half_y + 1e-9, spacing)
    X, Y = np.meshgrid(xs, ys)
    return torch.from_numpy(np.stack([X.ravel(), Y.ravel(), np.full(X.size, z)], 1))


def project(p: torch.Tensor) -> torch.Tensor:
    fx, fy, cx, cy = INTR
    return torch.stack([fx * p[:, 0] / p[:, 2] + cx, fy * p[:, 1] / p[:, 2] + cy], 1)


# ---------------------------------------------------------------------------------------------- geometry


def test_geometry_error_plane_offset_one_cm():
    err = geometry_error(plane(), rect_mask(), INTR, grid_vertices(1.01))
    assert err.shape == (10 * 20,)  # the 20 x 30 rectangle eroded 5 times (3x3 cross) -> 10 x 20
    # nearest vertex of a 2 mm grid 1 cm behind: between 0.01 and sqrt(0.01^2 + 2 * 0.001^2)
    assert err.min() >= 0.01 - 1e-9 and err.max() <= math.hypot(0.01, 0.001 * math.sqrt(2)) + 1e-9
    assert abs(err.mean().item() - 0.01) < 2e-4


def test_geometry_error_missing_mesh_and_erosion_counts():
    m = rect_mask()
    err = geometry_error(plane(), m, INTR, None)
    assert err.shape == (200,) and torch.all(err == MISSING_MESH_M)
    assert geometry_error(plane(), m, INTR, None, erosion=0).numel() == 20 * 30
    assert geometry_error(plane(), m, INTR, None, erosion=1).numel() == 18 * 28
    # invalid depth (0, NaN) is not evaluated
    d = plane()
    d[15, 20] = 0.0
    d[16, 21] = float("nan")
    assert geometry_error(d, m, INTR, None).numel() == 198
    # a mask eroded away entirely -> no pixels
    assert geometry_error(plane(), rect_mask(10, 15, 10, 15), INTR, grid_vertices(1.0)).numel() == 0


def test_geometry_error_bad_inputs():
    v = grid_vertices(1.0, spacing=0.05)
    with pytest.raises(ValueError, match="depth"):
        geometry_error(torch.ones(3, H, W), rect_mask(), INTR, v)
    with pytest.raises(ValueError, match="mask"):
        geometry_error(plane(), rect_mask()[:-1], INTR, v)
    with pytest.raises(ValueError, match="mask: expected a bool"):
        geometry_error(plane(), rect_mask().float(), INTR, v)
    with pytest.raises(ValueError, match="vertices"):
        geometry_error(plane(), rect_mask(), INTR, v[:, :2])
    with pytest.raises(ValueError, match="vertices: expected finite"):
        geometry_error(plane(), rect_mask(), INTR, torch.full((4, 3), float("nan")))
    with pytest.raises(ValueError, match="intrinsics"):
        geometry_error(plane(), rect_mask(), torch.tensor([0.0, 1.0, 2.0, 3.0]), v)
    with pytest.raises(ValueError, match="erosion"):
        geometry_error(plane(), rect_mask(), INTR, v, erosion=-1)


# ---------------------------------------------------------------------------------------------- deformation


def _source_points(z: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    px = torch.tensor([[20.0, 18.0], [25.3, 20.7], [30.0, 22.0], [18.6, 14.2]], dtype=torch.float64)
    fx, fy, cx, cy = INTR
    p = torch.stack([(px[:, 0] - cx) / fx * z, (px[:, 1] - cy) / fy * z, torch.full((len(px),), z)], 1)
    return px, p


def test_deformation_error_zero_under_rigid_translation():
    t = torch.tensor([0.02, -0.01, 0.05], dtype=torch.float64)
    src_px, p = _source_points()
    tgt_px = project(p + t)
    sv = grid_vertices(1.0, spacing=0.01)
    # the target "depth" is the translated plane z = 1.05
    res = deformation_error(src_px, tgt_px, plane(), plane(1.05), rect_mask(5, 35, 5, 45), rect_mask(5, 35, 5, 45),
                            INTR, sv, sv + t)  # fmt: skip
    assert res.kept.all() and res.errors.shape == (4,)
    assert res.errors.max() < 1e-9
    # a wrong reconstruction (no motion) errs by |t|
    res0 = deformation_error(src_px, tgt_px, plane(), plane(1.05), rect_mask(5, 35, 5, 45),
                             rect_mask(5, 35, 5, 45), INTR, sv, sv)  # fmt: skip
    assert torch.allclose(res0.errors, torch.full((4,), t.norm().item(), dtype=torch.float64), atol=1e-9)
    # a missing mesh: every kept match counts 0.30 m
    res1 = deformation_error(src_px, tgt_px, plane(), plane(1.05), rect_mask(5, 35, 5, 45),
                             rect_mask(5, 35, 5, 45), INTR, sv, None)  # fmt: skip
    assert torch.all(res1.errors == MISSING_MESH_M) and res1.kept.all()


def test_carry_weights_match_hand_computation():
    # six vertices on the x axis at distances 1, 2, 3, 4, 5 and 10 from the origin (the 6th sets d_6 = 10)
    d = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 10.0])
    sv = torch.from_numpy(np.stack([d, np.zeros(6), np.zeros(6)], 1))
    disp = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0], [0, 1.0, 1.0], [5.0, 5.0, 5.0]],
                        dtype=torch.float64)  # fmt: skip
    p = torch.zeros(1, 3, dtype=torch.float64)
    idx, w = carry_weights(p, sv)
    raw = (1 - d[:5] / 10.0) ** 2  # 0.81, 0.64, 0.49, 0.36, 0.25
    assert idx.tolist() == [[0, 1, 2, 3, 4]]
    assert np.allclose(w.numpy()[0], raw / raw.sum())
    moved = carry_points(p, sv, sv + disp)
    expect = (torch.from_numpy(raw / raw.sum())[:, None] * disp[:5]).sum(0)
    assert torch.allclose(moved[0], expect, atol=1e-12)  # the 6th vertex's displacement has no weight


def test_deformation_error_depth_window_fallback_and_masks():
    src_px, p = _source_points()
    sv = grid_vertices(1.0, spacing=0.01)
    t = torch.tensor([0.0, 0.0, 0.03], dtype=torch.float64)
    tgt_px = project(p + t)
    sd = plane()
    sd[18, 20] = 0.0  # the exact pixel of match 0 has no depth: the nearest valid one (1 px away) is used
    sd[20:24, 28:33] = 0.0  # match 2 (x=30, y=22): nearest valid depth 2 px below
    m = rect_mask(5, 35, 5, 45)
    res = deformation_error(src_px, tgt_px, sd, plane(1.03), m, m, INTR, sv, sv + t)
    assert res.kept.all() and res.errors.max() < 1e-9
    # a hole larger than the window: match 0 dropped
    sd2 = plane()
    sd2[14:23, 16:25] = 0.0
    res2 = deformation_error(src_px, tgt_px, sd2, plane(1.03), m, m, INTR, sv, sv + t)
    assert res2.kept.tolist() == [False, True, True, True] and res2.errors.shape == (3,)
    # a different depth in the window is really used: 1 px away at z = 1.1 (plane scaled along the ray)
    sd3 = plane()
    sd3[18, 20] = 0.0
    sd3[17:20, 19:22] = torch.where(sd3[17:20, 19:22] > 0, torch.tensor(1.1, dtype=torch.float64), 0.0)
    res3 = deformation_error(src_px[:1], tgt_px[:1], sd3, plane(1.03), m, m, INTR, sv, sv + t)
    assert abs(res3.errors.item() - (p[0] * 0.1).norm().item()) < 1e-6
    # masks eroded twice: a source pixel 1 px inside the mask border is dropped
    m_small = rect_mask(17, 30, 19, 45)  # match 0 (x=20, y=18) is 1 px inside the mask: outside once eroded twice
    res4 = deformation_error(src_px, tgt_px, plane(), plane(1.03), m_small, m, INTR, sv, sv + t)
    assert res4.kept.tolist()[0] is False
    # outside the image: dropped, not an error
    far = src_px.clone()
    far[1] = torch.tensor([-5.0, 100.0])
    res5 = deformation_error(far, tgt_px, plane(), plane(1.03), m, m, INTR, sv, sv + t)
    assert res5.kept.tolist() == [True, False, True, True]


def test_deformation_error_bad_inputs():
    src_px, p = _source_points()
    m = rect_mask(5, 35, 5, 45)
    sv = grid_vertices(1.0, spacing=0.01)
    with pytest.raises(ValueError, match=r"source_vertices, target_vertices.*\(3111, 3\).*\(3110, 3\)"):
        deformation_error(src_px, src_px, plane(), plane(), m, m, INTR, sv, sv[:-1])
    with pytest.raises(ValueError, match="target_depth"):
        deformation_error(src_px, src_px, plane(), torch.ones(H + 1, W, dtype=torch.float64), m, m, INTR, sv, sv)
    with pytest.raises(ValueError, match="target_px"):
        deformation_error(src_px, src_px[:2], plane(), plane(), m, m, INTR, sv, sv)
    with pytest.raises(ValueError, match="source_px: expected finite"):
        deformation_error(src_px * float("nan"), src_px, plane(), plane(), m, m, INTR, sv, sv)
    with pytest.raises(ValueError, match="window"):
        deformation_error(src_px, src_px, plane(), plane(), m, m, INTR, sv, sv, window=6)
    with pytest.raises(ValueError, match="neighbours"):
        deformation_error(src_px, src_px, plane(), plane(), m, m, INTR, sv[:4], sv[:4])


# ---------------------------------------------------------------------------------------------- aggregation


def test_segment_scores_capping_and_cm():
    errs = {f: 0.01 for f in range(100)}  # segment 0: 1 cm
    errs.update({f: 0.5 for f in range(100, 150)})  # segment 1: 0.5 m -> capped at 0.30
    errs[150] = None  # missing mesh counts 0.30
    errs.update({f: 0.02 for f in range(200, 210)})  # segment 2: 2 cm
    segs = segment_scores(errs)
    assert segs == pytest.approx([0.01, 0.30, 0.02])
    assert segment_scores({5: 0.1, 12: 0.2}, segment_length=10) == pytest.approx([0.1, 0.2])
    assert segment_scores({0: None}) == pytest.approx([0.30])
    score = benchmark_score({"a": segs, "b": [0.05]})
    assert score == pytest.approx(((0.01 + 0.30 + 0.02) / 3 + 0.05) / 2 * 100)
    with pytest.raises(ValueError, match="frame 3"):
        segment_scores({3: float("nan")})
    with pytest.raises(ValueError, match="segment_length"):
        segment_scores({0: 0.1}, segment_length=0)
    with pytest.raises(ValueError, match="per_sequence"):
        benchmark_score({})
    with pytest.raises(ValueError, match="'b'"):
        benchmark_score({"a": [0.1], "b": []})


def test_report_to_dict_is_json_safe():
    rep = ReconstructionReport.from_frames({"s": {0: 0.01, 1: None, 2: float("nan")}}, {"s": {0: 0.02}})
    assert rep.geometry_cm == pytest.approx((0.01 + 0.30) / 2 * 100)
    assert rep.deformation_cm == pytest.approx(2.0)
    d = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert d["geometry_per_frame_m"]["s"] == {"0": 0.01, "1": 0.30, "2": None}
    empty = ReconstructionReport.from_frames({}, {"s": {0: float("nan")}})
    assert json.loads(json.dumps(empty.to_dict(), allow_nan=False))["deformation_cm"] is None


# ---------------------------------------------------------------------------------------------- PLY


def test_submission_name():
    assert submission_name("seq070", 99, 42) == "seq070_000099_000042.ply"
    with pytest.raises(ValueError, match="seq"):
        submission_name("a/b", 0, 0)
    with pytest.raises(ValueError, match="frame"):
        submission_name("s", 0, -1)


@pytest.mark.parametrize("with_colors", [False, True])
def test_ply_round_trip(tmp_path, with_colors):
    g = torch.Generator().manual_seed(0)
    v = torch.rand(7, 3, generator=g) - 0.5
    f = torch.tensor([[0, 1, 2], [2, 3, 4], [4, 5, 6], [6, 0, 3]])
    c = torch.rand(7, 3, generator=g) if with_colors else None
    path = write_mesh_ply(tmp_path / "m.ply", v, f, c)
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    v2, f2, c2 = read_mesh_ply(path)
    assert torch.allclose(v2, v.float()) and torch.equal(f2, f)
    if with_colors:
        assert c2 is not None and (c2 - c).abs().max() <= 0.5 / 255 + 1e-6
    else:
        assert c2 is None
    # no faces (a point cloud) and numpy inputs
    v3, f3, _ = read_mesh_ply(write_mesh_ply(tmp_path / "p.ply", v.numpy(), np.zeros((0, 3), np.int64)))
    assert v3.shape == (7, 3) and f3.shape == (0, 3)


def test_ply_ascii_and_bad_files(tmp_path):
    a = tmp_path / "a.ply"
    a.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                 "property uchar red\nproperty uchar green\nproperty uchar blue\n"
                 "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
                 "0 0 0 255 0 0\n1 0 0 0 255 0\n0 1 0 0 0 255\n3 0 1 2\n")  # fmt: skip
    v, f, c = read_mesh_ply(a)
    assert v.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0]] and f.tolist() == [[0, 1, 2]]
    assert torch.equal(c, torch.eye(3))
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"not a ply file")
    with pytest.raises(ValueError, match="bad.ply"):
        read_mesh_ply(bad)
    good = write_mesh_ply(tmp_path / "t.ply", torch.rand(4, 3), torch.tensor([[0, 1, 2], [1, 2, 3]]))
    trunc = tmp_path / "trunc.ply"
    trunc.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(ValueError, match="trunc.ply.*truncated"):
        read_mesh_ply(trunc)
    quad = tmp_path / "quad.ply"
    quad.write_text(a.read_text().replace("3 0 1 2", "4 0 1 2 0"))
    with pytest.raises(ValueError, match="quad.ply.*triangle"):
        read_mesh_ply(quad)
    with pytest.raises(FileNotFoundError, match="missing.ply"):
        read_mesh_ply(tmp_path / "missing.ply")
    with pytest.raises(ValueError, match="faces"):
        write_mesh_ply(tmp_path / "x.ply", torch.rand(3, 3), torch.tensor([[0, 1, 3]]))
    with pytest.raises(ValueError, match="colors"):
        write_mesh_ply(tmp_path / "x.ply", torch.rand(3, 3), torch.tensor([[0, 1, 2]]), torch.full((3, 3), 2.0))
    with pytest.raises(ValueError, match="vertices"):
        write_mesh_ply(tmp_path / "x.ply", torch.rand(3, 2), torch.tensor([[0, 1, 2]]))
    assert not (tmp_path / "x.ply").exists()
