"""Small synthetic solver problems shared by the solver tests."""

from __future__ import annotations

import pytest

from nrsfm_kit.solver.synthetic import make_synthetic_tracking


@pytest.fixture(scope="session")
def tiny():
    """6x6 vertices, 9 nodes, 2 frame pairs, float64: small enough for gradcheck through a solve."""
    return make_synthetic_tracking(batch=2, grid=7, node_stride=3, size=0.3, image_size=(48, 64), focal=90.0,
                                   amplitude=0.02, seed=1)


@pytest.fixture(scope="session")
def rigid():
    return make_synthetic_tracking(batch=2, motion="rigid", seed=2)


@pytest.fixture(scope="session")
def nonrigid():
    return make_synthetic_tracking(batch=2, motion="nonrigid", seed=3)


@pytest.fixture(scope="session")
def tiny_rigid():
    """Like ``tiny`` with a rigid motion: zero residual at the optimum (Gauss-Newton Hessian = Hessian)."""
    return make_synthetic_tracking(batch=2, grid=7, node_stride=3, size=0.3, image_size=(48, 64), focal=90.0,
                                   motion="rigid", seed=1)
