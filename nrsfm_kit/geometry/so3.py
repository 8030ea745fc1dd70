"""SO(3): skew operator, exponential and logarithm maps, delta-rotation updates.

Axis-angle vectors w (..., 3) with angle theta = |w| and axis w / theta. The maps are exact near
theta = 0 (Taylor branches) and near theta = pi (axis from the symmetric part), with finite values
and gradients everywhere, including exactly 0 and pi.
"""

from __future__ import annotations

import torch

from nrsfm_kit.utils.checks import check_tensor


def hat(w: torch.Tensor) -> torch.Tensor:
    """Skew-symmetric matrix w^ with w^ x = w x x.  (..., 3) -> (..., 3, 3)."""
    check_tensor("w", w, ("...", 3))
    x, y, z = w.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*w.shape[:-1], 3, 3)


def vee(W: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hat` (reads the skew part): (..., 3, 3) -> (..., 3)."""
    check_tensor("W", W, ("...", 3, 3))
    return 0.5 * torch.stack(
        [W[..., 2, 1] - W[..., 1, 2], W[..., 0, 2] - W[..., 2, 0], W[..., 1, 0] - W[..., 0, 1]], dim=-1
    )


def so3_exp(w: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula R = I + A w^ + B w^2, A = sin(t)/t, B = (1 - cos t)/t^2 = 2 sin^2(t/2)/t^2.

    (..., 3) axis-angle (radians) -> (..., 3, 3). Taylor series below t^2 = 1e-6 keep values and
    gradients exact and finite at t = 0.
    """
    check_tensor("w", w, ("...", 3))
    t2 = (w * w).sum(-1)
    small = t2 < 1e-6
    t = torch.sqrt(torch.where(small, torch.ones_like(t2), t2))
    a = torch.where(small, 1 - t2 / 6 + t2 * t2 / 120, torch.sin(t) / t)
    half = torch.sin(0.5 * t) / (0.5 * t)
    b = torch.where(small, 0.5 - t2 / 24 + t2 * t2 / 720, 0.5 * half * half)
    K = hat(w)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(K)
    return eye + a[..., None, None] * K + b[..., None, None] * (K @ K)


def so3_log(R: torch.Tensor) -> torch.Tensor:
    """Logarithm map (..., 3, 3) -> (..., 3) axis-angle with angle in [0, pi].

    Three branches, each safe on every input so that gradients stay finite: a Taylor branch near 0,
    the general branch w = theta / sin(theta) * vee(R), and near pi the axis from the symmetric part
    (R + R^T)/2 - cos(theta) I = (1 - cos theta) a a^T, its sign taken from the skew part.
    """
    check_tensor("R", R, ("...", 3, 3))
    tr = R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2]
    cos = ((tr - 1) / 2).clamp(-1.0, 1.0)
    v = vee(R)  # = sin(theta) * axis
    s2 = (v * v).sum(-1)
    s = torch.sqrt(s2.clamp_min(1e-30))
    theta = torch.atan2(s, cos)
    small = (s2 < 1e-8) & (cos > 0)
    factor = torch.where(small, 1 + s2 / 6 + 3 * s2 * s2 / 40, theta / s)
    w_general = factor[..., None] * v

    # near pi: column of the symmetric part with the largest diagonal
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    B = 0.5 * (R + R.transpose(-1, -2)) - cos[..., None, None] * eye
    k = torch.diagonal(B, dim1=-2, dim2=-1).argmax(-1)
    col = torch.gather(B, -1, k[..., None, None].expand(*B.shape[:-1], 1)).squeeze(-1)
    bkk = torch.gather(torch.diagonal(B, dim1=-2, dim2=-1), -1, k[..., None]).squeeze(-1)
    denom = torch.sqrt(((1 - cos) * bkk).clamp_min(1e-30))
    axis = col / denom[..., None]
    sign = torch.where((axis * v).sum(-1) < 0, -torch.ones_like(cos), torch.ones_like(cos))
    w_pi = (sign * theta)[..., None] * axis
    near_pi = cos < -0.99  # theta > ~3.0 rad: the general branch loses precision as sin -> 0
    return torch.where(near_pi[..., None], w_pi, w_general)


def delta_rotation_update(eps: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Left-multiplied increment exp(eps^) R (Neural Non-Rigid Tracking App. A): (..., 3), (..., 3, 3)."""
    check_tensor("R", R, ("...", 3, 3))
    return so3_exp(eps) @ R


def random_rotation(
    n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32, device=None
) -> torch.Tensor:
    """n rotations drawn uniformly (Haar) from SO(3) via normalised Gaussian quaternions: (n, 3, 3)."""
    if int(n) < 0:
        raise ValueError(f"n: expected >= 0, found {n}")
    q = torch.randn(int(n), 4, generator=generator, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(int(n), 3, 3)
    return R.to(dtype=dtype, device=device)
