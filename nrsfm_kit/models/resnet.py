"""ResNet-18 encoder (He et al. 2016), written here because torchvision has no CPU build in this setup.

The layout is torchvision's resnet18: a 7x7/2 stem conv + BN + ReLU, 3x3/2 max-pool, then four stages of
two BasicBlocks with 64, 128, 256, 512 channels (strides 1, 2, 2, 2). As in Monodepth2 / Takmaz et al.
the encoder returns the five feature maps used by the U-Net decoders (strides 2, 4, 8, 16, 32) and
accepts any number of input channels (3 for the depth net, 6 for two stacked frames of the motion net).
``width`` scales the channels (64 = the real ResNet-18; smaller only for CPU smoke tests).
"""

from __future__ import annotations

import torch
from torch import nn

from nrsfm_kit.utils.checks import check_tensor


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity (or 1x1 conv) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + idt)


class ResNet18Encoder(nn.Module):
    """ResNet-18 feature pyramid: (B, C_in, H, W) -> 5 maps with ``channels`` = (w, w, 2w, 4w, 8w).

    Input images are normalised inside with (x - 0.45) / 0.225 (Monodepth2's convention).
    """

    def __init__(self, in_channels: int = 3, width: int = 64):
        super().__init__()
        if int(in_channels) < 1 or int(width) < 1:
            raise ValueError(f"in_channels, width: expected >= 1, found {in_channels}, {width}")
        w = int(width)
        self.in_channels = int(in_channels)
        self.channels = (w, w, 2 * w, 4 * w, 8 * w)
        self.conv1 = nn.Conv2d(self.in_channels, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(w, w), BasicBlock(w, w))
        self.layer2 = nn.Sequential(BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 2 * w))
        self.layer3 = nn.Sequential(BasicBlock(2 * w, 4 * w, 2), BasicBlock(4 * w, 4 * w))
        self.layer4 = nn.Sequential(BasicBlock(4 * w, 8 * w, 2), BasicBlock(8 * w, 8 * w))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_tensor("images", x, (None, self.in_channels, None, None))
        # NCHW-contiguous input: oneDNN's 1x1 stride-2 backward-weights kernel (the shortcut convs) writes past its
        # scratch buffer for channels-last input with < 16 input channels (uxlfoundation/oneDNN#6035; torch 2.13)
        x = x.contiguous()
        f0 = self.relu(self.bn1(self.conv1((x - 0.45) / 0.225)))
        f1 = self.layer1(self.maxpool(f0))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f0, f1, f2, f3, f4]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
