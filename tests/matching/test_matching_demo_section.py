"""The DeepDeform matching demo section (smoke): it runs, every row has a unit, the dense-label target is met."""

from __future__ import annotations


def test_matching_demo_section_smoke():
    from nrsfm_kit.demo.sections import s50_matching

    sec = s50_matching.run(smoke=True)
    assert sec.passed, sec.results
    assert all(r.unit for r in sec.results)
    names = [r.name for r in sec.results]
    assert any("SIFT" in n for n in names) and any("dense flow median EPE" in n for n in names)
    assert sec.figures
