"""The exercise convention of the notebooks and their student / solution versions (``make student``,
``make solutions``).

The convention (nbgrader-compatible; the notebooks in ``notebooks/`` are the solution versions): exercise K of
notebook NN is a run of cells in the notebook's final "Exercises" section,

1. **prompt**: a markdown cell tagged ``exercise`` whose source starts with ``### Exercise K: <title>``, nbgrader
   metadata ``{"grade": false, "solution": false, "locked": true, "task": false, "grade_id": "nbNN-exK",
   "schema_version": 3}``;
2. optional **given code**: code cells tagged ``exercise``, metadata as the prompt with grade_id
   ``nbNN-exK-given`` (``-given2``, ...), kept in both versions;
3. **solution**: one code cell tagged ``solution``, ``{"grade": false, "solution": true, "locked": false, ...,
   "grade_id": "nbNN-exK-solution"}``; the answer between the lines ``### BEGIN SOLUTION`` and
   ``### END SOLUTION``; the student version replaces each region by ``# YOUR CODE HERE`` +
   ``raise NotImplementedError()`` at the indentation of the region's BEGIN line (as nbgrader does);
4. **checks**: one or more code cells tagged ``check``, ``{"grade": true, "solution": false, "locked": true,
   "points": P, ..., "grade_id": "nbNN-exK-check"}`` (then ``-check2``, ...): plain asserts; those that would
   give the answer away go between ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` and are removed from
   the student version.

Markdown meant for the instructor only (answers to the notebook's open, ungraded questions) is tagged
``instructor``: the student version drops it, the solution version keeps it (nbgrader itself keeps every
untagged-for-it cell, so a course on nbgrader should release :func:`student_version`'s notebooks or delete those
cells). Only markdown cells without role tags may sit between the cells of an exercise run; the run of exercise K ends where
the prompt of exercise K+1 starts (or at the end of the notebook). An exercise may use the names defined by the
cells tagged ``setup`` or ``imports`` and by the cells of its own and earlier exercises, so
:func:`exercise_subset` (those cells alone) runs in a fresh kernel.

Entry points: :func:`exercises` / :func:`validate` (parse and check the convention; :class:`ValueError` naming the
notebook, the cell index and grade_id and what is wrong), :func:`student_version`, :func:`solution_version`
(nbgrader's "source" format: markers kept, so ``nbgrader generate_assignment`` imports it),
:func:`exercise_subset`, and the CLIs :func:`main_student` / :func:`main_solutions`
(``python -m nrsfm_kit.course student|solutions``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from nrsfm_kit.utils.io import atomic_write_text

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
STUDENT_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
SCHEMA_VERSION = 3
ROLE_TAGS = ("exercise", "solution", "check")
SUBSET_TAGS = ("setup", "imports")
INSTRUCTOR_TAG = "instructor"  # markdown for the instructor only (answers to the open questions): not in student versions

_GRADE_ID = re.compile(r"^nb(?P<nb>\d{2})-ex(?P<k>[1-9]\d*)(?:-(?P<role>given|solution|check)(?P<n>[2-9]|[1-9]\d+)?)?$")
_PROMPT_HEADING = re.compile(r"^###\s+Exercise\s+(?P<k>\d+)\s*:\s*(?P<title>\S.*?)\s*$")
_EXERCISES_HEADING = re.compile(r"^#{1,3}\s+(?:[\d.]+\s*)?Exercises?\b", re.IGNORECASE)

# nbgrader metadata every role must carry (grade_id, points checked separately)
_EXPECTED = {
    "exercise": {"grade": False, "solution": False, "locked": True, "task": False},
    "solution": {"grade": False, "solution": True, "locked": False, "task": False},
    "check": {"grade": True, "solution": False, "locked": True, "task": False},
}


@dataclass
class Exercise:
    """One exercise of a notebook; cell indices are positions in ``nb.cells``."""

    number: int
    grade_id: str
    title: str
    prompt: int
    given: list[int] = field(default_factory=list)
    solution: int | None = None
    checks: list[int] = field(default_factory=list)
    check_ids: list[str] = field(default_factory=list)
    points: float = 0.0
    hidden_tests: bool = False

    @property
    def cells(self) -> list[int]:
        """Indices of every cell of the exercise, in notebook order."""
        return sorted([self.prompt, *self.given, *([self.solution] if self.solution is not None else []),
                       *self.checks])


# ---------------------------------------------------------------------------------------------------- parsing


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def _nbgrader(cell) -> dict | None:
    return cell.get("metadata", {}).get("nbgrader")


def _notebook_number(path: str | os.PathLike | None) -> str | None:
    if path is None:
        return None
    match = re.match(r"^(\d{2})_", Path(path).name)
    return match.group(1) if match else None


class _Where:
    """Formats 'notebook, cell i (grade_id)' for error messages."""

    def __init__(self, path):
        self.path = str(path) if path is not None else "<notebook>"

    def __call__(self, index: int, cell=None) -> str:
        meta = _nbgrader(cell) if cell is not None else None
        gid = meta.get("grade_id") if isinstance(meta, dict) else None
        return f"{self.path}: cell {index}" + (f" ({gid})" if gid else "")


def _marker_regions(lines: list[str], begin: str, end: str) -> tuple[list[tuple[int, int]], str | None]:
    """(begin line, end line) pairs of marker regions, or an error text for unbalanced / nested markers."""
    regions, start = [], None
    for i, line in enumerate(lines):
        text = line.strip()
        if text == begin:
            if start is not None:
                return regions, f"'{begin}' on line {i + 1} inside the region opened on line {start + 1}"
            start = i
        elif text == end:
            if start is None:
                return regions, f"'{end}' on line {i + 1} without a '{begin}' before it"
            regions.append((start, i))
            start = None
    if start is not None:
        return regions, f"'{begin}' on line {start + 1} is never closed by '{end}'"
    return regions, None


def _is_stub(lines: list[str]) -> bool:
    """True for a solution cell of a student version (its regions already replaced by the stub)."""
    stripped = [line.strip() for line in lines]
    return any(a == STUDENT_STUB[0] and b == STUDENT_STUB[1] for a, b in zip(stripped, stripped[1:]))


def _code_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.strip() and not line.strip().startswith("#")]


def _check_metadata(where: str, role: str, meta, cell) -> None:
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: tagged {role!r} but has no nbgrader metadata: expected cell.metadata.nbgrader "
                         f"= {dict(_EXPECTED[role], grade_id='...', schema_version=SCHEMA_VERSION)}")
    for key, value in _EXPECTED[role].items():
        if meta.get(key) is not value:
            raise ValueError(f"{where}: tag {role!r} and nbgrader metadata disagree: expected nbgrader.{key} = "
                             f"{json.dumps(value)}, found {json.dumps(meta.get(key, '<missing>'))}")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{where}: expected nbgrader.schema_version = {SCHEMA_VERSION}, "
                         f"found {meta.get('schema_version', '<missing>')!r}")
    if role == "check":
        points = meta.get("points")
        if isinstance(points, bool) or not isinstance(points, (int, float)) or not points > 0:
            raise ValueError(f"{where}: check without points: expected nbgrader.points > 0, "
                             f"found {points if points is not None else '<missing>'!r}")
    elif "points" in meta and meta["points"] not in (0, None):
        raise ValueError(f"{where}: only check cells carry points (tag {role!r}), found nbgrader.points = "
                         f"{meta['points']!r}")
    want_type = "markdown" if role == "exercise" and cell.get("cell_type") == "markdown" else "code"
    if cell.get("cell_type") != want_type:
        raise ValueError(f"{where}: a {role!r} cell must be a {want_type} cell, found {cell.get('cell_type')!r}")


def _parse(nb, path=None) -> list[Exercise]:
    where = _Where(path)
    cells = nb.get("cells", []) if isinstance(nb, dict) else nb.cells
    number = _notebook_number(path)
    seen: dict[str, int] = {}
    found: list[Exercise] = []
    current: Exercise | None = None
    stage = ""  # last role seen in the current exercise: prompt, given, solution, check
    exercises_heading = None
    first_nb: tuple[str, str] | None = None  # (NN, grade_id) of the first exercise cell: every grade_id names NN

    for index, cell in enumerate(cells):
        tags = _tags(cell)
        meta = _nbgrader(cell)
        roles = [t for t in tags if t in ROLE_TAGS]
        here = where(index, cell)
        source = _source(cell)
        lines = source.splitlines()
        if cell.get("cell_type") == "markdown" and not roles and lines and _EXERCISES_HEADING.match(lines[0]):
            exercises_heading = index
        if isinstance(meta, dict) and "grade_id" in meta:
            gid = meta["grade_id"]
            if gid in seen:
                raise ValueError(f"{here}: duplicate grade_id {gid!r} (first used by cell {seen[gid]})")
            seen[gid] = index
        if INSTRUCTOR_TAG in tags and (roles or cell.get("cell_type") != "markdown" or meta is not None):
            raise ValueError(f"{here}: a cell tagged {INSTRUCTOR_TAG!r} must be a markdown cell without exercise "
                             f"tags or nbgrader metadata (it is dropped from the student version), found a "
                             f"{cell.get('cell_type')} cell with tags {tags}")
        if len(roles) > 1:
            raise ValueError(f"{here}: expected one of the tags {list(ROLE_TAGS)}, found {roles}")
        if not roles:
            if meta is not None:
                raise ValueError(f"{here}: tags and nbgrader metadata disagree: the cell has nbgrader metadata "
                                 f"but none of the tags {list(ROLE_TAGS)} (found tags {tags})")
            if current is not None and cell.get("cell_type") == "code":
                raise ValueError(f"{here}: untagged code cell inside exercise {current.number} (the Exercises "
                                 f"section holds exercise runs only: tag it 'exercise' with a -given grade_id, "
                                 f"move it before the Exercises section and tag it 'imports', or remove it)")
            for marker in (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN):
                if any(line.strip() == marker for line in lines):
                    raise ValueError(f"{here}: '{marker}' in a cell that is not tagged 'solution' or 'check'")
            continue
        role = roles[0]
        _check_metadata(here, role, meta, cell)
        gid = meta.get("grade_id")
        match = _GRADE_ID.match(gid) if isinstance(gid, str) else None
        if match is None:
            raise ValueError(f"{here}: expected grade_id 'nbNN-exK' / 'nbNN-exK-given[n]' / 'nbNN-exK-solution' / "
                             f"'nbNN-exK-check[n]', found {gid!r}")
        if number is not None and match["nb"] != number:
            raise ValueError(f"{here}: grade_id {gid!r} names notebook {match['nb']}, expected nb{number} "
                             f"(the notebook's file name starts with {number}_)")
        if first_nb is None:
            first_nb = (match["nb"], gid)
        elif match["nb"] != first_nb[0]:
            raise ValueError(f"{here}: grade_id {gid!r} names notebook {match['nb']}, expected nb{first_nb[0]} "
                             f"like the notebook's first grade_id {first_nb[1]!r} (one notebook, one number)")
        k = int(match["k"])
        kind = match["role"] or "prompt"
        want_kind = {"exercise": ("prompt", "given"), "solution": ("solution",), "check": ("check",)}[role]
        if kind not in want_kind:
            raise ValueError(f"{here}: a cell tagged {role!r} needs a grade_id ending in "
                             f"{' or '.join(repr('-' + w if w != 'prompt' else '') for w in want_kind)}, "
                             f"found {gid!r}")
        if kind == "prompt" and cell.get("cell_type") != "markdown":
            raise ValueError(f"{here}: the prompt of an exercise (grade_id {gid!r}) must be a markdown cell")
        if kind == "given" and cell.get("cell_type") != "code":
            raise ValueError(f"{here}: given code (grade_id {gid!r}) must be a code cell")

        if kind == "prompt":
            if current is not None:
                _finish(current, where, cells)
            heading = _PROMPT_HEADING.match(lines[0]) if lines else None
            if heading is None or int(heading["k"]) != k:
                raise ValueError(f"{here}: expected the prompt to start with '### Exercise {k}: <title>', found "
                                 f"{(lines[0] if lines else '')!r}")
            if found and k <= found[-1].number:
                raise ValueError(f"{here}: exercise {k} after exercise {found[-1].number}: expected increasing "
                                 f"exercise numbers")
            if not found and exercises_heading is None:
                raise ValueError(f"{here}: exercise {k} is not in an 'Exercises' section: expected a markdown "
                                 f"cell starting with '## Exercises' before the first exercise")
            current = Exercise(number=k, grade_id=gid, title=heading["title"], prompt=index)
            found.append(current)
            stage = "prompt"
            continue
        if current is None or current.number != k:
            owner = f"exercise {current.number}" if current is not None else "no exercise (no prompt before it)"
            raise ValueError(f"{here}: grade_id {gid!r} belongs to exercise {k} but the cell sits in {owner}: "
                             f"expected the cells of exercise {k} after its prompt 'nb{match['nb']}-ex{k}'")
        order = {"prompt": 0, "given": 1, "solution": 2, "check": 3}
        if order[kind] < order[stage] or (kind == "solution" and stage == "solution"):
            raise ValueError(f"{here}: {kind} cell after the {stage} cell of exercise {k}: expected the order "
                             f"prompt, given code (optional), one solution, checks")
        stage = kind
        if kind == "given":
            for marker in (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN):
                if any(line.strip() == marker for line in lines):
                    raise ValueError(f"{here}: '{marker}' in given code (kept in the student version)")
            expected = f"nb{match['nb']}-ex{k}-given" + ("" if not current.given else str(len(current.given) + 1))
            if gid != expected:
                raise ValueError(f"{here}: expected grade_id {expected!r} for given cell {len(current.given) + 1} "
                                 f"of exercise {k}, found {gid!r}")
            current.given.append(index)
        elif kind == "solution":
            regions, problem = _marker_regions(lines, BEGIN_SOLUTION, END_SOLUTION)
            if problem:
                raise ValueError(f"{here}: unbalanced solution markers: {problem}")
            if not regions and not _is_stub(lines):
                raise ValueError(f"{here}: solution cell without markers: expected the answer between the lines "
                                 f"'{BEGIN_SOLUTION}' and '{END_SOLUTION}'")
            for begin, end in regions:
                if not _code_lines(lines[begin + 1:end]):
                    raise ValueError(f"{here}: empty solution region on lines {begin + 1}-{end + 1}")
            if any(line.strip() in (BEGIN_HIDDEN, END_HIDDEN) for line in lines):
                raise ValueError(f"{here}: hidden-test markers in a solution cell (they belong in a check cell)")
            current.solution = index
        else:  # check
            regions, problem = _marker_regions(lines, BEGIN_HIDDEN, END_HIDDEN)
            if problem:
                raise ValueError(f"{here}: unbalanced hidden-test markers: {problem}")
            if any(line.strip() in (BEGIN_SOLUTION, END_SOLUTION) for line in lines):
                raise ValueError(f"{here}: solution markers in a check cell")
            visible = _strip_regions(lines, regions)
            if not _code_lines(visible):
                raise ValueError(f"{here}: the check has no visible statement outside the hidden tests: the "
                                 f"student version would be empty and could never fail; keep at least one "
                                 f"assert (e.g. that the names exist) outside '{BEGIN_HIDDEN}'")
            expected = f"nb{match['nb']}-ex{k}-check" + ("" if not current.checks else str(len(current.checks) + 1))
            if gid != expected:
                raise ValueError(f"{here}: expected grade_id {expected!r} for check {len(current.checks) + 1} "
                                 f"of exercise {k}, found {gid!r}")
            current.checks.append(index)
            current.check_ids.append(gid)
            current.points += float(meta["points"])
            current.hidden_tests = current.hidden_tests or bool(regions)
    if current is not None:
        _finish(current, where, cells)
    return found


def _finish(ex: Exercise, where: _Where, cells) -> None:
    here = where(ex.prompt, cells[ex.prompt])
    if ex.solution is None:
        raise ValueError(f"{here}: exercise {ex.number} without a solution: expected a code cell tagged "
                         f"'solution' with grade_id '{ex.grade_id}-solution'")
    if not ex.checks:
        raise ValueError(f"{here}: exercise {ex.number} without a check: expected >= 1 code cell tagged 'check' "
                         f"with grade_id '{ex.grade_id}-check' and points")


def _strip_regions(lines: list[str], regions: list[tuple[int, int]]) -> list[str]:
    drop = {i for begin, end in regions for i in range(begin, end + 1)}
    return [line for i, line in enumerate(lines) if i not in drop]


def exercises(nb) -> list[Exercise]:
    """The exercises of notebook ``nb`` (an nbformat notebook or its JSON dict), in order.

    Raises:
        ValueError: the cells break the convention (see :func:`validate`).
    """
    return _parse(nb, None)


def validate(nb, path: str | os.PathLike | None = None) -> list[Exercise]:
    """Check that ``nb`` follows the exercise convention; return its exercises (possibly none).

    ``path`` names the notebook in the messages; when its file name starts with ``NN_`` the grade_ids must name
    notebook NN. A student version validates too (its solution cells hold the stub instead of markers).

    Raises:
        ValueError: naming the notebook, the cell (index and grade_id) and what is wrong: solution cell without
            markers or with unbalanced markers, check without points, duplicate grade_id, exercise without
            solution or check, tags and nbgrader metadata disagreeing, unbalanced hidden-test markers, cells out
            of order.
    """
    return _parse(nb, path)


# --------------------------------------------------------------------------------------------- versions


def _clear_outputs(nb) -> None:
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None


def _set_source(cell, lines: list[str]) -> None:
    cell["source"] = "\n".join(lines)


def _as_notebook(nb):
    if isinstance(nb, nbformat.NotebookNode):
        return copy.deepcopy(nb)
    return nbformat.from_dict(copy.deepcopy(nb))


def student_version(nb):
    """The student version of ``nb`` (a copy): solution regions replaced by ``# YOUR CODE HERE`` +
    ``raise NotImplementedError()`` at the indentation of each region's BEGIN line, hidden-test regions removed
    (markers included), markdown cells tagged ``instructor`` (answers to the open questions) removed, outputs and
    execution counts cleared, nbgrader metadata kept.

    Raises:
        ValueError: ``nb`` breaks the convention (see :func:`validate`).
    """
    exs = exercises(nb)
    out = _as_notebook(nb)
    for ex in exs:
        cell = out.cells[ex.solution]
        lines = _source(cell).splitlines()
        regions, _ = _marker_regions(lines, BEGIN_SOLUTION, END_SOLUTION)
        new: list[str] = []
        last = 0
        for begin, end in regions:
            new.extend(lines[last:begin])
            indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
            new.extend(indent + stub for stub in STUDENT_STUB)
            last = end + 1
        new.extend(lines[last:])
        _set_source(cell, new)
        for index in ex.checks:
            cell = out.cells[index]
            lines = _source(cell).splitlines()
            regions, _ = _marker_regions(lines, BEGIN_HIDDEN, END_HIDDEN)
            if regions:
                _set_source(cell, _strip_regions(lines, regions))
    out.cells = [cell for cell in out.cells if INSTRUCTOR_TAG not in _tags(cell)]
    _clear_outputs(out)
    return out


def solution_version(nb):
    """The instructor version of ``nb`` (a copy) in nbgrader's "source" format: every marker kept (so
    ``nbgrader generate_assignment`` can import it), outputs and execution counts cleared.

    Raises:
        ValueError: ``nb`` breaks the convention (see :func:`validate`).
    """
    exercises(nb)
    out = _as_notebook(nb)
    _clear_outputs(out)
    return out


def exercise_subset(nb):
    """A copy of ``nb`` with only the cells tagged ``setup`` or ``imports`` and every exercise's cells (prompt,
    given code, solution, checks), in notebook order: what the exercises need, for a fast check in a fresh kernel.

    Raises:
        ValueError: ``nb`` breaks the convention (see :func:`validate`).
    """
    keep = {i for ex in exercises(nb) for i in ex.cells}
    out = _as_notebook(nb)
    keep |= {i for i, cell in enumerate(out.cells) if any(t in SUBSET_TAGS for t in _tags(cell))}
    out.cells = [cell for i, cell in enumerate(out.cells) if i in keep]
    return out


# ----------------------------------------------------------------------------------------------------- CLI


def _select(folder: Path, only: list[str] | None) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"--notebooks {folder}: expected a folder of .ipynb files, found none")
    paths = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    if not paths:
        raise FileNotFoundError(f"--notebooks {folder}: expected .ipynb files, found none")
    if only:
        unmatched = [pre for pre in only if not any(p.name.startswith(pre) for p in paths)]
        if unmatched:
            raise ValueError(f"--only {' '.join(unmatched)}: no notebook in {folder} starts with "
                             f"{'these prefixes' if len(unmatched) > 1 else 'this prefix'} "
                             f"(found {', '.join(p.name for p in paths)})")
        paths = [p for p in paths if any(p.name.startswith(pre) for pre in only)]
    return paths


def _manifest_entry(path: Path, exs: list[Exercise], nb) -> dict:
    return {
        "notebook": path.name,
        "points": sum(ex.points for ex in exs),
        "exercises": [
            {"grade_id": ex.grade_id, "title": ex.title, "points": ex.points, "checks": ex.check_ids,
             "solution": f"{ex.grade_id}-solution", "hidden_tests": ex.hidden_tests,
             "given": [nb.cells[i].metadata["nbgrader"]["grade_id"] for i in ex.given]}
            for ex in exs
        ],
    }


_README = {
    "student": ("Student versions of the nrsfm-kit notebooks",
                "Each exercise's solution is replaced by `# YOUR CODE HERE` / `raise NotImplementedError()`; "
                "write your answer there and run the check cells below it (hidden tests are added at "
                "grading). Run the notebooks from a copy of the repository's `notebooks/` folder (they read "
                "files relative to it); `NRSFM_KIT_SMOKE=1` runs them at smoke size on any CPU."),
    "solutions": ("Instructor (solution) versions of the nrsfm-kit notebooks",
                  "nbgrader \"source\" format: the `### BEGIN SOLUTION` / `### END SOLUTION` and "
                  "`### BEGIN HIDDEN TESTS` / `### END HIDDEN TESTS` markers are kept and every graded cell "
                  "carries nbgrader metadata, so a course on nbgrader copies `NN_name.ipynb` to "
                  "`source/<assignment>/` and runs `nbgrader generate_assignment <assignment>`. Do not give "
                  "these files to students."),
}


def _readme(kind: str, entries: list[dict], skipped: list[str]) -> str:
    title, intro = _README[kind]
    lines = [f"# {title}", "", intro, "", "Generated by `python -m nrsfm_kit.course "
             f"{kind}`; `manifest.json` lists the same in machine-readable form.", "",
             "| notebook | exercise | title | points | checks |", "|---|---|---|---|---|"]
    for entry in entries:
        for ex in entry["exercises"]:
            checks = ", ".join(ex["checks"]) + (" (+ hidden tests)" if ex["hidden_tests"] else "")
            lines.append(f"| {entry['notebook']} | {ex['grade_id']} | {ex['title']} | {ex['points']:g} | "
                         f"{checks} |")
    total = sum(e["points"] for e in entries)
    lines += ["", "Points per notebook: " + ", ".join(f"{e['notebook']} {e['points']:g}" for e in entries)
              + f"; total {total:g}."]
    if skipped:
        lines += ["", "Notebooks without exercises (not written): " + ", ".join(skipped) + "."]
    return "\n".join(lines) + "\n"


def _main(kind: str, argv: list[str] | None) -> int:
    default_out = {"student": "build/student", "solutions": "build/solutions"}[kind]
    what = {"student": "student versions (solutions replaced by stubs, hidden tests removed, checks kept)",
            "solutions": "instructor versions (nbgrader source format: markers kept)"}[kind]
    parser = argparse.ArgumentParser(
        prog=f"python -m nrsfm_kit.course {kind}",
        description=f"Write the {what} of the notebooks' exercises, one .ipynb per notebook, plus README.md and "
                    f"manifest.json (exercise ids, points per notebook).")
    parser.add_argument("--notebooks", default="notebooks", metavar="DIR",
                        help="folder of the solution notebooks (default notebooks/)")
    parser.add_argument("--out", default=default_out, metavar="DIR",
                        help=f"output folder (default {default_out}/)")
    parser.add_argument("--only", nargs="+", metavar="PREFIX",
                        help="only the notebooks whose file name starts with one of these prefixes, e.g. "
                             "--only 03 05 (default: every notebook)")
    args = parser.parse_args(argv)
    try:
        paths = _select(Path(args.notebooks), args.only)
        out = Path(args.out)
        make = student_version if kind == "student" else solution_version
        entries, skipped, outputs = [], [], []
        for path in paths:  # validate everything before writing anything
            nb = nbformat.read(path, as_version=4)
            exs = validate(nb, path)
            if not exs:
                skipped.append(path.name)
                print(f"warning: {path}: no exercises (no cell tagged 'exercise'); not written", file=sys.stderr)
                continue
            entries.append(_manifest_entry(path, exs, nb))
            outputs.append((out / path.name, make(nb)))
        if not entries:
            raise ValueError(f"--notebooks {args.notebooks}: expected notebooks with exercises, found none "
                             f"among {len(paths)} notebook(s)")
        for target, nb in outputs:
            nbformat.validate(nb)
            atomic_write_text(target, nbformat.writes(nb) + "\n")
        manifest = {"kind": kind, "notebooks": entries, "skipped": skipped,
                    "points": sum(e["points"] for e in entries)}
        atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
        atomic_write_text(out / "README.md", _readme(kind, entries, skipped))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    n_ex = sum(len(e["exercises"]) for e in entries)
    print(f"wrote {len(entries)} {kind} notebook(s), {n_ex} exercise(s), {manifest['points']:g} point(s) to {out}/")
    return 0


def main_student(argv: list[str] | None = None) -> int:
    """``python -m nrsfm_kit.course student [--notebooks DIR] [--out DIR] [--only PREFIX ...]``."""
    return _main("student", argv)


def main_solutions(argv: list[str] | None = None) -> int:
    """``python -m nrsfm_kit.course solutions [--notebooks DIR] [--out DIR] [--only PREFIX ...]``."""
    return _main("solutions", argv)


__all__ = ["Exercise", "exercises", "validate", "student_version", "solution_version", "exercise_subset",
           "main_student", "main_solutions"]
