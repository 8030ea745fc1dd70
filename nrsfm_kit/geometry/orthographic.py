"""Orthographic cameras and rotation representations.

An orthographic camera is a 2x3 matrix M with orthonormal rows (M M^T = I): w = M s projects a 3D
point s (here points are rows, so W = S M^T). Its projection of any 2x3 onto that set (the polar factor
U V^T of the SVD) is computed in closed form through (M M^T)^{-1/2} M, whose gradient stays finite also
when both singular values are equal (where the SVD backward is singular).
"""

from __future__ import annotations

import torch

from nrsfm_kit.utils.checks import check_tensor


def orthonormalize(M: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Nearest 2x3 with orthonormal rows (= U V^T of the SVD M = U S V^T): (..., 2, 3) -> (..., 2, 3).

    Closed form: (M M^T)^{-1/2} M with the 2x2 inverse square root
    (A + sqrt(det A) I)^adj / (sqrt(det A) sqrt(tr A + 2 sqrt(det A))). Raises ValueError for rank < 2.
    """
    check_tensor("M", M, ("...", 2, 3))
    A = M @ M.transpose(-1, -2)
    det = A[..., 0, 0] * A[..., 1, 1] - A[..., 0, 1] * A[..., 1, 0]
    scale = (A[..., 0, 0] + A[..., 1, 1]).detach()
    if (det.detach() <= eps * scale * scale + 1e-300).any():
        raise ValueError("M: expected 2x3 matrices of rank 2, found a (near) rank-deficient one")
    s = torch.sqrt(det)
    t = torch.sqrt(A[..., 0, 0] + A[..., 1, 1] + 2 * s)
    a, b, d = A[..., 0, 0] + s, A[..., 0, 1], A[..., 1, 1] + s
    inv = torch.stack([d, -b, -b, a], dim=-1).reshape(*A.shape) / (s * t)[..., None, None]
    return inv @ M


def orthographic_project(S: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """W = S M^T: shapes (..., P, 3) and (..., 2, 3) -> (..., P, 2)."""
    check_tensor("S", S, ("...", 3))
    check_tensor("M", M, ("...", 2, 3))
    return S @ M.transpose(-1, -2)


def rotation_6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """6D representation (Zhou et al., CVPR 2019) -> rotation: Gram-Schmidt of the two 3-vectors.

    (..., 6) -> (..., 3, 3) whose ROWS are b1, b2, b1 x b2 (so the first two rows form an orthographic
    camera). Raises ValueError when the two vectors are (near) parallel or zero.
    """
    check_tensor("x", x, ("...", 6))
    a1, a2 = x[..., :3], x[..., 3:]
    n1 = a1.norm(dim=-1, keepdim=True)
    if (n1.detach() < 1e-12).any():
        raise ValueError("x: expected a non-zero first 3-vector in the 6D rotation representation")
    b1 = a1 / n1
    u2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    n2 = u2.norm(dim=-1, keepdim=True)
    if (n2.detach() < 1e-12 * (1 + a2.detach().norm(dim=-1, keepdim=True))).any():
        raise ValueError("x: expected two non-parallel 3-vectors in the 6D rotation representation")
    b2 = u2 / n2
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-2)


def matrix_to_rotation_6d(R: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rotation_6d_to_matrix` on rotations: the first two rows, (..., 3, 3) -> (..., 6)."""
    check_tensor("R", R, ("...", 3, 3))
    return R[..., :2, :].reshape(*R.shape[:-2], 6)
