"""Demo section: the synthetic generators and their ground-truth consistency."""

from __future__ import annotations

import numpy as np
import torch

from nrsfm_kit.demo import DemoSection

ORDER = 20
TITLE = "Datasets: synthetic GT"


def run(smoke: bool = False) -> DemoSection:
    from nrsfm_kit.data import synthetic_monocular_video, synthetic_nrsfm, synthetic_rgbd_pair
    from nrsfm_kit.geometry import backproject, pixel_grid, project
    from nrsfm_kit.viz.data import flow_to_rgb, image_row, scene_flow_figure, skeleton_animation

    sec = DemoSection(TITLE, text="Every generator returns exact ground truth; these rows check it: "
                                  "projections reproduce the observations, warped surfaces land on the "
                                  "target surface, static flow equals the camera motion.")  # fmt: skip

    # NRSfM skeleton: W = S_world M^T, orthonormal cameras, rigid bones
    sec.step("NRSfM skeleton")
    seq = synthetic_nrsfm("skeleton", 100 if smoke else 1000, motion="walking", camera="smooth",
                          dtype=torch.float64)  # fmt: skip
    M = seq.cameras
    err = (seq.W - seq.S_world @ M.mT).abs().max().item()
    sec.add("NRSfM: max |W - S_world M^T|", err, "< 1e-12", ok=err < 1e-12, unit="m")
    orth = (M @ M.mT - torch.eye(2, dtype=M.dtype)).abs().max().item()
    sec.add("NRSfM: max |M M^T - I|", orth, "< 1e-12", ok=orth < 1e-12, unit="ratio")
    i, j = torch.tensor(seq.bones).T
    L = (seq.S_world[:, i] - seq.S_world[:, j]).norm(dim=-1)
    rel = (L.std(0) / L.mean(0)).max().item()
    sec.add("skeleton: max relative bone-length std", rel, "< 1e-9", ok=rel < 1e-9, unit="ratio")
    sec.figures.append(skeleton_animation(seq.S_world, seq.bones, title="31-joint skeleton, walking",
                                          step=2 if smoke else 5))  # fmt: skip

    # RGB-D pair: warped source points land on the target surface; projection gives the optical flow
    sec.step("RGB-D pair (ray casting)")
    H, W = (60, 80) if smoke else (240, 320)
    pair = synthetic_rgbd_pair(H, W, seed=0, time_gap=0.3, dtype=torch.float64)
    import open3d as o3d

    rc = pair.scene.raycasting_scene(pair.scene.vertices(pair.times[1]))
    dist = rc.compute_distance(o3d.core.Tensor(pair.target_points.reshape(-1, 3).numpy().astype(np.float32)))
    dmax = float(dist.numpy().max())
    sec.add("RGB-D: max distance of warped source to target surface", dmax, "< 1e-5", ok=dmax < 1e-5, unit="m")
    grid = pixel_grid(H, W, dtype=torch.float64)
    ferr = (project(pair.target_points, pair.intrinsics) - grid - pair.optical_flow).norm(dim=-1).max().item()
    sec.add("RGB-D: max |pi(source + scene flow) - (p + flow)|", ferr, "< 1e-6", ok=ferr < 1e-6, unit="px")
    sec.add("RGB-D: visible fraction of source pixels", float(pair.visibility.double().mean()), unit="fraction")
    sec.figures.append(image_row([pair.source_color, pair.target_color, flow_to_rgb(pair.optical_flow)],
                                 ["source colour", "target colour", "GT optical flow (hue: direction)"]))  # fmt: skip
    sec.figures.append(scene_flow_figure(pair.source_points, pair.scene_flow, pair.source_color,
                                         stride=4 if smoke else 12, title="GT scene flow"))  # fmt: skip

    # monocular video: the flow of static pixels is exactly the camera motion
    sec.step("monocular video")
    video = synthetic_monocular_video(3 if smoke else 8, 48 if smoke else 96, 64 if smoke else 128,
                                      dtype=torch.float64)  # fmt: skip
    Hv, Wv = video.depth.shape[1:]
    g = pixel_grid(Hv, Wv, dtype=torch.float64)
    worst = 0.0
    for t in range(video.flow.shape[0]):
        X = backproject(g, video.depth[t], video.intrinsics)
        rel_T = video.poses[t + 1] @ torch.linalg.inv(video.poses[t])
        uv = project(X @ rel_T[:3, :3].T + rel_T[:3, 3], video.intrinsics)
        static = video.segmentation[t] == 0
        worst = max(worst, (uv - g - video.flow[t])[static].norm(dim=-1).max().item())
    sec.add("video: static-pixel flow vs camera motion", worst, "< 1e-4", ok=worst < 1e-4, unit="px")
    return sec
