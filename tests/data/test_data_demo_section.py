"""The datasets demo section runs in smoke mode and meets its targets."""

from __future__ import annotations


def test_datasets_demo_section_smoke():
    from nrsfm_kit.demo.sections import s20_datasets

    sec = s20_datasets.run(smoke=True)
    assert sec.passed, sec.rows
    assert len(sec.rows) >= 6 and len(sec.figures) == 3
