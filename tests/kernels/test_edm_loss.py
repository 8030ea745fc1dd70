"""Warp EDM pair loss: parity with the torch reference (values and gradients), gradcheck, bad input.

Devices, parity and gradchecks come from the shared helpers (``device`` / ``dtype_tol`` fixtures of
``tests/kernels/conftest.py``, :mod:`nrsfm_kit.utils.testing`).
"""

from __future__ import annotations

from functools import partial

import pytest
import torch

from nrsfm_kit.kernels.edm_loss import edm_pair_loss, edm_pair_loss_reference, edm_pair_terms_reference
from nrsfm_kit.utils.testing import DEVICES, assert_parity, gradcheck64, parity

# the loss agrees with its reference to round-off: held tighter than the shared TOLERANCES floor
# (tol x (1 + max |reference|) stays below the 1e-5 (float32) / 1e-12 (float64) used so far)
STRICT = {torch.float32: 5e-6, torch.float64: 5e-13}


def _tol(dtype_tol) -> tuple[torch.dtype, float]:
    dtype, tol = dtype_tol
    return dtype, min(tol, STRICT[dtype])


def _inputs(n=24, S=60, dtype=torch.float64, device="cpu", seed=0):
    """(xk (n, 3), xl (n, 3), embeddings m (n, 3), i (S,), j (S,)) on ``device``."""
    g = torch.Generator().manual_seed(seed)
    xk = torch.randn(n, 3, generator=g, dtype=dtype)
    xl = xk + 0.3 * torch.randn(n, 3, generator=g, dtype=dtype)
    m = torch.rand(n, 3, generator=g, dtype=dtype)
    i = torch.randint(0, n, (S,), generator=g)
    j = torch.randint(0, n, (S,), generator=g)
    return tuple(x.to(device) for x in (xk, xl, m, i, j))


def _check_parity(fn, ref, args, grad_args, tol):
    """Values and gradients agree, and the reference gradients are not trivially zero."""
    assert_parity(fn, ref, args, grad_args, tol=tol)
    _, (_, grads) = parity(fn, ref, args, grad_args)
    for k, g in zip(grad_args, grads, strict=True):
        assert float(g.abs().max()) > 0, f"gradient of input {k} is zero"


@pytest.mark.parametrize("use_emb,tau,beta", [(False, 0.0, 0.0), (True, 0.0, 0.1), (True, 0.5, 0.0), (True, -0.4, 0.2)])
def test_parity_values_and_gradients(device, dtype_tol, use_emb, tau, beta):
    dtype, tol = _tol(dtype_tol)
    xk, xl, m, i, j = _inputs(dtype=dtype, device=device)
    args = [xk, xl, i, j] + ([m] if use_emb else [])
    grads = [0, 1] + ([4] if use_emb else [])
    kw = dict(tau=tau, beta=beta)
    _check_parity(partial(edm_pair_loss, **kw), partial(edm_pair_loss_reference, **kw), args, grads, tol)


def test_gradcheck_warp_float64(device):
    xk, xl, m, i, j = _inputs(n=10, S=30, device=device)
    assert gradcheck64(partial(edm_pair_loss, tau=-0.2, beta=0.1), [xk, xl, i, j, m], [0, 1, 4])
    assert gradcheck64(edm_pair_loss, [xk, xl, i, j], [0, 1])


def test_parity_median_normalization(device, dtype_tol):
    dtype, tol = _tol(dtype_tol)
    xk, xl, m, i, j = _inputs(S=61, dtype=dtype, device=device)
    keep = i != j
    kw = dict(tau=-0.2, beta=0.1, normalization="median")
    args = [xk, xl, i[keep], j[keep], m]
    _check_parity(partial(edm_pair_loss, **kw), partial(edm_pair_loss_reference, **kw), args, [0, 1, 4], tol)


def test_gradcheck_median_float64(device):
    xk, xl, m, i, j = _inputs(n=10, S=31, device=device)
    keep = i != j
    kw = dict(tau=-0.2, beta=0.1, normalization="median")
    assert gradcheck64(partial(edm_pair_loss, **kw), [xk, xl, i[keep], j[keep], m], [0, 1, 4])


def test_median_is_robust_to_a_few_far_points():
    """The degenerate minimum of the mean normalisation: a few far points make every other distance vanish
    (the median and the log normalisation do not have it)."""
    g = torch.Generator().manual_seed(3)
    n = 200
    xk = torch.randn(n, 3, generator=g, dtype=torch.float64)
    xl = xk + 0.3 * torch.randn(n, 3, generator=g, dtype=torch.float64)  # non-rigid change everywhere
    i, j = torch.randint(0, n, (4000,), generator=g), torch.randint(0, n, (4000,), generator=g)
    i, j = i[i != j], j[i != j]  # (the log of a zero distance is refused)
    far = torch.zeros(n, 1, dtype=torch.float64)
    far[:4] = 1.0
    shrink = lambda x: 0.01 * x * (1 - far) + far * (x + torch.tensor([0.0, 0.0, 50.0], dtype=torch.float64))
    for norm in ("mean", "median", "log"):
        honest = float(edm_pair_loss(xk, xl, i, j, normalization=norm))
        degenerate = float(edm_pair_loss(shrink(xk), shrink(xl), i, j, normalization=norm))
        if norm == "mean":
            assert degenerate < 0.1 * honest, (norm, degenerate, honest)  # collapses
        else:  # the median ignores the far points; with the log only their own 4 % of pairs change
            assert degenerate > 0.9 * honest, (norm, degenerate, honest)


@pytest.mark.parametrize("normalization,trim", [("log", 0.0), ("log", 0.25), ("mean", 0.25), ("median", 0.3)])
def test_parity_log_normalization_and_trim(device, dtype_tol, normalization, trim):
    dtype, tol = _tol(dtype_tol)
    xk, xl, m, i, j = _inputs(S=61, dtype=dtype, device=device)
    keep = i != j  # the log of a zero distance is refused
    kw = dict(tau=-0.2, beta=0.1, normalization=normalization, trim=trim)
    args = [xk, xl, i[keep], j[keep], m]
    _check_parity(partial(edm_pair_loss, **kw), partial(edm_pair_loss_reference, **kw), args, [0, 1, 4], tol)
    # rigid prior (no embeddings) too
    kw = dict(normalization=normalization, trim=trim)
    _check_parity(partial(edm_pair_loss, **kw), partial(edm_pair_loss_reference, **kw), args[:4], [0, 1], tol)


@pytest.mark.parametrize("normalization,trim", [("log", 0.0), ("log", 0.2), ("mean", 0.2)])
def test_gradcheck_log_and_trim_float64(device, normalization, trim):
    xk, xl, m, i, j = _inputs(n=10, S=31, device=device)
    keep = i != j
    kw = dict(tau=-0.2, beta=0.1, normalization=normalization, trim=trim)
    assert gradcheck64(partial(edm_pair_loss, **kw), [xk, xl, i[keep], j[keep], m], [0, 1, 4])
    assert gradcheck64(partial(edm_pair_loss_reference, **kw), [xk, xl, i[keep], j[keep], m], [0, 1, 4])


def test_log_normalization_is_scale_invariant_per_view():
    xk, xl, _, i, j = _inputs(n=30, S=200)
    keep = i != j
    i, j = i[keep], j[keep]
    base = float(edm_pair_loss(xk, xl, i, j, normalization="log"))
    assert base > 1e-3
    assert abs(float(edm_pair_loss(3.0 * xk, 0.2 * xl, i, j, normalization="log")) - base) < 1e-12
    assert float(edm_pair_loss(xk, 2.0 * xk, i, j, normalization="log")) < 1e-12


def test_trim_ignores_the_pairs_of_an_independent_mover():
    """A rigid scene plus one point moving on its own: its pairs are the outliers the trim drops."""
    g = torch.Generator().manual_seed(5)
    n = 40
    xk = torch.randn(n, 3, generator=g, dtype=torch.float64)
    xl = xk.clone()
    xl[0] += torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)  # the mover
    ii, jj = torch.triu_indices(n, n, 1)
    full = float(edm_pair_loss(xk, xl, ii, jj, normalization="log"))
    frac = float(((ii == 0) | (jj == 0)).double().mean())  # the mover's share of the pairs
    trimmed = float(edm_pair_loss(xk, xl, ii, jj, normalization="log", trim=frac))
    assert full > 1e-2 and trimmed < 1e-12, (full, trimmed)
    # too little trimming keeps some of the mover's pairs
    assert float(edm_pair_loss(xk, xl, ii, jj, normalization="log", trim=frac / 2)) > 1e-3


def test_log_and_trim_bad_input():
    xk, xl, _, i, j = _inputs()
    for bad in (1.0, -0.1, float("nan"), "0.2"):
        with pytest.raises(ValueError, match="trim"):
            edm_pair_loss(xk, xl, i, j, trim=bad)
        with pytest.raises(ValueError, match="trim"):
            edm_pair_loss_reference(xk, xl, i, j, trim=bad)
    same = torch.zeros_like(i)  # pairs (0, 0): zero distances
    for fn in (edm_pair_loss, edm_pair_loss_reference):
        with pytest.raises(ValueError, match="non-zero distances"):
            fn(xk, xl, same, same, normalization="log")


def test_gradcheck_reference_float64():
    xk, xl, m, i, j = _inputs(n=10, S=30)
    assert gradcheck64(partial(edm_pair_loss_reference, tau=0.3, beta=0.1), [xk, xl, i, j, m], [0, 1, 4])


def test_rigid_motion_gives_zero_loss_and_scale_invariance():
    xk, _, _, i, j = _inputs(n=30, S=200)
    R = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    xl = 2.5 * xk @ R.T + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
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


def test_int32_indices_accepted():
    xk, xl, m, i, j = _inputs()
    for norm in ("mean", "median"):
        a = edm_pair_loss(xk, xl, i.int(), j.int(), m, tau=-0.2, normalization=norm)
        assert torch.equal(a, edm_pair_loss(xk, xl, i, j, m, tau=-0.2, normalization=norm))


def test_double_backward_is_refused_by_warp_but_available_in_the_reference():
    xk, xl, _, i, j = _inputs(n=10, S=30)
    x = xk.clone().requires_grad_(True)
    g = torch.autograd.grad(edm_pair_loss_reference(x, xl, i, j), x, create_graph=True)[0]
    assert g.requires_grad  # the reference supports higher-order derivatives
    g2 = torch.autograd.grad(edm_pair_loss(x, xl, i, j), x, create_graph=True)[0]
    with pytest.raises(RuntimeError):  # first-order only (once_differentiable): no silent zero
        torch.autograd.grad(g2.sum(), x)


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
    with pytest.raises(ValueError, match=r"i: expected indices in \[0, 24\), found range \[100, "):
        edm_pair_loss(xk, xl, i + 100, j)
    with pytest.raises(ValueError, match=r"j: expected indices in \[0, 24\), found range \[-1, "):
        edm_pair_loss(xk, xl, i, j - 1)  # pairs have no -1 padding
    with pytest.raises(ValueError, match=r"j: expected indices in \[0, 24\)"):
        edm_pair_loss_reference(xk, xl, i, j + 100)  # the reference validates the same way
    with pytest.raises(ValueError, match=r"i: expected an integer tensor"):
        edm_pair_loss(xk, xl, i.float(), j)
    with pytest.raises(ValueError, match=r"i: expected shape \(S\)"):
        edm_pair_loss(xk, xl, i.reshape(6, 10), j)
    with pytest.raises(ValueError, match=r"j: expected shape"):
        edm_pair_loss(xk, xl, i, j[:3])
    with pytest.raises(ValueError, match=r"0 valid pairs"):
        edm_pair_loss(xk, xl, i[:0], j[:0])
    bad = xk.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"xk: expected finite values"):
        edm_pair_loss(bad, xl, i, j)
    with pytest.raises(ValueError, match=r"xk: expected dtype float32 or float64"):
        edm_pair_loss(xk.half(), xl.half(), i, j)
    with pytest.raises(ValueError, match=r"tau: expected"):
        edm_pair_loss(xk, xl, i, j, m, tau=-1.0)
    with pytest.raises(ValueError, match=r"beta, eps: expected"):
        edm_pair_loss(xk, xl, i, j, m, beta=-0.1)
    with pytest.raises(ValueError, match=r"non-zero distances"):
        edm_pair_loss(xk, xl, i, i)
    with pytest.raises(ValueError, match=r"normalization: expected one of"):
        edm_pair_loss(xk, xl, i, j, normalization="max")


@pytest.mark.skipif("cuda" not in DEVICES, reason="no CUDA device")
def test_indices_on_another_device_are_refused():
    xk, xl, _, i, j = _inputs(device="cuda")
    with pytest.raises(ValueError, match=r"i, j: expected device cuda"):
        edm_pair_loss(xk, xl, i.cpu(), j.cpu())
