"""Shared fixtures.

``real_data("nrsfm", "pickup.mat")`` gives the path of a real sample under ``$NRSFM_KIT_DATA``:
the test is skipped when the variable is unset, and FAILS when it is set but the file is missing
(CI sets it, so real-data tests can never be skipped silently there).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("NRSFM_KIT_SMOKE", "1")

# intra-op threads from the CPUs available, shared by the xdist workers (OMP_NUM_THREADS / NRSFM_KIT_THREADS win)
from nrsfm_kit.utils.threads import configure_threads  # noqa: E402

configure_threads(workers=int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


@pytest.fixture
def real_data():
    def get(*parts: str) -> Path:
        root = os.environ.get("NRSFM_KIT_DATA", "").strip()
        if not root:
            pytest.skip("NRSFM_KIT_DATA is not set (real data samples)")
        path = Path(root).joinpath(*parts)
        if not path.exists():
            pytest.fail(f"NRSFM_KIT_DATA is set but {path} is missing")
        return path

    return get


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def cuda_available() -> bool:
    return torch.cuda.is_available()
