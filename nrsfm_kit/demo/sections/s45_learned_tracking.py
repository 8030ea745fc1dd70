"""Demo section: the learned tracker (Neural Non-Rigid Tracking §4-5): Phi + weights + the solver on held-out pairs."""

from __future__ import annotations

from pathlib import Path

from nrsfm_kit.demo import DemoSection

ORDER = 45
RESULTS_SECTION = "benchmarks/RESULTS.md#" + "neural-non-rigid-tracking-table-1-ablation-at-teaching-size-issue-13-2026-12-01"
SHIPPED_TRACKER = Path(__file__).resolve().parents[3] / "datasets" / "weights" / "tracker_teaching_synthetic.pt"
TITLE = "Learned non-rigid tracking: PWC-Net correspondences through the solver (Neural Non-Rigid Tracking §4-5)"


def run(smoke: bool) -> DemoSection:
    import torch

    from nrsfm_kit.config import data_root
    from nrsfm_kit.tracking.data import deepdeform_samples, synthetic_tracking_pairs
    from nrsfm_kit.tracking.evaluate import evaluate
    from nrsfm_kit.tracking.model import NeuralTracker
    from nrsfm_kit.tracking.training import load_tracker, preset
    from nrsfm_kit.viz.data import flow_to_rgb, image_row

    p = preset("teaching")
    n = 2 if smoke else 6
    test = synthetic_tracking_pairs("test", n, p.height, p.width, progress=False)
    sec = DemoSection(TITLE)
    sec.text = (f"{n} held-out synthetic RGB-D pairs ({p.height} x {p.width}, scenes never seen in training) are "
                "tracked by the deformation-graph solver from three correspondence sources: OpenCV DIS optical flow, "
                "the shipped teaching-size learned tracker (Phi = PWC-Net width 0.25 + Psi, trained by the suite's "
                "pretrain / flow / solver / mask / refine stages on its synthetic pairs: the last row of Table 1), "
                "and the exact ground-truth flow (the floor). EPE 3D / Graph Error 3D are pooled over all pairs "
                "(sec. 5.2). The stages and the Table 1 ablation are in notebook 05 and benchmarks/RESULTS.md.")
    sec.step(f"tracking {n} pairs with DIS and ground-truth flow")
    tracker = NeuralTracker(p.tracker).eval()
    rows = {"dis": "DIS optical flow", "gt": "ground-truth flow (floor)"}
    res = {k: evaluate(tracker, test, correspondences=k) for k in rows}
    shipped = SHIPPED_TRACKER.is_file()
    if shipped:
        sec.step(f"tracking {n} pairs with the learned tracker (Phi + Psi)")
        tracker = load_tracker(SHIPPED_TRACKER).eval()
        res["learned"] = evaluate(tracker, test, correspondences="learned")
        rows["learned"] = "learned tracker Phi + Psi"
    for k, label in rows.items():
        sec.add(f"EPE 3D, {label}", res[k]["epe_3d_mm"], target="< DIS" if k == "learned" else "", unit="mm",
                ok=(res[k]["epe_3d_mm"] < res["dis"]["epe_3d_mm"]) if k == "learned" else None)
    if shipped:
        sec.add("Graph Error 3D, learned tracker", res["learned"]["graph_error_3d_mm"], target="< DIS",
                unit="mm", ok=res["learned"]["graph_error_3d_mm"] < res["dis"]["graph_error_3d_mm"])
    sec.add("Graph Error 3D, ground-truth flow", res["gt"]["graph_error_3d_mm"], target="< 15", unit="mm",
            ok=res["gt"]["graph_error_3d_mm"] < 15)
    root = data_root()
    if shipped and root is not None and (root / "deepdeform" / "train").is_dir():
        sec.step("the real DeepDeform pair with DIS and the learned tracker")
        real = deepdeform_samples(root / "deepdeform", "train")[:1]
        r_dis = evaluate(tracker, real, correspondences="dis")["epe_3d_mm"]
        r_learned = evaluate(tracker, real, correspondences="learned")["epe_3d_mm"]
        sec.add(f"EPE 3D, real pair {real[0].name.split(':')[0]}, learned (DIS {r_dis:.1f} mm)", r_learned,
                target="< DIS", unit="mm", ok=r_learned < r_dis or None,
                gap="the teaching networks saw only small synthetic motions at 128 x 192",
                see=RESULTS_SECTION)
    if not shipped:
        sec.add("learned tracker", f"not found ({SHIPPED_TRACKER.name})", target="shipped", unit="file", ok=False)
    s = test[0]
    with torch.no_grad():
        batch, _ = tracker.track([s], correspondences="learned" if "learned" in res else "dis")
    from nrsfm_kit.tracking.io import dis_flow

    m = (s.object_mask & s.flow_valid).numpy()
    panels = [s.source_color, flow_to_rgb(s.optical_flow, m), flow_to_rgb(dis_flow(s.source_color, s.target_color), m)]
    titles = ["source", "ground-truth flow (object)", "DIS flow"]
    if "learned" in res:
        panels.append(flow_to_rgb(batch["flow"][0].permute(1, 2, 0), m))
        titles.append("learned Phi flow")
    sec.figures.append(image_row(panels, titles))
    return sec
