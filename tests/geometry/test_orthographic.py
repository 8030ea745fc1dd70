import pytest
import torch
from torch.autograd import gradcheck

from nrsfm_kit.geometry import (
    matrix_to_rotation_6d,
    orthographic_project,
    orthonormalize,
    random_rotation,
    rotation_6d_to_matrix,
)

D = torch.float64


def test_orthonormalize_equals_svd_polar_factor():
    M = torch.randn(10, 2, 3, dtype=D)
    U, _, Vh = torch.linalg.svd(M, full_matrices=False)
    ref = U @ Vh
    out = orthonormalize(M)
    assert torch.allclose(out, ref, atol=1e-10)
    assert torch.allclose(out @ out.mT, torch.eye(2, dtype=D).expand(10, 2, 2), atol=1e-12)


def test_orthonormalize_is_identity_on_cameras_with_stable_gradient():
    M = random_rotation(3, dtype=D)[:, :2, :].clone().requires_grad_()
    assert torch.allclose(orthonormalize(M), M)
    # equal singular values: the SVD backward is singular here, the closed form is not
    assert gradcheck(orthonormalize, (M,))
    assert gradcheck(orthonormalize, (torch.randn(3, 2, 3, dtype=D).requires_grad_(),))


def test_6d_roundtrip_and_gradcheck():
    R = random_rotation(5, dtype=D)
    assert torch.allclose(rotation_6d_to_matrix(matrix_to_rotation_6d(R)), R, atol=1e-12)
    x = torch.randn(5, 6, dtype=D)
    Rx = rotation_6d_to_matrix(x)
    assert torch.allclose(Rx @ Rx.mT, torch.eye(3, dtype=D).expand(5, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(Rx), torch.ones(5, dtype=D))
    assert gradcheck(rotation_6d_to_matrix, (x.requires_grad_(),))


def test_orthographic_projection():
    R = random_rotation(4, dtype=D)
    S = torch.randn(4, 7, 3, dtype=D)
    W = orthographic_project(S, R[:, :2])
    assert torch.allclose(W, (S @ R.mT)[..., :2])
    assert gradcheck(orthographic_project, (S.requires_grad_(), R[:, :2].clone().requires_grad_()))


def test_bad_input():
    with pytest.raises(ValueError, match="rank 2"):
        orthonormalize(torch.tensor([[1.0, 0, 0], [2.0, 0, 0]]))
    with pytest.raises(ValueError, match=r"M: expected shape \(\.\.\., 2, 3\), found \(3, 3\)"):
        orthonormalize(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="non-parallel"):
        rotation_6d_to_matrix(torch.tensor([1.0, 0, 0, 2.0, 0, 0]))
    with pytest.raises(ValueError, match="non-zero"):
        rotation_6d_to_matrix(torch.zeros(6))
