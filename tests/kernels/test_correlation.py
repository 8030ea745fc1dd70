"""PWC-Net cost volume: Warp kernel vs torch reference (values, gradients), gradcheck, naive loop, bad input."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.kernels import correlation as cr
from nrsfm_kit.utils.testing import assert_parity, gradcheck64


@pytest.mark.parametrize("d", [0, 1, 4])
def test_parity_values_and_gradients(device, dtype_tol, d):
    dtype, tol = dtype_tol
    f1, f2, _ = cr.PARITY_CASES["correlation"][0](device, dtype)
    assert_parity(cr.correlation, cr.correlation_torch, [f1, f2, d], [0, 1], tol=tol)


def test_matches_a_naive_loop():
    g = torch.Generator().manual_seed(1)
    f1 = torch.randn(1, 3, 4, 5, generator=g, dtype=torch.float64)
    f2 = torch.randn(1, 3, 4, 5, generator=g, dtype=torch.float64)
    d = 2
    cv = cr.correlation(f1, f2, d)
    assert cv.shape == (1, 25, 4, 5)
    for k in range(25):
        dy, dx = k // 5 - d, k % 5 - d
        for y in range(4):
            for x in range(5):
                yy, xx = y + dy, x + dx
                ref = (f1[0, :, y, x] * f2[0, :, yy, xx]).mean() if (0 <= yy < 4 and 0 <= xx < 5) else 0.0
                assert abs(float(cv[0, k, y, x]) - float(ref)) < 1e-12


def test_gradcheck_warp_and_reference():
    f1, f2, d = cr.PARITY_CASES["correlation"][0]("cpu", torch.float64)
    for fn in (cr.correlation, cr.correlation_torch):
        assert gradcheck64(fn, [f1[:1, :2, :4, :5], f2[:1, :2, :4, :5], 1], [0, 1])


def test_zero_displacement_is_the_channel_mean_of_the_product_and_deterministic():
    f1, f2, _ = cr.PARITY_CASES["correlation"][0]("cpu", torch.float32)
    torch.testing.assert_close(cr.correlation(f1, f2, 0)[:, 0], (f1 * f2).mean(1))
    assert torch.equal(cr.correlation(f1, f2, 3), cr.correlation(f1, f2, 3))


def test_bad_inputs():
    f1, f2, _ = cr.PARITY_CASES["correlation"][0]("cpu", torch.float32)
    with pytest.raises(ValueError, match=r"f2: expected shape \(B, C, H, W\)"):
        cr.correlation(f1, f2[:, :, :3])
    with pytest.raises(ValueError, match="f2: expected dtype torch.float32"):
        cr.correlation(f1, f2.double())
    with pytest.raises(ValueError, match="max_displacement: expected an int >= 0"):
        cr.correlation(f1, f2, -1)
    bad = f1.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="f1: expected finite"):
        cr.correlation(bad, f2)
