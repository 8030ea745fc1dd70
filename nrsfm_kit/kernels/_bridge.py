"""Shared plumbing of the torch <-> Warp bridge (zero-copy views, devices, launches).

Pattern followed by every ``nrsfm_kit/kernels/<topic>.py``::

    class MyOp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            x = contiguous(x)
            y = torch.empty(...)
            launch(wk.my_forward, n, [wview(x, wp.vec3), ...], [wview(y, ...)], like=x)
            ctx.save_for_backward(x)
            return y

        @staticmethod
        def backward(ctx, grad_y):
            ...  # explicit adjoint kernel (or wp.Tape), grads written into fresh torch tensors

Warp kernels live in ``warp_kernels/<topic>.py`` (no torch import there); a pure-torch reference of
the same maths lives beside the Function (used by tests for parity and by notebooks to teach).
"""

from __future__ import annotations

import torch
import warp as wp

from nrsfm_kit.warp_setup import init

_SCALAR = {torch.float32: wp.float32, torch.float64: wp.float64, torch.int32: wp.int32, torch.int64: wp.int64}


def warp_device(t: torch.Tensor) -> str:
    """Warp device string for the device of ``t`` (``"cpu"`` or ``"cuda:N"``)."""
    init()
    if t.device.type == "cuda":
        return f"cuda:{t.device.index or 0}"
    if t.device.type != "cpu":
        raise ValueError(f"tensor device: expected cpu or cuda, found {t.device}")
    return "cpu"


def contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_contiguous() else t.contiguous()


def wview(t: torch.Tensor, dtype=None, requires_grad: bool = False) -> wp.array:
    """Zero-copy Warp view of a contiguous torch tensor.

    ``dtype`` may be a Warp vector/matrix type (e.g. ``wp.vec3``): the trailing dimension(s) are then
    folded into it, e.g. a (N, 3) float32 tensor becomes a length-N ``wp.vec3`` array.
    """
    init()
    t = contiguous(t.detach())
    if dtype is None:
        dtype = _SCALAR.get(t.dtype)
        if dtype is None:
            raise ValueError(f"tensor dtype: expected one of {list(_SCALAR)}, found {t.dtype}")
    return wp.from_torch(t, dtype=dtype, requires_grad=requires_grad)


def launch(kernel, dim, inputs: list, outputs: list | None = None, *, like: torch.Tensor) -> None:
    """Launch ``kernel`` on the device of ``like`` (on the current torch CUDA stream when on GPU)."""
    device = warp_device(like)
    if like.device.type == "cuda":
        stream = wp.stream_from_torch(torch.cuda.current_stream(like.device))
        wp.launch(kernel, dim=dim, inputs=inputs, outputs=outputs or [], device=device, stream=stream)
    else:
        wp.launch(kernel, dim=dim, inputs=inputs, outputs=outputs or [], device=device)
