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


def launch(kernel, dim, inputs: list, outputs: list | None = None, *, like: torch.Tensor,
           adj_inputs: list | None = None, adj_outputs: list | None = None, adjoint: bool = False) -> None:
    """Launch ``kernel`` on the device of ``like``, on torch's current CUDA stream when on GPU.

    With ``adjoint=True`` Warp's generated adjoint of the kernel runs instead (``adj_inputs`` /
    ``adj_outputs`` receive / hold the gradients; ``None`` entries for non-differentiable arguments):
    the one way every forward and backward launch of the suite goes, so both follow torch's stream.
    """
    device = warp_device(like)
    kw = {"device": device}
    if like.device.type == "cuda":
        kw["stream"] = wp.stream_from_torch(torch.cuda.current_stream(like.device))
    if adjoint:
        kw.update(adj_inputs=adj_inputs or [], adj_outputs=adj_outputs or [], adjoint=True)
    wp.launch(kernel, dim=dim, inputs=inputs, outputs=outputs or [], **kw)


def index_tensor(name: str, idx: torch.Tensor, upper: int) -> torch.Tensor:
    """Index tensor as the kernels' one index type (int64, contiguous), checked to lie in [-1, upper).

    An out-of-range index would read arbitrary memory inside a kernel, so every bridge checks its
    index arguments here before launching.
    """
    if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.int32, torch.int64):
        found = idx.dtype if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(f"{name}: expected an integer tensor (int32/int64), found {found}")
    if idx.numel():
        lo, hi = int(idx.min()), int(idx.max())
        if lo < -1 or hi >= upper:
            raise ValueError(f"{name}: expected ids in [-1, {upper}), found range [{lo}, {hi}]")
    return contiguous(idx.to(torch.int64))
