"""benchmarks/bench_theseus.py: ours and Theseus agree on the quick problem (in-process, no timing).

Measured on the quick problem (36 nodes, 576 correspondences, float64, 3 GN iterations + the implicit step):
max |dR| 1.4e-11, max |dt| 8.9e-14 m for both Theseus models; relative dL/dw difference 4.0e-4 with Theseus'
stock implicit step (it detaches J^T J, ours differentiates through it: the two differ by a term proportional
to J^T r at the last iterate) and 1.7e-10 when J^T J is kept in the graph. Tolerances: 1e-6 on the motions,
2e-3 (5x the measured) on the stock gradient, 1e-7 on the kept-J^T J gradient.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("theseus")
# theseus 0.2.3 calls np.array(tensor, copy=False) internally (NumPy 2 deprecation, not ours)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_theseus.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_theseus", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_theseus", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("model", ["single", "per_node"])
def test_theseus_matches_ours_float64(bench, model):
    stock = bench.agreement(quick=True, dtype=torch.float64, model=model)
    assert stock["N"] == 36 and stock["P"] == 576
    assert stock["max_dR"] < 1e-6 and stock["max_dt"] < 1e-6, stock
    assert stock["grad_rel"] < 2e-3, stock  # Theseus detaches J^T J in its implicit step
    kept = bench.agreement(quick=True, dtype=torch.float64, model=model, keep_hessian=True)
    assert kept["max_dR"] < 1e-6 and kept["max_dt"] < 1e-6, kept
    assert kept["grad_rel"] < 1e-7, kept  # then the backward is exactly ours


def test_theseus_matches_ours_float32(bench):
    a = bench.agreement(quick=True, dtype=torch.float32, model="single")
    assert a["max_dR"] < 1e-5 and a["max_dt"] < 1e-5, a  # measured 4.5e-7, 3.6e-8
    assert a["grad_rel"] < 2e-3, a  # measured 4.2e-4


def test_sparse_probe_reports_instead_of_failing(bench):
    out = bench.probe_sparse()
    assert set(out) == set(bench.SPARSE_SOLVERS)
    assert all(v is None or isinstance(v, str) for v in out.values())
