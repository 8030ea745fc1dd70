import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from nrsfm_kit.geometry import (
    as_intrinsics,
    backproject,
    depth_to_points,
    intrinsics_matrix,
    pixel_grid,
    project,
    project_jacobian,
    project_with_mask,
)

D = torch.float64
INTR = torch.tensor([500.0, 480.0, 320.0, 240.0], dtype=D)


def _points(n=20):
    p = torch.randn(n, 3, dtype=D)
    p[:, 2] = p[:, 2].abs() + 1.0
    return p


def test_intrinsics_forms_agree():
    K = intrinsics_matrix(INTR)
    K4 = torch.eye(4, dtype=D)
    K4[:3, :3] = K
    for form in [INTR, K, K4, K.numpy(), K.tolist(), [500, 480, 320, 240]]:
        assert torch.allclose(as_intrinsics(form).double(), INTR)
    assert as_intrinsics(torch.stack([K, K])).shape == (2, 4)


def test_project_backproject_roundtrip():
    p = _points()
    uv = project(p, INTR)
    K = intrinsics_matrix(INTR)
    hom = p @ K.T
    assert torch.allclose(uv, hom[:, :2] / hom[:, 2:])
    assert torch.allclose(backproject(uv, p[:, 2], INTR), p)


def test_projection_jacobian_matches_autograd_and_derivation():
    p = _points(5)
    J = project_jacobian(p, INTR)
    for k in range(5):
        Ja = torch.autograd.functional.jacobian(lambda q: project(q, INTR), p[k])
        assert torch.allclose(J[k], Ja)


def test_gradchecks():
    p = _points(4).requires_grad_()
    assert gradcheck(lambda q: project(q, INTR), (p,))
    assert gradcheck(lambda q: project_jacobian(q, INTR), (p,))
    uv = (torch.rand(4, 2, dtype=D) * 100).requires_grad_()
    d = (torch.rand(4, dtype=D) + 0.5).requires_grad_()
    intr = INTR.clone().requires_grad_()
    assert gradcheck(backproject, (uv, d, intr))


def test_depth_image_to_points_masks_invalid():
    depth = torch.rand(2, 6, 8, dtype=D) + 0.5
    depth[0, 1, 2] = 0.0
    depth[1, 3, 4] = float("nan")
    depth[1, 0, 0] = -1.0
    pts, valid = depth_to_points(depth, INTR)
    assert pts.shape == (2, 6, 8, 3) and valid.shape == (2, 6, 8)
    assert int((~valid).sum()) == 3 and torch.isfinite(pts).all()
    assert torch.all(pts[~valid] == 0)
    grid = pixel_grid(6, 8, dtype=D)
    uv = project(pts[valid], INTR)
    assert torch.allclose(uv, grid.expand(2, 6, 8, 2)[valid])
    # per-batch intrinsics
    pts2, _ = depth_to_points(depth, torch.stack([INTR, INTR * 2]))
    assert torch.allclose(pts2[0], pts[0])


def test_project_with_mask_behind_camera_has_zero_grad():
    p = _points(3)
    p[1, 2] = -1.0
    p.requires_grad_()
    uv, valid = project_with_mask(p, INTR)
    assert valid.tolist() == [True, False, True]
    uv.sum().backward()
    assert torch.isfinite(p.grad).all() and torch.all(p.grad[1] == 0)


def test_bad_input():
    with pytest.raises(ValueError, match="points: expected depth z > 0"):
        project(torch.tensor([[0.0, 0.0, -1.0]]), INTR)
    with pytest.raises(ValueError, match=r"intrinsics: expected shape"):
        as_intrinsics(torch.zeros(5))
    with pytest.raises(ValueError, match="focal lengths"):
        as_intrinsics([0.0, 1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="intrinsics: expected finite"):
        as_intrinsics([np.nan, 1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"points: expected shape \(\.\.\., 3\)"):
        project(torch.zeros(3, 2), INTR)
    with pytest.raises(ValueError, match="depth: expected shape"):
        backproject(torch.zeros(4, 2), torch.ones(3), INTR)
    with pytest.raises(ValueError, match="image size"):
        pixel_grid(0, 4)
