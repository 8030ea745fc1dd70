"""Non-rigid RGB-D alignment with projective re-association and DeepDeform App. D dense alignment.

Bounds were measured first (OMP_NUM_THREADS=1, CPU) and set with margin; each is one a broken
implementation (no step, wrong sign, terms not wired) fails.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from nrsfm_kit.data import synthetic_rgbd_pair
from nrsfm_kit.data.deepdeform import load_deepdeform_pair, read_flow_binary, save_deepdeform_pair
from nrsfm_kit.geometry import pixel_grid
from nrsfm_kit.graph import build_graph
from nrsfm_kit.matching.alignment import (
    AlignmentConfig,
    AlignmentResult,
    PixelMatches,
    align,
    dense_alignment,
    depth_normals,
    flow_endpoint_errors,
    simulate_sparse_matches,
    write_dense_alignment,
)
from nrsfm_kit.solver.terms import PointSet, PointToPoint

H, W = 96, 128
DATA_ONLY = AlignmentConfig(lambda_photo=0.0, lambda_silh=0.0)  # E_data + E_reg


def _case(gap: float):
    """A waving cloth (exact dense ground truth) and its graph; eval = mask, valid flow, visible, anchored."""
    pair = synthetic_rgbd_pair(H, W, seed=0, time_gap=gap, objects=("cloth",))
    graph = build_graph(pair.source_depth, pair.source_mask, pair.intrinsics)
    anchored = (graph.pixel_anchors >= 0).any(-1)
    ev = pair.source_mask & pair.flow_valid & pair.visibility & anchored & (pair.source_depth > 0)
    return pair, graph, ev


@pytest.fixture(scope="module")
def medium():
    """0.6 s apart: scene flow 45 mm median, inside the basin of projective ICP."""
    return _case(0.6)


@pytest.fixture(scope="module")
def large():
    """1.0 s apart: scene flow 78 mm median, beyond projective ICP alone (sparse matches needed)."""
    return _case(1.0)


@pytest.fixture(scope="module")
def large_aligned(large):
    pair, graph, ev = large
    m = simulate_sparse_matches(pair, 30, seed=0, graph=graph)
    res = dense_alignment(pair, m.source_px, m.target_px, pair.source_mask, graph=graph)
    return m, res


def _epe(res: AlignmentResult, pair, ev):
    ok = ev & res.valid
    return (flow_endpoint_errors(res.optical_flow, pair.optical_flow, ok),
            flow_endpoint_errors(res.scene_flow, pair.scene_flow, ok))


def _identity(pair, ev):
    return (flow_endpoint_errors(torch.zeros_like(pair.optical_flow), pair.optical_flow, ev),
            flow_endpoint_errors(torch.zeros_like(pair.scene_flow), pair.scene_flow, ev))


def _sparse_error(res: AlignmentResult, m: PixelMatches) -> torch.Tensor:
    """2D error (pixels) of the matches' source pixels moved by the result's flow, against their targets."""
    r, c = m.source_px[:, 1].round().long(), m.source_px[:, 0].round().long()
    moved = pixel_grid(H, W)[r, c] + res.optical_flow[r, c]
    return (moved - m.target_px).norm(dim=-1)


# ----------------------------------------------------------------------------------------------
# the alignment loop
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("linear_solver", ["pcg", "dense"])
def test_align_data_terms_reduce_scene_flow_error(medium, linear_solver):
    pair, graph, ev = medium
    _, id3 = _identity(pair, ev)
    res = align(pair, graph, config=replace(DATA_ONLY, linear_solver=linear_solver))
    _, e3 = _epe(res, pair, ev)
    # measured: 3D EPE median 44.8 mm (identity) -> 10.7 mm (pcg and dense alike), 1446 points
    assert id3["median"] > 0.04 and e3["count"] == id3["count"] == int(ev.sum())
    assert e3["median"] < 0.4 * id3["median"], (e3, id3)
    assert e3["mean"] < 0.5 * id3["mean"], (e3, id3)
    assert len(res.history) == DATA_ONLY.gn_iterations
    h = res.history
    assert {"point", "plane", "arap", "total", "total_after"} <= set(h[0])
    assert h[-1]["associations"] > h[0]["associations"]  # re-association finds more pairs as it aligns
    assert h[-1]["total"] < 0.5 * h[0]["total"]  # measured 0.30 (with more associations)
    assert res.seconds > 0 and res.notes == []


def test_align_result_layout(medium):
    pair, graph, _ = medium
    res = align(pair, graph, config=replace(DATA_ONLY, gn_iterations=2))
    assert res.warped.shape == (H, W, 3) and res.optical_flow.shape == (H, W, 2)
    assert res.scene_flow.shape == (H, W, 3) and res.valid.shape == (H, W) and res.valid.dtype == torch.bool
    v = res.valid
    assert torch.isfinite(res.optical_flow[v]).all() and torch.isnan(res.optical_flow[~v]).all()
    assert torch.isnan(res.warped[~v]).all() and not (v & ~pair.source_mask).any()
    N = graph.num_nodes
    assert res.motion.rotations.shape == (N, 3, 3) and res.motion.translations.shape == (N, 3)
    # the scene flow is the warped point minus the source point
    from nrsfm_kit.geometry import depth_to_points

    pts, _ = depth_to_points(pair.source_depth, pair.intrinsics)
    assert torch.allclose(res.scene_flow[v], res.warped[v] - pts[v], atol=1e-6)
    # zero iterations: the identity (zero flow)
    res0 = align(pair, graph, config=replace(DATA_ONLY, gn_iterations=0))
    assert res0.history == [] and res0.optical_flow[res0.valid].abs().max() < 1e-4


def test_align_backends_and_float64_agree(medium):
    pair, graph, ev = medium
    cfg = replace(DATA_ONLY, gn_iterations=3)
    a = align(pair, graph, config=cfg)
    b = align(pair, graph, config=replace(cfg, backend="torch"))
    assert torch.allclose(a.motion.translations, b.motion.translations, atol=1e-4)
    p64 = copy.copy(pair)
    for name in ("source_color", "target_color", "source_depth", "target_depth", "intrinsics"):
        setattr(p64, name, getattr(pair, name).double())
    c = align(p64, graph, config=cfg)
    assert c.optical_flow.dtype == torch.float64 and c.motion.translations.dtype == torch.float64
    assert torch.allclose(a.motion.translations.double(), c.motion.translations, atol=1e-3)


def test_align_lm_and_stride(medium):
    pair, graph, ev = medium
    _, id3 = _identity(pair, ev)
    for cfg in (replace(DATA_ONLY, method="lm"), replace(DATA_ONLY, source_stride=2)):
        res = align(pair, graph, config=cfg)
        _, e3 = _epe(res, pair, ev)
        # measured: LM 13.6 mm, stride 2 (366 of 1446 points) 11.5 mm, against 44.8 mm
        assert e3["median"] < 0.5 * id3["median"], (cfg, e3)
        assert e3["count"] == int(ev.sum())  # evaluated on every pixel, not only the strided ones
    assert res.history[0]["points"] < 0.3 * int((pair.source_mask & (pair.source_depth > 0)).sum())


def test_align_extra_terms_and_init(medium):
    pair, graph, ev = medium
    # an extra term built by the caller (here: the ground truth of 10 points) is added to every step
    idx = ev.reshape(-1).nonzero().squeeze(1)[:: max(1, int(ev.sum()) // 10)][:10]
    from nrsfm_kit.geometry import depth_to_points

    pts = depth_to_points(pair.source_depth, pair.intrinsics)[0].reshape(-1, 3)[idx]
    ps = PointSet.make(pts.unsqueeze(0), graph.pixel_anchors.reshape(-1, 4)[idx],
                       graph.pixel_weights.reshape(-1, 4)[idx])
    gt = (pts + pair.scene_flow.reshape(-1, 3)[idx]).unsqueeze(0)
    hint = PointToPoint(ps, gt, weight=10.0, name="hint")
    res = align(pair, graph, config=replace(DATA_ONLY, gn_iterations=4), extra_terms=[hint])
    assert "hint" in res.history[0] and res.history[-1]["hint"] < 0.2 * res.history[0]["hint"]
    # init: continuing from a result does not undo it
    more = align(pair, graph, config=replace(DATA_ONLY, gn_iterations=2), init=res.motion)
    assert more.history[0]["total"] <= res.history[0]["total"]
    with pytest.raises(ValueError, match="extra_terms\\[0\\]: expected a ResidualTerm"):
        align(pair, graph, extra_terms=["nope"])
    with pytest.raises(ValueError, match="init.translations: expected shape"):
        align(pair, graph, init=(res.motion.rotations, res.motion.translations[:-1]))


def test_depth_normals_plane():
    # a tilted plane z = 1 + 0.5 x: every interior normal is (0.5, 0, -1) normalised, facing the camera
    intr = torch.tensor([100.0, 100.0, 31.5, 23.5])
    v, u = torch.meshgrid(torch.arange(48.0), torch.arange(64.0), indexing="ij")
    xn = (u - intr[2]) / intr[0]
    depth = 1.0 / (1.0 - 0.5 * xn)  # z = 1 + 0.5 x with x = xn z
    want = torch.tensor([0.5, 0.0, -1.0]) / torch.tensor([0.5, 0.0, -1.0]).norm()
    for r in (1, 2):
        n, ok = depth_normals(depth, intr, radius=r)
        assert ok.sum() == (48 - 2 * r) * (64 - 2 * r) and not ok[:r].any()
        assert torch.allclose(n[ok], want.expand(int(ok.sum()), 3), atol=1e-4)
    depth[10, 10] = 0.0  # a hole invalidates its neighbours' normals
    n, ok = depth_normals(depth, intr)
    assert not ok[10, 9] and not ok[9, 10] and not ok[10, 10] and ok[20, 20]


# ----------------------------------------------------------------------------------------------
# DeepDeform App. D: semi-supervised dense alignment
# ----------------------------------------------------------------------------------------------


def test_dense_alignment_synthetic_reaches_bound(large, large_aligned):
    pair, graph, ev = large
    m, res = large_aligned
    id2, id3 = _identity(pair, ev)
    e2, e3 = _epe(res, pair, ev)
    # measured: optical flow EPE median 1.07 px (identity) -> 0.29 px (p90 2.6 -> 0.69);
    # 3D: 77.9 mm -> 5.6 mm
    assert e2["median"] < 0.5 * id2["median"] and e2["median"] < 0.5, (e2, id2)
    assert e2["p90"] < 0.5 * id2["p90"], (e2, id2)
    assert e3["median"] < 0.012, e3
    phases = [h["phase"] for h in res.history]
    assert phases == ["sparse"] * 5 + ["full"] * AlignmentConfig().gn_iterations
    full = [h for h in res.history if h["phase"] == "full"]
    assert {"point", "plane", "sparse", "photometric", "silhouette", "arap"} <= set(full[0])
    assert full[-1]["photometric"] < full[0]["photometric"]


def test_dense_alignment_sparse_term_contributes(large, large_aligned):
    pair, graph, ev = large
    m, with_sparse = large_aligned
    without = dense_alignment(pair, m.source_px, m.target_px, pair.source_mask, graph=graph,
                              config=AlignmentConfig(lambda_sparse=0.0))
    e_with, e_without = _sparse_error(with_sparse, m), _sparse_error(without, m)
    # measured: median 2D error of the 30 matches 0.07 px with the sparse term, 0.85 px without
    assert e_with.median() < 0.5 * e_without.median(), (e_with.median(), e_without.median())
    # ... and the dense result is worse without it (measured: 0.74 px against 0.29 px median EPE)
    assert _epe(without, pair, ev)[0]["median"] > 1.5 * _epe(with_sparse, pair, ev)[0]["median"]


def test_silhouette_term_pulls_points_into_the_target_mask(medium):
    pair, graph, _ = medium
    # a target mask that cuts the right third of the cloth: the silhouette term must pull points inside
    cut = copy.copy(pair)
    cols = pair.target_mask.any(0).nonzero().squeeze(1)
    cut.target_mask = pair.target_mask.clone()
    cut.target_mask[:, int(cols[0] + 2 * (cols[-1] - cols[0]) // 3):] = False

    def outside(res):
        px = pixel_grid(H, W)[res.valid] + res.optical_flow[res.valid]
        r, c = px[:, 1].round().long().clamp(0, H - 1), px[:, 0].round().long().clamp(0, W - 1)
        return int((~cut.target_mask[r, c]).sum())

    cfg = replace(DATA_ONLY, gn_iterations=5)
    off = align(cut, graph, config=cfg)
    on = align(cut, graph, config=replace(cfg, lambda_silh=1e-2))
    # measured: 463 of 1446 warped points outside the cut mask without the term; 353 / 14 / 0 with
    # lambda_silh 1e-5 (the default, scaled for 640x480) / 1e-4 / 1e-2
    assert outside(off) > 100 and outside(on) < 0.5 * outside(off), (outside(off), outside(on))
    no_mask = copy.copy(pair)
    no_mask.target_mask = None
    res = align(no_mask, graph, config=replace(cfg, gn_iterations=1, lambda_silh=1e-2))
    assert any("silhouette: skipped" in n for n in res.notes) and "silhouette" not in res.history[0]


def test_write_dense_alignment_round_trip(tmp_path, large, large_aligned):
    pair, _, _ = large
    _, res = large_aligned
    seq = save_deepdeform_pair(pair, tmp_path / "seq000", 0, 7, "cloth")
    of, sf = write_dense_alignment(res, seq, "cloth", 0, "000007")
    assert of == seq / "optical_flow" / "cloth_000000_000007.oflow"
    assert sf == seq / "scene_flow" / "cloth_000000_000007.sflow"
    assert not list(seq.rglob("*.tmp"))  # atomic: no temporary file left
    back = load_deepdeform_pair(seq, 0, 7, "cloth")
    v = res.valid
    assert torch.equal(back.flow_valid, v)
    assert torch.equal(back.optical_flow[v], res.optical_flow[v].float())
    assert torch.equal(back.scene_flow[v], res.scene_flow[v].float())
    f, fv = read_flow_binary(sf, channels=3)
    assert torch.equal(fv, v) and (f[~v] == 0).all()
    with pytest.raises(ValueError, match="source_id: expected a frame number"):
        write_dense_alignment(res, seq, "cloth", "abc", 7)
    with pytest.raises(ValueError, match="object_id: expected a non-empty name"):
        write_dense_alignment(res, seq, "", 0, 7)


def test_flow_endpoint_errors():
    gt = torch.zeros(4, 5, 2)
    pred = torch.zeros(4, 5, 2)
    pred[..., 0] = torch.arange(20.0).reshape(4, 5)  # errors 0..19 px
    valid = torch.ones(4, 5, dtype=torch.bool)
    valid[0, 0] = False  # drop the 0
    pred[3, 4] = float("nan")  # a non-finite prediction is excluded too (drop the 19)
    e = flow_endpoint_errors(pred, gt, valid)
    assert e["count"] == 18 and e["mean"] == pytest.approx(9.5) and e["median"] in (9.0, 10.0)
    assert e["p90"] == pytest.approx(torch.quantile(torch.arange(1.0, 19.0), 0.9).item())
    e3 = flow_endpoint_errors(torch.ones(2, 2, 3), torch.zeros(2, 2, 3), torch.ones(2, 2, dtype=torch.bool))
    assert e3["median"] == pytest.approx(3**0.5) and e3["count"] == 4
    assert flow_endpoint_errors(pred, gt, torch.zeros(4, 5, dtype=torch.bool))["count"] == 0
    with pytest.raises(ValueError, match="gt_flow: expected shape"):
        flow_endpoint_errors(pred, torch.zeros(4, 5, 3), valid)
    with pytest.raises(ValueError, match="valid: expected shape"):
        flow_endpoint_errors(pred, gt, valid[:2])


def test_simulate_sparse_matches(large):
    pair, graph, _ = large
    a = simulate_sparse_matches(pair, 30, seed=0, graph=graph)
    b = simulate_sparse_matches(pair, 30, seed=0, graph=graph)
    c = simulate_sparse_matches(pair, 30, seed=1, graph=graph)
    assert a.source_px.shape == a.target_px.shape == (30, 2)
    assert torch.equal(a.source_px, b.source_px) and not torch.equal(a.source_px, c.source_px)
    r, cc = a.source_px[:, 1].long(), a.source_px[:, 0].long()
    assert pair.source_mask[r, cc].all() and pair.flow_valid[r, cc].all()
    assert ((graph.pixel_anchors[r, cc] >= 0).any(-1)).all()
    assert torch.allclose(a.target_px, a.source_px + pair.optical_flow[r, cc])
    with pytest.raises(ValueError, match="num_matches: expected an int >= 1"):
        simulate_sparse_matches(pair, 0)
    with pytest.raises(ValueError, match="num_matches: expected at most"):
        simulate_sparse_matches(pair, 10**6)
    no_flow = copy.copy(pair)
    no_flow.optical_flow = None
    with pytest.raises(ValueError, match="pair.optical_flow: expected"):
        simulate_sparse_matches(no_flow, 30)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------


def test_dense_alignment_bad_input(large):
    pair, graph, _ = large
    m = simulate_sparse_matches(pair, 30, seed=0, graph=graph)
    src, tgt, mask = m.source_px, m.target_px, pair.source_mask

    def run(s=src, t=tgt, mk=mask, p=pair, **kw):
        return dense_alignment(p, s, t, mk, graph=graph, **kw)

    with pytest.raises(ValueError, match=r"sparse_target_px: expected one target pixel per source pixel \(K = 30\), "
                                         r"found 29"):
        run(t=tgt[:29])
    with pytest.raises(ValueError, match="sparse_source_px: expected at least one match .* found 0"):
        run(s=src[:0], t=tgt[:0])
    with pytest.raises(ValueError, match=r"sparse_source_px: expected shape \(\*, 2\), found \(30, 3\)"):
        run(s=torch.zeros(30, 3))
    outside = tgt.clone()
    outside[3] = torch.tensor([W + 5.0, 10.0])
    with pytest.raises(ValueError, match="sparse_target_px: expected pixels inside the 128x96 image.*found 1 outside"):
        run(t=outside)
    with pytest.raises(ValueError, match="sparse_source_px: expected pixels inside"):
        run(s=src - 1000.0)
    holes = copy.copy(pair)
    holes.source_depth = pair.source_depth.clone()
    r, c = int(src[5, 1].round()), int(src[5, 0].round())
    holes.source_depth[r, c] = 0.0
    with pytest.raises(ValueError, match="sparse_source_px: expected pixels on valid depth.*found 1 on invalid depth"):
        run(p=holes)
    holes_t = copy.copy(pair)
    holes_t.target_depth = pair.target_depth.clone()
    holes_t.target_depth[int(tgt[2, 1].round()), int(tgt[2, 0].round())] = 0.0
    with pytest.raises(ValueError, match="sparse_target_px: expected pixels on valid depth"):
        run(p=holes_t)
    with pytest.raises(ValueError, match=r"source_mask: expected shape \(96, 128\), found \(48, 64\)"):
        run(mk=mask[::2, ::2])
    nan = src.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="sparse_source_px: expected finite values, found 1 non-finite of 60"):
        run(s=nan)
    inf = tgt.clone()
    inf[1, 1] = float("inf")
    with pytest.raises(ValueError, match="sparse_target_px: expected finite values"):
        run(t=inf)
    bad_intr = copy.copy(pair)
    bad_intr.intrinsics = torch.tensor([float("nan"), 100.0, 60.0, 40.0])
    with pytest.raises(ValueError, match="intrinsics: expected finite values"):
        run(p=bad_intr)
    with pytest.raises(ValueError, match="source_mask: expected pixels with valid source depth"):
        run(mk=torch.zeros_like(mask))
    with pytest.raises(ValueError, match="warmup_iterations: expected an int >= 0"):
        run(warmup_iterations=-1)
    with pytest.raises(ValueError, match="config: expected an AlignmentConfig"):
        run(config={"gn_iterations": 3})
    small = copy.copy(pair)
    small.target_depth = pair.target_depth[::2, ::2]
    with pytest.raises(ValueError, match=r"pair.target_depth: expected shape \(H, W\) with \{'H': 96, 'W': 128\}"):
        align(small, graph)
    cropped = replace(graph, pixel_anchors=graph.pixel_anchors[:48], pixel_weights=graph.pixel_weights[:48])
    with pytest.raises(ValueError, match=r"graph.pixel_anchors: expected shape \(96, 128, \*\), found \(48, 128, 4\)"):
        align(pair, cropped)


@pytest.mark.parametrize("field, value, match", [
    ("gn_iterations", -1, "gn_iterations: expected an int >= 0"),
    ("pcg_iterations", 0, "pcg_iterations: expected an int >= 1"),
    ("lambda_sparse", -1.0, "lambda_sparse: expected a finite value >= 0"),
    ("lambda_photo", float("nan"), "lambda_photo: expected a finite value >= 0"),
    ("max_correspondence_distance", 0.0, "max_correspondence_distance: expected a finite value > 0"),
    ("max_normal_angle", 200.0, "max_normal_angle: expected degrees in"),
    ("method", "bfgs", "method: expected one of \\['gn', 'lm'\\]"),
    ("linear_solver", "cholmod", "linear_solver: expected one of"),
    ("backend", "cuda", "backend: expected one of"),
    ("sampling", "cubic", "sampling: expected one of"),
    ("colour", "hsv", "colour: expected one of"),
    ("source_stride", 0, "source_stride: expected an int >= 1"),
    ("normal_radius", 1.5, "normal_radius: expected an int >= 1"),
])
def test_config_validation(field, value, match):
    with pytest.raises(ValueError, match=match):
        AlignmentConfig(**{field: value})


# ----------------------------------------------------------------------------------------------
# the real DeepDeform pair (seq258, frames 0 -> 110, "shirt")
# ----------------------------------------------------------------------------------------------


def test_dense_alignment_deepdeform_seq258(real_data, record_property):
    seq = real_data("deepdeform", "train", "seq258")
    pair = load_deepdeform_pair(seq, 0, 110, "shirt")
    assert pair.source_depth.shape == (480, 640) and pair.target_mask is None
    m = simulate_sparse_matches(pair, 30, seed=0)
    res = dense_alignment(pair, m.source_px, m.target_px, pair.source_mask)
    ev = pair.source_mask & pair.flow_valid
    e2 = flow_endpoint_errors(res.optical_flow, pair.optical_flow, ev)
    e3 = flow_endpoint_errors(res.scene_flow, pair.scene_flow, ev)
    id2 = flow_endpoint_errors(torch.zeros_like(pair.optical_flow), pair.optical_flow, ev)
    for k, v in (("epe_median_px", e2["median"]), ("epe_p90_px", e2["p90"]), ("epe3d_median_mm", 1e3 * e3["median"]),
                 ("identity_median_px", id2["median"]), ("identity_p90_px", id2["p90"]), ("seconds", res.seconds)):
        record_property(k, round(v, 3))
    print(f"seq258 0->110: EPE median {e2['median']:.2f} px p90 {e2['p90']:.2f} px (identity {id2['median']:.1f} / "
          f"{id2['p90']:.1f} px), 3D median {1e3 * e3['median']:.1f} mm, {res.seconds:.1f} s at 640x480")
    # measured (CPU, one thread, 640x480, source_stride 1): identity 107.4 / 116.7 px; dense alignment
    # 1.0 px median, 3.7 px p90, 3.3 mm median 3D EPE, in about 3-5 s; sparse + ARAP alone: 1.1 / 4.1 px, 5.2 mm
    assert id2["median"] > 100 and e2["count"] > 50000
    assert e2["median"] < 2.5 and e2["p90"] < 8.0, e2
    assert e3["median"] < 0.007, e3
    assert any("silhouette: skipped" in n for n in res.notes)
