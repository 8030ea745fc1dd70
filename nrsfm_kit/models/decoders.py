"""U-Net decoders of Takmaz et al. (Tables 6 and 7, the Monodepth2 decoder layout).

Five stages from the deepest encoder map: upconv(i,0) = 3x3 conv + ELU, nearest x2 upsampling to the
size of the next skip map, concatenation with that encoder map (skip connection), upconv(i,1) = 3x3 conv
+ ELU; decoder channels (16, 32, 64, 128, 256); a final 3x3 conv with a sigmoid. Reflection padding as
in Monodepth2. The output is at the input resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DECODER_CHANNELS = (16, 32, 64, 128, 256)  # Table 6 / 7 (and Monodepth2)


def _pad(x: torch.Tensor) -> torch.Tensor:
    """1-pixel reflection padding (replicate on maps of height or width 1, where reflection is undefined)."""
    return F.pad(x, (1, 1, 1, 1), mode="reflect" if min(x.shape[-2:]) > 1 else "replicate")


class ConvELU(nn.Module):
    """3x3 reflection-padded conv + ELU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3)
        self.act = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(_pad(x)))


class UNetDecoder(nn.Module):
    """Decoder over the five encoder maps -> (B, out_channels, H, W) sigmoid output in (0, 1)."""

    def __init__(self, enc_channels, out_channels: int, dec_channels=DECODER_CHANNELS):
        super().__init__()
        enc = tuple(int(c) for c in enc_channels)
        dec = tuple(int(c) for c in dec_channels)
        if len(enc) != 5 or len(dec) != 5:
            raise ValueError(f"enc_channels, dec_channels: expected 5 entries each, found {len(enc)}, {len(dec)}")
        self.up0 = nn.ModuleList()
        self.up1 = nn.ModuleList()
        for i in range(4, -1, -1):
            cin = enc[-1] if i == 4 else dec[i + 1]
            self.up0.append(ConvELU(cin, dec[i]))
            cskip = dec[i] + (enc[i - 1] if i > 0 else 0)
            self.up1.append(ConvELU(cskip, dec[i]))
        self.head = nn.Conv2d(dec[0], int(out_channels), 3)

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x = feats[-1]
        for k, i in enumerate(range(4, -1, -1)):
            x = self.up0[k](x)
            target = feats[i - 1].shape[-2:] if i > 0 else tuple(size)
            x = F.interpolate(x, size=target, mode="nearest")
            if i > 0:
                x = torch.cat([x, feats[i - 1]], dim=1)
            x = self.up1[k](x)
        return torch.sigmoid(self.head(_pad(x)))
