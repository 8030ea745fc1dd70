"""DeepDeform's Siamese heatmap matcher (Bozic et al., CVPR 2020, sec. 3 and App. A).

Given a *source* patch centred on a source pixel and a *target* patch of the other frame, the network
predicts where the source centre lies in the target patch (a heatmap), the depth of that point in the
target frame and whether it is visible there at all:

- inputs: two (B, 6, S, S) patches, RGB in [0, 1] and the back-projected point XYZ in the camera frame
  (metres); pixels without depth must be set by the caller (e.g. to 0): non-finite values raise;
- **one encoder, shared by both towers** (the same weights; both patches run through it as one batch of
  2B): a stem at full resolution and ``num_down`` downscale blocks down to the (B, C_b, S/32, S/32)
  bottleneck (7 x 7 x 96 at the paper's 224 x 224 patches);
- the two bottleneck features are concatenated on channels and fused back to C_b channels (the
  "bottleneck" conv + a residual block);
- **one decoder** of upscale blocks with U-Net skips from *both* encoders (at each scale the source and
  the target features of that scale are concatenated with the upsampled decoder feature), ending at full
  resolution with two heads: the heatmap logits (B, S, S) and the depth D = exp(conv(D_out)) (B, S, S)
  metres (the loss supervises the same value at every pixel, weighted by the ground-truth Gaussian);
- a visibility head on the fused bottleneck: conv3x3 + ReLU, global average pooling, a linear layer ->
  one logit per pair, V = sigmoid.

Heatmaps (sec. 3): H_sg = sigmoid(logits), H_sm = softmax of the logits over all S * S pixels and
H = H_sg * H_sm (Hadamard product), so sum(H) <= 1 and the argmax of H is the predicted match.

Building blocks (App. A, Fig. 8-14), as implemented here:

- residual block: x -> relu(x + N(conv3x3(relu(N(conv3x3(x)))))), C -> C;
- downscale block: conv3x3 stride 2 -> N -> ReLU -> residual block (C_in -> C_out, resolution / 2);
- upscale block: bilinear x2 upsampling (``align_corners=False``) of the coarser decoder feature,
  concatenation with the source and target encoder features of that scale, conv3x3 -> N -> ReLU ->
  residual block.

N is the normalisation layer: BatchNorm (``norm="batch"``, the default) or GroupNorm with at most 8
groups (``norm="group"``; independent of the batch, used by the teaching preset because it is trained
on tiny batches). The paper's figures are reproduced here in structure only: the normalisation type,
the upsampling mode and the exact channel counts below are this implementation's choices, not numbers
taken from the paper (which fixes the 224 x 224 input and the 7 x 7 x 96 bottleneck).

Channels (ours): level l (resolution S / 2^l) of the encoder has min(32 * 2^l, 96) channels times
``width`` for l < num_down and C_b = ``bottleneck_channels`` * width at the bottleneck, each at least 8:
32, 64, 96, 96, 96 | 96 at the paper size, 8, 16, 24, 24, 24 | 24 in the teaching preset. The decoder
level l has the encoder's level-l channel count.

Parameter counts: 2,961,891 (``MatcherConfig.paper()``), 186,651 (``MatcherConfig.teaching()``).

Training (App. A.2): the heatmap and depth heads are trained first, then only the visibility head with
everything else frozen (:meth:`SiameseMatcher.freeze_for_visibility`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from nrsfm_kit.utils.checks import check_finite, check_tensor

__all__ = [
    "MatcherConfig",
    "MatcherOutput",
    "matcher_output",
    "ResidualBlock",
    "DownscaleBlock",
    "UpscaleBlock",
    "MatcherEncoder",
    "SiameseMatcher",
]

PAPER_PATCH_SIZE = 224  # sec. 3 / App. A: 224 x 224 RGB-D patches
PAPER_BOTTLENECK = 96  # App. A: 7 x 7 x 96 bottleneck
NORMS = ("batch", "group")


@dataclass
class MatcherConfig:
    """Size of :class:`SiameseMatcher`.

    Attributes:
        patch_size: S, side of the square input patches in pixels; divisible by 2**num_down
            (paper: 224).
        num_down: number of stride-2 downscale blocks (paper: 5, 224 -> 7).
        width: channel multiplier of every layer (1.0 = paper size).
        bottleneck_channels: C_b before ``width`` (paper: 96); at least 8 after scaling.
        in_channels: channels of each patch (6 = RGB + XYZ in the camera frame, metres).
        base_channels: channels of the full-resolution level before ``width`` (ours: 32), doubling per
            level up to the bottleneck count.
        norm: ``"batch"`` (BatchNorm2d) or ``"group"`` (GroupNorm, at most 8 groups).
    """

    patch_size: int = PAPER_PATCH_SIZE
    num_down: int = 5
    width: float = 1.0
    bottleneck_channels: int = PAPER_BOTTLENECK
    in_channels: int = 6
    base_channels: int = 32
    norm: str = "batch"

    def __post_init__(self) -> None:
        for name in ("patch_size", "num_down", "bottleneck_channels", "in_channels", "base_channels"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{name}: expected an integer >= 1, found {v!r}")
            setattr(self, name, int(v))
        if not (isinstance(self.width, (int, float)) and math.isfinite(self.width) and self.width > 0):
            raise ValueError(f"width: expected a finite number > 0, found {self.width!r}")
        if self.patch_size % (2**self.num_down):
            raise ValueError(
                f"patch_size: expected a multiple of 2**num_down = {2**self.num_down}, found {self.patch_size}"
            )
        if self.norm not in NORMS:
            raise ValueError(f"norm: expected one of {NORMS}, found {self.norm!r}")

    @classmethod
    def paper(cls) -> MatcherConfig:
        """The paper's size: 224 x 224 patches, 5 downscale blocks, 7 x 7 x 96 bottleneck, width 1."""
        return cls(patch_size=PAPER_PATCH_SIZE, num_down=5, width=1.0)

    @classmethod
    def teaching(cls) -> MatcherConfig:
        """A CPU-sized network: 64 x 64 patches (2 x 2 x 24 bottleneck), width 0.25, GroupNorm.

        A batch of 32 pairs takes about 0.4 s forward + backward on one CPU thread (median of 12 steps,
        0.37-0.40 s on an idle core, up to 0.64 s on a loaded one; torch 2.13, float32, a shared x86
        development machine). A forward of one pair at the paper size takes about 0.3 s there.
        """
        return cls(patch_size=64, num_down=5, width=0.25, norm="group")

    @property
    def bottleneck_width(self) -> int:
        """C_b after scaling by ``width`` (at least 8)."""
        return max(8, int(round(self.bottleneck_channels * self.width)))

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of encoder levels 0..num_down (level l at resolution S / 2**l); the last is C_b."""
        levels = [
            max(8, int(round(min(self.base_channels * 2**lvl, self.bottleneck_channels) * self.width)))
            for lvl in range(self.num_down)
        ]
        return (*levels, self.bottleneck_width)

    @property
    def bottleneck_size(self) -> int:
        """Side of the bottleneck feature map, S / 2**num_down."""
        return self.patch_size // 2**self.num_down


class MatcherOutput(NamedTuple):
    """What :class:`SiameseMatcher` predicts for B patch pairs of side S.

    Attributes:
        logits: (B, S, S) heatmap logits.
        heatmap_sigmoid: (B, S, S) H_sg = sigmoid(logits), in (0, 1).
        heatmap_softmax: (B, S, S) H_sm = softmax of the logits over the S * S pixels (sums to 1).
        heatmap: (B, S, S) H = H_sg * H_sm (sums to at most 1); its argmax is the predicted match.
        depth: (B, S, S) depth of the match in the target camera, metres (> 0).
        visibility_logit: (B,) logit of the source point being visible in the target patch.
        visibility: (B,) sigmoid(visibility_logit).
    """

    logits: torch.Tensor
    heatmap_sigmoid: torch.Tensor
    heatmap_softmax: torch.Tensor
    heatmap: torch.Tensor
    depth: torch.Tensor
    visibility_logit: torch.Tensor
    visibility: torch.Tensor


def matcher_output(logits: torch.Tensor, depth: torch.Tensor, visibility_logit: torch.Tensor) -> MatcherOutput:
    """Build a :class:`MatcherOutput` (the derived heatmaps and the visibility) from the raw predictions.

    Args:
        logits: (B, S, S) heatmap logits.
        depth: (B, S, S) depth, metres.
        visibility_logit: (B,) visibility logits.
    Returns:
        the :class:`MatcherOutput` with H_sg = sigmoid(logits), H_sm = softmax over the S * S pixels,
        H = H_sg * H_sm and V = sigmoid(visibility_logit).
    """
    dims = {}
    check_tensor("logits", logits, ("B", "S", "S"), dims=dims, finite=False)
    check_tensor("depth", depth, ("B", "S", "S"), dims=dims, finite=False)
    check_tensor("visibility_logit", visibility_logit, ("B",), dims=dims, finite=False)
    h_sg = torch.sigmoid(logits)
    h_sm = torch.softmax(logits.flatten(1), dim=1).view_as(logits)
    return MatcherOutput(
        logits=logits,
        heatmap_sigmoid=h_sg,
        heatmap_softmax=h_sm,
        heatmap=h_sg * h_sm,
        depth=depth,
        visibility_logit=visibility_logit,
        visibility=torch.sigmoid(visibility_logit),
    )


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(math.gcd(8, channels), channels)


def _conv_norm_relu(cin: int, cout: int, norm: str, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False), _norm(norm, cout), nn.ReLU(inplace=True)
    )


class ResidualBlock(nn.Module):
    """x -> relu(x + N(conv3x3(relu(N(conv3x3(x)))))), (B, C, H, W) -> (B, C, H, W) (App. A)."""

    def __init__(self, channels: int, norm: str = "batch"):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = _norm(norm, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = _norm(norm, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(x + self.norm2(self.conv2(y)))


class DownscaleBlock(nn.Module):
    """Stride-2 conv3x3 -> N -> ReLU -> residual block: (B, C_in, H, W) -> (B, C_out, H/2, W/2) (App. A)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch"):
        super().__init__()
        self.down = _conv_norm_relu(in_channels, out_channels, norm, stride=2)
        self.res = ResidualBlock(out_channels, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(self.down(x))


class UpscaleBlock(nn.Module):
    """Bilinear x2, concatenation with the skips, conv3x3 -> N -> ReLU -> residual block (App. A).

    ``forward(x, skips)``: x (B, C_in, H, W), skips (B, C_skip, 2H, 2W) (the source and target encoder
    features of that scale, already concatenated) -> (B, C_out, 2H, 2W).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, norm: str = "batch"):
        super().__init__()
        self.conv = _conv_norm_relu(in_channels + skip_channels, out_channels, norm)
        self.res = ResidualBlock(out_channels, norm)

    def forward(self, x: torch.Tensor, skips: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skips.shape[-2:], mode="bilinear", align_corners=False)
        return self.res(self.conv(torch.cat([x, skips], 1)))


class MatcherEncoder(nn.Module):
    """The tower shared by source and target: stem + ``num_down`` downscale blocks.

    ``forward(x)``: x (B, C_in, S, S) -> list of num_down + 1 features, level l (B, C_l, S/2^l, S/2^l)
    with C_l = ``config.channels[l]``; the last one is the bottleneck.
    """

    def __init__(self, config: MatcherConfig):
        super().__init__()
        ch = config.channels
        self.stem = nn.Sequential(_conv_norm_relu(config.in_channels, ch[0], config.norm),
                                  ResidualBlock(ch[0], config.norm))
        self.down = nn.ModuleList(DownscaleBlock(ch[i], ch[i + 1], config.norm) for i in range(config.num_down))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for block in self.down:
            feats.append(block(feats[-1]))
        return feats


class VisibilityHead(nn.Module):
    """conv3x3 + ReLU, global average pooling, linear: (B, C_b, s, s) -> (B,) logits."""

    def __init__(self, channels: int):
        super().__init__()
        hidden = max(8, channels // 2)
        self.conv = nn.Conv2d(channels, hidden, 3, padding=1)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((-2, -1)))[:, 0]


class SiameseMatcher(nn.Module):
    """DeepDeform's matcher: (source, target) patches -> :class:`MatcherOutput`.

    Args of ``forward``:
        source: (B, C_in, S, S) source patch (RGB in [0, 1], XYZ in metres), centred on the source pixel.
        target: (B, C_in, S, S) target patch, same shape as ``source``.
    Returns:
        :class:`MatcherOutput`: heatmaps and depth (B, S, S), visibility (B,).

    Submodules: ``encoder`` (shared by the two towers), ``fuse`` (bottleneck conv on the concatenated
    bottlenecks), ``decoder`` (upscale blocks, coarsest first), ``heatmap_head``, ``depth_head`` and
    ``visibility_head``.
    """

    def __init__(self, config: MatcherConfig | None = None):
        super().__init__()
        self.config = config or MatcherConfig()
        cfg = self.config
        ch = cfg.channels
        cb = ch[-1]
        self.encoder = MatcherEncoder(cfg)
        self.fuse = nn.Sequential(_conv_norm_relu(2 * cb, cb, cfg.norm), ResidualBlock(cb, cfg.norm))
        self.decoder = nn.ModuleList(
            UpscaleBlock(ch[lvl + 1], 2 * ch[lvl], ch[lvl], cfg.norm) for lvl in reversed(range(cfg.num_down))
        )
        self.heatmap_head = nn.Conv2d(ch[0], 1, 3, padding=1)
        self.depth_head = nn.Conv2d(ch[0], 1, 3, padding=1)
        self.visibility_head = VisibilityHead(cb)
        # depth starts near exp(0) = 1 m: small weights, zero bias
        nn.init.normal_(self.depth_head.weight, std=1e-3)
        nn.init.zeros_(self.depth_head.bias)
        self._visibility_only = False

    # -- parameter groups -------------------------------------------------------------------------------
    def encoder_parameters(self):
        """Parameters of the shared encoder (one set, used by both towers)."""
        return self.encoder.parameters()

    def visibility_parameters(self):
        """Parameters of the visibility head only."""
        return self.visibility_head.parameters()

    def freeze_for_visibility(self) -> SiameseMatcher:
        """Second training stage of App. A.2: only the visibility head trains.

        Every other parameter gets ``requires_grad = False`` and its normalisation layers stay in eval
        mode (BatchNorm running statistics are not updated) even after ``train()``. Returns ``self``.
        """
        self._visibility_only = True
        for p in self.parameters():
            p.requires_grad_(False)
        for p in self.visibility_parameters():
            p.requires_grad_(True)
        return self.train(self.training)

    def unfreeze(self) -> SiameseMatcher:
        """Undo :meth:`freeze_for_visibility`: every parameter trains again. Returns ``self``."""
        self._visibility_only = False
        for p in self.parameters():
            p.requires_grad_(True)
        return self.train(self.training)

    def train(self, mode: bool = True) -> SiameseMatcher:
        super().train(mode)
        if mode and self._visibility_only:
            for name, child in self.named_children():
                if name != "visibility_head":
                    child.eval()
        return self

    # -- forward ----------------------------------------------------------------------------------------
    def _check(self, source: torch.Tensor, target: torch.Tensor) -> None:
        s, c = self.config.patch_size, self.config.in_channels
        for name, x in (("source", source), ("target", target)):
            check_tensor(name, x, finite=False)
            shape = tuple(x.shape)
            if len(shape) != 4 or shape[1:] != (c, s, s) or (name == "target" and shape != tuple(source.shape)):
                want = f"(B, {c}, {s}, {s})" if name == "source" else f"{tuple(source.shape)} (as source)"
                raise ValueError(f"{name}: expected shape {want}, found {shape}")
            check_finite(name, x)
        if source.dtype != target.dtype or source.device != target.device:
            raise ValueError(
                f"target: expected dtype {source.dtype} on {source.device} (as source), "
                f"found {target.dtype} on {target.device}"
            )

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> MatcherOutput:
        self._check(source, target)
        b = source.shape[0]
        # one encoder, both towers in one batch of 2B
        feats = self.encoder(torch.cat([source, target], 0))
        fs = [f[:b] for f in feats]
        ft = [f[b:] for f in feats]
        x = self.fuse(torch.cat([fs[-1], ft[-1]], 1))
        visibility_logit = self.visibility_head(x)
        for i, block in enumerate(self.decoder):
            lvl = self.config.num_down - 1 - i
            x = block(x, torch.cat([fs[lvl], ft[lvl]], 1))
        logits = self.heatmap_head(x)[:, 0]
        depth = torch.exp(self.depth_head(x)[:, 0])
        return matcher_output(logits, depth, visibility_logit)
