"""The depth demo section (smoke): what works is judged, the non-rigid video is labelled as known gaps."""

from __future__ import annotations

import numpy as np
import torch


def test_depth_demo_section_smoke():
    from nrsfm_kit.demo import demo_threads, torch_threads
    from nrsfm_kit.demo.sections import s70_depth

    with torch_threads(demo_threads()):  # as `nrsfm-kit demo` runs it
        sec = s70_depth.run(smoke=True)
    assert sec.passed, sec.results
    by = {r.name: r for r in sec.results}
    assert all(r.unit for r in sec.results), sec.results
    # what works at demo size is judged and met
    for name in ("rank(D^kl), linear deformation b = 2", "rank(D), low-rank shapes b = 3",
                 "rigid surface by EDM optimisation: mean relative depth error"):
        assert by[name].status == "met", by[name]
    # every gap says why, with the teaching-size numbers, and where it is measured
    gaps = [r for r in sec.results if r.status == "known gap"]
    assert gaps and all(r.reason and r.see for r in gaps), gaps
    assert all("issue" not in (r.target + r.reason).lower() for r in sec.results)
    assert any("0.46 / 0.54" in r.reason for r in gaps if "IoU" in r.name)
    # the embeddings panel is normalised per channel (it was all white: embeddings in (0, 4)^3 clipped to [0, 1])
    maps = sec.figures[-1]
    emb = [t for t in maps.data if t.type == "image"][-1]  # frame 0 is an image too: the embeddings come last
    z = np.asarray(emb.z, dtype=float)
    assert z.std() > 5 and (z < 250).mean() > 0.2, "the embeddings panel is (nearly) constant"
    assert len(sec.figures) == 5


def test_embedding_rgb_stretches_each_channel():
    from nrsfm_kit.viz.depth import embedding_rgb

    e = torch.stack([torch.full((4, 5), 3.0), torch.linspace(1, 4, 20).reshape(4, 5), torch.rand(4, 5) * 4])
    e[2, 0, 0] = float("nan")
    rgb = embedding_rgb(e)
    assert rgb.shape == (3, 4, 5) and rgb.min() >= 0 and rgb.max() <= 1
    assert np.allclose(rgb[0, 1:], 0.5) and rgb[1].max() == 1 and rgb[1].min() == 0
    assert (rgb[:, 0, 0] == 0).all()  # non-finite pixels are black
