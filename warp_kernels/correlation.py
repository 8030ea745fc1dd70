"""Warp kernels of the PWC-Net cost volume (local correlation), with hand-written adjoints.

Cost volume at one pyramid level (PWC-Net, Sun et al. CVPR 2018; the correlation layer of FlowNet):

    cv[b, k, y, x] = (1 / C) sum_c f1[b, c, y, x] f2[b, c, y + dy, x + dx],   k = (dy + d)(2d + 1) + (dx + d)

for every displacement (dy, dx) in [-d, d]^2 (d = 4 in PWC-Net: 81 channels); f2 is zero outside the image.
Adjoints, each written so that one thread owns one output entry (no atomics, deterministic on CUDA):

    df1[b, c, y, x] = (1 / C) sum_k g[b, k, y, x] f2[b, c, y + dy, x + dx]
    df2[b, c, y, x] = (1 / C) sum_k g[b, k, y - dy, x - dx] f1[b, c, y - dy, x - dx]

No torch import here: the bridge is :mod:`nrsfm_kit.kernels.correlation`.
"""

from __future__ import annotations

from typing import Any

import warp as wp

from warp_kernels.types import declare_float_overloads

wp.set_module_options({"enable_backward": False})


@wp.kernel
def correlation_forward(
    f1: wp.array4d(dtype=Any),  # (B, C, H, W) source features
    f2: wp.array4d(dtype=Any),  # (B, C, H, W) target (warped) features
    d: int,  # max displacement
    cv: wp.array4d(dtype=Any),  # out (B, (2d+1)^2, H, W)
):
    b, k, y, x = wp.tid()
    C = f1.shape[1]
    H = f1.shape[2]
    W = f1.shape[3]
    side = 2 * d + 1
    dy = k // side - d
    dx = k - (k // side) * side - d
    yy = y + dy
    xx = x + dx
    s = f1[b, 0, y, x] * type(f1[b, 0, y, x])(0.0)
    if yy >= 0 and yy < H and xx >= 0 and xx < W:
        for c in range(C):
            s += f1[b, c, y, x] * f2[b, c, yy, xx]
    cv[b, k, y, x] = s / type(s)(float(C))


@wp.kernel
def correlation_backward(
    f1: wp.array4d(dtype=Any),
    f2: wp.array4d(dtype=Any),
    g: wp.array4d(dtype=Any),  # (B, K, H, W) dL/dcv
    d: int,
    df1: wp.array4d(dtype=Any),  # out (B, C, H, W)
    df2: wp.array4d(dtype=Any),  # out (B, C, H, W)
):
    b, c, y, x = wp.tid()
    C = f1.shape[1]
    H = f1.shape[2]
    W = f1.shape[3]
    side = 2 * d + 1
    zero = f1[b, c, y, x] * type(f1[b, c, y, x])(0.0)
    s1 = zero
    s2 = zero
    for k in range(side * side):
        dy = k // side - d
        dx = k - (k // side) * side - d
        yy = y + dy
        xx = x + dx
        if yy >= 0 and yy < H and xx >= 0 and xx < W:
            s1 += g[b, k, y, x] * f2[b, c, yy, xx]
        ys = y - dy
        xs = x - dx
        if ys >= 0 and ys < H and xs >= 0 and xs < W:
            s2 += g[b, k, ys, xs] * f1[b, c, ys, xs]
    inv = type(zero)(1.0) / type(zero)(float(C))
    df1[b, c, y, x] = s1 * inv
    df2[b, c, y, x] = s2 * inv


declare_float_overloads(correlation_forward, correlation_backward)
