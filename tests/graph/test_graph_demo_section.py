"""The graph demo section (smoke): targets met, the legend and the colour bar do not share the right margin."""

from __future__ import annotations


def test_graph_demo_section_smoke():
    from nrsfm_kit.demo.sections import s30_graph

    sec = s30_graph.run(smoke=True)
    assert sec.passed, sec.results
    assert all(r.unit for r in sec.results)
    fig = sec.figures[0]
    bar = fig.data[0].marker.colorbar
    assert "skinning weight" in bar.title.text and bar.x >= 1.0  # right of the scene
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.yanchor == "bottom"  # a row above the scene
