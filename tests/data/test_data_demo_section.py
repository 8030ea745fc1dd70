"""The datasets demo section runs in smoke mode and meets its targets; its figures leave room for their titles."""

from __future__ import annotations


def test_datasets_demo_section_smoke():
    from nrsfm_kit.demo.sections import s20_datasets

    sec = s20_datasets.run(smoke=True)
    assert sec.passed, sec.rows
    assert len(sec.rows) >= 6 and len(sec.figures) == 3
    assert all(r.unit and r.status in ("met", "info") for r in sec.results), sec.results
    skeleton, images, _ = sec.figures
    # the skeleton stands upright (world Y up), framed with an equal aspect, above the slider and the play button
    scene = skeleton.layout.scene
    assert scene.aspectmode == "manual" and scene.camera.up.y == 1 and scene.domain.y[0] >= 0.15
    assert skeleton.layout.sliders[0].y <= scene.domain.y[0] and skeleton.layout.updatemenus[0].y <= scene.domain.y[0]
    # subplot titles sit below plotly's toolbar (top right, ~30 px): the top margin leaves room for both
    assert images.layout.margin.t >= 50 and "GT optical flow" in images.layout.annotations[-1].text
