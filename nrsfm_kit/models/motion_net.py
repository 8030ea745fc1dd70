"""Motion-embedding network of Takmaz et al.: 6-channel ResNet-18 encoder + the decoder of Table 7.

Input: two frames stacked along channels (B, 6, H, W); output: (B, 3, H, W) embeddings in (0, 1)
(3-channel sigmoid). Pixels that move alike get close embeddings; the EDM loss weights a pair by
1 - tanh ||m_i - m_j||.
"""

from __future__ import annotations

import torch
from torch import nn

from nrsfm_kit.models.decoders import UNetDecoder
from nrsfm_kit.models.resnet import ResNet18Encoder, load_resnet18_weights
from nrsfm_kit.utils.checks import check_positive, check_tensor

EMBED_DIM = 3  # Table 7: 3-channel sigmoid output


class MotionNet(nn.Module):
    """(B, 3, H, W) frame k and (B, 3, H, W) frame l -> (B, 3, H, W) motion embeddings of frame k.

    ``scale`` multiplies the sigmoid output: embeddings in (0, scale)^3. 1 is Table 7. With 1 the largest
    embedding distance is sqrt(3), where the weight 1 - tanh(d) still falls (derivative 0.12), so training
    pushes the static and the moving embeddings into opposite corners of the cube; a weaker third motion that
    started near the static embedding is then pinned in the static corner (its gradient points out of the
    cube) and is never separated. With a larger cube the clusters settle where the weights have saturated,
    inside it (ours; measured in notebook 12 and benchmarks/RESULTS.md, edm).

    ``encoder_weights``: a path to torchvision's ResNet-18 weights (or a state dict) for the encoder (width
    64): the RGB filters of the first conv repeated for the two frames and halved, ImageNet standardisation
    (:func:`nrsfm_kit.models.load_resnet18_weights`, whose report is ``encoder_report``); None: from scratch.
    """

    def __init__(self, width: int = 64, scale: float = 1.0, encoder_weights=None):
        super().__init__()
        check_positive("scale", scale)
        self.encoder = ResNet18Encoder(6, width)
        self.decoder = UNetDecoder(self.encoder.channels, EMBED_DIM)
        self.scale = float(scale)
        self.encoder_report = None
        if encoder_weights is not None:
            self.encoder_report = load_resnet18_weights(self.encoder, encoder_weights)

    def forward(self, frame_k: torch.Tensor, frame_l: torch.Tensor) -> torch.Tensor:
        dims: dict = {}
        check_tensor("frame_k", frame_k, ("B", 3, "H", "W"), dims=dims)
        check_tensor("frame_l", frame_l, ("B", 3, "H", "W"), dims=dims)
        x = torch.cat([frame_k, frame_l], dim=1)
        return self.scale * self.decoder(self.encoder(x), frame_k.shape[-2:])
