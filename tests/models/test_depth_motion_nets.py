"""Our ResNet-18 and the depth / motion networks: shapes, ranges, parameter count, gradients."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.models import (
    DepthNet,
    DepthNetConfig,
    MotionNet,
    ResNet18Encoder,
    count_parameters,
    sigmoid_to_depth,
)


def test_resnet18_matches_torchvision_layout():
    enc = ResNet18Encoder(3)
    # torchvision resnet18 has 11,689,512 parameters of which 513,000 are the fc layer
    assert count_parameters(enc) == 11_689_512 - 513_000
    feats = enc(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 32, 48), (64, 16, 24), (128, 8, 12), (256, 4, 6), (512, 2, 3)]
    assert ResNet18Encoder(6).conv1.in_channels == 6


def test_depth_net_range_and_odd_sizes():
    net = DepthNet(DepthNetConfig(min_depth=0.5, max_depth=20.0, width=8))
    with torch.no_grad():
        d = net(torch.rand(2, 3, 50, 70))
    assert d.shape == (2, 1, 50, 70)
    assert float(d.min()) > 0.5 and float(d.max()) < 20.0
    s = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)
    assert torch.allclose(sigmoid_to_depth(s, 0.5, 20.0), torch.tensor([20.0, 0.5, 1 / (0.05 + 0.975)], dtype=torch.float64))


def test_motion_net_output_and_gradients():
    net = MotionNet(width=8)
    a, b = torch.rand(1, 3, 32, 40), torch.rand(1, 3, 32, 40)
    m = net(a, b)
    assert m.shape == (1, 3, 32, 40) and float(m.detach().min()) > 0 and float(m.detach().max()) < 1
    m.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_motion_net_scale():
    """scale multiplies the sigmoid output: same weights, embeddings in (0, scale)."""
    torch.manual_seed(0)
    net = MotionNet(width=8)
    torch.manual_seed(0)
    net4 = MotionNet(width=8, scale=4.0)
    a, b = torch.rand(2, 3, 32, 40), torch.rand(2, 3, 32, 40)
    with torch.no_grad():
        m, m4 = net(a, b), net4(a, b)
    assert torch.allclose(m4, 4.0 * m) and float(m4.max()) < 4.0
    for bad in (0, float("inf"), "big"):
        with pytest.raises(ValueError, match="scale: expected a"):
            MotionNet(width=8, scale=bad)


def test_sigmoid_to_depth_gradcheck():
    s = torch.rand(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: sigmoid_to_depth(x, 0.1, 100.0), (s,))


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"images: expected shape \(\*, 3, \*, \*\)"):
        DepthNet(DepthNetConfig(width=8))(torch.rand(1, 4, 16, 16))
    with pytest.raises(ValueError, match="frame_l: expected shape"):
        MotionNet(width=8)(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 20))
    with pytest.raises(ValueError, match="min_depth"):
        DepthNetConfig(min_depth=2.0, max_depth=1.0)
