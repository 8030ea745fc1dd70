import math

import pytest
import torch
from scipy.spatial.transform import Rotation
from torch.autograd import gradcheck

from nrsfm_kit.geometry import delta_rotation_update, hat, random_rotation, so3_exp, so3_log, vee

D = torch.float64


def test_hat_vee_roundtrip_and_cross_product():
    w, x = torch.randn(6, 3, dtype=D), torch.randn(6, 3, dtype=D)
    assert torch.allclose(vee(hat(w)), w)
    assert torch.allclose((hat(w) @ x[..., None]).squeeze(-1), torch.linalg.cross(w, x, dim=-1))


def test_exp_matches_scipy_and_is_rotation():
    w = torch.randn(50, 3, dtype=D) * 1.5
    R = so3_exp(w)
    ref = torch.from_numpy(Rotation.from_rotvec(w.numpy()).as_matrix())
    assert torch.allclose(R, ref, atol=1e-12)
    assert torch.allclose(R @ R.mT, torch.eye(3, dtype=D).expand_as(R), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(50, dtype=D))


def test_log_inverts_exp_on_all_angle_ranges():
    axes = torch.nn.functional.normalize(torch.randn(40, 3, dtype=D), dim=-1)
    angles = torch.cat([torch.tensor([0.0, 1e-9, 1e-5, 1e-3], dtype=D), torch.linspace(0.1, math.pi - 1e-7, 36, dtype=D)])
    w = axes * angles[:, None]
    w2 = so3_log(so3_exp(w))
    assert torch.allclose(w2, w, atol=1e-7)


def test_log_at_pi_gives_a_valid_rotation_vector():
    axes = torch.nn.functional.normalize(torch.randn(10, 3, dtype=D), dim=-1)
    R = so3_exp(axes * math.pi)
    w = so3_log(R)
    assert torch.allclose(w.norm(dim=-1), torch.full((10,), math.pi, dtype=D), atol=1e-9)
    assert torch.allclose(so3_exp(w), R, atol=1e-9)


def test_gradcheck_exp_and_log_generic():
    w = (torch.randn(4, 3, dtype=D) * 0.8).requires_grad_()
    assert gradcheck(so3_exp, (w,))
    R = so3_exp(torch.randn(4, 3, dtype=D)).requires_grad_()
    assert gradcheck(so3_log, (R,))


def test_exp_gradient_finite_and_exact_at_zero():
    w = torch.zeros(2, 3, dtype=D, requires_grad=True)
    assert gradcheck(so3_exp, (w,))
    # d exp(w) / dw at 0 is hat(e_k)
    J = torch.autograd.functional.jacobian(lambda v: so3_exp(v), torch.zeros(3, dtype=D))
    for k in range(3):
        e = torch.zeros(3, dtype=D)
        e[k] = 1
        assert torch.allclose(J[..., k], hat(e))


def test_log_gradients_finite_at_identity_and_pi():
    for R in [torch.eye(3, dtype=D), so3_exp(torch.tensor([0.0, 0.0, math.pi], dtype=D))]:
        R = R.clone().requires_grad_()
        so3_log(R).sum().backward()
        assert torch.isfinite(R.grad).all()
    R = torch.eye(3, dtype=D).requires_grad_()
    assert gradcheck(so3_log, (R,))
    w = torch.tensor([[0.0, 0.0, math.pi - 1e-3]], dtype=D)
    assert gradcheck(so3_log, (so3_exp(w).requires_grad_(),))


def test_delta_rotation_update_and_random_rotation():
    R = random_rotation(8, generator=torch.Generator().manual_seed(1), dtype=D)
    assert torch.allclose(R @ R.mT, torch.eye(3, dtype=D).expand_as(R), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(8, dtype=D))
    eps = torch.randn(8, 3, dtype=D) * 1e-2
    assert torch.allclose(delta_rotation_update(eps, R), so3_exp(eps) @ R)
    # first order: exp(eps^) R ~ (I + eps^) R
    assert torch.allclose(delta_rotation_update(eps, R), (torch.eye(3, dtype=D) + hat(eps)) @ R, atol=1e-3)


def test_bad_input():
    with pytest.raises(ValueError, match=r"w: expected shape \(\.\.\., 3\), found \(4, 2\)"):
        so3_exp(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="R: expected finite values"):
        so3_log(torch.full((3, 3), float("nan")))
    with pytest.raises(ValueError, match="n: expected >= 0"):
        random_rotation(-1)
