"""Demo section: the geometry core (projection round trips, SO(3) maps, Procrustes, EDMs)."""

from __future__ import annotations

import torch

from nrsfm_kit.demo import DemoSection

ORDER = 10
TITLE = "Geometry core"


def _bunny_like(n: int, g: torch.Generator) -> torch.Tensor:
    """A lumpy closed surface (sphere with bumps), (n, 3) metres, centred 1.5 m in front of the camera."""
    d = torch.randn(n, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)
    r = 0.3 * (1 + 0.25 * torch.sin(3 * d[:, 0]) * torch.cos(2 * d[:, 1]) + 0.15 * d[:, 2] ** 2)
    return d * r[:, None] + torch.tensor([0.0, 0.0, 1.5], dtype=torch.float64)


def run(smoke: bool = False) -> DemoSection:
    from nrsfm_kit.geometry import (
        backproject,
        edm,
        gram_from_edm,
        procrustes_align,
        project,
        random_rotation,
        so3_exp,
        so3_log,
    )
    from nrsfm_kit.viz import figure3d_row, frustum_lines, scatter3d

    g = torch.Generator().manual_seed(0)
    n = 500 if smoke else 4000
    sec = DemoSection(TITLE, text="Pinhole round trip, SO(3) exp/log, Procrustes and classical MDS on a "
                                  "synthetic surface, all in float64.")
    pts = _bunny_like(n, g)
    intr = torch.tensor([525.0, 525.0, 319.5, 239.5], dtype=torch.float64)
    uv = project(pts, intr)
    err = (backproject(uv, pts[:, 2], intr) - pts).abs().max().item()
    sec.add("pinhole round-trip max error", err, "< 1e-12", ok=err < 1e-12, unit="m")

    w = torch.randn(1000, 3, generator=g, dtype=torch.float64)
    w = w / w.norm(dim=-1, keepdim=True) * torch.rand(1000, 1, generator=g, dtype=torch.float64) * 3.1
    log_err = (so3_log(so3_exp(w)) - w).abs().max().item()
    sec.add("SO(3) log(exp(w)) max error", log_err, "< 1e-9", ok=log_err < 1e-9, unit="rad")

    R = random_rotation(1, generator=g, dtype=torch.float64)[0]
    moved = 1.7 * (pts - pts.mean(0)) @ R.T + torch.tensor([0.2, -0.1, 2.0], dtype=torch.float64)
    moved_noisy = moved + 0.002 * torch.randn(moved.shape, generator=g, dtype=torch.float64)
    aligned = procrustes_align(pts, moved_noisy, scale=True)
    rmse = (aligned - moved).norm(dim=-1).pow(2).mean().sqrt().item()
    sec.add("similarity Procrustes RMSE to the noise-free target, 2 mm noise", rmse, "< 0.002", ok=rmse < 0.002, unit="m")

    sub = pts[: min(n, 300)]
    G = gram_from_edm(edm(sub))
    evals, evecs = torch.linalg.eigh(G)
    X = evecs[:, -3:] * evals[-3:].clamp_min(0).sqrt()
    mds = procrustes_align(X, sub, allow_reflection=True)
    mds_err = (mds - sub).abs().max().item()
    sec.add("classical MDS from the EDM, max error", mds_err, "< 1e-9", ok=mds_err < 1e-9, unit="m")

    fig = figure3d_row(
        {"before: source surface and the Procrustes target": [
            scatter3d(pts, color=pts[:, 2], colorscale="Viridis", name="source surface"),
            scatter3d(moved_noisy, color="seagreen", size=1.5, name="target: rotated, x1.7, 2 mm noise"),
            frustum_lines(intr, scale=0.4)],
         "after: the aligned source on the target": [
            scatter3d(moved_noisy, color="seagreen", size=3, opacity=0.35, name="target (same points)"),
            scatter3d(aligned, color="orange", size=1.5, name="source after similarity Procrustes")]},
        title="Similarity Procrustes: the source surface (left) is rotated, scaled and moved onto the target (right)",
    )
    sec.figures.append(fig)
    return sec
