"""Depth network of Takmaz et al.: ResNet-18 encoder + the decoder of Table 6.

The sigmoid output sigma is a scaled inverse depth: 1/d = 1/d_max + (1/d_min - 1/d_max) sigma, so the
depth lies in (d_min, d_max) (Monodepth2's ``disp_to_depth``; d_min = 0.1, d_max = 100 by default).
``encoder_weights`` initialises the encoder from torchvision's ImageNet ResNet-18, as the paper does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from nrsfm_kit.models.decoders import UNetDecoder
from nrsfm_kit.models.resnet import ResNet18Encoder, load_resnet18_weights
from nrsfm_kit.utils.checks import check_tensor


@dataclass
class DepthNetConfig:
    min_depth: float = 0.1  # Monodepth2 default, used by Takmaz et al.
    max_depth: float = 100.0  # Monodepth2 default
    width: int = 64  # ResNet-18 base width (64 = the real network)
    # path to torchvision's ResNet-18 weights loaded into the encoder when the net is built (Takmaz et al. start
    # from ImageNet weights; :func:`nrsfm_kit.models.load_resnet18_weights`, width 64); None: from scratch
    encoder_weights: str | None = None

    def __post_init__(self):
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(f"min_depth, max_depth: expected 0 < min < max, found {self.min_depth}, {self.max_depth}")
        if self.encoder_weights is not None:
            if not isinstance(self.encoder_weights, (str, os.PathLike)):
                raise ValueError(f"encoder_weights: expected a path or None, found {type(self.encoder_weights).__name__}")
            self.encoder_weights = os.fspath(self.encoder_weights)


def sigmoid_to_depth(sigma: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    """Scaled inverse depth: 1 / (1/d_max + (1/d_min - 1/d_max) sigma), sigma in (0, 1) -> depth (metres)."""
    lo, hi = 1.0 / max_depth, 1.0 / min_depth
    return 1.0 / (lo + (hi - lo) * sigma)


class DepthNet(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) depth in (min_depth, max_depth).

    With ``config.encoder_weights`` the encoder starts from those ImageNet weights (and standardises its
    input with ImageNet's statistics); ``encoder_report`` is then :func:`load_resnet18_weights`'s report.
    """

    def __init__(self, config: DepthNetConfig | None = None):
        super().__init__()
        self.config = config or DepthNetConfig()
        self.encoder = ResNet18Encoder(3, self.config.width)
        self.decoder = UNetDecoder(self.encoder.channels, 1)
        self.encoder_report = None
        if self.config.encoder_weights is not None:
            self.encoder_report = load_resnet18_weights(self.encoder, self.config.encoder_weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_tensor("images", images, (None, 3, None, None))
        sigma = self.decoder(self.encoder(images), images.shape[-2:])
        return sigmoid_to_depth(sigma, self.config.min_depth, self.config.max_depth)
