"""pytest plugin: record the notebooks nbval executes, so the book is built without running them a second time.

Active only when ``NRSFM_KIT_RECORD_NOTEBOOKS=DIR`` is set (loaded by the repository's root ``conftest.py``; it does
nothing otherwise). For every notebook nbval runs (``pytest --nbval-lax notebooks/...``), each cell's outputs
(nbval's ``IPyNbCell.test_outputs``: the nbformat output nodes it collected from the kernel, the error output of a
cell that raised included) are kept, and when the notebook's last cell has run the executed notebook is written
atomically to ``DIR/<name>.ipynb`` (markdown cells and metadata from the source notebook, ``execution_count`` per
code cell). A notebook that stopped early (``-x``, Ctrl-C, a crash) is written at the end of the session with what
was recorded, ``metadata.nrsfm_kit.complete = false``. Works under pytest-xdist with ``--dist loadfile`` (each
notebook runs whole on one worker, which writes it).

nbval ignores ``clear_output`` and ``update_display_data`` messages; so does the record (the book post-processing
drops progress-bar widgets and keeps the last text of ``\\r``-rewritten stream lines).
"""

from __future__ import annotations

import copy
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

ENV_VAR = "NRSFM_KIT_RECORD_NOTEBOOKS"


class NotebookRecorder:
    """Collects the outputs of nbval's cells per notebook and writes each executed notebook once."""

    def __init__(self, out_dir: str | Path):
        self.out = Path(out_dir)
        self.pending: dict[str, dict] = {}  # notebook path -> {"nb", "outputs": {cell_num: [...]}, "cells": n}
        self.written: list[Path] = []

    @staticmethod
    def is_nbval_cell(item) -> bool:
        return hasattr(item, "cell") and hasattr(item, "cell_num") and hasattr(item.parent, "nb")

    def record(self, item) -> None:
        key = str(item.path)
        entry = self.pending.get(key)
        if entry is None:
            nb = item.parent.nb
            entry = {"nb": nb, "outputs": {}, "errors": [],
                     "cells": sum(1 for c in nb.cells if c.cell_type == "code"), "stem": Path(key).stem}
            self.pending[key] = entry
        outs = item.test_outputs
        if outs is None:  # skipped (NBVAL_SKIP) or failed before executing
            return
        from nbval.plugin import coalesce_streams

        outs = coalesce_streams([copy.deepcopy(o) for o in outs])
        for o in outs:
            if o.get("output_type") == "error":
                o.setdefault("ename", "Error")
                o.setdefault("evalue", "")
                o.setdefault("traceback", [])
            elif o.get("output_type") in ("display_data", "execute_result"):
                o.setdefault("metadata", {})
                o.setdefault("data", {})
        entry["outputs"][item.cell_num] = outs

    def finish(self, key: str, complete: bool) -> Path | None:
        """Write the recorded notebook ``key`` (a notebook path) and forget it."""
        import nbformat

        from nrsfm_kit.utils.io import atomic_write_text

        entry = self.pending.pop(key, None)
        if entry is None:
            return None
        nb = copy.deepcopy(entry["nb"])
        k = 0
        count = 0
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            outs = entry["outputs"].get(k)
            cell.outputs = []
            cell.execution_count = None
            if outs is not None:
                count += 1
                cell.execution_count = count
                for o in outs:
                    o = nbformat.from_dict(dict(o))
                    if o.output_type == "execute_result":
                        o["execution_count"] = count
                    cell.outputs.append(o)
            k += 1
        ran = len(entry["outputs"])
        complete = complete and ran == entry["cells"]  # pytest -x stops after the failing cell: nextitem is None
        nb.metadata["nrsfm_kit"] = {
            "executed_by": "nbval (nrsfm_kit.course.nbrecord)",
            "smoke": os.environ.get("NRSFM_KIT_SMOKE", "").strip().lower() in ("1", "true", "yes", "on"),
            "complete": complete,
            "cells_run": ran, "code_cells": entry["cells"],
            "failure": "" if complete else f"stopped early: {ran} of {entry['cells']} code cells ran",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        path = self.out / f"{entry['stem']}.ipynb"
        atomic_write_text(path, nbformat.writes(nb))
        self.written.append(path)
        return path

    # pytest hooks ------------------------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_teardown(self, item, nextitem):
        if not self.is_nbval_cell(item):
            return
        self.record(item)
        if nextitem is None or str(getattr(nextitem, "path", "")) != str(item.path):
            self.finish(str(item.path), complete=True)

    def pytest_sessionfinish(self, session):
        for key in list(self.pending):
            self.finish(key, complete=False)


def pytest_configure(config):
    out = os.environ.get(ENV_VAR, "").strip()
    if not out:
        return
    config.pluginmanager.register(NotebookRecorder(out), "nrsfm_kit_nbrecord")
