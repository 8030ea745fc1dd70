"""The fusion demo section (smoke): it runs, every row has a unit, the correspondence term beats pure ICP."""

from __future__ import annotations


def test_fusion_demo_section_smoke():
    from nrsfm_kit.demo.sections import s55_fusion

    sec = s55_fusion.run(smoke=True)
    assert sec.passed, sec.results
    assert all(r.unit for r in sec.results)
    assert any("pure ICP" in r.name for r in sec.results) and sec.figures
    assert len(sec.figures[-1].frames) == 12 and len(sec.figures) == 2
