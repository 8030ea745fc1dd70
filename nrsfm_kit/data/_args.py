"""Argument checks shared by the generators (ValueError naming the argument, the expectation and the value)."""

from __future__ import annotations

import math

import torch


def check_int(name: str, value, minimum: int) -> int:
    """``int(value)`` when ``value`` is an integer (int, integral float, 0-d tensor) >= ``minimum``.

    Raises ValueError naming ``name`` for strings, NaN/inf, fractional values or values below ``minimum``.
    """
    try:
        ok = not isinstance(value, (str, bytes, bool)) and math.isfinite(float(value)) and int(value) == value
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok or int(value) < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, found {value!r}")
    return int(value)


def check_float_dtype(dtype) -> torch.dtype:
    """``dtype`` when it is a floating torch dtype, else ValueError naming ``dtype``."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype: expected a floating torch dtype (torch.float32 / torch.float64), found {dtype!r}")
    return dtype


def to_tensor(a, dtype: torch.dtype) -> torch.Tensor:
    """numpy array -> contiguous torch tensor of ``dtype``; the cast runs in numpy (torch's cast from float64
    numpy arrays is ~100x slower on CPU, it dominated the synthetic generators' run time)."""
    import numpy as np

    try:
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError:  # no numpy equivalent (bfloat16): let torch cast
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np_dtype))
