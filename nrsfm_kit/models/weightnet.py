"""Correspondence weight network Psi of Neural Non-Rigid Tracking (Bozic et al. 2020, sec. 4.2, eq. 6).

Psi takes the level-2 PWC-Net feature H (B, 565, H/4, W/4), brings it to full resolution with two
transposed convolutions (565 -> 32 -> 16, each x2, ReLU), concatenates the source RGB, source XYZ,
target RGB and target XYZ sampled at the predicted correspondences (16 + 4 * 3 = 28 channels), and maps
them through conv3x3 -> 16, three residual blocks and conv3x3 -> 1 to a sigmoid weight per pixel.

At ``width=1`` (and ``feature_channels=565``) it has 315,633 parameters.

Non-finite XYZ (pixels without depth, correspondences outside the target) are replaced by 0 before
entering the network; such pixels are typically also masked by the caller. Non-finite RGB or
features raise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nrsfm_kit.utils.checks import check_tensor

FEATURE_CHANNELS = 565  # PWCDCNet level-2 decoder feature at width 1


@dataclass
class WeightNetConfig:
    feature_channels: int = FEATURE_CHANNELS  # channels of H (PWCDCNet.feature_channels)
    width: float = 1.0  # multiplier of the 32 / 16 hidden channels (1.0 = the paper's network)

    def __post_init__(self):
        if int(self.feature_channels) != self.feature_channels or self.feature_channels < 1:
            raise ValueError(f"feature_channels: expected an integer >= 1, found {self.feature_channels}")
        if not self.width > 0:
            raise ValueError(f"width: expected > 0, found {self.width}")


class ResidualBlock(nn.Module):
    """x -> relu(x + conv(relu(conv(x)))), two 3x3 convs, C -> C."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class WeightNet(nn.Module):
    """Psi: (feature, source_rgb, source_xyz, target_rgb, target_xyz) -> (B, H, W) weights in (0, 1).

    Args of ``forward``:
        feature: (B, C_f, H/4, W/4) PWC-Net level-2 feature (C_f = ``config.feature_channels``).
        source_rgb: (B, 3, H, W) in [0, 1].
        source_xyz: (B, 3, H, W) source point image, metres (non-finite -> 0).
        target_rgb: (B, 3, H, W) target RGB (sampled at the correspondences by the caller, as in the paper).
        target_xyz: (B, 3, H, W) target points sampled at the correspondences, metres (non-finite -> 0).
    """

    def __init__(self, config: WeightNetConfig | None = None):
        super().__init__()
        self.config = config or WeightNetConfig()
        c1 = max(1, int(round(32 * self.config.width)))
        c2 = max(1, int(round(16 * self.config.width)))
        self.up1 = nn.ConvTranspose2d(self.config.feature_channels, c1, 4, 2, 1)
        self.up2 = nn.ConvTranspose2d(c1, c2, 4, 2, 1)
        self.conv_in = nn.Conv2d(c2 + 12, c2, 3, padding=1)
        self.blocks = nn.Sequential(*[ResidualBlock(c2) for _ in range(3)])
        self.conv_out = nn.Conv2d(c2, 1, 3, padding=1)

    def forward(
        self,
        feature: torch.Tensor,
        source_rgb: torch.Tensor,
        source_xyz: torch.Tensor,
        target_rgb: torch.Tensor,
        target_xyz: torch.Tensor,
    ) -> torch.Tensor:
        check_tensor("source_rgb", source_rgb, (None, 3, None, None))
        b, _, h, w = source_rgb.shape
        if h % 4 or w % 4:
            raise ValueError(f"source_rgb: expected H, W divisible by 4, found (H, W) = ({h}, {w})")
        check_tensor("feature", feature, (b, self.config.feature_channels, h // 4, w // 4))
        check_tensor("target_rgb", target_rgb, (b, 3, h, w))
        check_tensor("source_xyz", source_xyz, (b, 3, h, w), finite=False)
        check_tensor("target_xyz", target_xyz, (b, 3, h, w), finite=False)
        zero = torch.zeros((), dtype=source_xyz.dtype, device=source_xyz.device)
        source_xyz = torch.where(torch.isfinite(source_xyz), source_xyz, zero)
        target_xyz = torch.where(torch.isfinite(target_xyz), target_xyz, zero)
        x = torch.relu(self.up2(torch.relu(self.up1(feature))))
        x = torch.cat([x, source_rgb, source_xyz, target_rgb, target_xyz], 1)
        x = self.blocks(torch.relu(self.conv_in(x)))
        return torch.sigmoid(self.conv_out(x))[:, 0]
