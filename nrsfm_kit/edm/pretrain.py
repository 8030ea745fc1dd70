"""Self-supervised pre-training of the depth network on a corpus of generated synthetic videos (ours).

Takmaz et al. train at test time on one video (:func:`nrsfm_kit.edm.training.fit_sequence`). Here the same
stage-1 losses train one depth net (and, with ``joint``, the motion-embedding net) across N synthetic videos,
one random view pair of a random video per sample; :func:`fit_sequence` can then start from the result
(``TwoStageConfig.init_from``, ``nrsfm-kit depth fit --init``). No ground truth is used in training: the
depth maps of the corpus serve only :func:`evaluate_corpus`.

Corpus seeds come from disjoint splits (:data:`CORPUS_SPLITS`): video ``i`` of split ``s`` has generator seed
``CORPUS_SPLITS[s] + i``, its scene, camera-path scale and movers drawn from that seed, so pre-training never
sees a held-out video (at most :data:`MAX_VIDEOS` per split).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nrsfm_kit.data.types import MonocularVideo
from nrsfm_kit.edm.loss import EDMLossConfig
from nrsfm_kit.edm.training import (
    _anchored,
    _joint_loss,
    _valid_masks,
    check_settings_file,
    drop_unset_trim,
    evaluate_depth,
    network_input,
)
from nrsfm_kit.models import DepthNet, DepthNetConfig, MotionNet
from nrsfm_kit.train import TrainConfig, fit
from nrsfm_kit.train import distributed as dd
from nrsfm_kit.utils.io import atomic_save_torch, atomic_write_json

#: generator-seed bases of the corpus splits: video i of split s is rendered with seed CORPUS_SPLITS[s] + i;
#: "tune" is for choosing rules and settings (e.g. the segmentation threshold rule), never for reporting
CORPUS_SPLITS = {"pretrain": 100_000, "tune": 500_000, "heldout": 900_000}
#: videos per split (the bases are >= 400 000 apart: no seed is in two splits)
MAX_VIDEOS = 100_000
CHECKPOINT_KIND = "nrsfm_kit.edm.pretrained_depth"
CHECKPOINT_VERSION = 1
_SCENES = ("cluttered", "room")
_MOVERS = (("cloth", "cylinder", "box"), ("cloth", "box"), ("cylinder", "box"), ("cloth", "cylinder"))


@dataclass
class PretrainConfig:
    """Corpus pre-training settings.

    frames / height / width: each corpus video's length (>= 2) and size (pixels, >= 16).
    steps: optimiser steps; each step draws ``pairs_per_step`` (video, consecutive-frame pair) samples across
        the corpus with the run's generator (saved in the checkpoints: a resumed run draws the same samples).
    net_width: ResNet-18 base width of the nets. lr: Adam learning rate (as :class:`TwoStageConfig`).
    loss: the EDM loss (``tau`` is 0 as in stage 1). joint: False = the stage-1 rigid warm-up loss (depth net
        alone, all weights 1, beta 0); True = the joint stage-1 loss (depth + motion net, weights 1 - tanh of
        the embedding distance, with the beta regulariser): the motion net is trained and saved too.
    backend: EDM loss backend ("warp" or "torch").
    amp: mixed precision of the nets (:class:`nrsfm_kit.train.TrainConfig` ``amp``): None (float32, default),
        "bf16" (CPU or CUDA) or "fp16" (CUDA, with a gradient scaler); the EDM loss itself runs in float32.
    scale_anchor: weight of :func:`nrsfm_kit.edm.loss.scale_anchor_loss` (ours), added to each sample's loss:
        it holds the depth net's overall scale, which the scale-invariant EDM loss leaves free (0 = off). 0.1:
        any weight > 0 fixes the gauge; measured on 4 held-out videos at the default size (16 videos, 200
        steps, seed 0): held-out AbsRel 0.183 with it, 0.229 without (the net drifted to the 10 m bound:
        a constant map, exactly the constant baseline); benchmarks/RESULTS.md.
    """

    frames: int = 4
    height: int = 48
    width: int = 64
    steps: int = 200
    pairs_per_step: int = 2
    net_width: int = 16
    lr: float = 1e-3
    loss: EDMLossConfig = field(default_factory=lambda: EDMLossConfig(num_pairs=20_000, beta=0.3,
                                                                      beta_scale="residual", lookup="edge"))
    depth: DepthNetConfig = field(default_factory=lambda: DepthNetConfig(min_depth=0.5, max_depth=10.0))
    joint: bool = False
    embedding_scale: float = 4.0
    backend: str = "warp"
    seed: int = 0
    progress: bool = True
    log_every: int = 10
    checkpoint_every: int = 50
    amp: str | None = None
    scale_anchor: float = 0.1

    def __post_init__(self):
        from nrsfm_kit.train.loop import check_amp

        if not float(self.scale_anchor) >= 0:
            raise ValueError(f"scale_anchor: expected a weight >= 0, found {self.scale_anchor!r}")
        check_amp(self.amp)
        for name, lo in (("frames", 2), ("height", 16), ("width", 16), ("steps", 0), ("pairs_per_step", 1),
                         ("net_width", 1), ("log_every", 1), ("checkpoint_every", 1)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name}: expected an integer >= {lo}, found {v!r}")
        if not float(self.lr) > 0:
            raise ValueError(f"lr: expected > 0, found {self.lr}")
        if self.backend not in ("warp", "torch"):
            raise ValueError(f"backend: expected 'warp' or 'torch', found {self.backend!r}")
        if self.depth.encoder_weights is not None:
            raise ValueError(f"depth.encoder_weights: expected None (pre-training starts from scratch), found "
                             f"{self.depth.encoder_weights!r}")


def check_num_videos(num_videos, what: str = "num_videos") -> int:
    """``num_videos`` as an int in [1, MAX_VIDEOS]; ValueError naming ``what`` otherwise."""
    if isinstance(num_videos, bool) or not isinstance(num_videos, (int, np.integer)) or num_videos < 1:
        raise ValueError(f"{what}: expected an integer >= 1, found {num_videos}")
    if num_videos > MAX_VIDEOS:
        raise ValueError(f"{what}: expected at most {MAX_VIDEOS} (videos per corpus split), found {num_videos}")
    return int(num_videos)


def corpus_specs(num_videos: int, split: str = "pretrain") -> list[dict]:
    """The generator settings of the first ``num_videos`` videos of ``split``: [{"seed", "scene",
    "camera_motion", "objects"}], all drawn from the video's seed (deterministic, no global RNG)."""
    if split not in CORPUS_SPLITS:
        raise ValueError(f"split: expected one of {sorted(CORPUS_SPLITS)}, found {split!r}")
    n = check_num_videos(num_videos)
    specs = []
    for i in range(n):
        seed = CORPUS_SPLITS[split] + i
        rng = np.random.default_rng(seed)
        specs.append({"seed": seed, "scene": _SCENES[int(rng.integers(len(_SCENES)))],
                      "camera_motion": round(float(rng.uniform(0.6, 1.4)), 4),
                      "objects": list(_MOVERS[int(rng.integers(len(_MOVERS)))])})
    return specs


def corpus_video(spec: dict, frames: int, height: int, width: int) -> MonocularVideo:
    """One corpus video: :func:`nrsfm_kit.data.synthetic_monocular_video` at 2 fps (as
    :func:`nrsfm_kit.edm.training.synthetic_video`) with the settings of ``spec``."""
    from nrsfm_kit.data import synthetic_monocular_video

    return synthetic_monocular_video(int(frames), int(height), int(width), int(spec["seed"]), fps=2.0,
                                     camera_motion=float(spec["camera_motion"]), objects=tuple(spec["objects"]),
                                     scene=spec["scene"])


def make_corpus(num_videos: int, frames: int, height: int, width: int, split: str = "pretrain",
                progress: bool = False) -> list[tuple[dict, MonocularVideo]]:
    """[(spec, video)] of the first ``num_videos`` videos of ``split`` (see :func:`corpus_specs`)."""
    from tqdm.auto import tqdm

    specs = corpus_specs(num_videos, split)
    return [(s, corpus_video(s, frames, height, width))
            for s in tqdm(specs, desc=f"rendering {split} corpus", disable=not progress)]


@dataclass
class PretrainResult:
    """What :func:`pretrain_corpus` returns."""

    checkpoint: Path | None  # DIR/pretrained_depth.pt (None without out_dir)
    model: nn.ModuleDict  # {"depth": DepthNet, ("motion": MotionNet with joint)}
    history: list
    corpus: list  # the corpus specs
    resumed_from: int | None = None
    evaluation: dict = field(default_factory=dict)


def _depth_config(cfg: PretrainConfig) -> DepthNetConfig:
    dcfg = copy.deepcopy(cfg.depth)
    dcfg.width = int(cfg.net_width)
    return dcfg


def pretrain_corpus(num_videos: int, config: PretrainConfig | None = None, out_dir: str | Path | None = None,
                    seed: int | None = None, steps: int | None = None, progress: bool | None = None
                    ) -> PretrainResult:
    """Pre-train the depth net on ``num_videos`` videos of the "pretrain" split with the stage-1 losses.

    Args:
        num_videos: corpus size N >= 1.
        config: :class:`PretrainConfig` (``seed`` / ``steps`` / ``progress`` given here override it).
        out_dir: checkpoints in ``out_dir/checkpoints`` (resumed by the same call), then
            ``out_dir/pretrained_depth.pt`` (atomic) and ``out_dir/pretrain.json`` (config, corpus, history).
        seed: seed of the nets' initialisation and of the sample draws (the corpus is fixed by its split).

    Returns:
        :class:`PretrainResult`.
    """
    n = check_num_videos(num_videos)
    cfg = copy.deepcopy(config or PretrainConfig())
    if seed is not None:
        cfg.seed = int(seed)
    if steps is not None:
        cfg.steps = int(steps)
    if progress is not None:
        cfg.progress = bool(progress)
    cfg.__post_init__()
    if out_dir is None:
        return _pretrain(n, cfg, None)
    # one run per folder, checked before any work (rank 0's folder on several processes)
    with dd.output_folder(out_dir, "out_dir") as out:
        return _pretrain(n, cfg, out)


def _check_settings(out: Path, n: int, cfg: PretrainConfig) -> None:
    """Resuming is by folder: refuse a folder written with other settings instead of resuming its checkpoints."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("progress", "log_every", "checkpoint_every")}
    if settings.get("amp") is None:  # (added after folders were written: absent when unset, old folders resume)
        settings.pop("amp", None)
    settings = json.loads(json.dumps({**settings, "num_videos": n}, default=str))
    drop_unset_trim(settings)
    check_settings_file(out / "settings.json", settings)


def _pretrain(n: int, cfg: PretrainConfig, out: Path | None) -> PretrainResult:
    dd.shard(cfg.pairs_per_step, "pairs_per_step")  # several processes: the samples of a step must split evenly
    if out is not None:
        dd.main_only(_check_settings, out, n, cfg)
    corpus = make_corpus(n, cfg.frames, cfg.height, cfg.width, "pretrain", progress=cfg.progress and dd.is_main())
    data = [(network_input(v.frames), v.flow.float(), v.intrinsics.float(), _valid_masks(v)) for _, v in corpus]
    T = cfg.frames
    torch.manual_seed(cfg.seed)
    nets = {"depth": DepthNet(_depth_config(cfg))}
    if cfg.joint:
        nets["motion"] = MotionNet(cfg.net_width, cfg.embedding_scale)
    model = nn.ModuleDict(nets)
    # the stage-1 losses of fit_sequence: joint (tau 0, embeddings, beta) or its rigid warm-up (beta 0, no embeddings)
    lcfg = EDMLossConfig(**{**asdict(cfg.loss), "tau": 0.0, **({} if cfg.joint else {"beta": 0.0})})
    gen = torch.Generator().manual_seed(cfg.seed)

    def step(m, step_idx):
        # the step's global draw, the same on every rank: (video, pair, pixel-pair seed) per sample; each sample
        # samples its pixel pairs from its own generator, so a sample's loss does not depend on which process
        # computes it, and several processes (each its shard of the samples) follow the one-process run
        draws = [(int(torch.randint(n, (1,), generator=gen)), int(torch.randint(T - 1, (1,), generator=gen)),
                  int(torch.randint(2 ** 62, (1,), generator=gen))) for _ in range(cfg.pairs_per_step)]
        losses = []
        for v, k, pair_seed in dd.shard(draws, "pairs_per_step"):
            frames, flow, intr, valid = data[v]
            clip = frames[k:k + 2]
            d = m["depth"](clip)[:, 0].float()  # (the EDM loss in float32, also under amp)
            e = m["motion"](clip[:1], clip[1:]).float() if cfg.joint else None
            loss = _joint_loss(d, flow[k:k + 1], intr, e, lcfg, None if valid is None else valid[k:k + 1],
                               torch.Generator().manual_seed(pair_seed), cfg.backend)
            losses.append(_anchored(loss, d, cfg))
        return {"loss": torch.stack(losses).mean()}  # (equal shards: the mean over ranks is the global mean)

    tc = TrainConfig(steps=cfg.steps, seed=cfg.seed, grad_clip=10.0, log_every=cfg.log_every,
                     checkpoint_every=cfg.checkpoint_every, progress=cfg.progress, amp=cfg.amp,
                     desc=f"pretrain ({n} videos, {'joint' if cfg.joint else 'rigid'} stage-1 loss)")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    res = fit(model, step, opt, tc, out_dir=None if out is None else out / "checkpoints",
              resume=out is not None, state={"pairs": gen})
    model.eval()
    specs = [s for s, _ in corpus]
    path = None
    if out is not None:  # (rank 0 writes; every rank holds the same model)
        path = dd.main_only(_write_outputs, out, model, cfg, specs, res)
    return PretrainResult(path, model, res.history, specs, res.resumed_from)


def _write_outputs(out: Path, model: nn.ModuleDict, cfg: PretrainConfig, specs: list, res) -> Path:
    path = save_pretrained(out / "pretrained_depth.pt", model, cfg, specs, res.history)
    atomic_write_json(out / "pretrain.json", {"config": asdict(cfg), "corpus": specs, "splits": CORPUS_SPLITS,
                                              "history": res.history, "step": res.step})
    return path


def save_pretrained(path: str | Path, model: nn.ModuleDict, cfg: PretrainConfig, corpus: list, history: list) -> Path:
    """Write the pretrained depth encoder + decoder (and motion net) with their configs, atomically."""
    payload = {
        "kind": CHECKPOINT_KIND, "version": CHECKPOINT_VERSION,
        "depth": {k: v.detach().clone() for k, v in model["depth"].state_dict().items()},
        "depth_config": asdict(_depth_config(cfg)),
        "motion": ({k: v.detach().clone() for k, v in model["motion"].state_dict().items()}
                   if "motion" in model else None),
        "motion_config": {"width": int(cfg.net_width), "scale": float(cfg.embedding_scale)} if "motion" in model
        else None,
        "pretrain_config": asdict(cfg), "corpus": corpus, "history": history,
    }
    return atomic_save_torch(path, payload)


def load_pretrained(path: str | Path) -> dict:
    """The contents of a :func:`save_pretrained` file; FileNotFoundError / ValueError naming ``path`` otherwise."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: does not exist (expected a pretrained depth checkpoint, pretrained_depth.pt "
                                "of nrsfm-kit depth pretrain)")
    if p.is_dir():
        raise ValueError(f"{p}: expected a pretrained depth checkpoint file (pretrained_depth.pt), found a directory")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (any unreadable file is the same user error)
        raise ValueError(f"{p}: expected a pretrained depth checkpoint (pretrained_depth.pt of nrsfm-kit depth "
                         f"pretrain), found a file torch cannot read ({type(exc).__name__})") from None
    if not isinstance(ck, dict) or ck.get("kind") != CHECKPOINT_KIND:
        found = f"a dict with keys {sorted(map(str, ck))[:6]}" if isinstance(ck, dict) else type(ck).__name__
        raise ValueError(f"{p}: expected a pretrained depth checkpoint (kind {CHECKPOINT_KIND!r}, from nrsfm-kit "
                         f"depth pretrain), found {found}")
    if ck.get("version") != CHECKPOINT_VERSION or not isinstance(ck.get("depth"), dict) or \
            not isinstance(ck.get("depth_config"), dict):
        raise ValueError(f"{p}: expected a version-{CHECKPOINT_VERSION} pretrained depth checkpoint with 'depth' and "
                         f"'depth_config', found version {ck.get('version')!r}")
    return ck


def build_depth_net(ck: dict, path: str | Path = "checkpoint") -> DepthNet:
    """A :class:`DepthNet` with the weights of a loaded checkpoint (:func:`load_pretrained`)."""
    net = DepthNet(DepthNetConfig(**ck["depth_config"]))
    load_depth_weights(net, ck, path)
    return net


def load_depth_weights(net: DepthNet, ck: dict, path: str | Path = "checkpoint") -> DepthNet:
    """Load a checkpoint's depth weights into ``net`` (strict); ValueError naming ``path`` on a mismatch."""
    try:
        net.load_state_dict(ck["depth"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ValueError(f"{path}: expected depth weights for a net of width {net.config.width if hasattr(net, 'config') else '?'}, "
                         f"found a checkpoint of width {ck['depth_config'].get('width')} "
                         f"({first[1].strip() if len(first) > 1 else first[0]})") from None
    return net


def evaluate_corpus(checkpoint, num_videos: int, split: str = "heldout", frames: int | None = None,
                    height: int | None = None, width: int | None = None) -> dict:
    """Held-out AbsRel of a depth net: one forward pass per frame, median scaling per frame.

    Args:
        checkpoint: a pretrained_depth.pt path, a loaded checkpoint dict, or a :class:`DepthNet`.
        num_videos: the first M videos of ``split`` (default "heldout").
        frames / height / width: the videos' size (default: the checkpoint's pre-training size; needed with a net).

    Returns:
        {"split", "videos": [{"seed", "scene", "abs_rel"}], "mean_abs_rel", "seconds_per_frame", "size"}.
    """
    m = check_num_videos(num_videos)
    if isinstance(checkpoint, nn.Module):
        net, pcfg = checkpoint, {}
    else:
        ck = checkpoint if isinstance(checkpoint, dict) else load_pretrained(checkpoint)
        net, pcfg = build_depth_net(ck, "checkpoint" if isinstance(checkpoint, dict) else checkpoint), \
            ck.get("pretrain_config", {})
    T = int(frames or pcfg.get("frames", 4))
    H = int(height or pcfg.get("height", 48))
    W = int(width or pcfg.get("width", 64))
    net.eval()
    rows, seconds, count = [], 0.0, 0
    for spec, video in make_corpus(m, T, H, W, split):
        x = network_input(video.frames)
        t0 = time.perf_counter()
        with torch.no_grad():
            depth = torch.cat([net(x[t:t + 1])[:, 0] for t in range(x.shape[0])])
        seconds += time.perf_counter() - t0
        count += x.shape[0]
        abs_rel = float(evaluate_depth(depth, video)["all"]["abs_rel"])
        rows.append({"seed": spec["seed"], "scene": spec["scene"], "abs_rel": abs_rel})
    return {"split": split, "videos": rows, "mean_abs_rel": float(np.mean([r["abs_rel"] for r in rows])),
            "seconds_per_frame": seconds / max(count, 1), "size": [T, H, W]}


def untrained_depth_net(ck: dict, seed: int = 0) -> DepthNet:
    """A freshly initialised net of the checkpoint's architecture (the baseline of :func:`evaluate_corpus`)."""
    torch.manual_seed(int(seed))
    return DepthNet(DepthNetConfig(**ck["depth_config"]))
