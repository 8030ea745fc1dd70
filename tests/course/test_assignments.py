"""The exercise convention and the student / solution versions (:mod:`nrsfm_kit.course.assignments`).

Part 1: unit tests on the fixture ``tests/course/data/90_fixture.ipynb`` (solution markers replaced at the right
indentation, hidden tests removed, one validation error per malformed case, metadata round trip, the CLIs).

Part 2: every real notebook in ``notebooks/`` (one test per notebook, so xdist can spread them): the convention
validates, there is >= 1 exercise with a solution and a check, the solution version's exercise subset runs in a
fresh kernel without an error, and the student version's subset errors at the solution cells (a stub at the
top level; one inside a ``def`` raises only when called) and the check cells (every check cell, so every check
can fail) and nowhere else. The two kernels of a notebook run
concurrently.

"The solution versions under nbval" is not repeated here: the notebooks in ``notebooks/`` ARE the solution
versions (markers included, nbgrader's source format), and ``make test`` already runs each of them whole under
``pytest --nbval-lax``, so every check cell passes there.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from pathlib import Path

import nbformat
import pytest

from nrsfm_kit.course import assignments as A

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
FIXTURE = DATA / "90_fixture.ipynb"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT_S = 120  # per cell; an exercise takes < 5 s at smoke size, the margin is for a loaded machine


def load(path: Path = FIXTURE):
    return nbformat.read(path, as_version=4)


def by_id(nb, grade_id: str):
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return cell
    raise KeyError(grade_id)


def index_of(nb, grade_id: str) -> int:
    return nb.cells.index(by_id(nb, grade_id))


# --------------------------------------------------------------------------------------- kernel helpers


async def _execute(nb, cwd: Path) -> dict:
    """Run ``nb`` in a fresh kernel (errors allowed); {cell label: (ename, evalue)} of the cells that raised."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(cwd)}})
    await client.async_execute()
    errors = {}
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                label = cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {i} (tags {_tags(cell)})"
                errors[label] = (out.get("ename"), str(out.get("evalue"))[:300])
    return errors


def _tags(cell) -> list:
    return list(cell.metadata.get("tags", []))


def run_versions(nb, cwd: Path) -> tuple[dict, dict]:
    """Execute the solution version's and the student version's exercise subsets, concurrently, in two fresh
    kernels; return their error maps."""
    solution = A.exercise_subset(A.solution_version(nb))
    student = A.exercise_subset(A.student_version(nb))

    async def both():
        return await asyncio.gather(_execute(solution, cwd), _execute(student, cwd))

    return tuple(asyncio.run(both()))


def problems(nb, solution_errors: dict, student_errors: dict) -> list[str]:
    """What breaks the rule 'the solution version runs clean; the student version errors at the solution and
    check cells only, and at every check cell'. A solution cell whose stub sits inside a ``def`` (the convention's
    ``def f(x):`` line outside the markers) defines the function without raising, so a solution cell may run
    clean; when it raises, it is the stub's NotImplementedError."""
    out = [f"solution version: {label} raised {ename}: {evalue}" for label, (ename, evalue) in
           solution_errors.items()]
    checks, solutions = set(), set()
    for ex in A.exercises(nb):
        solutions.add(f"{ex.grade_id}-solution")
        checks.update(ex.check_ids)
    for label in sorted(checks - set(student_errors)):
        out.append(f"student version: check {label} ran without an error (a check that passes without the "
                   f"solution can never fail)")
    for label in sorted(set(student_errors) - checks - solutions):
        ename, evalue = student_errors[label]
        out.append(f"student version: {label} raised {ename}: {evalue} (only solution and check cells may fail; "
                   f"does it use a name that an exercise's solution defines?)")
    for label, (ename, _) in student_errors.items():
        if label.endswith("-solution") and ename != "NotImplementedError":
            out.append(f"student version: {label} raised {ename}, expected NotImplementedError from the stub")
    return out


# ------------------------------------------------------------------------------------ part 1: fixtures


def test_fixture_exercises_parsed():
    nb = load()
    exs = A.validate(nb, FIXTURE)
    assert [ex.grade_id for ex in exs] == ["nb90-ex1", "nb90-ex2"]
    ex1, ex2 = exs
    assert (ex1.number, ex1.title, ex1.points, ex1.hidden_tests) == (1, "Mean", 3.0, True)
    assert ex1.check_ids == ["nb90-ex1-check", "nb90-ex1-check2"]
    assert ex1.given == [index_of(nb, "nb90-ex1-given")]
    assert ex1.solution == index_of(nb, "nb90-ex1-solution")
    assert (ex2.points, ex2.hidden_tests, ex2.given) == (3.0, False, [])
    assert A.exercises(nb) == exs


def test_student_version_replaces_regions_at_their_indentation():
    nb = load()
    student = A.student_version(nb)
    lines = by_id(student, "nb90-ex1-solution").source.splitlines()
    assert lines == ["def mean(xs):", '    """Arithmetic mean of ``xs``."""', "    # YOUR CODE HERE",
                     "    raise NotImplementedError()"]
    assert by_id(student, "nb90-ex2-solution").source.splitlines() == ["# YOUR CODE HERE",
                                                                        "raise NotImplementedError()"]
    # the original is untouched
    assert A.BEGIN_SOLUTION in by_id(nb, "nb90-ex1-solution").source


def test_student_version_several_regions_keep_the_lines_between():
    nb = load()
    by_id(nb, "nb90-ex2-solution").source = (
        "def f(x):\n    if x > 0:\n        ### BEGIN SOLUTION\n        y = x\n        ### END SOLUTION\n"
        "    else:\n  ### BEGIN SOLUTION\n  y = -x\n  ### END SOLUTION\n    return y")
    lines = by_id(A.student_version(nb), "nb90-ex2-solution").source.splitlines()
    assert lines == ["def f(x):", "    if x > 0:", "        # YOUR CODE HERE", "        raise NotImplementedError()",
                     "    else:", "  # YOUR CODE HERE", "  raise NotImplementedError()", "    return y"]


def test_instructor_cells_dropped_from_student_kept_in_solution():
    nb = load()
    note = nbformat.v4.new_markdown_cell("### Solutions to the open questions (for instructors)\n\nINSTRUCTOR_ONLY")
    note.metadata["tags"] = ["instructor"]
    nb.cells.append(note)
    assert [ex.grade_id for ex in A.validate(nb, FIXTURE)] == ["nb90-ex1", "nb90-ex2"]
    student, solution = A.student_version(nb), A.solution_version(nb)
    assert not any("INSTRUCTOR_ONLY" in c.source for c in student.cells)
    assert len(student.cells) == len(nb.cells) - 1
    assert solution.cells[-1].source == note.source
    code = nbformat.v4.new_code_cell("print('x')")
    code.metadata["tags"] = ["instructor"]
    nb.cells.append(code)
    with pytest.raises(ValueError, match="tagged 'instructor' must be a markdown cell .* found a code cell"):
        A.validate(nb, FIXTURE)


def test_notebooks_student_versions_hold_no_instructor_answers():
    for path in NOTEBOOKS:
        student = A.student_version(nbformat.read(path, 4))
        leaked = [c.source.splitlines()[0] for c in student.cells
                  if c.source.startswith("#") and "for instructors" in c.source.splitlines()[0].lower()]
        assert leaked == [], (path.name, leaked)


def test_hidden_tests_removed_from_student_kept_in_solution():
    nb = load()
    student, solution = A.student_version(nb), A.solution_version(nb)
    check2 = by_id(student, "nb90-ex1-check2").source
    assert "HIDDEN TESTS" not in check2 and "mean(VALUES) == 2.0" not in check2
    assert 'assert mean([2.0]) == 2.0, "mean([2.0]) should be 2"' in check2
    assert by_id(solution, "nb90-ex1-check2").source == by_id(nb, "nb90-ex1-check2").source
    assert by_id(solution, "nb90-ex1-solution").source == by_id(nb, "nb90-ex1-solution").source
    assert by_id(student, "nb90-ex1-check").source == by_id(nb, "nb90-ex1-check").source


def test_outputs_cleared_and_metadata_round_trip(tmp_path):
    nb = load()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", text="old output\n")]
            cell.execution_count = 7
    for make in (A.student_version, A.solution_version):
        version = make(nb)
        nbformat.validate(version)
        assert [c.id for c in version.cells] == [c.id for c in nb.cells]
        assert [c.metadata for c in version.cells] == [c.metadata for c in nb.cells]
        assert version.metadata == nb.metadata
        assert all(c.outputs == [] and c.execution_count is None for c in version.cells if c.cell_type == "code")
        path = tmp_path / f"{make.__name__}.ipynb"
        nbformat.write(version, path)
        again = nbformat.read(path, as_version=4)
        assert [c.metadata for c in again.cells] == [c.metadata for c in nb.cells]
        # the version is still a valid notebook of the convention (the student version too: nbgrader
        # re-reads released notebooks with the same metadata)
        assert [ex.grade_id for ex in A.validate(again, FIXTURE)] == ["nb90-ex1", "nb90-ex2"]


def test_exercise_subset_keeps_setup_imports_and_exercise_cells_in_order():
    nb = load()
    subset = A.exercise_subset(nb)
    labels = [c.metadata.get("nbgrader", {}).get("grade_id") or _tags(c)[0] for c in subset.cells]
    assert labels == ["setup", "imports", "nb90-ex1", "nb90-ex1-given", "nb90-ex1-solution", "nb90-ex1-check",
                      "nb90-ex1-check2", "nb90-ex2", "nb90-ex2-solution", "nb90-ex2-check"]
    assert not any("BODY_ONLY" in c.source for c in subset.cells)


def _set(target, **changes):
    def mutate(nb):
        by_id(nb, target).metadata["nbgrader"].update(changes)
    return mutate


def _source(grade_id, text):
    def mutate(nb):
        by_id(nb, grade_id).source = text
    return mutate


def _drop(*grade_ids):
    def mutate(nb):
        nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in grade_ids]
    return mutate


def _retag(grade_id, tags):
    def mutate(nb):
        by_id(nb, grade_id).metadata["tags"] = tags
    return mutate


def _untag_everything_but(grade_id):
    def mutate(nb):
        del by_id(nb, grade_id).metadata["nbgrader"]
    return mutate


def _move_check_before_solution(nb):
    i, j = index_of(nb, "nb90-ex2-solution"), index_of(nb, "nb90-ex2-check")
    nb.cells[i], nb.cells[j] = nb.cells[j], nb.cells[i]


def _untagged_code_in_exercise(nb):
    nb.cells.insert(index_of(nb, "nb90-ex2-check"), nbformat.v4.new_code_cell("x = 1"))


def _no_exercises_heading(nb):
    nb.cells = [c for c in nb.cells if c.source != "## Exercises"]


SOL = "nb90-ex1-solution"
MALFORMED = {
    "solution without markers": (_source(SOL, "def mean(xs):\n    return sum(xs) / len(xs)"), SOL,
                                 "solution cell without markers"),
    "BEGIN never closed": (_source(SOL, "def mean(xs):\n    ### BEGIN SOLUTION\n    return 1"), SOL,
                           "unbalanced solution markers: '### BEGIN SOLUTION' on line 2 is never closed"),
    "END without BEGIN": (_source(SOL, "def mean(xs):\n    return 1\n    ### END SOLUTION"), SOL,
                          "unbalanced solution markers: '### END SOLUTION' on line 3 without"),
    "nested BEGIN": (_source(SOL, "### BEGIN SOLUTION\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION"), SOL,
                     "inside the region opened on line 1"),
    "empty region": (_source(SOL, "### BEGIN SOLUTION\n# nothing\n### END SOLUTION"), SOL, "empty solution region"),
    "check without points": (_set("nb90-ex1-check", points=None), "nb90-ex1-check", "check without points"),
    "check with zero points": (_set("nb90-ex1-check", points=0), "nb90-ex1-check", "found 0"),
    "points on a solution": (_set(SOL, points=2), SOL, "only check cells carry points"),
    "duplicate grade_id": (_set("nb90-ex2-check", grade_id="nb90-ex1-check"), "nb90-ex1-check",
                           "duplicate grade_id 'nb90-ex1-check' (first used by cell 8)"),
    "exercise without solution": (_drop("nb90-ex2-solution"), "cell 11 (nb90-ex2)", "exercise 2 without a solution"),
    "exercise without check": (_drop("nb90-ex2-check"), "nb90-ex2", "exercise 2 without a check"),
    "solution flag disagrees with tag": (_set(SOL, solution=False), SOL,
                                         "tag 'solution' and nbgrader metadata disagree: expected "
                                         "nbgrader.solution = true, found false"),
    "check not graded": (_set("nb90-ex1-check", grade=False), "nb90-ex1-check",
                         "expected nbgrader.grade = true, found false"),
    "nbgrader metadata without a tag": (_retag(SOL, []), SOL, "has nbgrader metadata but none of the tags"),
    "tag without nbgrader metadata": (_untag_everything_but("nb90-ex1-check"), "cell 8",
                                      "tagged 'check' but has no nbgrader metadata"),
    "two role tags": (_retag(SOL, ["solution", "check"]), SOL, "expected one of the tags"),
    "hidden tests never closed": (_source("nb90-ex1-check2", "assert mean([2]) == 2\n### BEGIN HIDDEN TESTS\n"
                                                             "assert mean([4]) == 4"), "nb90-ex1-check2",
                                  "unbalanced hidden-test markers: '### BEGIN HIDDEN TESTS' on line 2"),
    "hidden END without BEGIN": (_source("nb90-ex1-check2", "assert mean([2]) == 2\n### END HIDDEN TESTS"),
                                 "nb90-ex1-check2", "'### END HIDDEN TESTS' on line 2 without"),
    "check entirely hidden": (_source("nb90-ex1-check2", "### BEGIN HIDDEN TESTS\nassert mean([4]) == 4\n"
                                                         "### END HIDDEN TESTS"), "nb90-ex1-check2",
                              "no visible statement outside the hidden tests"),
    "hidden markers in a solution": (_source(SOL, "### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n"
                                                  "### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS"), SOL,
                                     "hidden-test markers in a solution cell"),
    "solution markers in a check": (_source("nb90-ex1-check", "### BEGIN SOLUTION\nx = 1\n### END SOLUTION"),
                                    "nb90-ex1-check", "solution markers in a check cell"),
    "malformed grade_id": (_set("nb90-ex2-check", grade_id="ex2-test"), "ex2-test", "expected grade_id 'nbNN-exK'"),
    "checks misnumbered": (_set("nb90-ex1-check2", grade_id="nb90-ex1-check3"), "nb90-ex1-check3",
                           "expected grade_id 'nb90-ex1-check2'"),
    "prompt heading disagrees": (_source("nb90-ex2", "### Exercise 3: Norm\n\ntext"), "nb90-ex2",
                                 "expected the prompt to start with '### Exercise 2: <title>'"),
    "cell of another exercise": (_set("nb90-ex2-check", grade_id="nb90-ex1-check3"), "nb90-ex1-check3",
                                 "belongs to exercise 1 but the cell sits in exercise 2"),
    "check before solution": (_move_check_before_solution, "nb90-ex2-solution",
                              "solution cell after the check cell of exercise 2"),
    "untagged code inside an exercise": (_untagged_code_in_exercise, "cell 13",
                                         "untagged code cell inside exercise 2"),
    "no Exercises section": (_no_exercises_heading, "nb90-ex1", "is not in an 'Exercises' section"),
    "schema version": (_set(SOL, schema_version=1), SOL, "expected nbgrader.schema_version = 3, found 1"),
    "grade_id of another notebook": (_set("nb90-ex2-check", grade_id="nb91-ex2-check"), "nb91-ex2-check",
                                     "names notebook 91, expected nb90"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_validation_errors_name_notebook_cell_and_problem(case):
    mutate, where, message = MALFORMED[case]
    nb = load()
    mutate(nb)
    with pytest.raises(ValueError) as info:
        A.validate(nb, FIXTURE)
    text = str(info.value)
    assert str(FIXTURE) in text and where in text and message in text, text
    assert "cell " in text
    with pytest.raises(ValueError):  # the versions refuse a malformed notebook too
        A.student_version(nb)


def test_exercise_without_solution_message():
    nb = load()
    _drop("nb90-ex2-solution")(nb)
    with pytest.raises(ValueError, match=r"cell 11 \(nb90-ex2\): exercise 2 without a solution"):
        A.validate(nb, FIXTURE)


def test_notebook_without_exercises_is_valid_and_empty():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Nothing"),
                                         nbformat.v4.new_code_cell("x = 1")])
    assert A.validate(nb, "00_nothing.ipynb") == []


# ------------------------------------------------------------------------------------------------- CLIs


def test_cli_student_and_solutions_write_notebooks_and_manifest(tmp_path, capsys):
    out_s, out_i = tmp_path / "student", tmp_path / "solutions"
    assert A.main_student(["--notebooks", str(DATA), "--out", str(out_s)]) == 0
    assert A.main_solutions(["--notebooks", str(DATA), "--out", str(out_i), "--only", "90"]) == 0
    assert "wrote 1 student notebook(s), 2 exercise(s), 6 point(s)" in capsys.readouterr().out
    for out, kind in ((out_s, "student"), (out_i, "solutions")):
        assert sorted(p.name for p in out.iterdir()) == ["90_fixture.ipynb", "README.md", "manifest.json"]
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["kind"] == kind and manifest["points"] == 6
        (entry,) = manifest["notebooks"]
        assert entry["notebook"] == "90_fixture.ipynb" and entry["points"] == 6
        assert [e["grade_id"] for e in entry["exercises"]] == ["nb90-ex1", "nb90-ex2"]
        assert entry["exercises"][0]["checks"] == ["nb90-ex1-check", "nb90-ex1-check2"]
        assert "| 90_fixture.ipynb | nb90-ex1 | Mean | 3 |" in (out / "README.md").read_text()
    student = nbformat.read(out_s / "90_fixture.ipynb", as_version=4)
    assert A.STUDENT_STUB[1] in by_id(student, "nb90-ex1-solution").source
    solution = nbformat.read(out_i / "90_fixture.ipynb", as_version=4)
    assert solution.cells == A.solution_version(load()).cells


def test_cli_bad_input(tmp_path, capsys):
    assert A.main_student(["--notebooks", str(DATA), "--out", str(tmp_path), "--only", "77"]) == 1
    err = capsys.readouterr().err
    assert "--only 77: no notebook in" in err and "90_fixture.ipynb" in err
    assert A.main_student(["--notebooks", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 1
    assert "missing: expected a folder of .ipynb files" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    nb = load()
    _drop("nb90-ex2-check")(nb)
    nbformat.write(nb, bad / "90_fixture.ipynb")
    assert A.main_solutions(["--notebooks", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "exercise 2 without a check" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # validated before anything is written
    empty = tmp_path / "empty"
    empty.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), empty / "00_x.ipynb")
    assert A.main_student(["--notebooks", str(empty), "--out", str(tmp_path / "e")]) == 1
    assert "expected notebooks with exercises, found none" in capsys.readouterr().err


@pytest.mark.parametrize("main", [A.main_student, A.main_solutions])
def test_cli_help_states_every_default(main, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--notebooks", "--out", "--only"):
        assert option in text
    assert text.count("(default") == 3, text


def test_cli_dispatch_through_course_main(tmp_path):
    from nrsfm_kit.course.__main__ import main

    assert main(["student", "--notebooks", str(DATA), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "90_fixture.ipynb").exists()


# ------------------------------------------------------------------------- the kernel check, on fixtures


def test_fixture_versions_in_kernels():
    nb = load()
    solution_errors, student_errors = run_versions(nb, DATA)
    assert solution_errors == {}
    # ex1's stub sits inside `def mean(xs):` (defining it raises nothing), ex2's is at the top level
    assert set(student_errors) == {"nb90-ex1-check", "nb90-ex1-check2", "nb90-ex2-solution", "nb90-ex2-check"}
    assert student_errors["nb90-ex2-solution"][0] == "NotImplementedError"
    assert student_errors["nb90-ex1-check"][0] == "NotImplementedError"  # the check called the stub
    assert problems(nb, solution_errors, student_errors) == []


def test_kernel_check_catches_weak_checks_and_leaks():
    """The rule the real notebooks are held to does fail: a check that passes without the solution, a given
    cell that uses an earlier solution's name, a solution that does not run."""
    nb = load()
    by_id(nb, "nb90-ex1-check2").source = 'assert callable(mean), "define mean(xs)"'  # passes on the stub
    nb.cells.insert(index_of(nb, "nb90-ex2-solution"), nbformat.v4.new_code_cell(
        "y = mean([1.0])", metadata=copy.deepcopy(by_id(nb, "nb90-ex1-given").metadata)))
    nb.cells[index_of(nb, "nb90-ex2-solution") - 1].metadata["nbgrader"]["grade_id"] = "nb90-ex2-given"
    by_id(nb, "nb90-ex2-solution").source = "### BEGIN SOLUTION\nnorm = math.sqrt(-1.0)\n### END SOLUTION"
    A.validate(nb, FIXTURE)
    found = problems(nb, *run_versions(nb, DATA))
    text = "\n".join(found)
    assert "solution version: nb90-ex2-solution raised ValueError" in text
    assert "student version: check nb90-ex1-check2 ran without an error" in text
    assert "student version: nb90-ex2-given raised NotImplementedError" in text


# --------------------------------------------------------------------------- part 2: the real notebooks


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_exercises_valid(path):
    nb = nbformat.read(path, as_version=4)
    exs = A.validate(nb, path.relative_to(ROOT))
    assert exs, f"{path.name}: expected >= 1 exercise (cells tagged 'exercise'/'solution'/'check'), found none"
    for ex in exs:
        assert ex.solution is not None and ex.checks, ex


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_exercises_run(path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    assert A.validate(nb, path.relative_to(ROOT)), f"{path.name}: no exercises"
    monkeypatch.setenv("NRSFM_KIT_SMOKE", "1")  # the kernels inherit the environment
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    found = problems(nb, *run_versions(nb, ROOT / "notebooks"))
    assert not found, f"{path.name}:\n  " + "\n  ".join(found)


# a plausible wrong answer per exercise (not a stub): its check must fail, the right answer's must not
WRONG_ANSWERS = {
    "nb11-ex1-solution": ("def edm_readable(X):\n    G = X @ X.T\n    g = torch.diagonal(G)\n"
                          "    return g[:, None] + g[None, :] - G\n", "nb11-ex1-check"),  # the factor 2 forgotten
    "nb11-ex2-solution": ("def mds_points(E):\n    lam, V = torch.linalg.eigh(-0.5 * E)\n"
                          "    return V[:, -3:] * lam[-3:].clamp_min(0).sqrt()\n", "nb11-ex2-check"),  # no centring
}


def _run_subset_in_process(path: Path, replace: dict[str, str]) -> list[str]:
    """grade_ids of the exercise-subset cells that raised, run in this process (no kernel: fast)."""
    nb = A.exercise_subset(nbformat.read(path, 4))
    namespace: dict = {}
    failed = []
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            gid = cell.metadata.get("nbgrader", {}).get("grade_id", "")
            src = "\n".join(line for line in replace.get(gid, cell.source).splitlines()
                            if not line.lstrip().startswith(("%", "!")))
            try:
                exec(compile(src, gid or "<cell>", "exec"), namespace)
            except Exception:
                failed.append(gid)
    finally:
        os.chdir(cwd)
    return failed


def test_wrong_answers_fail_their_checks(monkeypatch):
    monkeypatch.setenv("NRSFM_KIT_SMOKE", "1")
    path = ROOT / "notebooks" / "11_edm_priors.ipynb"
    assert _run_subset_in_process(path, {}) == []
    for gid, (wrong, check) in WRONG_ANSWERS.items():
        assert _run_subset_in_process(path, {gid: wrong}) == [check], gid
