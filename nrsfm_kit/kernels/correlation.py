"""PWC-Net cost volume (local correlation) as a Warp kernel bridged to torch autograd, with its torch reference.

    cv[b, k, y, x] = (1 / C) sum_c f1[b, c, y, x] f2[b, c, y + dy, x + dx],   k = (dy + d)(2d + 1) + (dx + d)

over displacements (dy, dx) in [-d, d]^2 (PWC-Net: d = 4, 81 channels), f2 zero outside the image; the
network applies LeakyReLU(0.1) after it. Kernels: :mod:`warp_kernels.correlation` (forward and a hand-written
adjoint in which every thread owns one output entry: no atomics, deterministic on CUDA too).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import warp_kernels.correlation as wk
from nrsfm_kit.kernels._bridge import contiguous, launch, wview
from nrsfm_kit.utils.checks import check_tensor

__all__ = ["correlation", "correlation_torch", "CorrelationFunction", "PARITY_CASES"]


def correlation_torch(f1: torch.Tensor, f2: torch.Tensor, max_displacement: int = 4) -> torch.Tensor:
    """Pure-torch reference: f2 zero-padded by d, one shifted product per displacement, mean over channels.

    Args:
        f1, f2: (B, C, H, W) features. max_displacement: d >= 0 (pixels of this level).

    Returns:
        (B, (2d+1)^2, H, W) cost volume (before the LeakyReLU).
    """
    d = int(max_displacement)
    B, C, H, W = f1.shape
    p = F.pad(f2, (d, d, d, d))
    out = [(f1 * p[:, :, dy:dy + H, dx:dx + W]).mean(1) for dy in range(2 * d + 1) for dx in range(2 * d + 1)]
    return torch.stack(out, 1)


class CorrelationFunction(torch.autograd.Function):
    """Warp forward / adjoint of the cost volume (inputs already validated and contiguous)."""

    @staticmethod
    def forward(ctx, f1, f2, d: int):
        B, C, H, W = f1.shape
        K = (2 * d + 1) ** 2
        cv = torch.empty(B, K, H, W, dtype=f1.dtype, device=f1.device)
        if cv.numel():
            launch(wk.correlation_forward, (B, K, H, W), [wview(f1), wview(f2), int(d)], [wview(cv)], like=f1)
        ctx.save_for_backward(f1, f2)
        ctx.d = d
        return cv

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        f1, f2 = ctx.saved_tensors
        g = contiguous(g)
        df1, df2 = torch.empty_like(f1), torch.empty_like(f2)
        if f1.numel():
            launch(wk.correlation_backward, tuple(f1.shape), [wview(f1), wview(f2), wview(g), int(ctx.d)],
                   [wview(df1), wview(df2)], like=f1)
        need = ctx.needs_input_grad
        return (df1 if need[0] else None), (df2 if need[1] else None), None


def correlation(f1: torch.Tensor, f2: torch.Tensor, max_displacement: int = 4) -> torch.Tensor:
    """The cost volume in Warp (CPU or CUDA, following the tensors), differentiable w.r.t. f1 and f2.

    Args and returns as :func:`correlation_torch`. Raises ValueError on shape / dtype / device mismatches,
    non-finite features or a negative displacement.
    """
    dims: dict = {}
    check_tensor("f1", f1, ("B", "C", "H", "W"), dims=dims)
    check_tensor("f2", f2, ("B", "C", "H", "W"), dims=dims)
    if f1.dtype != f2.dtype or f1.device != f2.device:
        raise ValueError(f"f2: expected dtype {f1.dtype} on {f1.device} (as f1), found {f2.dtype} on {f2.device}")
    if f1.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"f1: expected float32 or float64, found {f1.dtype}")
    if not isinstance(max_displacement, int) or max_displacement < 0:
        raise ValueError(f"max_displacement: expected an int >= 0, found {max_displacement!r}")
    return CorrelationFunction.apply(contiguous(f1), contiguous(f2), max_displacement)


def _case(device: str, dtype: torch.dtype):
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(2, 5, 7, 9, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    f2 = torch.randn(2, 5, 7, 9, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    return [f1, f2, 2]


#: name -> (inputs(device, dtype) -> args, float argument positions) (tests, benchmarks/gpu_check.py)
PARITY_CASES = {"correlation": (_case, [0, 1])}
