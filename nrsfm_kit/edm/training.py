"""Two-stage test-time training of the depth and motion-embedding networks (Takmaz et al., Sec. 3.4).

Stage 1 (joint): the depth net and the motion-embedding net are trained together on the ARAP EDM loss,
the embeddings weighting each sampled pair by w = 1 - tanh ||m_i - m_j|| (with the ||w||_1 regulariser).
Stage 2: the embedding net is frozen, the depth net is re-initialised and trained again with the
tau-offset weights clamp((w + tau)/(1 + tau), 0, 1). The "rigid" variant trains the depth net alone with
all weights 1 (no embeddings). Everything trains on one sequence (test-time training) through
:func:`nrsfm_kit.train.fit`; correspondences come from ground-truth flow (synthetic) or DIS optical flow.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nrsfm_kit.data.types import MonocularVideo
from nrsfm_kit.edm.loss import EDMLossConfig, edm_view_pair_loss, scale_anchor_loss
from nrsfm_kit.edm.segmentation import motion_scores, segment_motion
from nrsfm_kit.metrics.depth import constant_depth_baseline, depth_metrics
from nrsfm_kit.metrics.segmentation import roc_curve, segmentation_scores
from nrsfm_kit.models import DepthNet, DepthNetConfig, MotionNet
from nrsfm_kit.train import TrainConfig, fit
from nrsfm_kit.utils.checks import check_positive, check_tensor
from nrsfm_kit.utils.faults import fault_point
from nrsfm_kit.utils.io import atomic_write_json, check_writable, folder_lock

VARIANTS = ("embeddings", "rigid")


@dataclass
class TwoStageConfig:
    """Test-time training settings.

    steps_stage1 / steps_stage2: optimiser steps of the joint stage and of the frozen-embedding stage.
    lr: Adam learning rate. The paper trains with Adam at 1e-4 from ImageNet-pretrained encoders for many
        epochs; we train from scratch on one short video for a few hundred steps, hence 1e-3.
    width: ResNet-18 base width (64 = the real network; smaller keeps CPU runs short).
    encoder_weights: path to torchvision's ImageNet ResNet-18 weights (``resnet18-f37072fd.pth``), loaded into
        the encoders of both networks whenever they are built (stage 1, and the re-initialised depth net of
        stage 2 / rigid), as the paper starts from ImageNet-pretrained encoders; needs ``width`` 64 and
        switches the encoders' input standardisation to ImageNet's (:func:`nrsfm_kit.models.load_resnet18_weights`).
        None (default): from scratch. Set it here, not in ``depth`` (whose ``encoder_weights`` stays None).
    tau: stage-2 weight offset, weights clamp((w + tau)/(1 + tau), 0, 1): positive values soften the frozen
        weights (floor tau / (1 + tau): 1/3 for 0.5), negative ones sharpen them (w < -tau -> 0).
        0.5 is our choice, the paper's value could not be retrieved offline; measured on the cluttered
        synthetic video with the previous teaching preset (bilinear lookup, (0, 1)^3 embeddings; frozen
        embeddings of one run, non-rigid / all AbsRel): tau -0.5: 0.359 / 0.122,
        0: 0.282 / 0.103, 0.5: 0.279 / 0.099, 2: 0.274 / 0.097 (see :func:`preset_config`).
    loss: the EDM loss settings (S pairs, beta, sampling); ``loss.tau`` is overridden per stage.
    warmup_stage1: the first ``warmup_stage1`` steps of stage 1 train the depth net alone with all weights 1
        (the rigid prior), then the joint stage runs ``steps_stage1`` steps with a fresh Adam over both nets
        (ours, not in the paper, which starts from ImageNet-pretrained encoders: from scratch, the residuals
        of a random depth map carry no motion information and the embedding net saturates its sigmoid to
        one constant embedding within ~25 steps, a dead end; measured in notebook 12).
    embedding_scale: the motion net's output range (0, embedding_scale)^3 (:class:`MotionNet` ``scale``; 1 is
        Table 7's sigmoid).
    seg_threshold: embedding distance above which a pixel is "moving" (ours; the ROC covers all thresholds).
    border: border width (pixels) over which the static embedding is the channel-wise median (ours).
    init_from: a pretrained_depth.pt of :func:`nrsfm_kit.edm.pretrain.pretrain_corpus` (``nrsfm-kit depth
        pretrain``): its depth weights are loaded into every depth net built here (stage 1 and the re-initialised
        depth net of stage 2 / rigid) before test-time training; ``width`` must be the checkpoint's. None
        (default): from scratch (or ``encoder_weights``, exclusive with it).
    amp: mixed precision of the nets (:class:`nrsfm_kit.train.TrainConfig` ``amp``): None (float32, default),
        "bf16" (CPU or CUDA) or "fp16" (CUDA, with a gradient scaler); the EDM loss itself runs in float32.
    scale_anchor: weight of :func:`nrsfm_kit.edm.loss.scale_anchor_loss` on the predicted depth of every stage
        (holds the overall scale the EDM loss leaves free; ours). 0 (default) = off: at teaching size the scale
        did not drift in test-time training (250 steps), the failures measured on held-out videos are other
        minima (benchmarks/RESULTS.md); on by default in corpus pre-training.
    """

    steps_stage1: int = 300
    steps_stage2: int = 300
    warmup_stage1: int = 0
    lr: float = 1e-3
    width: int = 64
    encoder_weights: str | None = None
    tau: float = 0.5
    loss: EDMLossConfig = field(default_factory=EDMLossConfig)
    depth: DepthNetConfig = field(default_factory=lambda: DepthNetConfig(min_depth=0.1, max_depth=100.0))
    embedding_scale: float = 1.0
    seg_threshold: float = 0.3
    border: int = 3
    seed: int = 0
    progress: bool = True
    log_every: int = 10
    checkpoint_every: int = 50  # steps between checkpoints of a stage with out_dir (and at its end)
    init_from: str | None = None
    amp: str | None = None
    scale_anchor: float = 0.0

    def __post_init__(self):
        from nrsfm_kit.train.loop import check_amp

        if not float(self.scale_anchor) >= 0:
            raise ValueError(f"scale_anchor: expected a weight >= 0, found {self.scale_anchor!r}")
        check_amp(self.amp)
        if int(self.checkpoint_every) < 1:
            raise ValueError(f"checkpoint_every: expected >= 1, found {self.checkpoint_every}")
        for name in ("steps_stage1", "steps_stage2", "warmup_stage1"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name}: expected >= 0, found {getattr(self, name)}")
        if not float(self.lr) > 0:
            raise ValueError(f"lr: expected > 0, found {self.lr}")
        if not float(self.tau) > -1:
            raise ValueError(f"tau: expected > -1, found {self.tau}")
        check_positive("embedding_scale", self.embedding_scale)
        if self.encoder_weights is not None:
            if not isinstance(self.encoder_weights, (str, os.PathLike)):
                raise ValueError(f"encoder_weights: expected a path or None, found {type(self.encoder_weights).__name__}")
            self.encoder_weights = os.fspath(self.encoder_weights)
        if self.init_from is not None:
            if not isinstance(self.init_from, (str, os.PathLike)):
                raise ValueError(f"init_from: expected a path or None, found {type(self.init_from).__name__}")
            self.init_from = os.fspath(self.init_from)
        if self.depth.encoder_weights is not None:
            raise ValueError(f"depth.encoder_weights: expected None (set TwoStageConfig.encoder_weights, which loads "
                             f"into both networks), found {self.depth.encoder_weights!r}")


def check_encoder_weights(cfg: TwoStageConfig) -> None:
    """Fail before any work when ``cfg.encoder_weights`` cannot initialise both encoders (path, contents, width)."""
    if cfg.encoder_weights is None:
        return
    if int(cfg.width) != 64:
        raise ValueError(f"width: expected 64 (the real ResNet-18) with encoder_weights, found {cfg.width}")
    if cfg.depth.encoder_weights is not None:
        raise ValueError(f"depth.encoder_weights: expected None (set TwoStageConfig.encoder_weights), found "
                         f"{cfg.depth.encoder_weights!r}")
    from nrsfm_kit.models import check_resnet18_weights

    check_resnet18_weights(cfg.encoder_weights, in_channels=6)  # the motion net's; the depth net's maps alike


def check_init_from(cfg: TwoStageConfig) -> dict | None:
    """The checkpoint of ``cfg.init_from`` (None when unset), checked before any work: a pretrained depth
    checkpoint whose net width is ``cfg.width``; errors name the path."""
    if cfg.init_from is None:
        return None
    from nrsfm_kit.edm.pretrain import load_pretrained

    if cfg.encoder_weights is not None:
        raise ValueError(f"init_from: expected None with encoder_weights (both initialise the depth net), found "
                         f"{cfg.init_from!r}")
    ck = load_pretrained(cfg.init_from)
    found = ck["depth_config"].get("width")
    if found != int(cfg.width):
        raise ValueError(f"{cfg.init_from}: expected a pretrained depth net of width {cfg.width} (the config's), "
                         f"found width {found}")
    return ck


def _init_depth(net: DepthNet, ck: dict | None, cfg: TwoStageConfig) -> DepthNet:
    if ck is not None:
        from nrsfm_kit.edm.pretrain import load_depth_weights

        load_depth_weights(net, ck, cfg.init_from)
    return net


@dataclass
class DepthFitResult:
    """What :func:`fit_sequence` returns."""

    variant: str
    depth: torch.Tensor  # (T, H, W) predicted depth (network scale, metres up to an unknown factor)
    embeddings: torch.Tensor | None  # (T-1, 3, H, W) motion embeddings of frames 0..T-2, or None
    metrics: dict  # depth metrics (median scaling) {region: {metric: value}} when ground truth exists
    segmentation: dict  # {"acc", "iou", "auc", ...} when embeddings and ground truth exist
    history: list = field(default_factory=list)
    model: nn.Module | None = None

    def summary(self) -> dict:
        out = {"variant": self.variant}
        for region, m in self.metrics.items():
            for k, v in m.items():
                out[f"{region}/{k}"] = v
        out.update({f"seg/{k}": v for k, v in self.segmentation.items()})
        return out


def check_video(video: MonocularVideo) -> tuple[int, int, int]:
    """Validate frames / flow / depth sizes of a video; returns (T, H, W)."""
    dims: dict = {}
    check_tensor("video.frames", video.frames, ("T", 3, "H", "W"), dims=dims)
    T, H, W = dims["T"], dims["H"], dims["W"]
    if T < 2:
        raise ValueError(f"video.frames: expected at least 2 frames, found {T}")
    if video.flow is None:
        raise ValueError("video.flow: expected (T-1, H, W, 2) forward flow, found None (compute DIS flow first)")
    if tuple(video.flow.shape) != (T - 1, H, W, 2):
        raise ValueError(f"video.flow: expected shape {(T - 1, H, W, 2)} matching the frames, found {tuple(video.flow.shape)}")
    if video.depth is not None and tuple(video.depth.shape) != (T, H, W):
        raise ValueError(f"video.depth: expected shape {(T, H, W)}, found {tuple(video.depth.shape)}")
    if video.segmentation is not None and tuple(video.segmentation.shape) != (T, H, W):
        raise ValueError(f"video.segmentation: expected shape {(T, H, W)}, found {tuple(video.segmentation.shape)}")
    return T, H, W


def network_input(frames: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) frames as the networks' input: float32 in the standard contiguous (NCHW) layout.

    Frames built from images are often channels-last in memory (``torch.from_numpy(hwc).permute(0, 3, 1,
    2)`` has NHWC strides), and that layout runs through the whole ResNet-18 encoder. On CPUs with
    AVX-512, oneDNN (v3.12, in torch 2.13) then computes the weight gradient of the encoder's 1x1 stride-2
    shortcut convs with an implementation (``jit_1x1:avx512_core`` backward_weights, its reduce-to-unit-stride
    copy) that writes past its scratch buffer when there are fewer than 16 input channels (``width`` < 16,
    e.g. the smoke width 8): a heap corruption that crashes the process (segfault, or glibc's "corrupted
    size vs. prev_size") with 2 or more intra-op threads. NCHW takes oneDNN's blocked path, which is
    correct (uxlfoundation/oneDNN#6035; tests/edm/test_thread_regression.py).
    """
    return frames.float().contiguous()


def _valid_masks(video: MonocularVideo):
    vis = getattr(video, "flow_visibility", None)
    return None if vis is None else vis.bool()


def _anchored(loss: torch.Tensor, depth: torch.Tensor, cfg) -> torch.Tensor:
    """``loss`` plus the scale anchor of ``cfg`` (a :class:`TwoStageConfig` or a corpus ``PretrainConfig``: its
    ``scale_anchor`` weight and ``depth`` range) on the predicted ``depth`` (unchanged when it is off)."""
    if not cfg.scale_anchor > 0:
        return loss
    return loss + cfg.scale_anchor * scale_anchor_loss(depth, cfg.depth.min_depth, cfg.depth.max_depth)


def _edm_loss_over_video(depth, flow, intr, emb, cfg: EDMLossConfig, valid, gen, backend) -> torch.Tensor:
    losses = []
    for k in range(flow.shape[0]):
        e = None if emb is None else emb[k]
        m = None if valid is None else valid[k]
        losses.append(edm_view_pair_loss(depth[k], depth[k + 1], flow[k], intr, e, config=cfg, valid=m,
                                         generator=gen, backend=backend))
    return torch.stack(losses).mean()


def _joint_loss(depth, flow, intr, emb, cfg: EDMLossConfig, valid, gen, backend) -> torch.Tensor:
    """The stage-1 (joint) loss. Without trimming, the EDM loss of ``depth`` and ``emb``. With ``cfg.trim > 0``
    the depth is moved by the trimmed loss (embeddings detached) and the embeddings by the untrimmed loss (depth
    detached): the trimmed pairs, those with the largest residuals, are the very pairs the embeddings must learn
    to separate; trimmed out of their loss, their weights would only feel the regulariser pulling them to 1.
    Without embeddings (``emb`` None) it is the plain EDM loss."""
    if not cfg.trim > 0 or emb is None:
        return _edm_loss_over_video(depth, flow, intr, emb, cfg, valid, gen, backend)
    full = EDMLossConfig(**{**asdict(cfg), "trim": 0.0})
    return (_edm_loss_over_video(depth, flow, intr, emb.detach(), cfg, valid, gen, backend)
            + _edm_loss_over_video(depth.detach(), flow, intr, emb, full, valid, gen, backend))


def _train(model, step_fn, params, steps, cfg: TwoStageConfig, desc, out_dir, gen, opt=None):
    """One stage through the shared loop; the pair sampler ``gen`` (shared by the stages) is saved in each stage's
    checkpoints, so a resumed stage, and every stage after it, draws the same pairs as an uninterrupted run."""
    opt = torch.optim.Adam(params, lr=cfg.lr) if opt is None else opt
    tc = TrainConfig(steps=int(steps), seed=cfg.seed, grad_clip=10.0, log_every=cfg.log_every,
                     checkpoint_every=int(cfg.checkpoint_every), progress=cfg.progress, desc=desc, amp=cfg.amp)
    res = fit(model, step_fn, opt, tc, out_dir=out_dir, resume=out_dir is not None, state={"pairs": gen})
    fault_point("stage")
    return res


def _check_run_settings(out: Path, cfg: TwoStageConfig, variant: str, backend: str, given_depth: bool,
                        frozen: bool) -> None:
    """Resuming is by folder: refuse a folder written with other settings instead of resuming its checkpoints."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("progress", "log_every", "checkpoint_every")}
    settings.update(variant=variant, backend=backend, stage1_depth=given_depth, frozen_embeddings=frozen)
    settings = json.loads(json.dumps(settings, default=str))
    # added after folders were written: absent when unset, so folders from before them still resume
    if settings.get("encoder_weights") is None:
        settings.pop("encoder_weights", None)
    if settings.get("init_from") is None:
        settings.pop("init_from", None)
    if settings.get("amp") is None:
        settings.pop("amp", None)
    if not settings.get("scale_anchor"):
        settings.pop("scale_anchor", None)
    if settings.get("depth", {}).get("encoder_weights") is None:
        settings.get("depth", {}).pop("encoder_weights", None)
    drop_unset_trim(settings)
    check_settings_file(out / "settings.json", settings)


def drop_unset_trim(settings: dict) -> None:
    """Remove ``loss.trim`` from run ``settings`` when it is 0: it was added after run folders were written, and
    folders from before it (no key) still resume."""
    if not settings.get("loss", {}).get("trim"):
        settings.get("loss", {}).pop("trim", None)


def check_settings_file(path: Path, settings: dict) -> None:
    """Write ``settings`` (JSON-ready) to ``path`` for a new run folder; for an existing one, ValueError naming the
    keys that differ (a folder is resumed only by the run that wrote it)."""
    if path.exists():
        found = json.loads(path.read_text())
        if found != settings:
            diff = sorted(k for k in set(found) | set(settings) if found.get(k) != settings.get(k))
            raise ValueError(f"out_dir: expected a new folder or one written with the same settings, found {path} "
                             f"with different {', '.join(diff)} (use another out_dir)")
    else:
        atomic_write_json(path, settings)


def fit_sequence(
    video: MonocularVideo,
    variant: str = "embeddings",
    config: TwoStageConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    backend: str = "warp",
    frozen_embeddings: torch.Tensor | None = None,
    stage1_depth: torch.Tensor | None = None,
    eval_max_depth: float | None = None,
) -> DepthFitResult:
    """Test-time training on one video, then evaluation against its ground truth (when present).

    Args:
        video: frames (T, 3, H, W) in [0, 1], forward flow (T-1, H, W, 2) pixels, intrinsics; depth and
            segmentation (optional) are used only for evaluation.
        variant: "embeddings" (two-stage training with motion embeddings) or "rigid" (all weights 1).
        config: :class:`TwoStageConfig`.
        out_dir: optional folder for checkpoints / metrics.json of each stage (resumable; its settings.json
            records the run settings, and a folder written with other settings is refused, not resumed).
        backend: "warp" or "torch" EDM loss.
        frozen_embeddings: reuse (T-1, 3, H, W) embeddings of an earlier stage 1 (skips stage 1), or
            :func:`label_embeddings` of a ground-truth segmentation (the weights a perfect stage 1 would give).
        stage1_depth: (T, H, W) depth maps held fixed in stage 1 (a diagnostic, ours): only the motion net
            trains there (no warm-up), so with the ground-truth depth the embeddings show what this loss can
            segment when the depth is exact, separating depth errors from the loss's own limits
            (benchmarks/RESULTS.md, edm). Stage 2 is unchanged: its depth net never sees these maps.
        eval_max_depth: evaluate only where the ground-truth depth is below this (metres; None: the
            :func:`nrsfm_kit.metrics.depth.depth_metrics` default, 80; the Sintel protocol uses 50).

    Returns:
        :class:`DepthFitResult`.
    """
    check_encoder_weights(config or TwoStageConfig())  # before out_dir is created or locked
    check_init_from(config or TwoStageConfig())
    if out_dir is not None:  # fails before any work when out_dir cannot be written; one run per folder
        check_writable(out_dir, "out_dir")
        with folder_lock(out_dir, "out_dir"):
            return _fit_sequence(video, variant, config, out_dir=out_dir, backend=backend,
                                 frozen_embeddings=frozen_embeddings, stage1_depth=stage1_depth,
                                 eval_max_depth=eval_max_depth)
    return _fit_sequence(video, variant, config, out_dir=out_dir, backend=backend,
                         frozen_embeddings=frozen_embeddings, stage1_depth=stage1_depth,
                         eval_max_depth=eval_max_depth)


def _fit_sequence(
    video: MonocularVideo,
    variant: str,
    config: TwoStageConfig | None,
    *,
    out_dir: str | Path | None,
    backend: str,
    frozen_embeddings: torch.Tensor | None,
    stage1_depth: torch.Tensor | None,
    eval_max_depth: float | None = None,
) -> DepthFitResult:
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, found {variant!r}")
    cfg = config or TwoStageConfig()
    T, H, W = check_video(video)
    frames = network_input(video.frames)
    flow = video.flow.float()
    intr = video.intrinsics.float()
    valid = _valid_masks(video)
    gen = torch.Generator().manual_seed(cfg.seed)
    init = check_init_from(cfg)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        _check_run_settings(out, cfg, variant, backend, stage1_depth is not None, frozen_embeddings is not None)
    history: list = []
    dcfg = copy.deepcopy(cfg.depth)
    dcfg.width = cfg.width
    dcfg.encoder_weights = cfg.encoder_weights  # both encoders from the same ImageNet weights (or from scratch)

    emb = None
    motion = None
    if stage1_depth is not None:
        if variant != "embeddings" or frozen_embeddings is not None:
            raise ValueError("stage1_depth: expected only with variant='embeddings' and no frozen_embeddings, "
                             f"found variant={variant!r}, frozen_embeddings "
                             f"{'given' if frozen_embeddings is not None else 'None'}")
        check_tensor("stage1_depth", stage1_depth, (T, H, W))
        if not bool((stage1_depth > 0).all()):
            raise ValueError(f"stage1_depth: expected depth > 0 everywhere, found min {float(stage1_depth.min())}")
    if variant == "embeddings":
        if frozen_embeddings is None:
            # stage 1: the motion net with the depth net (joint), or alone against the given depth maps
            torch.manual_seed(cfg.seed)
            nets = {} if stage1_depth is not None else {"depth": _init_depth(DepthNet(dcfg), init, cfg)}
            model = nn.ModuleDict({**nets, "motion": MotionNet(cfg.width, cfg.embedding_scale,
                                                               encoder_weights=cfg.encoder_weights)})
            fixed = None if stage1_depth is None else stage1_depth.float()
            lcfg1 = EDMLossConfig(**{**asdict(cfg.loss), "tau": 0.0})
            opt1 = torch.optim.Adam(model.parameters(), lr=cfg.lr)
            if fixed is None and int(cfg.warmup_stage1) > 0:
                lcfg0 = EDMLossConfig(**{**asdict(cfg.loss), "tau": 0.0, "beta": 0.0})
                warm = nn.ModuleDict({"depth": model["depth"]})

                def step0(m, step):
                    d = m["depth"](frames)[:, 0].float()  # (the EDM loss in float32, also under amp)
                    return {"loss": _anchored(_edm_loss_over_video(d, flow, intr, None, lcfg0, valid, gen, backend),
                                              d, cfg)}

                opt0 = torch.optim.Adam(warm.parameters(), lr=cfg.lr)
                r0 = _train(warm, step0, None, cfg.warmup_stage1, cfg, "stage 1 warm-up (rigid)",
                            None if out is None else out / "stage1_warmup", gen, opt=opt0)
                history += [{**h, "stage": 0} for h in r0.history]
                # the joint stage continues the depth net's Adam state (a fresh state would restart it with
                # lr-sized steps on every weight); the motion net's moments start at its first real step
                for prm in warm.parameters():
                    if prm in opt0.state:
                        opt1.state[prm] = opt0.state[prm]

            def step1(m, step):
                d = m["depth"](frames)[:, 0].float() if fixed is None else fixed
                e = m["motion"](frames[:-1], frames[1:]).float()
                loss = _joint_loss(d, flow, intr, e, lcfg1, valid, gen, backend)
                return {"loss": loss if fixed is not None else _anchored(loss, d, cfg)}

            desc, sub = ("stage 1 (joint)", "stage1") if fixed is None else ("stage 1 (given depth)",
                                                                            "stage1_given_depth")
            r1 = _train(model, step1, None, cfg.steps_stage1, cfg, desc, None if out is None else out / sub, gen,
                        opt=opt1)
            history += [{**h, "stage": 1} for h in r1.history]
            motion = model["motion"].eval()
            with torch.no_grad():
                emb = motion(frames[:-1], frames[1:])
        else:
            check_tensor("frozen_embeddings", frozen_embeddings, (T - 1, 3, H, W))
            emb = frozen_embeddings.float()
        emb = emb.detach()

    # stage 2 (or the rigid variant): a freshly initialised depth net, frozen embeddings, tau-offset
    torch.manual_seed(cfg.seed + 1)
    depth_model = nn.ModuleDict({"depth": _init_depth(DepthNet(dcfg), init, cfg)})
    lcfg2 = EDMLossConfig(**{**asdict(cfg.loss), "tau": cfg.tau if emb is not None else 0.0,
                             "beta": 0.0})

    def step2(m, step):
        d = m["depth"](frames)[:, 0].float()
        return {"loss": _anchored(_edm_loss_over_video(d, flow, intr, emb, lcfg2, valid, gen, backend), d, cfg)}

    desc = "stage 2 (frozen embeddings)" if emb is not None else "rigid (no embeddings)"
    if emb is None:
        stage2_dir = "rigid"
    elif stage1_depth is not None:
        stage2_dir = "stage2_given_depth"
    else:
        stage2_dir = "stage2" if frozen_embeddings is None else "stage2_frozen"
    r2 = _train(depth_model, step2, depth_model.parameters(), cfg.steps_stage2, cfg, desc,
                None if out is None else out / stage2_dir, gen)
    history += [{**h, "stage": 2} for h in r2.history]
    depth_model.eval()
    with torch.no_grad():
        depth = depth_model["depth"](frames)[:, 0]
    metrics = evaluate_depth(depth, video, eval_max_depth)
    seg = evaluate_segmentation(emb, video, cfg) if emb is not None else {}
    model_out = nn.ModuleDict({"depth": depth_model["depth"], **({"motion": motion} if motion is not None else {})})
    return DepthFitResult(variant, depth, emb, metrics, seg, history, model_out)


def label_embeddings(segmentation: torch.Tensor, distance: float = 3.0) -> torch.Tensor:
    """(T-1, 3, H, W) embeddings of frames 0..T-2 from a label map (T, H, W): one point per moving object.

    Label 0 (static) sits at the origin; each 4-connected component of a non-zero label in a frame (one
    moving object: two objects with the same label, e.g. the cloth and the arm of the synthetic video, are
    separate components) gets its own corner of the cube [0, ``distance``]^3, so the weight 1 - tanh d is 1
    inside an object and <= 1 - tanh(distance) (0.005 for 3) between any two objects or an object and the
    static scene. The embeddings a perfect stage 1 would learn, for :func:`fit_sequence`'s
    ``frozen_embeddings``: stage 2 with them measures what the tau-offset loss does with exact weights (a
    diagnostic, ours). At most 7 moving components per frame (the cube's corners other than the origin).
    """
    from scipy import ndimage

    check_tensor("segmentation", segmentation, ("T", "H", "W"), floating=False)
    if segmentation.is_floating_point() or segmentation.dtype == torch.bool:
        raise ValueError(f"segmentation: expected an integer label tensor, found dtype {segmentation.dtype}")
    d = check_positive("distance", distance)
    labels = segmentation[:-1].detach().cpu().numpy()
    if labels.size and labels.min() < 0:
        raise ValueError(f"segmentation: expected labels >= 0, found {int(labels.min())}")
    corners = torch.tensor([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(1, 8)], dtype=torch.float32) * d
    emb = torch.zeros(labels.shape[0], 3, *labels.shape[1:])
    for t, frame in enumerate(labels):
        n_obj = 0
        for lab in np.unique(frame[frame > 0]):
            comp, n = ndimage.label(frame == lab)
            for c in range(1, n + 1):
                if n_obj == len(corners):
                    raise ValueError(f"segmentation: expected at most {len(corners)} moving components per frame, "
                                     f"found more in frame {t}")
                emb[t, :, torch.from_numpy(comp == c)] = corners[n_obj][:, None]
                n_obj += 1
    return emb.to(segmentation.device)


def evaluate_depth(depth: torch.Tensor, video: MonocularVideo, max_depth: float | None = None) -> dict:
    """Median-scaled depth metrics over all / static / dynamic / rigid / non-rigid pixels ({} without GT);
    ``max_depth``: evaluated ground truth below it, metres (None: :func:`depth_metrics`' default)."""
    if video.depth is None:
        return {}
    cap = {} if max_depth is None else {"max_depth": float(max_depth)}
    return depth_metrics(depth, video.depth.to(depth.dtype), segmentation=video.segmentation, **cap)


def constant_baseline(video: MonocularVideo, max_depth: float | None = None) -> dict:
    """Metrics of a constant depth map (the baseline both variants must beat), ``max_depth`` as
    :func:`evaluate_depth`."""
    if video.depth is None:
        raise ValueError("video.depth: expected ground-truth depth for the baseline, found None")
    cap = {} if max_depth is None else {"max_depth": float(max_depth)}
    return depth_metrics(constant_depth_baseline(video.depth), video.depth, segmentation=video.segmentation, **cap)


def evaluate_segmentation(emb: torch.Tensor, video: MonocularVideo, cfg: TwoStageConfig) -> dict:
    """ACC / IoU at ``cfg.seg_threshold`` and ROC AUC of the embedding motion scores (frames 0..T-2)."""
    if video.segmentation is None or emb is None:
        return {}
    gt = video.segmentation[:-1] > 0
    pred = segment_motion(emb, cfg.seg_threshold, cfg.border)
    out = segmentation_scores(pred, gt)
    try:
        out["auc"] = roc_curve(motion_scores(emb, cfg.border), gt)["auc"]
    except ValueError:
        out["auc"] = float("nan")
    return out


def synthetic_video(num_frames: int, height: int, width: int, seed: int = 0, scene: str = "cluttered",
                    camera_motion: float = 1.0) -> MonocularVideo:
    """The synthetic non-rigid video used for evaluation, with enough camera translation per frame.

    :func:`nrsfm_kit.data.synthetic_monocular_video` at 2 frames per second (0.5 s between frames), so that
    consecutive frames have a few pixels of parallax (pure rotations carry no depth cue for an EDM loss:
    they preserve every distance whatever the depth), in the ``"cluttered"`` scene by default: static
    geometry at several depths (the two planes of ``"room"`` show little parallax beyond a homography) and
    movers covering ~10 % of the pixels (29 % in ``"room"``), see notebook 12. ``camera_motion`` 1 (the
    generator's default path): with 2, 29 % of the pixels leave the view or are occluded in the next frame
    (13 % with 1) and those pixels, excluded from the loss, get arbitrary embeddings.
    """
    from nrsfm_kit.data import synthetic_monocular_video

    return synthetic_monocular_video(int(num_frames), int(height), int(width), seed, fps=2.0,
                                     camera_motion=camera_motion, scene=scene)


def preset_config(tiny: bool) -> tuple[TwoStageConfig, dict]:
    """(config, {"frames", "height", "width"}) for smoke runs (``tiny``) or teaching runs on this CPU.

    Teaching settings (measured on the cluttered synthetic video, 4 frames 48x64, see notebook 12 and
    benchmarks/RESULTS.md, edm): the paper's mean normalisation; ``beta`` = 0.3 of the residual level
    (``beta_scale="residual"``: with the learnt depth, static pairs have residuals ~0.6 of the mean and pairs
    across motions ~2-3 times it; an absolute beta of 0.05 froze the embeddings, 0.01 let them collapse);
    300 rigid warm-up steps before 100 joint steps (without the warm-up the embedding net saturates to one
    constant embedding; 150 gave AUC 0.92 / 0.70 for seeds 0 / 1 with the other settings of the time);
    tau = 0.5 in stage 2 (measured with the previous preset, bilinear lookup and (0, 1)^3 embeddings, on the
    frozen embeddings of one run, non-rigid / all AbsRel: tau -0.5: 0.359 / 0.122, 0: 0.282 / 0.103,
    0.5: 0.279 / 0.099, 2: 0.274 / 0.097; rigid 0.269 / 0.093); lr 1e-3 for a width-16 ResNet-18 from
    scratch; the edge-dropping depth lookup and embeddings in (0, 4)^3. With the exact depth in stage 1
    (only the motion net trained, seeds 0 / 1, ROC AUC / IoU at the best threshold): this preset 0.978 /
    0.993, 0.717 / 0.762; with the bilinear lookup 0.937 / 0.959, 0.548 / 0.566; with embeddings in (0, 1)^3
    0.870 / 0.869, 0.656 / 0.658: the thin bending arm then stays pinned in the static corner of the cube
    (:class:`nrsfm_kit.models.MotionNet`). With the learnt depth this preset gives AUC 0.969 / 0.966 against
    0.919 / 0.703 for the previous one. ``seg_threshold`` 3.5 (ours, chosen on this video): a pixel
    is moving when the weight 1 - tanh(d) of its pairs with the static embedding is below 0.2 %.
    """
    if tiny:
        cfg = TwoStageConfig(steps_stage1=4, warmup_stage1=3, steps_stage2=6, width=8, lr=1e-3,
                             embedding_scale=4.0, seg_threshold=3.5,
                             loss=EDMLossConfig(num_pairs=10_000, beta=0.3, beta_scale="residual", lookup="edge"),
                             depth=DepthNetConfig(min_depth=0.5, max_depth=10.0), progress=False)
        return cfg, {"frames": 3, "height": 48, "width": 64}
    cfg = TwoStageConfig(steps_stage1=100, warmup_stage1=300, steps_stage2=250, width=16, lr=1e-3, tau=0.5,
                         embedding_scale=4.0, seg_threshold=3.5,
                         loss=EDMLossConfig(num_pairs=20_000, beta=0.3, beta_scale="residual", lookup="edge"),
                         depth=DepthNetConfig(min_depth=0.5, max_depth=10.0))
    return cfg, {"frames": 4, "height": 48, "width": 64}
