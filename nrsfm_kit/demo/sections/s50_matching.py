"""Demo section: DeepDeform's Siamese heatmap matcher against hand-crafted matchers, and its dense labels (App. D)."""

from __future__ import annotations

from nrsfm_kit.demo import DemoSection

ORDER = 50
RESULTS_SECTION = "benchmarks/RESULTS.md#deepdeform-matching-table-1-at-teaching-size-issue-15-2026-12-02"
TITLE = "DeepDeform: learned sparse matches vs SIFT / ORB / AKAZE / FPFH / DIS, and dense labels (App. D)"


def run(smoke: bool) -> DemoSection:
    import torch

    from nrsfm_kit.config import data_root
    from nrsfm_kit.data.rgbd import synthetic_rgbd_pair
    from nrsfm_kit.graph import build_graph
    from nrsfm_kit.matching.alignment import dense_alignment, flow_endpoint_errors, simulate_sparse_matches
    from nrsfm_kit.matching.data import synthetic_matching_pairs
    from nrsfm_kit.matching.evaluate import METHOD_LABELS, TABLE_METHODS, matching_table
    from nrsfm_kit.matching.training import SHIPPED_MATCHER, load_matcher, matcher_preset
    from nrsfm_kit.viz.data import flow_to_rgb, image_row

    p = matcher_preset("teaching")
    n, k = (2, 16) if smoke else (4, 48)
    sec = DemoSection(TITLE)
    sec.text = (f"{n} held-out synthetic RGB-D pairs ({p.height} x {p.width}), {k} object points each: the shipped "
                "teaching-size matcher (64 x 64 patches, width 0.25, trained on the suite's synthetic pairs) predicts "
                "a heatmap, a depth and a visibility per point; SIFT / ORB / AKAZE (OpenCV) and FPFH (Open3D) search "
                "the same 64 x 64 window, DIS optical flow is read at the points. Metrics are pooled over all points "
                "(DeepDeform Table 1: 2D accuracy <= 10 px, 3D accuracy <= 5 cm). Then the semi-supervised dense "
                "alignment that made DeepDeform's dense labels, from 30 sparse matches.")
    methods = list(TABLE_METHODS)
    if not SHIPPED_MATCHER.is_file():
        sec.add("shipped matcher", f"not found ({SHIPPED_MATCHER.name})", target="shipped", unit="file", ok=False)
        methods.remove("learned")
        matcher = None
    else:
        matcher = load_matcher()
    sec.step(f"matching {n} pairs with {len(methods)} methods")
    pairs = synthetic_matching_pairs("test", n, p.height, p.width, progress=False)
    table = matching_table(pairs, matcher=matcher, methods=methods, num_points=k, window=64, progress=False)
    for m in methods:
        best_other = max(table[o]["acc_2d"] for o in methods if o != m)
        ok = table[m]["acc_2d"] > best_other if m == "learned" else None
        sec.add(f"2D accuracy (<= 10 px), {METHOD_LABELS[m]}", table[m]["acc_2d"], target="best" if ok is not None
                else "", ok=ok, unit="fraction", see=RESULTS_SECTION if ok is False else None,
                gap="a 186k-parameter network trained for minutes on a CPU" if ok is False else None)
    if matcher is not None:
        sec.add("3D accuracy (<= 5 cm), learned", table["learned"]["acc_3d"], unit="fraction",
                target="> FPFH", ok=table["learned"]["acc_3d"] > table["fpfh"]["acc_3d"])
    sec.step("dense alignment (App. D) of a synthetic pair from 30 sparse matches")
    pair = synthetic_rgbd_pair(96, 128, objects=("cloth",), seed=0, time_gap=1.0)
    graph = build_graph(pair.source_depth, pair.source_mask, pair.intrinsics)
    sm = simulate_sparse_matches(pair, 30, seed=0, graph=graph)  # annotated points lie on the object's graph
    res = dense_alignment(pair, sm.source_px, sm.target_px, pair.source_mask, graph=graph)
    valid = pair.flow_valid & pair.source_mask & res.valid
    err = flow_endpoint_errors(res.optical_flow, pair.optical_flow, valid)
    ident = flow_endpoint_errors(torch.zeros_like(pair.optical_flow), pair.optical_flow, valid)
    sec.add(f"dense flow median EPE, synthetic (identity {ident['median']:.2f} px)", err["median"], target="< 0.5",
            unit="px", ok=err["median"] < 0.5)
    panels = [pair.source_color, flow_to_rgb(pair.optical_flow, valid.numpy()),
              flow_to_rgb(torch.nan_to_num(res.optical_flow), valid.numpy())]
    titles = ["source", "ground-truth flow", "dense alignment flow"]
    root = data_root()
    seq = None if root is None else root / "deepdeform" / "train" / "seq258"
    if seq is not None and seq.is_dir() and not smoke:
        from nrsfm_kit.data.deepdeform import load_deepdeform_pair

        sec.step("dense alignment of the real DeepDeform pair seq258 (0 -> 110)")
        real = load_deepdeform_pair(seq, 0, 110, "shirt")
        g = build_graph(real.source_depth, real.source_mask, real.intrinsics)
        sm = simulate_sparse_matches(real, 30, seed=0, graph=g)
        r = dense_alignment(real, sm.source_px, sm.target_px, real.source_mask, graph=g)
        e = flow_endpoint_errors(r.optical_flow, real.optical_flow, real.flow_valid & real.source_mask & r.valid)
        sec.add(f"dense flow median EPE vs the released flow, seq258 (p90 {e['p90']:.2f} px)", e["median"],
                target="< 2.5", unit="px", ok=e["median"] < 2.5)
    sec.figures.append(image_row(panels, titles))
    return sec
