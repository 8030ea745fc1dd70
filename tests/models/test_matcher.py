"""SiameseMatcher (DeepDeform sec. 3, App. A): shapes, heatmap sums, shared encoder, visibility stage,
bad inputs, gradcheck, and overfitting one synthetic patch pair."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nrsfm_kit.matching.losses import MatcherLossConfig, matcher_loss
from nrsfm_kit.models.matcher import MatcherConfig, MatcherOutput, SiameseMatcher, matcher_output
from nrsfm_kit.models.resnet import count_parameters
from nrsfm_kit.utils.testing import gradcheck64


def _pair(b: int, s: int, c: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, s, s, generator=g), torch.rand(b, c, s, s, generator=g)


def _check_output(out: MatcherOutput, b: int, s: int) -> None:
    for name in ("logits", "heatmap_sigmoid", "heatmap_softmax", "heatmap", "depth"):
        assert getattr(out, name).shape == (b, s, s), name
    assert out.visibility_logit.shape == (b,) and out.visibility.shape == (b,)
    for t in out:
        assert torch.isfinite(t).all()
    sums = out.heatmap_softmax.flatten(1).sum(1)
    torch.testing.assert_close(sums, torch.ones_like(sums))
    assert (out.heatmap.flatten(1).sum(1) <= 1 + 1e-6).all()
    torch.testing.assert_close(out.heatmap, out.heatmap_sigmoid * out.heatmap_softmax)
    assert (out.depth > 0).all()
    assert ((out.visibility > 0) & (out.visibility < 1)).all()


def test_paper_config_shapes():
    cfg = MatcherConfig.paper()
    assert (cfg.patch_size, cfg.num_down, cfg.width, cfg.in_channels) == (224, 5, 1.0, 6)
    assert cfg.channels == (32, 64, 96, 96, 96, 96) and cfg.bottleneck_size == 7
    torch.manual_seed(0)
    net = SiameseMatcher(cfg).eval()
    assert count_parameters(net) == 2_961_891
    src, tgt = _pair(1, 224)
    with torch.no_grad():
        feats = net.encoder(src)
        out = net(src, tgt)
    assert feats[-1].shape == (1, 96, 7, 7)
    _check_output(out, 1, 224)


def test_teaching_config_shapes_and_initial_depth():
    cfg = MatcherConfig.teaching()
    assert cfg.patch_size == 64 and cfg.channels == (8, 16, 24, 24, 24, 24) and cfg.bottleneck_size == 2
    net = SiameseMatcher(cfg)
    assert count_parameters(net) == 186_651
    src, tgt = _pair(3, 64)
    out = net(src, tgt)  # train mode, with a graph
    _check_output(out, 3, 64)
    assert (out.depth - 1).abs().max() < 0.2  # the depth head starts near 1 m
    (out.logits.sum() + out.depth.sum() + out.visibility_logit.sum()).backward()
    assert all(p.grad is not None for p in net.parameters())


def test_encoder_is_shared_by_both_towers():
    torch.manual_seed(0)
    net = SiameseMatcher(MatcherConfig.teaching()).eval()
    # one encoder module, counted once: total = encoder + fuse + decoder + heads
    parts = [net.encoder, net.fuse, net.decoder, net.heatmap_head, net.depth_head, net.visibility_head]
    assert count_parameters(net) == sum(count_parameters(m) for m in parts)
    assert sum(p.numel() for p in net.encoder_parameters()) == count_parameters(net.encoder)
    assert [n for n, _ in net.named_children()] == ["encoder", "fuse", "decoder", "heatmap_head", "depth_head",
                                                     "visibility_head"]
    # both towers go through that one module: identical inputs give identical source / target features
    seen = []
    hook = net.encoder.register_forward_hook(lambda m, i, o: seen.append([f.detach() for f in o]))
    src, tgt = _pair(2, 64)
    with torch.no_grad():
        out = net(src, src)
        swapped, straight = net(tgt, src), net(src, tgt)
    hook.remove()
    assert len(seen) == 3
    for f in seen[0]:
        assert f.shape[0] == 4
        torch.testing.assert_close(f[:2], f[2:])
    # the two roles are not symmetric: swapping source and target changes the prediction
    assert not torch.allclose(swapped.logits, straight.logits)
    _check_output(out, 2, 64)


def test_freeze_for_visibility_trains_only_the_visibility_head():
    torch.manual_seed(0)
    net = SiameseMatcher(MatcherConfig(patch_size=32, num_down=3, width=0.25)).freeze_for_visibility()
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in net.visibility_parameters()} and trainable
    assert not any(p.requires_grad for p in net.encoder_parameters())
    # frozen parts keep their BatchNorm statistics even in train mode
    net.train()
    assert net.training and net.visibility_head.training and not net.encoder.training and not net.fuse.training
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    src, tgt = _pair(4, 32)
    visible = torch.tensor([True, False, True, False])
    px = torch.full((4, 2), 15.0)
    loss = matcher_loss(net(src, tgt), px, torch.ones(4), visible, stage="visibility")["loss"]
    loss.backward()
    opt.step()
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("visibility_head.") for k in changed)
    net.unfreeze()
    assert all(p.requires_grad for p in net.parameters()) and net.encoder.training


def test_bad_inputs_name_the_argument():
    net = SiameseMatcher(MatcherConfig(patch_size=32, num_down=3, width=0.25))
    src, tgt = _pair(2, 32)
    with pytest.raises(ValueError, match=r"source: expected shape \(B, 6, 32, 32\), found \(2, 3, 32, 32\)"):
        net(src[:, :3], tgt)
    with pytest.raises(ValueError, match=r"target: expected shape \(2, 6, 32, 32\) \(as source\), found \(2, 6, 16, 16\)"):
        net(src, tgt[..., :16, :16])
    with pytest.raises(ValueError, match=r"target: expected shape \(2, 6, 32, 32\) \(as source\), found \(1, 6, 32, 32\)"):
        net(src, tgt[:1])
    with pytest.raises(ValueError, match="source: expected shape"):
        net(src[0], tgt[0])
    bad = tgt.clone()
    bad[1, 4, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="target: expected finite values, found 1 non-finite"):
        net(src, bad)
    with pytest.raises(ValueError, match="source: expected a floating-point tensor"):
        net((src * 255).to(torch.uint8), tgt)
    with pytest.raises(ValueError, match="target: expected dtype"):
        net(src, tgt.double())


@pytest.mark.parametrize("kw, arg", [
    ({"patch_size": 100}, "patch_size"),  # not a multiple of 32
    ({"patch_size": 0}, "patch_size"),
    ({"num_down": 1.5}, "num_down"),
    ({"width": 0.0}, "width"),
    ({"width": float("nan")}, "width"),
    ({"bottleneck_channels": -1}, "bottleneck_channels"),
    ({"in_channels": 0}, "in_channels"),
    ({"norm": "layer"}, "norm"),
])
def test_bad_config(kw, arg):
    with pytest.raises(ValueError, match=arg):
        MatcherConfig(**kw)


def test_matcher_output_and_network_gradcheck():
    torch.manual_seed(0)
    net = SiameseMatcher(MatcherConfig(patch_size=8, num_down=2, width=0.25, norm="group")).double()
    src, tgt = _pair(1, 8)
    assert gradcheck64(lambda a, b: tuple(net(a, b))[::4], [src, tgt], [0, 1])  # logits and depth
    logits = torch.randn(2, 5, 5, dtype=torch.float64)
    depth = torch.rand(2, 5, 5, dtype=torch.float64) + 0.5
    vis = torch.randn(2, dtype=torch.float64)
    assert gradcheck64(matcher_output, [logits, depth, vis], [0, 1, 2])


def _shift(img: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """out(y, x) = img(y - dy, x - dx) (zeros where undefined): content moves by (+dx, +dy)."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_overfits_one_synthetic_pair():
    """~100 Adam steps on one textured patch and its shifted copy put the argmax of H within 2 px of the truth."""
    torch.manual_seed(0)
    cfg = MatcherConfig.teaching()
    s = cfg.patch_size
    g = torch.Generator().manual_seed(1)
    rgb = F.interpolate(torch.rand(1, 3, s // 4, s // 4, generator=g), size=(s, s), mode="bilinear",
                        align_corners=False)
    ys, xs = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32),
                            indexing="ij")
    z = 1.0 + 0.1 * torch.rand(1, 1, s, s, generator=g)
    f = 60.0
    xyz = torch.cat([(xs - s / 2) / f * z, (ys - s / 2) / f * z, z], 1)
    source = torch.cat([rgb, xyz], 1)
    dx, dy = 9, -6
    target = _shift(source, dx, dy)
    c = (s - 1) // 2  # the source patch centre pixel (31, 31)
    true_px = torch.tensor([[c + dx, c + dy]], dtype=torch.float32)
    true_depth = source[:, 5, c, c]
    visible = torch.tensor([True])

    net = SiameseMatcher(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    loss_cfg = MatcherLossConfig()
    first = None
    for _ in range(100):
        out = net(source, target)
        loss = matcher_loss(out, true_px, true_depth, visible, loss_cfg, stage="all")["loss"]
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        out = net(source, target)
    k = int(out.heatmap[0].flatten().argmax())
    pred = torch.tensor([k % s, k // s], dtype=torch.float32)
    assert float(loss.detach()) < first
    assert (pred - true_px[0]).norm() <= 2.0, (pred, true_px)
    assert abs(float(out.depth[0, int(true_px[0, 1]), int(true_px[0, 0])]) - float(true_depth)) < 0.1
    assert float(out.visibility[0]) > 0.5
