"""msr (PR-RRN eq. 9): closed form from the 4x4 Gram matrix vs the SVD of the 4 x P matrix."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.geometry import random_rotation
from nrsfm_kit.nrsfm.msr import common_counts, msr, msr_gram_pairwise, msr_pairwise, msr_svd


def _views(n, P=20, seed=0, rigid=True):
    g = torch.Generator().manual_seed(seed)
    S = torch.randn(P, 3, generator=g, dtype=torch.float64)
    R = random_rotation(n, generator=g, dtype=torch.float64)
    shapes = S.expand(n, P, 3).clone()
    if not rigid:
        shapes = shapes + 0.5 * torch.randn(n, P, 3, generator=g, dtype=torch.float64)
    return shapes @ R[:, :2].transpose(-1, -2) + torch.randn(n, 1, 2, generator=g, dtype=torch.float64)


def test_rigid_pairs_have_zero_msr_nonrigid_positive():
    W = _views(6)
    m = msr_pairwise(W, W)
    assert m.shape == (6, 6)
    assert float(m.max()) < 1e-12
    Wn = _views(6, rigid=False, seed=1)
    mn = msr_pairwise(Wn, Wn)
    off = mn[~torch.eye(6, dtype=torch.bool)]
    assert float(off.min()) > 1e-3
    assert float(mn.max()) <= 0.25 + 1e-12  # smallest of 4 eigenvalues <= trace / 4


def test_closed_form_matches_svd_with_missing_points():
    g = torch.Generator().manual_seed(3)
    Wa, Wb = _views(5, rigid=False, seed=2), _views(7, rigid=False, seed=4)
    va, vb = torch.rand(5, 20, generator=g) > 0.25, torch.rand(7, 20, generator=g) > 0.25
    ref = msr_svd(Wa, Wb, va, vb)
    fast = msr_pairwise(Wa, Wb, va, vb)
    assert torch.allclose(fast, ref, atol=1e-10)
    # matched-pair version agrees with the batch-vs-bank one
    pair = msr(Wa[:, None].expand(5, 7, 20, 2), Wb[None].expand(5, 7, 20, 2), va[:, None].expand(5, 7, 20),
               vb[None].expand(5, 7, 20))
    assert torch.allclose(pair, ref, atol=1e-10)
    assert torch.equal(common_counts(va, vb), (va[:, None] & vb[None]).sum(-1).float())


def test_missing_points_equal_dropping_them():
    Wa, Wb = _views(1, rigid=False, seed=5), _views(1, rigid=False, seed=6)
    vis = torch.ones(1, 20, dtype=torch.bool)
    vis[0, 3:7] = False
    Wa_bad = Wa.clone()
    Wa_bad[0, 3:7] = 1e6  # garbage at missing points must not matter
    keep = vis[0]
    assert torch.allclose(msr_pairwise(Wa_bad, Wb, vis, None), msr_pairwise(Wa[:, keep], Wb[:, keep]), atol=1e-12)


def test_msr_invariances():
    Wa, Wb = _views(3, rigid=False, seed=7), _views(3, rigid=False, seed=8)
    m = msr(Wa, Wb)
    a = torch.tensor(0.7, dtype=torch.float64)
    Q = torch.stack([torch.stack([a.cos(), -a.sin()]), torch.stack([a.sin(), a.cos()])])
    assert torch.allclose(msr(3.0 * Wa + 1.0, 3.0 * Wb - 2.0), m, atol=1e-12)  # scale and translation
    assert torch.allclose(msr(Wa @ Q.T, Wb), m, atol=1e-12)  # in-plane rotation of one view


def test_gram_is_symmetric_psd():
    G = msr_gram_pairwise(_views(3, rigid=False), _views(4, rigid=False, seed=1))
    assert G.shape == (3, 4, 4, 4)
    assert torch.allclose(G, G.transpose(-1, -2))
    assert float(torch.linalg.eigvalsh(G).min()) > -1e-10


def test_gradcheck_msr():
    Wa, Wb = _views(2, P=6, rigid=False, seed=10), _views(2, P=6, rigid=False, seed=11)
    Wa.requires_grad_(True)
    Wb.requires_grad_(True)
    assert torch.autograd.gradcheck(msr, (Wa, Wb))
    assert torch.autograd.gradcheck(msr_pairwise, (Wa, Wb))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: msr_pairwise(torch.zeros(2, 5, 3), torch.zeros(2, 5, 2)), r"Wa: expected shape \(B, P, 2\)"),
        (lambda: msr_pairwise(torch.zeros(2, 5, 2), torch.zeros(2, 6, 2)), r"Wb: expected shape"),
        (lambda: msr(torch.zeros(3, 5, 2), torch.zeros(2, 5, 2)), r"Wj: expected the shape of Wi"),
        (lambda: msr_pairwise(torch.full((2, 5, 2), float("inf")), torch.zeros(2, 5, 2)), r"Wa: expected finite"),
        (lambda: msr_pairwise(torch.zeros(2, 5, 2), torch.zeros(2, 5, 2), torch.ones(2, 4)), r"vis_a: expected shape"),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()
