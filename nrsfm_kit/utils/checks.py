"""Argument checks that give the errors the whole suite promises.

Every message names the argument, what was expected and what was found, e.g.::

    ValueError: points: expected shape (..., N, 3), found (4, 2)
    ValueError: depth: expected finite values, found 3 non-finite of 307200
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

Dim = int | str | None


def _fmt_spec(spec: Sequence[Dim]) -> str:
    parts = ["..." if s == "..." else ("*" if s is None else str(s)) for s in spec]
    return "(" + ", ".join(parts) + ")"


def check_shape(name: str, x, spec: Sequence[Dim], dims: dict | None = None) -> dict:
    """Check ``x.shape`` against ``spec``.

    ``spec`` entries: an int (exact size), None (any size), a string (a named size, bound on first
    use and checked against later uses through ``dims``), and ``"..."`` as the first entry for any
    number of leading batch dimensions. Returns the ``dims`` dict (names -> sizes).
    """
    dims = {} if dims is None else dims
    shape = tuple(x.shape)
    spec = tuple(spec)
    batch = spec[:1] == ("...",)
    core = spec[1:] if batch else spec
    ok = len(shape) >= len(core) if batch else len(shape) == len(core)
    if ok:
        tail = shape[len(shape) - len(core):] if core else ()
        for want, got in zip(core, tail):
            if want is None:
                continue
            if isinstance(want, str):
                if want in dims and dims[want] != got:
                    ok = False
                    break
                dims[want] = got
            elif want != got:
                ok = False
                break
    if not ok:
        bound = {k: v for k, v in dims.items() if isinstance(k, str)}
        extra = f" with {bound}" if bound else ""
        raise ValueError(f"{name}: expected shape {_fmt_spec(spec)}{extra}, found {shape}")
    return dims


def check_finite(name: str, x) -> None:
    """Raise ValueError when ``x`` (tensor or array) holds NaN or inf."""
    if isinstance(x, torch.Tensor):
        if not (x.is_floating_point() or x.is_complex()):
            return
        xd = x.detach()
        # fast path, one reduction: a NaN or inf anywhere makes the sum non-finite, so a finite sum proves all
        # entries finite (a non-finite sum may also be an overflow of finite values: then count exactly)
        if xd.numel() == 0 or bool(torch.isfinite(xd.sum())):
            return
        bad = int((~torch.isfinite(xd)).sum())
        n = x.numel()
    else:
        arr = np.asarray(x)
        if not np.issubdtype(arr.dtype, np.inexact):
            return
        bad = int((~np.isfinite(arr)).sum())
        n = arr.size
    if bad:
        raise ValueError(f"{name}: expected finite values, found {bad} non-finite of {n}")


def check_tensor(
    name: str,
    x,
    spec: Sequence[Dim] | None = None,
    *,
    dims: dict | None = None,
    finite: bool = True,
    floating: bool = True,
) -> torch.Tensor:
    """Check that ``x`` is a torch tensor of shape ``spec`` (see :func:`check_shape`), floating and finite."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, found {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, found dtype {x.dtype}")
    if spec is not None:
        check_shape(name, x, spec, dims)
    if finite:
        check_finite(name, x)
    return x


def check_positive(name: str, value: float, *, strict: bool = True) -> float:
    """Check that a scalar is finite and > 0 (``strict``) or >= 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, found {value!r}") from None
    if not math.isfinite(v) or (v <= 0 if strict else v < 0):
        want = "> 0" if strict else ">= 0"
        raise ValueError(f"{name}: expected a finite value {want}, found {value!r}")
    return v
