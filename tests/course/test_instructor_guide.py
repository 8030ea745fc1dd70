"""The instructor guide ``docs/instructor_guide.md`` against the notebooks it describes (no kernels, < 2 s).

It fails when the notebooks change and the guide does not follow: an exercise added, renamed or removed (every
exercise's grade_id and check ids must be in the guide, and every ``nbNN-exK...`` the guide names must exist), a
notebook added, points or hidden tests changed in the exercise table; and when the guide breaks the book's rules
(one ``#`` title, no ``$$`` maths, no URLs or external resources).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import nbformat

from nrsfm_kit.course.assignments import exercises

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "instructor_guide.md"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
GRADE_ID = re.compile(r"\bnb\d{2}-ex\d+(?:-(?:given|solution|check)\d*)?\b")


@functools.lru_cache(maxsize=1)
def guide_text() -> str:
    assert GUIDE.is_file(), f"expected the instructor guide at {GUIDE.relative_to(ROOT)}, found none"
    return GUIDE.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def notebook_exercises() -> dict[str, list]:
    """{notebook stem: its exercises}, every notebook of notebooks/."""
    return {path.stem: exercises(nbformat.read(path, as_version=4)) for path in NOTEBOOKS}


@functools.lru_cache(maxsize=1)
def notebook_grade_ids() -> frozenset[str]:
    """Every nbgrader grade_id of every cell of every notebook (prompts, given code, solutions, checks)."""
    ids = set()
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if gid:
                ids.add(gid)
    return frozenset(ids)


def prose_lines() -> list[str]:
    """The guide's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in guide_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def table_rows(first_header: str) -> list[list[str]]:
    """The body rows (cells stripped) of the first Markdown table whose first header cell is ``first_header``."""
    lines = prose_lines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and cells[0] == first_header:
            rows = []
            for body in lines[i + 2:]:
                if not body.lstrip().startswith("|"):
                    break
                rows.append([c.strip() for c in body.strip().strip("|").split("|")])
            return rows
    raise AssertionError(f"{GUIDE.name}: expected a table whose first column is {first_header!r}, found none")


def test_guide_has_one_title_and_only_level_2_and_3_headings_below_it():
    headings = [line for line in prose_lines() if re.match(r"^#+\s", line)]
    assert headings and headings[0] == "# Instructor guide", \
        f"expected the guide to start with '# Instructor guide', found {headings[:1]}"
    bad = [h for h in headings[1:] if not re.match(r"^#{2,3}\s", h)]
    assert not bad, f"expected only '##' / '###' headings below the title, found {bad}"


def test_syllabus_table_has_10_to_14_weeks():
    rows = table_rows("Week")
    weeks = [row[0] for row in rows]
    assert all(w.isdigit() for w in weeks), f"expected week numbers in the first column, found {weeks}"
    assert 10 <= len(rows) <= 14, f"expected a syllabus of 10-14 weeks, found {len(rows)} rows: {weeks}"
    assert [int(w) for w in weeks] == list(range(1, len(rows) + 1)), f"expected weeks 1, 2, ... in order, found {weeks}"


def test_every_exercise_of_every_notebook_is_in_the_guide():
    text = guide_text()
    mentioned = set(GRADE_ID.findall(text))
    missing = [f"{stem}: {gid}" for stem, exs in notebook_exercises().items() for ex in exs
               for gid in (ex.grade_id, *ex.check_ids) if gid not in mentioned]
    assert not missing, f"expected every exercise grade_id and check id in {GUIDE.name}; missing: {missing}"
    total = sum(len(exs) for exs in notebook_exercises().values())
    assert f"{total} exercises" in text, f"expected the guide to state the number of exercises, {total} exercises"


def test_every_grade_id_in_the_guide_exists():
    known = notebook_grade_ids()
    unknown = sorted(set(GRADE_ID.findall(guide_text())) - known)
    assert not unknown, (f"{GUIDE.name} names grade_ids that no notebook has (renamed or removed exercises?): "
                         f"{unknown}")


def test_exercise_table_points_and_hidden_tests_match_the_notebooks():
    rows = {row[0]: row for row in table_rows("grade_id")}
    found = [ex for exs in notebook_exercises().values() for ex in exs]
    assert sorted(rows) == sorted(ex.grade_id for ex in found), \
        f"expected one exercise-table row per exercise, found rows {sorted(rows)}"
    wrong = []
    for ex in found:
        _, title, checks, points, hidden, _ = rows[ex.grade_id]
        if [c.strip() for c in checks.split(",")] != ex.check_ids:
            wrong.append(f"{ex.grade_id}: checks {checks!r}, the notebook has {ex.check_ids}")
        if float(points) != ex.points:
            wrong.append(f"{ex.grade_id}: {points} points, the notebook's checks carry {ex.points:g}")
        if hidden != ("yes" if ex.hidden_tests else "no"):
            wrong.append(f"{ex.grade_id}: hidden tests {hidden!r}, the notebook has hidden_tests={ex.hidden_tests}")
    assert not wrong, f"{GUIDE.name}'s exercise table disagrees with the notebooks:\n  " + "\n  ".join(wrong)
    total = sum(ex.points for ex in found)
    assert f"total {total:g}" in guide_text(), f"expected the guide to state the total, 'total {total:g}'"


def test_every_notebook_is_mentioned():
    text = guide_text()
    assert NOTEBOOKS, "expected notebooks in notebooks/"
    missing = [p.stem for p in NOTEBOOKS if f"`{p.stem}`" not in text]
    assert not missing, f"expected every notebook named in backticks in {GUIDE.name}; missing: {missing}"


def test_no_display_maths_urls_or_raw_html_resources():
    text = guide_text()
    assert "$$" not in text, f"{GUIDE.name}: '$$' display maths is not allowed (the book's checker rejects it)"
    urls = re.findall(r"\b(?:https?:)?//[\w.-]+\.\w+\S*", text)
    assert not urls, f"{GUIDE.name}: expected no URLs (the book loads nothing from the network), found {urls}"
    tags = re.findall(r"<\s*(?:script|link|iframe|img|style)\b[^>]*>", text, re.IGNORECASE)
    assert not tags, f"{GUIDE.name}: expected no raw HTML resource tags, found {tags}"
