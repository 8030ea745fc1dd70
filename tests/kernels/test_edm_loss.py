"""Warp EDM pair loss: parity with the torch reference (values and gradients), gradcheck, bad input."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.kernels.edm_loss import edm_pair_loss, edm_pair_loss_reference, edm_pair_terms_reference

# the scalar checks below read losses that carry autograd history on purpose
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True:UserWarning")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _inputs(n=24, S=60, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    xk = torch.randn(n, 3, generator=g, dtype=dtype).to(device).requires_grad_()
    xl = (xk.detach() + 0.3 * torch.randn(n, 3, generator=g, dtype=dtype).to(device)).requires_grad_()
    m = torch.rand(n, 3, generator=g, dtype=dtype).to(device).requires_grad_()
    i = torch.randint(0, n, (S,), generator=g).to(device)
    j = torch.randint(0, n, (S,), generator=g).to(device)
    return xk, xl, m, i, j


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("use_emb,tau,beta", [(False, 0.0, 0.0), (True, 0.0, 0.1), (True, 0.5, 0.0), (True, -0.4, 0.2)])
def test_parity_values_and_gradients(device, dtype, use_emb, tau, beta):
    xk, xl, m, i, j = _inputs(dtype=dtype, device=device)
    emb = m if use_emb else None
    ins = [xk, xl] + ([m] if use_emb else [])
    a = edm_pair_loss(xk, xl, i, j, emb, tau=tau, beta=beta)
    b = edm_pair_loss_reference(xk, xl, i, j, emb, tau=tau, beta=beta)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert abs(float(a.detach()) - float(b.detach())) <= tol * max(1.0, abs(float(b.detach())))
    ga = torch.autograd.grad(a, ins)
    gb = torch.autograd.grad(b, ins)
    for x, y in zip(ga, gb, strict=True):
        assert torch.allclose(x, y, atol=tol, rtol=1e-4 if dtype == torch.float32 else 1e-9)
        assert float(y.abs().max()) > 0  # the gradients are not trivially zero


def test_gradcheck_warp_float64():
    xk, xl, m, i, j = _inputs(n=10, S=30)
    assert torch.autograd.gradcheck(lambda a, b, c: edm_pair_loss(a, b, i, j, c, tau=-0.2, beta=0.1), (xk, xl, m))
    assert torch.autograd.gradcheck(lambda a, b: edm_pair_loss(a, b, i, j), (xk, xl))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_median_normalization(device, dtype):
    xk, xl, m, i, j = _inputs(S=61, dtype=dtype, device=device)
    keep = i != j
    i, j = i[keep], j[keep]
    a = edm_pair_loss(xk, xl, i, j, m, tau=-0.2, beta=0.1, normalization="median")
    b = edm_pair_loss_reference(xk, xl, i, j, m, tau=-0.2, beta=0.1, normalization="median")
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert abs(float(a.detach()) - float(b.detach())) <= tol * max(1.0, abs(float(b.detach())))
    for x, y in zip(torch.autograd.grad(a, [xk, xl, m]), torch.autograd.grad(b, [xk, xl, m]), strict=True):
        assert torch.allclose(x, y, atol=tol, rtol=1e-4 if dtype == torch.float32 else 1e-9)


def test_gradcheck_median_float64():
    xk, xl, m, i, j = _inputs(n=10, S=31)
    keep = i != j
    i, j = i[keep], j[keep]
    assert torch.autograd.gradcheck(
        lambda a, b, c: edm_pair_loss(a, b, i, j, c, tau=-0.2, beta=0.1, normalization="median"), (xk, xl, m)
    )


def test_median_is_robust_to_a_few_far_points():
    """The degenerate minimum of the mean normalisation: a few far points make every other distance vanish."""
    g = torch.Generator().manual_seed(3)
    n = 200
    xk = torch.randn(n, 3, generator=g, dtype=torch.float64)
    xl = xk + 0.3 * torch.randn(n, 3, generator=g, dtype=torch.float64)  # non-rigid change everywhere
    i, j = torch.randint(0, n, (4000,), generator=g), torch.randint(0, n, (4000,), generator=g)
    far = torch.zeros(n, 1, dtype=torch.float64)
    far[:4] = 1.0
    shrink = lambda x: 0.01 * x * (1 - far) + far * (x + torch.tensor([0.0, 0.0, 50.0], dtype=torch.float64))
    for norm, better in (("mean", True), ("median", False)):
        honest = float(edm_pair_loss(xk, xl, i, j, normalization=norm))
        degenerate = float(edm_pair_loss(shrink(xk), shrink(xl), i, j, normalization=norm))
        assert (degenerate < honest) == better, (norm, degenerate, honest)


def test_gradcheck_reference_float64():
    xk, xl, m, i, j = _inputs(n=10, S=30)
    assert torch.autograd.gradcheck(
        lambda a, b, c: edm_pair_loss_reference(a, b, i, j, c, tau=0.3, beta=0.1), (xk, xl, m)
    )


def test_rigid_motion_gives_zero_loss_and_scale_invariance():
    xk, _, _, i, j = _inputs(n=30, S=200)
    R = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    xl = 2.5 * xk.detach() @ R.T + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    assert float(edm_pair_loss(xk, xl, i, j)) < 1e-12  # distances preserved up to the per-set scale
    xl2 = xl.clone()
    xl2[:5] += 1.0  # a non-rigid change is penalised
    assert float(edm_pair_loss(xk, xl2, i, j)) > 1e-3


def test_weights_definition():
    xk, xl, m, i, j = _inputs()
    _, w = edm_pair_terms_reference(xk, xl, i, j, m, tau=0.0)
    rho = (m[i] - m[j]).norm(dim=-1)
    assert torch.allclose(w, 1 - torch.tanh(rho))
    _, w2 = edm_pair_terms_reference(xk, xl, i, j, m, tau=-0.5)
    assert float(w2.min()) >= 0 and float(w2.max()) <= 1
    assert torch.allclose(w2, ((1 - torch.tanh(rho) - 0.5) / 0.5).clamp(0, 1))


def test_memory_is_linear_in_pairs():
    # 20k points and 50k pairs: an n x n matrix would be 3.2 GB in float64; the loss only touches O(n + S)
    n, S = 20000, 50000
    xk = torch.randn(n, 3, dtype=torch.float64, requires_grad=True)
    xl = torch.randn(n, 3, dtype=torch.float64, requires_grad=True)
    i, j = torch.randint(0, n, (S,)), torch.randint(0, n, (S,))
    loss = edm_pair_loss(xk, xl, i, j)
    loss.backward()
    assert torch.isfinite(xk.grad).all() and float(xk.grad.abs().sum()) > 0


def test_bad_inputs():
    xk, xl, m, i, j = _inputs()
    with pytest.raises(ValueError, match=r"xl: expected shape"):
        edm_pair_loss(xk, xl[:5], i, j)
    with pytest.raises(ValueError, match=r"emb: expected shape"):
        edm_pair_loss(xk, xl, i, j, m[:, :2])
    with pytest.raises(ValueError, match=r"i: expected indices in \[0, 24\)"):
        edm_pair_loss(xk, xl, i + 100, j)
    with pytest.raises(ValueError, match=r"j: expected shape"):
        edm_pair_loss(xk, xl, i, j[:3])
    with pytest.raises(ValueError, match=r"0 valid pairs"):
        edm_pair_loss(xk, xl, i[:0], j[:0])
    bad = xk.detach().clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"xk: expected finite values"):
        edm_pair_loss(bad, xl, i, j)
    with pytest.raises(ValueError, match=r"tau: expected"):
        edm_pair_loss(xk, xl, i, j, m, tau=-1.0)
    with pytest.raises(ValueError, match=r"non-zero distances"):
        edm_pair_loss(xk, xl, i, i)
    with pytest.raises(ValueError, match=r"normalization: expected one of"):
        edm_pair_loss(xk, xl, i, j, normalization="max")
