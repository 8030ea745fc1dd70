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
