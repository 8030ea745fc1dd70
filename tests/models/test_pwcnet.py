"""PWCDCNet (port layout): parameter count, shapes, cost volume, warping, checkpoint loading."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.models import (
    PWCDCNet,
    PWCNetConfig,
    backward_warp,
    correlation_torch,
    count_parameters,
    load_pwcnet_state_dict,
)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return PWCDCNet(PWCNetConfig(width=0.25)).eval()


def test_port_parameter_count_and_feature_channels():
    net = PWCDCNet()
    assert count_parameters(net) == 9_374_274
    assert net.feature_channels == 565
    assert net.pyramid_channels == (16, 32, 64, 96, 128, 196)
    keys = net.state_dict().keys()
    for k in ["conv1a.0.weight", "conv6aa.0.bias", "conv6_4.0.weight", "predict_flow6.weight", "deconv6.weight",
              "upfeat3.weight", "dc_conv1.0.weight", "dc_conv7.weight", "predict_flow2.bias"]:
        assert k in keys
    assert "deconv2.weight" not in keys and "upfeat2.weight" not in keys
    assert net.conv2_0[0].in_channels == 81 + 32 + 4
    assert net.dc_conv5[0].dilation == (16, 16)


def test_output_shapes_and_identity_flow(small):
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = small(x, x)
    assert [tuple(f.shape) for f in out["flows"]] == [(2, 2, 64 // 2**lvl, 64 // 2**lvl) for lvl in range(2, 7)]
    assert out["feature"].shape == (2, small.feature_channels, 16, 16)
    assert out["flow"].shape == (2, 2, 64, 64)
    assert torch.isfinite(out["flow"]).all()
    up = 20 * torch.nn.functional.interpolate(out["flows"][0], scale_factor=4, mode="bilinear")
    torch.testing.assert_close(out["flow"], up)


def test_full_width_feature_565():
    net = PWCDCNet().eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    assert out["feature"].shape == (1, 565, 16, 16)


def test_custom_correlation_is_used(small):
    calls = []

    def corr(f1, f2, d):
        calls.append(f1.shape[-1])
        return correlation_torch(f1, f2, d)

    net = PWCDCNet(PWCNetConfig(width=0.25), correlation=corr).eval()
    with torch.no_grad():
        net(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    assert calls == [1, 2, 4, 8, 16]


def test_bad_inputs(small):
    with pytest.raises(ValueError, match="source_rgb.*64"):
        small(torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96))
    with pytest.raises(ValueError, match="target_rgb"):
        small(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 128, 64))
    with pytest.raises(ValueError, match="source_rgb"):
        small(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64))
    bad = torch.rand(1, 3, 64, 64)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="source_rgb"):
        small(bad, bad)
    with pytest.raises(ValueError, match="width"):
        PWCNetConfig(width=0)
    with pytest.raises(ValueError, match="max_displacement"):
        PWCNetConfig(max_displacement=-1)


def test_correlation_matches_naive_loop():
    torch.manual_seed(1)
    b, c, h, w, d = 2, 3, 5, 6, 2
    f1, f2 = torch.randn(b, c, h, w), torch.randn(b, c, h, w)
    out = correlation_torch(f1, f2, d)
    assert out.shape == (b, (2 * d + 1) ** 2, h, w)
    ref = torch.zeros_like(out)
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            k = (dy + d) * (2 * d + 1) + (dx + d)
            for y in range(h):
                for x in range(w):
                    if 0 <= y + dy < h and 0 <= x + dx < w:
                        ref[:, k, y, x] = (f1[:, :, y, x] * f2[:, :, y + dy, x + dx]).sum(1) / c
    torch.testing.assert_close(out, ref)


def test_correlation_gradcheck():
    f1 = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    f2 = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: correlation_torch(a, b, 1), (f1, f2))


def test_backward_warp_integer_shift_and_mask():
    x = torch.arange(20.0).reshape(1, 1, 4, 5)
    flow = torch.zeros(1, 2, 4, 5)
    flow[:, 0] = 1.0  # sample one pixel to the right
    out = backward_warp(x, flow)
    torch.testing.assert_close(out[..., :4], x[..., 1:])
    assert (out[..., 4] == 0).all()


def test_load_state_dict_roundtrip_and_errors(small, tmp_path):
    other = PWCDCNet(PWCNetConfig(width=0.25))
    sd = {k: torch.randn_like(v) for k, v in small.state_dict().items()}
    load_pwcnet_state_dict(other, sd)
    torch.testing.assert_close(other.conv1a[0].weight, sd["conv1a.0.weight"])
    path = tmp_path / "pwc.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, path)
    load_pwcnet_state_dict(PWCDCNet(PWCNetConfig(width=0.25)), path)

    missing = dict(sd)
    del missing["dc_conv7.weight"]
    with pytest.raises(ValueError, match="missing.*dc_conv7.weight"):
        load_pwcnet_state_dict(other, missing)
    extra = dict(sd, foo=torch.zeros(1))
    with pytest.raises(ValueError, match="unexpected.*foo"):
        load_pwcnet_state_dict(other, extra)
    wrong = dict(sd)
    wrong["conv1a.0.weight"] = torch.zeros(16, 3, 3, 3)
    with pytest.raises(ValueError, match="conv1a.0.weight"):
        load_pwcnet_state_dict(other, wrong)
    with pytest.raises(FileNotFoundError):
        load_pwcnet_state_dict(other, tmp_path / "none.pth")


def test_backward_warp_gradcheck():
    torch.manual_seed(2)
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    flow = (0.3 * torch.randn(1, 2, 4, 5, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(backward_warp, (x, flow))


def test_network_with_the_warp_cost_volume_equals_the_torch_one():
    from nrsfm_kit.kernels.correlation import correlation

    torch.manual_seed(0)
    net_t = PWCDCNet(PWCNetConfig(width=0.25)).double().eval()
    net_w = PWCDCNet(PWCNetConfig(width=0.25), correlation=correlation).double().eval()
    net_w.load_state_dict(net_t.state_dict())
    a, b = torch.rand(1, 3, 64, 64, dtype=torch.float64), torch.rand(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        out_t, out_w = net_t(a, b), net_w(a, b)
    torch.testing.assert_close(out_w["flow"], out_t["flow"], atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(out_w["feature"], out_t["feature"], atol=1e-10, rtol=1e-8)
