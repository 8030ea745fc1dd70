"""The nbval recorder (:mod:`nrsfm_kit.course.nbrecord`): a real pytest + nbval run (a child process, a real kernel)
on a tiny notebook writes the executed notebook with every output kind, and a run stopped early is written marked
incomplete. Without ``NRSFM_KIT_RECORD_NOTEBOOKS`` nothing is written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nrsfm_kit.course.nbrecord import ENV_VAR

pytest.importorskip("nbval")


def tiny_notebook(path: Path, failing: bool = False) -> Path:
    cells = [
        new_markdown_cell("# 91 · tiny\n\ntext"),
        new_code_cell('print("STDOUT_MARKER")'),
        new_code_cell('from IPython.display import HTML, display\ndisplay(HTML("<b>HTML_MARKER</b>"))\n6 * 7'),
        new_code_cell('raise ValueError("EXPECTED_ERROR")', metadata={"tags": ["raises-exception"]}),
        new_code_cell("assert False, 'STOP'" if failing else "x = 1"),
        new_code_cell('print("LAST_CELL")'),
    ]
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                      "display_name": "Python 3"}}), path)
    return path


def run_nbval(tmp_path: Path, nb: Path, record: Path | None, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env["NRSFM_KIT_SMOKE"] = "1"
    if record is not None:
        env[ENV_VAR] = str(record)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "nrsfm_kit.course.nbrecord",
           "--nbval-lax", "--nbval-current-env", "--rootdir", str(tmp_path), *extra, str(nb)]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_records_every_output_of_an_nbval_run(tmp_path):
    nb = tiny_notebook(tmp_path / "91_tiny.ipynb")
    proc = run_nbval(tmp_path, nb, tmp_path / "rec")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rec = nbformat.read(tmp_path / "rec" / "91_tiny.ipynb", 4)
    meta = rec.metadata["nrsfm_kit"]
    assert meta["complete"] is True and meta["smoke"] is True and meta["failure"] == ""
    assert meta["cells_run"] == meta["code_cells"] == 5
    code = [c for c in rec.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3, 4, 5]
    assert code[0].outputs[0]["output_type"] == "stream" and "STDOUT_MARKER" in code[0].outputs[0]["text"]
    kinds = [o["output_type"] for o in code[1].outputs]
    assert kinds == ["display_data", "execute_result"], kinds
    assert "HTML_MARKER" in code[1].outputs[0]["data"]["text/html"]
    assert code[1].outputs[1]["data"]["text/plain"] == "42" and code[1].outputs[1]["execution_count"] == 2
    assert code[2].outputs[0]["output_type"] == "error" and code[2].outputs[0]["ename"] == "ValueError"
    assert rec.cells[0].source.startswith("# 91")  # markdown kept
    nbformat.validate(rec)


def test_a_stopped_run_is_written_incomplete_and_nothing_without_the_variable(tmp_path):
    nb = tiny_notebook(tmp_path / "92_stops.ipynb", failing=True)
    proc = run_nbval(tmp_path, nb, tmp_path / "rec", "-x")
    assert proc.returncode == 1, proc.stdout[-3000:]
    rec = nbformat.read(tmp_path / "rec" / "92_stops.ipynb", 4)
    meta = rec.metadata["nrsfm_kit"]
    assert meta["complete"] is False and meta["cells_run"] == 4 and meta["code_cells"] == 5
    assert "stopped early: 4 of 5 code cells ran" in meta["failure"]
    assert all(not c.outputs for c in rec.cells[5:] if c.cell_type == "code")  # the last cell never ran

    proc = run_nbval(tmp_path, tiny_notebook(tmp_path / "93_plain.ipynb"), None)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert not (tmp_path / "rec" / "93_plain.ipynb").exists()
