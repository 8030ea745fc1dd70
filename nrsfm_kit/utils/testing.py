"""Test plumbing shared by the kernel tests and ``benchmarks/gpu_check.py``: devices, parity, gradcheck.

Every Warp kernel is checked the same way: its bridged function and its pure-torch reference get the
same inputs; the values and the gradients of a random linear functional of all outputs with respect to
every float input must agree (:func:`assert_parity`); both are gradchecked in float64
(:func:`gradcheck64`). The CUDA cases run automatically wherever a GPU is present (:data:`DEVICES`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch

__all__ = ["DEVICES", "TOLERANCES", "parity", "assert_parity", "gradcheck64", "to_device"]

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# (dtype, atol/rtol) used by the parity tests: float64 must agree to round-off, float32 loosely
TOLERANCES = [(torch.float64, 1e-10), (torch.float32, 2e-4)]


def to_device(args: Sequence, device: str, dtype: torch.dtype | None = None) -> list:
    """Move tensors to ``device`` (floats cast to ``dtype`` when given); other values as they are."""
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            a = a.to(device=device, dtype=dtype) if (dtype is not None and a.is_floating_point()) else a.to(device)
        out.append(a)
    return out


def _outputs(y) -> list[torch.Tensor]:
    ys = list(y) if isinstance(y, (tuple, list)) else [y]
    return [t for t in ys if isinstance(t, torch.Tensor) and t.is_floating_point()]


def parity(fn: Callable, ref: Callable, args: Sequence, grad_args: Sequence[int], *, seed: int = 1):
    """Outputs and input gradients of ``fn`` and ``ref`` on the same inputs.

    The gradients are those of ``L = sum_k <c_k, y_k>`` with random cotangents ``c_k`` (one per float
    output, the same for both), w.r.t. the inputs at positions ``grad_args``.

    Returns:
        ((outputs_fn, grads_fn), (outputs_ref, grads_ref)), lists of tensors.
    """
    res = []
    for f in (fn, ref):
        ins = [a.detach().clone().requires_grad_(True) if i in grad_args else a for i, a in enumerate(args)]
        ys = _outputs(f(*ins))
        g = torch.Generator().manual_seed(seed)
        loss = sum((y * torch.randn(y.shape, generator=g, dtype=y.dtype).to(y.device)).sum() for y in ys)
        wrt = [ins[i] for i in grad_args]
        grads = torch.autograd.grad(loss, wrt, allow_unused=True) if wrt else ()
        grads = [torch.zeros_like(w) if gr is None else gr for w, gr in zip(wrt, grads)]
        res.append(([y.detach() for y in ys], grads))
    return res[0], res[1]


def assert_parity(fn: Callable, ref: Callable, args: Sequence, grad_args: Sequence[int], *, tol: float,
                  seed: int = 1) -> None:
    """Raise AssertionError naming the output / input where ``fn`` and ``ref`` differ by more than ``tol``
    (absolute + relative to the reference's largest magnitude)."""
    (y1, g1), (y2, g2) = parity(fn, ref, args, grad_args, seed=seed)
    if len(y1) != len(y2):
        raise AssertionError(f"number of outputs: {len(y1)} vs reference {len(y2)}")
    named = [(f"output {k}", a, b) for k, (a, b) in enumerate(zip(y1, y2))]
    named += [(f"gradient of input {i}", a, b) for i, a, b in zip(grad_args, g1, g2)]
    for name, a, b in named:
        if a.shape != b.shape:
            raise AssertionError(f"{name}: shape {tuple(a.shape)} vs reference {tuple(b.shape)}")
        scale = 1.0 + float(b.abs().max()) if b.numel() else 1.0
        err = float((a - b).abs().max()) if a.numel() else 0.0
        if not err <= tol * scale:
            raise AssertionError(f"{name}: max |diff| {err:.3e} > {tol:.1e} x {scale:.3g}")


def gradcheck64(fn: Callable, args: Sequence, grad_args: Sequence[int], **kw) -> bool:
    """``torch.autograd.gradcheck`` in float64 w.r.t. the inputs at ``grad_args`` (others held fixed)."""
    base = list(args)
    wrt = [base[i].detach().to(torch.float64).clone().requires_grad_(True) for i in grad_args]

    def f(*xs):
        full = list(base)
        for i, x in zip(grad_args, xs):
            full[i] = x
        return tuple(_outputs(fn(*full)))

    kw.setdefault("atol", 1e-6)
    kw.setdefault("rtol", 1e-5)
    return torch.autograd.gradcheck(f, wrt, **kw)


@contextlib.contextmanager
def benchmark_script(name: str):
    """Import ``benchmarks/<name>.py`` of this checkout as a module (for the tests of the benchmark scripts);
    registered in ``sys.modules`` while in use, since dataclasses look their module up there."""
    import importlib.util
    import sys
    from pathlib import Path

    mod_name = f"benchmarks_{name}"
    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(mod_name, None)
