import pytest
import torch
from torch.autograd import gradcheck

from nrsfm_kit.geometry import (
    edm,
    edm_from_gram,
    gram,
    gram_from_edm,
    pair_sq_distances,
    procrustes,
    procrustes_align,
    random_rotation,
)

D = torch.float64


def test_similarity_recovered_exactly():
    X = torch.randn(3, 30, 3, dtype=D)
    R = random_rotation(3, dtype=D)
    s = torch.tensor([0.5, 1.0, 2.0], dtype=D)
    t = torch.randn(3, 3, dtype=D)
    Y = s[:, None, None] * X @ R.mT + t[:, None]
    R2, t2, s2 = procrustes(X, Y, scale=True)
    assert torch.allclose(R2, R, atol=1e-10) and torch.allclose(s2, s) and torch.allclose(t2, t)
    assert torch.allclose(procrustes_align(X, Y, scale=True), Y, atol=1e-10)


def test_reflection_only_when_allowed():
    X = torch.randn(25, 3, dtype=D)
    flip = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=D))
    Y = X @ flip  # depth-flipped (mirror) shape
    R, _, _ = procrustes(X, Y)
    assert torch.linalg.det(R) > 0 and (procrustes_align(X, Y) - Y).abs().max() > 1e-3
    R, _, _ = procrustes(X, Y, allow_reflection=True)
    assert torch.linalg.det(R) < 0 and torch.allclose(procrustes_align(X, Y, allow_reflection=True), Y)


def test_weights_ignore_outliers():
    X = torch.randn(20, 3, dtype=D)
    R = random_rotation(1, dtype=D)[0]
    Y = X @ R.T
    Y[0] += 100.0
    w = torch.ones(20, dtype=D)
    w[0] = 0
    R2, _, _ = procrustes(X, Y, weights=w)
    assert torch.allclose(R2, R, atol=1e-10)


def test_gradcheck_procrustes():
    X = torch.randn(2, 6, 3, dtype=D, requires_grad=True)
    Y = torch.randn(2, 6, 3, dtype=D, requires_grad=True)
    assert gradcheck(lambda a, b: procrustes_align(a, b, scale=True), (X, Y))


def test_edm_identities():
    X = torch.randn(2, 9, 3, dtype=D)
    E = edm(X)
    ref = torch.cdist(X, X) ** 2
    assert torch.allclose(E, ref, atol=1e-12)
    assert torch.allclose(edm_from_gram(gram(X)), E)
    Xc = X - X.mean(-2, keepdim=True)
    assert torch.allclose(gram_from_edm(E), gram(Xc), atol=1e-10)
    # an EDM of points in 3D has rank <= 5
    assert int(torch.linalg.matrix_rank(E[0])) <= 5
    i, j = torch.tensor([0, 3, 8]), torch.tensor([1, 3, 2])
    assert torch.allclose(pair_sq_distances(X, i, j), E[:, i, j])


def test_gradcheck_edm():
    X = torch.randn(5, 3, dtype=D, requires_grad=True)
    assert gradcheck(edm, (X,))
    assert gradcheck(gram_from_edm, (edm(X.detach()).requires_grad_(),))
    i, j = torch.tensor([0, 1, 4]), torch.tensor([2, 3, 0])
    assert gradcheck(lambda x: pair_sq_distances(x, i, j), (X,))


def test_bad_input():
    with pytest.raises(ValueError, match=r"Y: expected shape \(\.\.\., N, D\) with \{'N': 5, 'D': 3\}, found \(4, 3\)"):
        procrustes(torch.zeros(5, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="non-degenerate"):
        procrustes(torch.ones(5, 3), torch.randn(5, 3), scale=True)
    with pytest.raises(ValueError, match="total weight"):
        procrustes(torch.randn(5, 3), torch.randn(5, 3), weights=torch.zeros(5))
    with pytest.raises(ValueError, match="X: expected finite"):
        edm(torch.tensor([[0.0, float("inf"), 0.0]]))
    with pytest.raises(ValueError, match=r"i: expected indices in \[0, 3\)"):
        pair_sq_distances(torch.zeros(3, 3), torch.tensor([5]), torch.tensor([0]))
