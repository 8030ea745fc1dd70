"""Types shared by every kernel module: the one index type and float32/float64 overload declaration.

Conventions (all of ``warp_kernels/``):

- **Indices are int64** (:data:`INDEX`), the dtype of torch's ``long`` and of
  :class:`nrsfm_kit.graph.types.DeformationGraph`: the bridge passes index tensors zero-copy, with -1
  as padding. Inside a kernel, cast to ``int()`` before mixing an index with loop counters (``range``
  yields int32).
- **Kernels are generic** in the float type (``typing.Any`` annotations) and instantiated for float32
  (speed) and float64 (gradchecks) up front with :func:`declare_float_overloads`. Declaring both at
  import keeps a module's content, hence its kernel-cache hash, independent of which dtype runs
  first: the module compiles once and is reused from the cache.

No torch import here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import warp as wp

__all__ = ["INDEX", "FLOATS", "FloatTypes", "float_types", "declare_float_overloads"]

INDEX = wp.int64
FLOATS = (wp.float32, wp.float64)


class FloatTypes(NamedTuple):
    """The Warp types of one precision: scalar, 2-/3-vectors and 3x3 matrices."""

    scalar: Any
    vec2: Any
    vec3: Any
    mat33: Any


_TYPES = {
    wp.float32: FloatTypes(wp.float32, wp.vec2, wp.vec3, wp.mat33),
    wp.float64: FloatTypes(wp.float64, wp.vec2d, wp.vec3d, wp.mat33d),
}


def float_types(scalar) -> FloatTypes:
    """:class:`FloatTypes` of ``wp.float32`` or ``wp.float64``."""
    if scalar not in _TYPES:
        raise ValueError(f"scalar: expected wp.float32 or wp.float64, found {scalar!r}")
    return _TYPES[scalar]


def _generic_signature(kernel, ft: FloatTypes) -> dict:
    """The kernel's own annotations with every ``Any`` (scalar or array dtype) replaced by ``ft.scalar``."""
    sig = {}
    for name, param in inspect.signature(kernel.func).parameters.items():
        ann = param.annotation
        if isinstance(ann, str):  # postponed annotations (``from __future__ import annotations``)
            ann = eval(ann, kernel.func.__globals__)  # noqa: S307 - the kernel module's own annotation
        if wp.types.is_array(ann) and ann.dtype is Any:
            sig[name] = wp.array(dtype=ft.scalar, ndim=ann.ndim)
        elif ann is Any:
            sig[name] = ft.scalar
        else:
            sig[name] = ann
    return sig


def declare_float_overloads(*kernels, signature: Callable[[FloatTypes], list] | None = None) -> None:
    """Instantiate generic kernels for float32 and float64 (``wp.overload``).

    Args:
        kernels: ``@wp.kernel`` functions annotated with ``typing.Any`` for the float type.
        signature: ``ft -> [arg types]`` for kernels whose arrays hold vectors/matrices
            (e.g. ``lambda ft: [wp.array(dtype=ft.vec3), ...]``); by default every ``Any`` of the
            kernel's annotations (scalars and scalar-array dtypes) becomes the float type.
    """
    for kernel in kernels:
        for scalar in FLOATS:
            ft = _TYPES[scalar]
            wp.overload(kernel, signature(ft) if signature is not None else _generic_signature(kernel, ft))
