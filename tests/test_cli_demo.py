import json
import subprocess
import sys

import pytest

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
    page = (tmp_path / "index.html").read_text()
    assert "Plotly" in page and "Geometry core" in page and "<script src=" not in page  # offline


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
    sec.add("a", 0.5, "< 1", ok=True)
    assert sec.passed
    sec.add("b", 2.0, "< 1", ok=False)
    assert not sec.passed and sec.rows[-1] == ("b", "2", "< 1")


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
