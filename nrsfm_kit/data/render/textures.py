"""Procedural albedo textures and their filtered lookup (mip-mapping against aliasing).

Textures are (S, S, 3) float32 RGB in [0, 1], exactly periodic: texture coordinates (u, v) are in texture
units (period 1) and wrap around without seams.
"""

from __future__ import annotations

import cv2
import numpy as np


def procedural_texture(rng: np.random.Generator, size: int = 256, base=None, contrast: float = 1.0) -> np.ndarray:
    """A rich, seamless (periodic) RGB albedo texture (size, size, 3) float32 in [0, 1].

    Fractal noise with a 1/f amplitude spectrum synthesised in the Fourier domain (hence exactly
    periodic: texture coordinates may wrap without seams), plus random sharp-edged discs and thin lines
    (drawn with wrap-around) that give well-localised features for optical flow and photometric losses.
    """
    base = rng.uniform(0.3, 0.7, size=3) if base is None else np.asarray(base, dtype=np.float64)
    import scipy.fft

    f = np.fft.fftfreq(size).astype(np.float32)[:, None]
    g = np.fft.rfftfreq(size).astype(np.float32)[None, :]
    radius = np.sqrt(f * f + g * g)
    amp = np.where(radius > 0, np.maximum(radius, 1.0 / size) ** -1.4, 0.0).astype(np.float32)
    amp[radius > 0.25] = 0.0  # no energy above half the Nyquist rate (no aliasing)
    # 4 fields: a luminance pattern shared by the channels and a weaker chroma pattern per channel
    re = rng.standard_normal((*amp.shape, 4), dtype=np.float32)
    im = rng.standard_normal((*amp.shape, 4), dtype=np.float32)
    spec = amp[..., None] * (re + 1j * im).astype(np.complex64)
    fields = scipy.fft.irfft2(spec, s=(size, size), axes=(0, 1))
    fields /= fields[::4, ::4].reshape(-1, 4).std(axis=0) + 1e-12  # a subsample estimates the std
    noise = (0.8 * fields[..., :1] + 0.35 * fields[..., 1:]) / 3
    tex = (base + 0.5 * contrast * noise).astype(np.float32)
    img = np.zeros((size, size, 3), np.float32)
    shifts = [(dx, dy) for dx in (-size, 0, size) for dy in (-size, 0, size)]
    n_disc = max(1, size * size // 2000)
    centres = rng.integers(0, size, (n_disc, 2)).tolist()
    radii = rng.integers(2, max(3, size // 28), n_disc).tolist()
    cols = rng.uniform(-0.4, 0.4, (n_disc, 3)).tolist()
    for (cx, cy), r, col in zip(centres, radii, cols):
        near_edge = min(cx, cy, size - cx, size - cy) < r + 1
        for dx, dy in shifts if near_edge else [(0, 0)]:
            cv2.circle(img, (cx + dx, cy + dy), r, tuple(col), -1, lineType=cv2.LINE_AA)
    for _ in range(max(1, size // 24)):
        p, q = rng.integers(0, size, 2), rng.integers(-size // 4, size // 4, 2)
        col = tuple(float(x) for x in rng.uniform(-0.3, 0.3, 3))
        for dx, dy in shifts:
            a = (int(p[0] + dx), int(p[1] + dy))
            cv2.line(img, a, (a[0] + int(q[0]), a[1] + int(q[1])), col, 1, lineType=cv2.LINE_AA)
    return np.clip(tex + np.float32(contrast) * img, 0.02, 0.98)


def sample_texture(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup with wrap-around: tex (S, S, 3), uv (N, 2) in texture units (period 1) -> (N, 3)."""
    S0, S1 = tex.shape[:2]
    n = uv.shape[0]
    cols = 1024  # cv2.remap wants maps with < 32767 rows / cols
    rows = -(-n // cols)
    maps = np.zeros((2, rows * cols), np.float32)
    maps[0, :n] = np.mod(uv[:, 0], 1.0) * S1 - 0.5
    maps[1, :n] = np.mod(uv[:, 1], 1.0) * S0 - 0.5
    out = cv2.remap(
        tex, maps[0].reshape(rows, cols), maps[1].reshape(rows, cols), cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP
    )
    return out.reshape(-1, tex.shape[2])[:n].astype(np.float64)


def texture_pyramid(tex: np.ndarray) -> list[np.ndarray]:
    """Mip-map levels of a periodic texture: 2x2 box averages while both sides are even and >= 8."""
    levels = [tex]
    while levels[-1].shape[0] % 2 == 0 and levels[-1].shape[1] % 2 == 0 and min(levels[-1].shape[:2]) >= 8:
        t = levels[-1]
        levels.append(t.reshape(t.shape[0] // 2, 2, t.shape[1] // 2, 2, -1).mean(axis=(1, 3)))
    return levels


def sample_texture_mip(levels: list[np.ndarray], uv: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Trilinear (mip-mapped) lookup: uv (N, 2) texture units, level (N,) >= 0 (log2 texels per pixel)."""
    level = np.clip(level, 0.0, len(levels) - 1.0)
    lo = np.floor(level).astype(np.int64)
    frac = (level - lo)[:, None]
    out = np.zeros((uv.shape[0], levels[0].shape[2]))
    for k in np.unique(lo):
        m = lo == k
        a = sample_texture(levels[k], uv[m])
        b = sample_texture(levels[min(k + 1, len(levels) - 1)], uv[m])
        out[m] = (1 - frac[m]) * a + frac[m] * b
    return out


def texture_footprint(uv_img: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """Per-pixel texture footprint (texels per pixel) from finite differences within the same object.

    uv_img (H, W, 2) texture coordinates in texels (NaN where no hit), obj (H, W) object ids -> (H, W)
    footprint (1 where no neighbour of the same object exists), the mip level being its log2.
    """
    big = np.inf

    def axis_fp(ax: int) -> np.ndarray:
        d = np.linalg.norm(np.diff(uv_img, axis=ax), axis=-1)
        same = np.diff(obj, axis=ax) == 0
        d = np.where(same & np.isfinite(d), d, big)
        pad_lo = [(0, 0)] * 2
        pad_hi = [(0, 0)] * 2
        pad_lo[ax], pad_hi[ax] = (1, 0), (0, 1)
        return np.minimum(np.pad(d, pad_lo, constant_values=big), np.pad(d, pad_hi, constant_values=big))

    fp = np.maximum(axis_fp(0), axis_fp(1))
    fx, fy = axis_fp(1), axis_fp(0)
    fp = np.where(np.isinf(fx), fy, np.where(np.isinf(fy), fx, fp))
    return np.where(np.isfinite(fp), fp, 1.0)
