"""Demo section: the learned tracker (Neural Non-Rigid Tracking §4-5): Phi + weights + the solver on held-out pairs."""

from __future__ import annotations

from nrsfm_kit.demo import DemoSection

ORDER = 45
TITLE = "Learned non-rigid tracking: PWC-Net correspondences through the solver (Neural Non-Rigid Tracking §4-5)"


def run(smoke: bool) -> DemoSection:
    import torch

    from nrsfm_kit.models.pwcnet import load_pwcnet_state_dict
    from nrsfm_kit.tracking.data import synthetic_tracking_pairs
    from nrsfm_kit.tracking.evaluate import evaluate
    from nrsfm_kit.tracking.model import NeuralTracker
    from nrsfm_kit.tracking.training import preset
    from nrsfm_kit.viz.data import flow_to_rgb, image_row

    p = preset("teaching")
    n = 2 if smoke else 6
    test = synthetic_tracking_pairs("test", n, p.height, p.width, progress=False)
    sec = DemoSection(TITLE)
    sec.text = (f"{n} held-out synthetic RGB-D pairs ({p.height} x {p.width}, scenes never seen in training) are "
                "tracked by the deformation-graph solver from three correspondence sources: OpenCV DIS optical flow, "
                "the teaching-size PWC-Net (Phi, width 0.25) pre-trained on the suite's synthetic pairs, and the exact "
                "ground-truth flow (the floor). EPE 3D / Graph Error 3D are pooled over all pairs (sec. 5.2). The "
                "four training stages and the Table 1 ablation are in notebook 05 and benchmarks/RESULTS.md.")
    tracker = NeuralTracker(p.tracker).eval()
    tracker.config.use_weights = False
    rows = {"dis": "DIS optical flow", "gt": "ground-truth flow (floor)"}
    res = {k: evaluate(tracker, test, correspondences=k) for k in rows}
    if p.pretrained_phi is not None:
        load_pwcnet_state_dict(tracker.phi, p.pretrained_phi)
        res["learned"] = evaluate(tracker, test, correspondences="learned")
        rows["learned"] = "pre-trained Phi, weights 1"
    for k, label in rows.items():
        sec.add(f"EPE 3D, {label} (mm)", res[k]["epe_3d_mm"], target="< DIS" if k == "learned" else "",
                ok=(res[k]["epe_3d_mm"] < res["dis"]["epe_3d_mm"]) if k == "learned" else None)
    sec.add("Graph Error 3D, ground-truth flow (mm)", res["gt"]["graph_error_3d_mm"], target="< 15",
            ok=res["gt"]["graph_error_3d_mm"] < 15)
    if "learned" not in res:
        sec.add("pre-trained Phi", "not found (datasets/weights/pwcnet_teaching_synthetic.pt)", target="shipped",
                ok=False)
    s = test[0]
    with torch.no_grad():
        batch, _ = tracker.track([s], correspondences="learned" if "learned" in res else "dis")
    from nrsfm_kit.tracking.io import dis_flow

    m = (s.object_mask & s.flow_valid).numpy()
    panels = [s.source_color, flow_to_rgb(s.optical_flow, m), flow_to_rgb(dis_flow(s.source_color, s.target_color), m)]
    titles = ["source", "ground-truth flow (object)", "DIS flow"]
    if "learned" in res:
        panels.append(flow_to_rgb(batch["flow"][0].permute(1, 2, 0), m))
        titles.append("Phi flow")
    sec.figures.append(image_row(panels, titles))
    return sec
