"""WeightNet Psi: parameter count, range, bad inputs, non-finite XYZ, gradients."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.models import WeightNet, WeightNetConfig, count_parameters


def _inputs(b=2, c=565, h=16, w=20, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(b, c, h // 4, w // 4, generator=g, dtype=dtype),
            *[torch.rand(b, 3, h, w, generator=g, dtype=dtype) for _ in range(4)])


def test_parameter_count():
    assert count_parameters(WeightNet()) == 315_633
    assert count_parameters(WeightNet(WeightNetConfig(width=0.5))) < 315_633


def test_range_and_shape():
    net = WeightNet()
    with torch.no_grad():
        out = net(*_inputs())
    assert out.shape == (2, 16, 20)
    assert ((out > 0) & (out < 1)).all()


def test_nonfinite_xyz_replaced_by_zero():
    net = WeightNet(WeightNetConfig(feature_channels=8, width=0.25))
    f, srgb, sxyz, trgb, txyz = _inputs(c=8)
    sxyz[0, :, 0, 0] = float("nan")
    txyz[1, :, 3, 4] = float("inf")
    with torch.no_grad():
        out = net(f, srgb, sxyz, trgb, txyz)
        ref = net(f, srgb, sxyz.nan_to_num(0.0), trgb, txyz.nan_to_num(0.0, posinf=0.0))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref)


def test_bad_inputs():
    net = WeightNet(WeightNetConfig(feature_channels=8, width=0.25))
    f, srgb, sxyz, trgb, txyz = _inputs(c=8)
    with pytest.raises(ValueError, match="feature"):
        net(f[:, :4], srgb, sxyz, trgb, txyz)
    with pytest.raises(ValueError, match="feature"):
        net(f[..., :2], srgb, sxyz, trgb, txyz)
    with pytest.raises(ValueError, match="target_xyz"):
        net(f, srgb, sxyz, trgb, txyz[:1])
    with pytest.raises(ValueError, match="source_rgb"):
        net(f, srgb[..., :18], sxyz, trgb, txyz)
    bad = trgb.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="target_rgb"):
        net(f, srgb, sxyz, bad, txyz)
    with pytest.raises(ValueError, match="width"):
        WeightNetConfig(width=-1)


def test_gradcheck_float64():
    torch.manual_seed(0)
    net = WeightNet(WeightNetConfig(feature_channels=3, width=0.125)).double()
    f, srgb, sxyz, trgb, txyz = _inputs(b=1, c=3, h=4, w=4, dtype=torch.float64)
    f.requires_grad_(True)
    txyz.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: net(a, srgb, sxyz, trgb, b), (f, txyz))
