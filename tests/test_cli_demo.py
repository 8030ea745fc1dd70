import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nrsfm_kit.cli import build_parser, main
from nrsfm_kit.demo import DemoSection, discover_sections


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and "nrsfm-kit" in capsys.readouterr().out
    assert "demo" in build_parser().format_help()


def test_demo_geometry_section_writes_offline_page(tmp_path, capsys):
    rc = main(["demo", "--smoke", "--section", "s10_geometry", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "pinhole round-trip" in out
    # one status per row and the unit beside the value, the section's time in its header
    assert re.search(r"met +pinhole round-trip max error +[0-9.e+-]+ m +target < 1e-12", out), out
    assert re.search(r"== Geometry core \([0-9.]+ s; 4 met\)", out) and "[1/1] Geometry core: " in out
    page = (tmp_path / "index.html").read_text()
    assert "Plotly" in page and "Geometry core" in page and "<script src=" not in page  # offline
    assert "<th>status</th>" in page and "<th>unit</th>" in page and "class='st met'>met<" in page
    assert "data-section='s10_geometry' data-index='0'" in page
    # the Procrustes figure shows the target beside the aligned copy
    from nrsfm_kit.demo.sections import s10_geometry

    fig = s10_geometry.run(smoke=True).figures[0]
    names = [t.name for t in fig.data]
    assert any(n.startswith("target") for n in names) and any("after similarity Procrustes" in n for n in names)
    assert fig.layout.scene.aspectmode == fig.layout.scene2.aspectmode == "data"


def test_demo_unknown_section_is_a_clean_error(tmp_path, capsys):
    rc = main(["demo", "--section", "nope", "--out", str(tmp_path)])
    assert rc == 2 and "section: expected one of" in capsys.readouterr().err


def test_every_section_module_is_well_formed():
    mods = discover_sections()
    assert mods and all(isinstance(m.TITLE, str) and isinstance(m.ORDER, int) for m in mods)
    orders = [m.ORDER for m in mods]
    assert len(set(orders)) == len(orders), "demo sections need distinct ORDER values"


def test_section_add_marks_failures():
    sec = DemoSection("x")
    sec.add("a", 0.5, "< 1", ok=True, unit="m")
    assert sec.passed and sec.results[-1].status == "met"
    sec.add("b", 2.0, "< 1", ok=False)
    assert not sec.passed and sec.rows[-1] == ("b", "2", "< 1") and sec.results[-1].status == "not met"
    assert sec.rows[0] == ("a (m)", "0.5", "< 1")  # the three-column view keeps the unit in the name


def test_section_rows_have_a_status_and_known_gaps_a_reason_and_a_pointer():
    sec = DemoSection("x")
    info = sec.add("count", 3, unit="count")
    gap = sec.add("AbsRel", 0.18, "< 0.1", ok=False, unit="ratio", gap="demo size: 20 steps",
                  see="benchmarks/RESULTS.md#edm")
    met = sec.add("AbsRel", 0.05, "< 0.1", ok=True, unit="ratio", gap="demo size", see="notebooks/x.ipynb")
    assert (info.status, gap.status, met.status) == ("info", "known gap", "met")
    assert sec.passed, "a known gap does not fail the section"
    assert (gap.reason, gap.see) == ("demo size: 20 steps", "benchmarks/RESULTS.md#edm") and met.reason == ""
    assert sec.counts() == {"met": 1, "not met": 0, "known gap": 1, "info": 1}
    with pytest.raises(ValueError, match="see: expected the notebook or benchmarks/RESULTS.md section"):
        sec.add("y", 1.0, "< 0", ok=False, gap="a reason")
    with pytest.raises(ValueError, match="gap: expected a non-empty one-line reason"):
        sec.add("y", 1.0, "< 0", ok=False, gap="two\nlines", see="benchmarks/RESULTS.md")
    assert [r.value for r in (sec.add("n", float("nan")), sec.add("t", torch.tensor(2.5)))] == ["n/a", "2.5"]


def test_console_table_and_page_show_status_unit_and_gap_pointer():
    from nrsfm_kit.demo import _page, _table

    sec = DemoSection("Depth")
    sec.add("AbsRel, rigid variant", 0.18, "< 0.1", ok=False, unit="ratio", gap="demo size: 20 steps",
            see="benchmarks/RESULTS.md#edm")
    text = _table([("s70_depth", sec, 1.5)])
    assert "known gap  AbsRel, rigid variant" in text and "-> demo size: 20 steps (see benchmarks/RESULTS.md#edm)" in text
    page = _page([("s70_depth", sec, 1.5)], smoke=True)
    assert "class='st known-gap'>known gap<" in page and "demo size: 20 steps" in page
    assert "RESULTS.md#edm" in page and "<section id='s70_depth'" in page


def test_steps_reach_the_runner_and_are_silent_outside_it(monkeypatch):
    import nrsfm_kit.demo as demo

    seen = []
    monkeypatch.setattr(demo, "_reporter", seen.append)
    DemoSection("x").step("fitting")
    demo.step("evaluating")
    assert seen == ["fitting", "evaluating"]
    monkeypatch.setattr(demo, "_reporter", None)
    demo.step("nobody listens")  # no runner: no output, no error


SECTIONS_DIR = Path(__file__).resolve().parents[1] / "nrsfm_kit" / "demo" / "sections"
REPO = Path(__file__).resolve().parents[1]


def test_sections_have_no_raw_issue_wording_and_every_row_a_unit():
    for path in sorted(SECTIONS_DIR.glob("s*.py")):
        text = path.read_text()
        assert "issue:" not in text.lower(), f"{path.name}: raw 'issue:' wording in a result row"
        # every sec.add(...) call names a unit
        for call in re.findall(r"sec\.add\((.*?)\)\n", text, flags=re.S):
            assert "unit=" in call, f"{path.name}: a row without a unit: sec.add({call[:80]}...)"


def test_known_gap_pointers_resolve_to_notebooks_and_results_sections():
    from nrsfm_kit.demo import heading_anchor

    anchors = {heading_anchor(line) for line in (REPO / "benchmarks" / "RESULTS.md").read_text().splitlines()
               if line.startswith("#")}
    pointers = set()
    for path in SECTIONS_DIR.glob("s*.py"):
        pointers |= set(re.findall(r"[\"'](notebooks/[\w.-]+\.ipynb|benchmarks/RESULTS\.md#[\w-]+)[\"']",
                                   path.read_text()))
    assert pointers, "expected the sections to point their known gaps at notebooks / RESULTS.md"
    for p in pointers:
        file, _, anchor = p.partition("#")
        assert (REPO / file).exists(), f"{p}: {file} does not exist"
        if anchor:
            assert anchor in anchors, f"{p}: no heading with anchor {anchor!r} in {file}"
    assert heading_anchor("### Depth targets of issue 7 at teaching size (synthetic non-rigid video)") == \
        "depth-targets-of-issue-7-at-teaching-size-synthetic-non-rigid-video"


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "nrsfm_kit.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo" in out.stdout
    json.dumps({"ok": True})


def test_help_does_not_import_the_topic_packages():
    """`nrsfm-kit --help` builds the parser from the topics' cli.py files without importing torch.

    The topic packages themselves load lazily (PEP 562), so only their ``__init__``, ``cli`` and the torch-free
    helpers they name (the lazy-namespace helper, the NRSfM method registry) may be imported.
    """
    code = ("import sys; from nrsfm_kit.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m in ('torch', 'warp', 'open3d', 'cv2', 'scipy') "
            "or m.startswith('nrsfm_kit.') and not (m.count('.') == 1 or m.endswith('.cli') "
            "or m in ('nrsfm_kit.config', 'nrsfm_kit.utils.lazy', 'nrsfm_kit.nrsfm.registry'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out


def test_cli_method_list_matches_the_package():
    from nrsfm_kit.nrsfm.fit import METHODS

    p = build_parser()
    sub = next(a for a in p._actions if a.dest == "command").choices["nrsfm"]
    fit = next(a for a in sub._actions if a.dest == "nrsfm_command").choices["fit"]
    method = next(a for a in fit._actions if a.dest == "method")
    assert tuple(method.choices) == METHODS


def _options(parser, path=()):
    """(command path, action) of every argument of every subcommand (the track command has its own owner)."""
    import argparse

    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                if name != "track":
                    yield from _options(sp, (*path, name))
        elif a.dest not in ("help", "version"):
            yield path, a


def test_help_is_plain_text_and_every_option_states_its_default():
    p = build_parser()
    first = p.format_help().split("\n\n")[1].splitlines()[0]
    assert first.startswith("nrsfm-kit: non-rigid") and "``" not in p.format_help()
    opts = list(_options(p))
    commands = {" ".join(path) for path, _ in opts}
    assert commands >= {"demo", "data synth", "data info", "graph", "nrsfm fit", "depth fit"}
    for path, a in opts:
        where = f"{' '.join(path)} {a.option_strings or a.dest}"
        assert a.help, f"{where}: no help"
        if a.option_strings and not a.required:
            assert "default" in a.help, f"{where}: the help does not state the default: {a.help!r}"


def test_demo_help_lists_the_sections_without_importing_them():
    from nrsfm_kit.cli import _section_names, demo_sections

    names = [m.__name__.rsplit(".", 1)[-1] for m in discover_sections()]
    assert [n for n, _ in demo_sections()] == names
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["demo"]
    text = sub.format_help()
    assert all(n in text for n in names) and all(m.TITLE in text for m in discover_sections())
    assert _section_names(["geometry", "s60_nrsfm"]) == ["s10_geometry", "s60_nrsfm"]


def test_errors_are_reported_under_the_flag_the_user_typed():
    from nrsfm_kit.cli import flag_names, user_message

    p = build_parser()
    args = p.parse_args(["graph", "--depth", "d.png", "--mask", "m.png", "--intrinsics", "K.txt", "--out", "o"])
    names = flag_names(p, args)
    assert user_message("node_coverage: expected a finite value > 0, found 0", names) == \
        "--node-coverage: expected a finite value > 0, found 0"
    assert user_message("mask: expected at least one object pixel", names) == \
        "--mask m.png: expected at least one object pixel"
    assert user_message("other: unchanged", names) == "other: unchanged"
    args = p.parse_args(["data", "synth", "nrsfm", "s.mat", "--frames", "1"])
    assert user_message("num_frames: expected an integer >= 2, found 1", flag_names(p, args)).startswith("--frames:")


def test_output_checks_refuse_directories_and_files_in_the_way(tmp_path):
    from nrsfm_kit.cli import check_input_file, check_output_dir, check_output_file

    with pytest.raises(ValueError, match="--json: expected a file path to write, found a directory"):
        check_output_file("--json", tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="--json: expected a folder at .*f to write"):
        check_output_file("--json", tmp_path / "f" / "sub" / "m.json")
    with pytest.raises(ValueError, match="--out: expected a folder"):
        check_output_dir("--out", tmp_path / "f")
    assert check_output_dir("--out", tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    with pytest.raises(FileNotFoundError, match="--data: .*nope.mat does not exist"):
        check_input_file("--data", tmp_path / "nope.mat", "a .mat file")


def test_demo_runs_with_one_torch_thread_unless_the_user_chose_a_count():
    from nrsfm_kit.demo import demo_threads, torch_threads

    assert demo_threads({}) == 1
    assert demo_threads({"NRSFM_KIT_THREADS": "3"}) == 3 and demo_threads({"OMP_NUM_THREADS": "2"}) == 2
    assert demo_threads({"NRSFM_KIT_THREADS": "auto", "OMP_NUM_THREADS": "1"}) >= 1
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
