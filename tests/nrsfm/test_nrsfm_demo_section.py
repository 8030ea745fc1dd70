"""The NRSfM demo figure: the skeleton stands upright, framed on the data with an equal aspect."""

from __future__ import annotations

import torch


def test_compare_skeletons_frames_the_ground_truth_upright():
    from nrsfm_kit.data import synthetic_nrsfm
    from nrsfm_kit.viz.nrsfm import compare_skeletons

    seq = synthetic_nrsfm("skeleton", num_frames=12, motion="walking", camera="random", seed=0)
    noisy = seq.S + 0.01 * torch.randn(seq.S.shape, generator=torch.Generator().manual_seed(0))
    fig = compare_skeletons(seq.S_world, {"recon": noisy}, seq.bones, title="t")
    scene = fig.layout.scene
    assert scene.aspectmode == "manual" and scene.camera.up.y == 1  # world Y up: the body's height
    S = seq.S_world - seq.S_world.mean(1, keepdim=True)
    lo, hi = S.reshape(-1, 3).min(0).values, S.reshape(-1, 3).max(0).values
    for k, ax in enumerate((scene.xaxis, scene.yaxis, scene.zaxis)):
        r0, r1 = ax.range
        assert r0 <= float(lo[k]) and r1 >= float(hi[k])  # the data fits
        assert (r1 - r0) - float(hi[k] - lo[k]) < 0.2 * float((hi - lo).max())  # and fills the box (tight framing)
    spans = [ax.range[1] - ax.range[0] for ax in (scene.xaxis, scene.yaxis, scene.zaxis)]
    ratio = [scene.aspectratio.x, scene.aspectratio.y, scene.aspectratio.z]
    assert max(abs(r / max(ratio) - s / max(spans)) for r, s in zip(ratio, spans)) < 1e-9  # equal aspect
    eye = scene.camera.eye
    assert abs(eye.y) < 0.6 * (eye.x**2 + eye.y**2 + eye.z**2) ** 0.5  # looked at from the side, not from above
    assert scene.domain.y[0] >= 0.15 and fig.layout.sliders[0].y <= scene.domain.y[0]  # slider below the scene
