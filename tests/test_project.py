"""Project-level contracts: layout, notebooks stored stripped and in order, Warp configuration."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_ORDER = [
    "00_tour", "01_geometry_primer", "02_datasets", "03_deformation_graph", "04_differentiable_gauss_newton",
    "05_neural_nonrigid_tracking", "06_deepdeform_matching", "07_nonrigid_fusion", "08_nrsfm_classics",
    "09_deep_nrsfm", "10_pr_rrn", "11_edm_priors", "12_unsupervised_monocular_depth", "13_warp_kernels",
]


def test_layout():
    for name in ["notebooks", "nrsfm_kit", "warp_kernels", "datasets", "tests", "benchmarks", "environment.yml",
                 "pyproject.toml", "Makefile", "README.md", ".ci/run"]:
        assert (ROOT / name).exists(), name
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci/run").read_text()


def _notebooks():
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_notebooks_are_stripped_ordered_and_assert():
    nbs = _notebooks()
    assert nbs, "no notebooks"
    for path in nbs:
        assert path.stem in NOTEBOOK_ORDER, f"{path.name}: not in the notebook map {NOTEBOOK_ORDER}"
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        for c in code:
            assert not c.get("outputs"), f"{path.name}: stored with outputs; strip them"
            assert c.get("execution_count") is None, f"{path.name}: stored with execution counts"
        src = "\n".join("".join(c["source"]) for c in code)
        assert re.search(r"^\s*assert ", src, re.M), f"{path.name}: has no assertion cell"
        assert "import nrsfm_kit" in src or "from nrsfm_kit" in src, f"{path.name}: does not use the package"
        first = "".join(nb["cells"][0]["source"])
        assert first.lstrip().startswith("# "), f"{path.name}: first cell must be a markdown title"


def test_warp_is_configured_once_with_cache_override(tmp_path, monkeypatch):
    import subprocess
    import sys

    code = ("import warp as wp; from nrsfm_kit import warp_setup; warp_setup.init(); warp_setup.init(); "
            "print(wp.config.kernel_cache_dir, wp.config.quiet, warp_setup.default_device())")
    env = {**__import__("os").environ, "WARP_CACHE_PATH": str(tmp_path / "wc")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    cache, quiet, device = out.stdout.split()
    assert cache.startswith(str(tmp_path / "wc")) and quiet == "True" and device in ("cpu", "cuda")
