"""ResNet-18 encoder (He et al. 2016), written here because torchvision has no CPU build in this setup.

The layout is torchvision's resnet18: a 7x7/2 stem conv + BN + ReLU, 3x3/2 max-pool, then four stages of
two BasicBlocks with 64, 128, 256, 512 channels (strides 1, 2, 2, 2). As in Monodepth2 / Takmaz et al.
the encoder returns the five feature maps used by the U-Net decoders (strides 2, 4, 8, 16, 32) and
accepts any number of input channels (3 for the depth net, 6 for two stacked frames of the motion net).
``width`` scales the channels (64 = the real ResNet-18; smaller only for CPU smoke tests).

:func:`load_resnet18_weights` loads torchvision's ImageNet weights (``resnet18-f37072fd.pth``) into it, as
Takmaz et al. (and Monodepth2) initialise their encoders, and switches the input standardisation to
ImageNet's statistics.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

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


# input standardisation (x - mean) / std of the encoder, per RGB channel (repeated for stacked frames)
NORMALISATIONS = {
    "monodepth": ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225)),  # Monodepth2's (x - 0.45) / 0.225, from scratch
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision's, with ImageNet weights
}
_NORM_BUFFERS = ("input_mean", "input_std")


def _normalisation_values(mode: str, channels: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(C,) mean and std of ``mode`` for ``channels`` input channels (RGB statistics repeated per frame)."""
    if mode not in NORMALISATIONS:
        raise ValueError(f"normalisation: expected one of {tuple(NORMALISATIONS)}, found {mode!r}")
    mean, std = NORMALISATIONS[mode]
    if mode == "monodepth":  # one value for every channel: any number of channels
        return torch.full((channels,), mean[0], dtype=dtype), torch.full((channels,), std[0], dtype=dtype)
    if channels % 3:
        raise ValueError(f"in_channels: expected a multiple of 3 (stacked RGB frames) for the {mode!r} "
                         f"normalisation, found {channels}")
    k = channels // 3
    return torch.tensor(mean * k, dtype=dtype), torch.tensor(std * k, dtype=dtype)


class ResNet18Encoder(nn.Module):
    """ResNet-18 feature pyramid: (B, C_in, H, W) -> 5 maps with ``channels`` = (w, w, 2w, 4w, 8w).

    Input images in [0, 1] are standardised inside with (x - mean) / std per channel: ``normalisation``
    "monodepth" (the default) is Monodepth2's (x - 0.45) / 0.225, the convention for training from
    scratch; "imagenet" uses ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), repeated
    per stacked frame, the statistics pretrained weights expect (Takmaz et al., supplement), and is set by
    :func:`load_resnet18_weights`. The statistics are the buffers ``input_mean`` / ``input_std`` (C_in,),
    written to the state dict only when they are not the default, so a default encoder's state dict has
    the keys it always had (checkpoints written before the buffers existed load, and read as "monodepth"),
    and a state dict of an ImageNet-initialised encoder carries its standardisation into the model that
    loads it.
    """

    def __init__(self, in_channels: int = 3, width: int = 64, normalisation: str = "monodepth"):
        super().__init__()
        if int(in_channels) < 1 or int(width) < 1:
            raise ValueError(f"in_channels, width: expected >= 1, found {in_channels}, {width}")
        w = int(width)
        self.in_channels = int(in_channels)
        mean, std = _normalisation_values(normalisation, self.in_channels)
        self.register_buffer("input_mean", mean)
        self.register_buffer("input_std", std)
        self._normalisation = normalisation
        self.channels = (w, w, 2 * w, 4 * w, 8 * w)
        self.conv1 = nn.Conv2d(self.in_channels, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(w, w), BasicBlock(w, w))
        self.layer2 = nn.Sequential(BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 2 * w))
        self.layer3 = nn.Sequential(BasicBlock(2 * w, 4 * w, 2), BasicBlock(4 * w, 4 * w))
        self.layer4 = nn.Sequential(BasicBlock(4 * w, 8 * w, 2), BasicBlock(8 * w, 8 * w))
        # (on the meta device, shapes only, for check_resnet18_weights: no values to initialise)
        for m in () if self.conv1.weight.is_meta else self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def normalisation(self) -> str:
        """The input standardisation: "monodepth", "imagenet", or "custom" (other statistics loaded)."""
        return self._normalisation

    def set_normalisation(self, mode: str) -> None:
        """Switch the input standardisation to ``mode`` ("monodepth" or "imagenet"; in place)."""
        mean, std = _normalisation_values(mode, self.in_channels, torch.float64)  # exact in a float64 encoder too
        with torch.no_grad():
            self.input_mean.copy_(mean)
            self.input_std.copy_(std)
        self._normalisation = mode

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, width={self.channels[0]}, normalisation={self.normalisation!r}"

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self._normalisation == "monodepth":  # the default is the absence of the keys (state dicts as before)
            for name in _NORM_BUFFERS:
                destination.pop(prefix + name, None)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        keys = [prefix + name for name in _NORM_BUFFERS]
        mode, n_errors = None, len(error_msgs)
        if not any(k in state_dict for k in keys):  # the default, or written before the buffers existed
            state_dict[keys[0]], state_dict[keys[1]] = _normalisation_values("monodepth", self.in_channels)
            mode = "monodepth"
        elif all(k in state_dict for k in keys):
            mode = _match_normalisation(state_dict[keys[0]], state_dict[keys[1]], self.in_channels)
            std = state_dict[keys[1]]
            if mode == "custom" and not bool((torch.isfinite(std) & (std > 0)).all()):
                error_msgs.append(f"{keys[1]}: expected finite standard deviations > 0, found {std.tolist()}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if mode is not None and len(error_msgs) == n_errors:
            self._normalisation = mode

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_tensor("images", x, (None, self.in_channels, None, None))
        # NCHW-contiguous input: oneDNN's 1x1 stride-2 backward-weights kernel (the shortcut convs) writes past its
        # scratch buffer for channels-last input with < 16 input channels (uxlfoundation/oneDNN#6035; torch 2.13)
        x = x.contiguous()
        if self._normalisation == "monodepth":  # scalars: bit-identical to the encoder before the buffers, in float64 too
            x = (x - 0.45) / 0.225
        else:
            x = (x - self.input_mean.view(1, -1, 1, 1)) / self.input_std.view(1, -1, 1, 1)
        f0 = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(f0))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f0, f1, f2, f3, f4]


def _match_normalisation(mean, std, channels: int) -> str | None:
    """The name of the statistics ``mean``, ``std`` (C,) hold ("custom" for others; None when mis-shaped)."""
    if not (isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor)):
        return None
    if tuple(mean.shape) != (channels,) or tuple(std.shape) != (channels,):
        return None  # the load reports the size mismatch
    for mode in NORMALISATIONS:
        try:
            m, s = _normalisation_values(mode, channels)
        except ValueError:
            continue
        if torch.allclose(mean.detach().float().cpu(), m, atol=1e-6) and torch.allclose(
                std.detach().float().cpu(), s, atol=1e-6):
            return mode
    return "custom"


# ----------------------------------------------------------------------------------------------------------
# torchvision's ImageNet weights

_DOWNSAMPLE = re.compile(r"^(layer\d+\.\d+)\.downsample\.")


def _torchvision_name(key: str) -> str:
    """Our state-dict key as torchvision names it (``layer2.0.down.0.weight`` -> ``layer2.0.downsample.0.weight``)."""
    return re.sub(r"^(layer\d+\.\d+)\.down\.", r"\1.downsample.", key)


def _read_weights(source) -> tuple[dict, str]:
    """(flat state dict, how errors name it) from a path to a torch file or a (wrapped) state dict."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        where = f"encoder weights {path}"
        if not path.exists():
            raise FileNotFoundError(f"{where}: expected a torch file with torchvision ResNet-18 weights, found no "
                                    "such file")
        if path.is_dir():
            raise ValueError(f"{where}: expected a torch file with torchvision ResNet-18 weights, found a directory")
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises RuntimeError / EOFError / pickle errors on garbled or foreign files
            first = str(e).splitlines()[0][:160] if str(e) else ""
            raise ValueError(f"{where}: expected a torch file with a state dict (torch.save(model.state_dict())), "
                             f"found an unreadable file ({type(e).__name__}: {first})") from None
    elif isinstance(source, dict):
        sd, where = source, "encoder weights (state dict)"
    else:
        raise ValueError(f"source: expected a path to a torch file or a state dict, found {type(source).__name__}")
    for _ in range(3):  # checkpoints wrap the weights: {"state_dict": ...} (Lightning), {"model": ...}
        if not isinstance(sd, dict):
            break
        inner = next((sd[k] for k in ("state_dict", "model") if isinstance(sd.get(k), dict)), None)
        if inner is None or "conv1.weight" in sd or "module.conv1.weight" in sd:
            break
        sd = inner
    if not isinstance(sd, dict):
        raise ValueError(f"{where}: expected a state dict (a dict of tensors, or a checkpoint with one under "
                         f"'state_dict' or 'model'), found {type(sd).__name__}")
    return {(k[len("module."):] if isinstance(k, str) and k.startswith("module.") else k): v
            for k, v in sd.items()}, where


def _plan_resnet18_load(encoder: ResNet18Encoder, source, strict_shapes: bool) -> tuple[dict, dict]:
    """Every check of :func:`load_resnet18_weights`, nothing loaded: (state dict for ``encoder``, report)."""
    if not isinstance(encoder, ResNet18Encoder):
        raise ValueError(f"encoder: expected a ResNet18Encoder, found {type(encoder).__name__}")
    width = encoder.channels[0]
    if width != 64:
        raise ValueError(f"width: expected 64 (the real ResNet-18) to load ImageNet ResNet-18 weights, found an "
                         f"encoder of width {width}")
    k, rest = divmod(encoder.in_channels, 3)
    if rest:
        raise ValueError(f"in_channels: expected 3 or a multiple of 3 (stacked RGB frames) to load RGB weights, "
                         f"found {encoder.in_channels}")
    sd, where = _read_weights(source)
    own = {n: v for n, v in encoder.state_dict().items() if n not in _NORM_BUFFERS}
    src = {}  # our key -> the file's key
    for key in sd:
        if not isinstance(key, str):
            raise ValueError(f"{where}: expected string keys (a state dict), found a key {key!r}")
        src[_DOWNSAMPLE.sub(r"\1.down.", key)] = key
    # the ImageNet classifier (no use to an encoder) and a standardisation of ours (replaced by ImageNet's)
    ignored = sorted(key for key in sd if key.startswith("fc.") or key in _NORM_BUFFERS)
    new, loaded, defaulted, skipped, first_conv = {}, [], [], [], "copied"
    for name, mine in own.items():
        tv = _torchvision_name(name)
        want = tuple(mine.shape)
        if name not in src:
            if name.endswith("num_batches_tracked"):  # older files have none (torchvision's before PyTorch 0.4.1)
                new[name] = torch.zeros_like(mine, device="cpu")
                defaulted.append(tv)
                continue
            n_missing = sum(n not in src and not n.endswith("num_batches_tracked") for n in own)
            raise ValueError(f"{where}: expected key {tv!r} of shape {want}, found it missing ({n_missing} missing "
                             "keys: not a torchvision ResNet-18 state dict?)")
        value = sd[src[name]]
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{where}: expected key {src[name]!r} to be a tensor of shape {want}, found "
                             f"{type(value).__name__}")
        got = tuple(value.shape)
        if name == "conv1.weight" and k > 1 and got == (64, 3, 7, 7):
            # Monodepth2's multi-image encoder: the RGB filters repeated for each of the k frames and divided by k,
            # so k identical frames give the single-image network's response
            value = torch.cat([value] * k, dim=1) / k
            first_conv = "repeated"
        elif got != want:
            alt = f" (or {(64, 3, 7, 7)}, repeated for the {k} stacked frames)" if name == "conv1.weight" and k > 1 else ""
            if strict_shapes:
                raise ValueError(f"{where}: expected key {src[name]!r} of shape {want}{alt}, found {got}")
            skipped.append(f"{src[name]}: expected {want}, found {got}")
            continue
        if mine.is_floating_point():
            if not value.is_floating_point():
                raise ValueError(f"{where}: expected key {src[name]!r} to hold floating-point values, found dtype "
                                 f"{value.dtype}")
            if not bool(torch.isfinite(value).all()):
                n_bad = int((~torch.isfinite(value)).sum())
                raise ValueError(f"{where}: expected finite values in key {src[name]!r}, found {n_bad} non-finite "
                                 f"of {value.numel()}")
        new[name] = value.detach()
        loaded.append(name)
    unexpected = [key for n, key in src.items() if n not in own and key not in ignored]
    if unexpected:
        raise ValueError(f"{where}: expected only torchvision ResNet-18 keys, found {len(unexpected)} others, e.g. "
                         f"{unexpected[0]!r} (another architecture: a ResNet-34 or -50?)")
    if skipped:  # left as they are (strict_shapes=False)
        cur = encoder.state_dict()
        new.update({n: cur[n] for n in own if n not in new})
    new["input_mean"], new["input_std"] = _normalisation_values("imagenet", encoder.in_channels, encoder.input_mean.dtype)
    report = {"source": where[len("encoder weights "):], "loaded": len(loaded), "ignored": ignored,
              "defaulted": defaulted, "skipped": skipped, "first_conv": first_conv,
              "first_conv_repeats": k if first_conv == "repeated" else 1, "normalisation": "imagenet"}
    return new, report


def load_resnet18_weights(encoder: ResNet18Encoder, source, *, strict_shapes: bool = True) -> dict:
    """Load torchvision's ResNet-18 weights (e.g. ImageNet's ``resnet18-f37072fd.pth``) into ``encoder``.

    ``source``: a path to a torch file (read with ``weights_only``) or a state dict in torchvision's layout
    (``conv1.weight``, ``bn1.running_mean``, ``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight``,
    ...; ``*.num_batches_tracked`` optional, set to 0 when absent), or a checkpoint dict holding one under
    ``"state_dict"`` or ``"model"``; a ``module.`` prefix (DataParallel) is stripped. ``downsample`` is our
    ``down``; the classifier ``fc.*`` is ignored. The encoder must have ``width`` 64.

    Multi-image input (``in_channels`` = 3k, e.g. the motion net's two stacked frames): as Monodepth2's
    ``ResnetEncoderMatching`` / multi-image ``resnet_multiimage_input``, the first conv's RGB filters are
    repeated k times along the input-channel axis and divided by k, so k identical frames give the
    single-image network's features. A first conv that already has ``in_channels`` inputs is copied.

    The encoder's input standardisation switches to ImageNet's statistics (``normalisation`` "imagenet":
    mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225) per frame), those the weights were trained with
    (Takmaz et al., supplement); it is kept in the encoder's state dict.

    Everything is checked before anything is loaded: on any error ``encoder`` is unchanged.
    ``strict_shapes=False`` leaves tensors whose shape differs at their current values (listed under
    ``"skipped"``) instead of raising.

    Returns:
        {"source", "loaded": number of encoder tensors set from the weights, "ignored": the file's keys not
        used (``fc.*``), "defaulted": ``num_batches_tracked`` keys absent from the file (set to 0), "skipped",
        "first_conv": "copied" or "repeated", "first_conv_repeats": k, "normalisation": "imagenet"}.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: an encoder of another width or an ``in_channels`` not a multiple of 3; a file that cannot
            be read or holds no state dict (naming the path); the first missing, mis-shaped, non-tensor or
            non-finite key (torchvision's name, expected and found shape), or keys of another architecture.
    """
    new, report = _plan_resnet18_load(encoder, source, bool(strict_shapes))
    encoder.load_state_dict(new, strict=True)
    return report


def check_resnet18_weights(source, in_channels: int = 3) -> dict:
    """The checks of :func:`load_resnet18_weights` for an encoder with ``in_channels`` inputs, without one.

    Reads ``source`` and validates it against a width-64 encoder built on the meta device (no memory, no
    init): for entry points that must fail before any work. Returns the report load_resnet18_weights would.
    """
    with torch.device("meta"):
        enc = ResNet18Encoder(in_channels, 64)
    return _plan_resnet18_load(enc, source, True)[1]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
