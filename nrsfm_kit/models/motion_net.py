"""Motion-embedding network of Takmaz et al.: 6-channel ResNet-18 encoder + the decoder of Table 7.

Input: two frames stacked along channels (B, 6, H, W); output: (B, 3, H, W) embeddings in (0, 1)
(3-channel sigmoid). Pixels that move alike get close embeddings; the EDM loss weights a pair by
1 - tanh ||m_i - m_j||.
"""

from __future__ import annotations

import torch
from torch import nn

from nrsfm_kit.models.decoders import UNetDecoder
from nrsfm_kit.models.resnet import ResNet18Encoder
from nrsfm_kit.utils.checks import check_tensor

EMBED_DIM = 3  # Table 7: 3-channel sigmoid output


class MotionNet(nn.Module):
    """(B, 3, H, W) frame k and (B, 3, H, W) frame l -> (B, 3, H, W) motion embeddings of frame k."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.encoder = ResNet18Encoder(6, width)
        self.decoder = UNetDecoder(self.encoder.channels, EMBED_DIM)

    def forward(self, frame_k: torch.Tensor, frame_l: torch.Tensor) -> torch.Tensor:
        dims: dict = {}
        check_tensor("frame_k", frame_k, ("B", 3, "H", "W"), dims=dims)
        check_tensor("frame_l", frame_l, ("B", 3, "H", "W"), dims=dims)
        x = torch.cat([frame_k, frame_l], dim=1)
        return self.decoder(self.encoder(x), frame_k.shape[-2:])
