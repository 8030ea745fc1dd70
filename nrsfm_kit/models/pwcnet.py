"""PWC-Net (Sun et al., CVPR 2018), the ``PWCDCNet`` layout of the public PyTorch port.

Neural Non-Rigid Tracking (Bozic et al., NeurIPS 2020) builds its correspondence network Phi on this
network: a 6-level feature pyramid, a cost volume per level against the target features warped by the
upsampled coarser flow, densely connected decoders from level 6 to level 2 and a dilated context
network refining the level-2 flow.

Conventions of the port, kept here so that its checkpoints load unchanged:

- flows are predicted in units of 1/20 pixel-scale: the level-``l`` flow in pixels of level ``l`` is
  ``20 / 2**l`` times the prediction (warp factors 0.625, 1.25, 2.5, 5 at levels 5..2);
- the cost volume is the channel mean of ``f1 * shift(f2)`` over displacements in ``[-d, d]^2``
  followed by LeakyReLU(0.1); channel ``k = (dy + d) * (2d + 1) + (dx + d)``;
- module names (``conv1a``, ``conv6_0``, ``predict_flow6``, ``deconv6``, ``upfeat6``, ``dc_conv1`` ...)
  and ``conv()`` = ``nn.Sequential(Conv2d, LeakyReLU(0.1))``, so the state-dict keys are the port's.

At ``width=1`` the network has 9,374,274 parameters, like the port.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nrsfm_kit.kernels.correlation import correlation_torch  # the cost volume; its Warp kernel: correlation
from nrsfm_kit.utils.checks import check_tensor

PYRAMID_CHANNELS = (16, 32, 64, 96, 128, 196)  # levels 1..6 (port)
DECODER_CHANNELS = (128, 128, 96, 64, 32)  # conv_l_0 .. conv_l_4 outputs (port; cumulated = dd)
CONTEXT_CHANNELS = (128, 128, 128, 96, 64, 32)  # dc_conv1 .. dc_conv6 outputs (port)
CONTEXT_DILATIONS = (1, 2, 4, 8, 16, 1)
FLOW_SCALE = 20.0  # the port's flow units: predictions are flow / 20

Correlation = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


@dataclass
class PWCNetConfig:
    width: float = 1.0  # channel multiplier (1.0 = the port's network); cost channels are not scaled
    max_displacement: int = 4  # port's md = 4 -> 81 cost channels

    def __post_init__(self):
        if not self.width > 0:
            raise ValueError(f"width: expected > 0, found {self.width}")
        if int(self.max_displacement) != self.max_displacement or self.max_displacement < 0:
            raise ValueError(f"max_displacement: expected an integer >= 0, found {self.max_displacement}")


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def backward_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``x`` at ``p + flow(p)`` (bilinear, ``align_corners=True``), zero where out of the image.

    As the port: a ones image is warped too and the output is zeroed where that mask is < 0.9999.

    Args:
        x: (B, C, H, W) features.
        flow: (B, 2, H, W) displacement (x, y) in pixels of this level.
    Returns:
        (B, C, H, W).
    """
    b, _, h, w = x.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=x.dtype, device=x.device),
        torch.arange(w, dtype=x.dtype, device=x.device),
        indexing="ij",
    )
    gx = 2.0 * (xs + flow[:, 0]) / max(w - 1, 1) - 1.0
    gy = 2.0 * (ys + flow[:, 1]) / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], -1)
    out = F.grid_sample(x, grid, mode="bilinear", align_corners=True)
    mask = F.grid_sample(torch.ones_like(x[:, :1]), grid, mode="bilinear", align_corners=True)
    return out * (mask >= 0.9999).to(x.dtype)


def conv(in_planes: int, out_planes: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """The port's ``conv()``: 3x3 Conv2d (bias) + LeakyReLU(0.1), ``same`` padding."""
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 3, stride, padding=dilation, dilation=dilation, bias=True),
        nn.LeakyReLU(0.1),
    )


def predict_flow(in_planes: int) -> nn.Conv2d:
    """The port's ``predict_flow()``: 3x3 Conv2d to 2 channels, no activation."""
    return nn.Conv2d(in_planes, 2, 3, 1, padding=1, bias=True)


def deconv(in_planes: int, out_planes: int) -> nn.ConvTranspose2d:
    """The port's ``deconv()``: ConvTranspose2d(k4, s2, p1), x2 upsampling."""
    return nn.ConvTranspose2d(in_planes, out_planes, 4, 2, 1, bias=True)


class PWCDCNet(nn.Module):
    """PWC-Net with densely connected decoders and a context network (the port's ``PWCDCNet``).

    ``forward(source_rgb, target_rgb)`` with (B, 3, H, W) RGB in [0, 1], H and W multiples of 64, returns
    a dict:

    - ``flows``: [flow2, ..., flow6], (B, 2, H/2^l, W/2^l) predictions in the port's units (flow / 20);
    - ``feature``: (B, 565, H/4, W/4) (at width 1) the level-2 decoder's concatenated feature, the input
      of ``predict_flow2`` (Neural Non-Rigid Tracking feeds it to its weight network);
    - ``flow``: (B, 2, H, W) full-resolution flow in pixels, ``20 * upsample_x4(flow2)`` (bilinear,
      ``align_corners=False``), source pixel p corresponds to target pixel ``p + flow(p)``.

    ``correlation`` is a callable ``(f1, f2, max_displacement) -> (B, (2d+1)^2, H, W)`` with the layout of
    :func:`correlation_torch` (the default, fastest on CPU); the Warp kernel
    :func:`nrsfm_kit.kernels.correlation.correlation` (same maths and layout, for CUDA) can be passed.
    """

    def __init__(self, config: PWCNetConfig | None = None, correlation: Correlation | None = None):
        super().__init__()
        self.config = config or PWCNetConfig()
        self.correlation = correlation or correlation_torch
        wd = self.config.width
        md = int(self.config.max_displacement)
        pc = [_scaled(c, wd) for c in PYRAMID_CHANNELS]
        self.pyramid_channels = tuple(pc)

        # feature pyramid: level l: a (stride 2), aa, b; level 6 is named aa (stride 2), a, b as in the port
        prev = 3
        for lvl, c in enumerate(pc, start=1):
            names = ("a", "aa", "b") if lvl < 6 else ("aa", "a", "b")
            for i, n in enumerate(names):
                setattr(self, f"conv{lvl}{n}", conv(prev, c, stride=2 if i == 0 else 1))
                prev = c

        nd = (2 * md + 1) ** 2
        self.cost_channels = nd
        inc = [_scaled(c, wd) for c in DECODER_CHANNELS]
        dd = [sum(inc[: i + 1]) for i in range(len(inc))]
        for lvl in range(6, 1, -1):
            od = nd if lvl == 6 else nd + pc[lvl - 1] + 4
            for i in range(5):
                setattr(self, f"conv{lvl}_{i}", conv(od + (dd[i - 1] if i else 0), inc[i]))
            setattr(self, f"predict_flow{lvl}", predict_flow(od + dd[4]))
            if lvl > 2:
                setattr(self, f"deconv{lvl}", deconv(2, 2))
                setattr(self, f"upfeat{lvl}", deconv(od + dd[4], 2))
        self.feature_channels = od + dd[4]

        cc = [_scaled(c, wd) for c in CONTEXT_CHANNELS]
        prev = self.feature_channels
        for i, (c, dil) in enumerate(zip(cc, CONTEXT_DILATIONS), start=1):
            setattr(self, f"dc_conv{i}", conv(prev, c, dilation=dil))
            prev = c
        self.dc_conv7 = predict_flow(prev)

        for m in self.modules():  # the port's initialisation
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in")
                nn.init.zeros_(m.bias)

    def _pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for lvl in range(1, 7):
            names = ("a", "aa", "b") if lvl < 6 else ("aa", "a", "b")
            for n in names:
                x = getattr(self, f"conv{lvl}{n}")(x)
            feats.append(x)
        return feats  # levels 1..6

    def _cost(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.correlation(f1, f2, int(self.config.max_displacement)), 0.1)

    def forward(self, source_rgb: torch.Tensor, target_rgb: torch.Tensor) -> dict:
        check_tensor("source_rgb", source_rgb, (None, 3, None, None))
        check_tensor("target_rgb", target_rgb, tuple(source_rgb.shape))
        h, w = source_rgb.shape[-2:]
        if h % 64 or w % 64:
            raise ValueError(f"source_rgb: expected H, W divisible by 64, found (H, W) = ({h}, {w})")
        c1 = self._pyramid(source_rgb)
        c2 = self._pyramid(target_rgb)

        flows = {}
        up_flow = up_feat = None
        for lvl in range(6, 1, -1):
            s, t = c1[lvl - 1], c2[lvl - 1]
            if lvl == 6:
                x = self._cost(s, t)
            else:
                warped = backward_warp(t, up_flow * (FLOW_SCALE / 2**lvl))
                x = torch.cat([self._cost(s, warped), s, up_flow, up_feat], 1)
            for i in range(5):
                x = torch.cat([getattr(self, f"conv{lvl}_{i}")(x), x], 1)
            flow = getattr(self, f"predict_flow{lvl}")(x)
            if lvl > 2:
                up_flow = getattr(self, f"deconv{lvl}")(flow)
                up_feat = getattr(self, f"upfeat{lvl}")(x)
            flows[lvl] = flow

        feature = x
        y = feature
        for i in range(1, 7):
            y = getattr(self, f"dc_conv{i}")(y)
        flows[2] = flows[2] + self.dc_conv7(y)
        full = FLOW_SCALE * F.interpolate(flows[2], scale_factor=4, mode="bilinear", align_corners=False)
        return {"flows": [flows[lvl] for lvl in range(2, 7)], "feature": feature, "flow": full}


def load_pwcnet_state_dict(model: PWCDCNet, state_dict_or_path) -> PWCDCNet:
    """Load a checkpoint of the port into ``model`` (strictly; in place; returns ``model``).

    Our module names are the port's, so the key mapping is the identity (``conv1a.0.weight``,
    ``predict_flow6.weight``, ``deconv6.weight``, ``upfeat6.weight``, ``dc_conv1.0.weight`` ...,
    ``dc_conv7.weight``). Accepted: a state dict, a dict holding one under ``"state_dict"``, or a path
    to a file with either (``torch.load``, CPU, ``weights_only``). A ``module.`` prefix (DataParallel) is
    stripped.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: missing or unexpected keys, or shapes that differ (e.g. a checkpoint of another width).
    """
    sd = state_dict_or_path
    if isinstance(sd, (str, Path)):
        path = Path(sd)
        if not path.is_file():
            raise FileNotFoundError(f"state_dict_or_path: no such file {path}")
        sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise ValueError(f"state_dict_or_path: expected a state dict or a path, found {type(sd).__name__}")
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"state_dict: expected the PWCDCNet keys, found {len(missing)} missing {missing[:5]} and "
            f"{len(unexpected)} unexpected {unexpected[:5]}"
        )
    bad = [
        f"{k}: expected {tuple(own[k].shape)}, found {tuple(v.shape)}"
        for k, v in sd.items()
        if tuple(v.shape) != tuple(own[k].shape)
    ]
    if bad:
        raise ValueError(f"state_dict: {len(bad)} shapes differ (another width?): " + "; ".join(bad[:5]))
    model.load_state_dict(sd, strict=True)
    return model
