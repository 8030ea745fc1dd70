"""Fixtures of the kernel parity tests: every test taking ``device`` runs on CPU and, when present, CUDA."""

from __future__ import annotations

import pytest

from nrsfm_kit.utils.testing import DEVICES, TOLERANCES


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(params=TOLERANCES, ids=["float64", "float32"])
def dtype_tol(request):
    """(dtype, tolerance) pairs of the parity tests."""
    return request.param
