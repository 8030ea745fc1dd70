"""The four training stages of Neural Non-Rigid Tracking (sec. 5.1, App. C) and the supervised Psi baseline.

=========  ===================  ================  ========================================================
stage      trains               (corr, graph,     what it is
                                warp) (paper)
=========  ===================  ================  ========================================================
pretrain   Phi                  (multi-scale EPE) flow pre-training on synthetic pairs (our stand-in for
                                                  FlyingChairs / Things), random flips
flow       Phi                  (1, 0, 0)         optical flow only (L_corr); Phi_c of Table 1
solver     Phi                  (1, 5, 5)         flow + losses through the solver (weights all 1); Phi_c+g+w
mask       Psi (Phi frozen)     (0, 1000, 1000)   self-supervised weights through the solver
refine     Phi + Psi            (1, 5, 5)         joint fine-tuning
=========  ===================  ================  ========================================================

``supervised`` (App. C.3, the baseline row Phi_c + Psi_supervised): Psi alone with binary cross-entropy against
1 where the 3D error of the correspondence is <= 0.1 m and 0 where it is >= 0.3 m (no gradient in between).

Every stage runs through the one training loop (:func:`nrsfm_kit.train.fit`: tqdm, seeds, atomic checkpoints,
exact resume of model, optimiser, scheduler and RNG state) in its own folder ``<out>/<stage>``; a stage starts
from the weights of the stage before it.

Presets (:data:`TRAINING_PRESETS`):

- ``paper``: the paper's optimiser (SGD, momentum 0.9, lr 1e-5, decayed 10x every 10k iterations, batch 4),
  448 x 640 images, full-width networks, 10k sampled correspondences, 2000 correspondences per cluster. The paper
  starts from a PWC-Net pre-trained on FlyingChairs + Things (load one with ``--pwcnet``); the step counts per
  stage are ours (the paper does not state them).
- ``teaching``: a CPU-sized run: width 0.25, 128 x 192 images, Adam (lr 1e-3 for the flow stage from scratch,
  1e-4 after it; SGD at lr 1e-5 does not move a network trained from scratch in a few hundred steps), 2000
  sampled correspondences, the cluster threshold scaled with the image area (2000 x (128 x 192) / (448 x 640)
  = 171 -> 170). The loss weights are the paper's.
"""

from __future__ import annotations

import copy
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from nrsfm_kit.train import TrainConfig, TrainResult, fit, seeded
from nrsfm_kit.train import distributed as dd
from nrsfm_kit.train.state import FORMAT as CHECKPOINT_FORMAT
from nrsfm_kit.train.state import read_checkpoint
from nrsfm_kit.utils.faults import fault_point
from nrsfm_kit.utils.io import atomic_write_json

from .losses import (
    PRESETS,
    LossWeights,
    correspondence_loss,
    graph_loss,
    multiscale_epe_loss,
    valid_solves,
    warp_loss,
)
from .model import NeuralTracker, TrackerConfig, point_images, stack_samples

__all__ = ["STAGES", "ALL_STAGES", "SHIPPED_PHI", "flip_sample", "StageConfig", "TrainingPreset", "TRAINING_PRESETS",
           "train_stage", "train_tracker",
           "supervised_weight_targets", "load_tracker", "save_tracker", "preset"]

STAGES = ("flow", "solver", "mask", "refine")
ALL_STAGES = ("pretrain", *STAGES, "supervised")
_TRAINS = {"pretrain": ("phi",), "flow": ("phi",), "solver": ("phi",), "mask": ("psi",), "refine": ("phi", "psi"), "supervised": ("psi",)}


@dataclass
class StageConfig:
    """Optimiser and schedule of one stage."""

    steps: int = 1000
    optimizer: str = "sgd"  # "sgd" (paper, momentum 0.9) or "adam"
    lr: float = 1e-5  # paper
    momentum: float = 0.9  # paper
    lr_decay: float = 0.1  # paper: 10x ...
    lr_decay_every: int = 10_000  # ... every 10k iterations
    batch_size: int = 4  # paper
    grad_clip: float | None = None
    weight_decay: float = 0.0

    def __post_init__(self):
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer: expected 'sgd' or 'adam', found {self.optimizer!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected > 0, found {self.lr}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size: expected >= 1, found {self.batch_size}")
        if int(self.lr_decay_every) < 1:
            raise ValueError(f"lr_decay_every: expected >= 1, found {self.lr_decay_every}")


@dataclass
class TrainingPreset:
    """A whole training recipe: tracker settings, image size, data sizes, per-stage optimisers, loss weights."""

    tracker: TrackerConfig
    height: int
    width: int
    stages: dict[str, StageConfig]
    loss_weights: str = "paper"  # key of nrsfm_kit.tracking.losses.PRESETS
    train_pairs: int = 48
    val_pairs: int = 8
    test_pairs: int = 16
    flow_pairs: int = 48  # pre-training pairs of the pretrain stage (moving camera), added to the train pairs
    pretrained_phi: str | None = None  # PWC-Net weights to start from instead of running the pretrain stage
    supervised_thresholds: tuple[float, float] = (0.1, 0.3)  # App. C.3, metres

    def weights(self, stage: str) -> LossWeights:
        if stage in ("supervised", "pretrain"):
            return LossWeights(0.0, 0.0, 0.0)
        return PRESETS[self.loss_weights][stage]


def _paper() -> TrainingPreset:
    sgd = lambda steps: StageConfig(steps=steps)  # noqa: E731
    return TrainingPreset(
        tracker=TrackerConfig(width=1.0), height=448, width=640,
        stages={"pretrain": sgd(0), "flow": sgd(30_000), "solver": sgd(30_000), "mask": sgd(30_000), "refine": sgd(30_000),
                "supervised": sgd(30_000)},
        train_pairs=2000, val_pairs=200, test_pairs=400, flow_pairs=4000)


def _teaching() -> TrainingPreset:
    from nrsfm_kit.solver.config import SolverConfig

    adam = lambda steps, lr: StageConfig(steps=steps, optimizer="adam", lr=lr, lr_decay_every=10**9)  # noqa: E731
    return TrainingPreset(
        tracker=TrackerConfig(width=0.25, train_correspondences=2000,
                              solver=SolverConfig(min_cluster_correspondences=170)),
        height=128, width=192,
        stages={"pretrain": adam(6000, 3e-4), "flow": adam(300, 1e-4), "solver": adam(150, 1e-4),
                "mask": adam(150, 1e-3), "refine": adam(100, 1e-4), "supervised": adam(150, 1e-3)},
        train_pairs=48, val_pairs=8, test_pairs=16, flow_pairs=192,
        pretrained_phi=str(SHIPPED_PHI) if SHIPPED_PHI.is_file() else None)


def _smoke() -> TrainingPreset:
    p = _teaching()
    for k, s in p.stages.items():
        p.stages[k] = replace(s, steps=4 if k in ("flow", "pretrain") else 2, batch_size=2)
    p.train_pairs, p.val_pairs, p.test_pairs, p.flow_pairs = 4, 2, 2, 2
    return p


#: teaching-size PWC-Net pre-trained by the "pretrain" stage on our synthetic pairs (shipped with the suite)
SHIPPED_PHI = Path(__file__).resolve().parents[2] / "datasets" / "weights" / "pwcnet_teaching_synthetic.pt"

TRAINING_PRESETS = {"paper": _paper, "teaching": _teaching, "smoke": _smoke}


def preset(name: str) -> TrainingPreset:
    """A fresh copy of a named preset ("paper", "teaching", "smoke")."""
    if name not in TRAINING_PRESETS:
        raise ValueError(f"preset: expected one of {list(TRAINING_PRESETS)}, found {name!r}")
    return TRAINING_PRESETS[name]()


# --- losses of one batch ----------------------------------------------------------------------------------------


def supervised_weight_targets(target_points: torch.Tensor, valid: torch.Tensor, source_points: torch.Tensor,
                              scene_flow: torch.Tensor, thresholds: tuple[float, float] = (0.1, 0.3)):
    """App. C.3 labels: (labels (...,) 1 / 0, mask (...,) bool where a label exists).

    The 3D error of a correspondence is ||y_u - (p_u + s~_u)|| with y_u the target point sampled at c_u; label 1 where
    it is <= thresholds[0], 0 where >= thresholds[1], no label in between or where unknown.
    """
    lo, hi = thresholds
    if not 0 < lo <= hi:
        raise ValueError(f"thresholds: expected 0 < low <= high metres, found {thresholds}")
    err = (target_points - (source_points + scene_flow)).norm(dim=-1)
    known = valid & torch.isfinite(err)
    good, bad = known & (err <= lo), known & (err >= hi)
    return good.to(target_points.dtype), good | bad


def _batch_losses(tracker: NeuralTracker, samples, stage: str, weights: LossWeights, thresholds) -> dict:
    use_w = stage in ("mask", "refine", "supervised")
    solve = stage in ("solver", "mask", "refine") and (weights.graph > 0 or weights.warp > 0)
    dev = next(tracker.parameters()).device
    stack = lambda name: stack_samples(samples, name, dev)  # noqa: E731
    logs: dict = {}
    if not solve:
        batch = tracker.correspond(stack("source_color"), stack("target_color"), stack("target_depth"),
                                   stack("intrinsics"), stack("source_depth"), weights=use_w)
        results = []
    else:
        batch, results = tracker.track(samples, weights=use_w)
    loss = batch["flow"].new_zeros(())
    if stage == "pretrain" or (weights.corr > 0 and batch["flows"] is not None):
        gt, fv = stack("optical_flow").permute(0, 3, 1, 2), stack("flow_valid")
    if stage == "pretrain":
        le = multiscale_epe_loss(batch["flows"], gt, fv)
        logs.update(loss=le, l_epe=le.detach())
        return logs
    if weights.corr > 0 and batch["flows"] is not None:
        lc = correspondence_loss(batch["flows"], gt, fv)
        loss = loss + weights.corr * lc
        logs["l_corr"] = lc.detach()
    if stage == "supervised":
        sp, _ = point_images(stack("source_depth"), stack("intrinsics"), tracker.config.max_depth)
        labels, has = supervised_weight_targets(batch["target_points"].detach(), batch["valid"], sp,
                                                stack("scene_flow"), thresholds)
        has = has & stack("object_mask")
        w = batch["weights"].clamp(1e-6, 1 - 1e-6)
        bce = torch.nn.functional.binary_cross_entropy(w, labels, reduction="none")
        n = has.sum()
        lb = (bce * has).sum() / n if int(n) else bce.sum() * 0.0
        loss = loss + lb
        logs.update(l_bce=lb.detach(), positive_fraction=float(labels[has].mean()) if int(n) else float("nan"))
    if results:
        nodes_t = [r.translations for r in results]
        gt_t = [s.node_translations.to(dev) for s in samples]
        nv = [r.node_valid for r in results]
        pv = torch.stack([torch.tensor(r.solved, device=dev) & valid_solves(t[None], g[None], v[None])[0]
                          for r, t, g, v in zip(results, nodes_t, gt_t, nv)])
        logs["valid_pairs"] = float(pv.float().mean())
        rep = lambda xs: torch.cat([x if ok else x.detach() for x, ok in zip(xs, pv.tolist())], 0)[None]  # noqa: E731
        node_pair_valid = torch.cat([v & p for v, p in zip(nv, pv)], 0)[None]
        lg = graph_loss(rep(nodes_t), torch.cat(gt_t, 0)[None], node_pair_valid)
        sfs = [s.scene_flow.to(dev).reshape(-1, 3)[r.pixels] for s, r in zip(samples, results)]
        pt_valid = torch.cat([torch.full((r.pixels.numel(),), bool(p), device=dev) for r, p in zip(results, pv.tolist())])
        lw = warp_loss(rep([r.warped for r in results]), torch.cat([r.source_points for r in results], 0)[None],
                       torch.cat(sfs, 0)[None], pt_valid[None])
        loss = loss + weights.graph * lg + weights.warp * lw
        logs.update(l_graph=lg.detach(), l_warp=lw.detach())
    logs["loss"] = loss
    return logs


# --- stages ---------------------------------------------------------------------------------------------------


def flip_sample(s, horizontal: bool, vertical: bool):
    """Exact flip augmentation of the images and the optical flow (for the flow-only pretrain stage: the graph
    and the intrinsics are not flipped, so the result is not meant for the solver)."""
    if not (horizontal or vertical):
        return s
    dims = [d for d, on in ((-1, horizontal), (-2, vertical)) if on]
    flow = s.optical_flow.flip([d - 1 for d in dims])
    sign = torch.tensor([-1.0 if horizontal else 1.0, -1.0 if vertical else 1.0], dtype=flow.dtype)
    return replace(s, source_color=s.source_color.flip(dims), target_color=s.target_color.flip(dims),
                   optical_flow=flow * sign, flow_valid=s.flow_valid.flip(dims),
                   source_depth=s.source_depth.flip(dims), target_depth=s.target_depth.flip(dims))


def _optimizer(params, cfg: StageConfig):
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _set_trainable(tracker: NeuralTracker, stage: str) -> list:
    params = []
    for name in ("phi", "psi"):
        on = name in _TRAINS[stage]
        for p in getattr(tracker, name).parameters():
            p.requires_grad_(on)
            if on:
                params.append(p)
    return params


def train_stage(tracker: NeuralTracker, stage: str, train_samples, config: StageConfig, *,
                weights: LossWeights | None = None, out_dir: str | Path | None = None, seed: int = 0,
                val_fn=None, thresholds: tuple[float, float] = (0.1, 0.3), progress: bool = True,
                log_every: int = 10, checkpoint_every: int = 50) -> TrainResult:
    """Train one stage in place (resumes from ``out_dir/checkpoint.pt`` when it exists).

    Args:
        tracker: the model (its ``phi`` / ``psi`` are trained as the stage says; the other is frozen).
        stage: one of "flow", "solver", "mask", "refine", "supervised".
        train_samples: list of :class:`~nrsfm_kit.tracking.data.TrackingSample` (batches drawn at random).
        config: optimiser and schedule; weights: loss weights (default: the paper's for the stage).
        val_fn: optional ``val_fn(tracker, step) -> dict`` logged with the history.
    """
    if stage not in ALL_STAGES:
        raise ValueError(f"stage: expected one of {list(ALL_STAGES)}, found {stage!r}")
    if not train_samples:
        raise ValueError("train_samples: expected at least one TrackingSample, found none")
    weights = weights or (PRESETS["paper"][stage] if stage in STAGES else LossWeights(0.0, 0.0, 0.0))
    if stage == "pretrain" and int(config.steps) == 0:
        return TrainResult(step=0)
    params = _set_trainable(tracker, stage)
    opt = _optimizer(params, config)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=int(config.lr_decay_every), gamma=config.lr_decay)
    bs = min(int(config.batch_size), len(train_samples))
    dd.shard(bs, "batch_size")  # several processes: the global batch must split evenly

    def step_fn(model, step):
        # the global batch and its flips, the same on every rank (fit seeds `random` alike), then this rank's part;
        # the loss terms are means over the shard's valid pixels / nodes, so with several processes the gradient is
        # the mean of the shards' means (the global mean when the shards have as many valid elements)
        batch = [train_samples[i] for i in random.sample(range(len(train_samples)), bs)]
        if stage == "pretrain":
            batch = [flip_sample(s, random.random() < 0.5, random.random() < 0.5) for s in batch]
        return _batch_losses(model, dd.shard(batch, "batch_size"), stage, weights, thresholds)

    tc = TrainConfig(steps=int(config.steps), seed=int(seed), grad_clip=config.grad_clip, log_every=log_every,
                     checkpoint_every=checkpoint_every, progress=progress, desc=f"track {stage}")
    res = fit(tracker, step_fn, opt, tc, scheduler=sched, out_dir=out_dir, eval_fn=val_fn)
    for p in tracker.parameters():
        p.requires_grad_(True)
    return res


def save_tracker(path: str | Path, tracker: NeuralTracker, **meta) -> Path:
    """Atomic checkpoint {"config", "state_dict", **meta} readable by :func:`load_tracker`."""
    from nrsfm_kit.utils.io import atomic_save_torch

    return atomic_save_torch(path, {"format": "nrsfm-kit/neural-tracker/1", "config": tracker.config.to_dict(),
                                    "state_dict": tracker.state_dict(), **meta})


def load_tracker(path: str | Path, config: TrackerConfig | None = None) -> NeuralTracker:
    """A tracker from :func:`save_tracker` or from a stage's ``checkpoint.pt`` (then ``config`` gives the
    architecture), in eval mode like the matcher's loader (the training loop switches to train mode itself). A
    checkpoint of another width or architecture raises ValueError naming what differs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no such file {path}")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(ck, dict) and ck.get("format") == CHECKPOINT_FORMAT:  # a stage's training checkpoint
        ck = read_checkpoint(path)
    if not isinstance(ck, dict) or not ({"state_dict", "model"} & set(ck)):
        raise ValueError(f"{path}: expected a neural-tracker checkpoint (keys 'config' + 'state_dict', or a training "
                         f"checkpoint with 'model'), found keys {sorted(ck)[:6] if isinstance(ck, dict) else type(ck)}")
    sd = ck.get("state_dict", ck.get("model"))
    if "config" in ck and "state_dict" in ck:
        stored = TrackerConfig.from_dict(ck["config"])
        if config is not None and config.width != stored.width:
            raise ValueError(f"{path}: expected a tracker of width {config.width}, found width {stored.width}")
        config = config or stored
    tracker = NeuralTracker(config or TrackerConfig())
    own = tracker.state_dict()
    bad = [f"{k}: expected {tuple(own[k].shape)}, found {tuple(v.shape)}" for k, v in sd.items()
           if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    if bad or missing or unexpected:
        raise ValueError(f"{path}: expected the weights of NeuralTracker(width={tracker.config.width}), found "
                         f"{len(bad)} shape mismatches {bad[:3]}, {len(missing)} missing {missing[:3]}, "
                         f"{len(unexpected)} unexpected {unexpected[:3]} (another width or architecture?)")
    tracker.load_state_dict(sd)
    return tracker.eval()


def train_tracker(recipe: TrainingPreset, train_samples, *, stages=STAGES, out_dir: str | Path | None = None,
                  seed: int = 0, flow_samples=None, tracker: NeuralTracker | None = None, progress: bool = True,
                  val_fn=None, checkpoint_every: int = 50) -> tuple[NeuralTracker, dict]:
    """Run ``stages`` in order (each from the previous one's weights) and return (tracker, {stage: TrainResult}).

    ``flow_samples`` are added to the training pairs of the flow stage (pre-training data). With ``out_dir``,
    stage ``s`` checkpoints in ``out_dir/s`` (every ``checkpoint_every`` steps) and the final weights of each stage
    go to ``out_dir/s/tracker.pt``; a rerun resumes the unfinished stage exactly and skips finished ones.
    ``out_dir`` is locked while the run uses it.
    """
    for s in stages:
        if s not in ALL_STAGES:
            raise ValueError(f"stages: expected names from {list(ALL_STAGES)}, found {s!r}")
    with dd.output_folder(out_dir, "out_dir") as out:  # (rank 0's folder on several processes)
        return _train_tracker(recipe, train_samples, stages, out, seed, flow_samples, tracker, progress, val_fn,
                              checkpoint_every)


def _write_stage(final: Path, tracker: NeuralTracker, stage: str, steps: int, seed: int, recipe) -> None:
    save_tracker(final, tracker, stage=stage, steps=steps)
    atomic_write_json(final.parent / "stage.json", {"stage": stage, "steps": steps, "seed": seed,
                                                    "config": asdict(recipe.stages[stage]),
                                                    "weights": asdict(recipe.weights(stage))})


def _train_tracker(recipe, train_samples, stages, out, seed, flow_samples, tracker, progress, val_fn,
                   checkpoint_every) -> tuple[NeuralTracker, dict]:
    if tracker is None:
        with seeded(seed):
            tracker = NeuralTracker(copy.deepcopy(recipe.tracker))
    results = {}
    for k, stage in enumerate(stages):
        sdir = out / stage if out is not None else None
        final = sdir / "tracker.pt" if sdir is not None else None
        if final is not None and dd.main_only(final.is_file):  # (rank 0's folder decides; its weights for all)
            tracker.load_state_dict(dd.main_only(lambda f=final: load_tracker(f).state_dict()))
            results[stage] = None
            continue
        data = list(train_samples) + (list(flow_samples or []) if stage == "pretrain" else [])
        res = train_stage(tracker, stage, data, recipe.stages[stage], weights=recipe.weights(stage), out_dir=sdir,
                          seed=seed + 1000 * k, val_fn=val_fn, thresholds=recipe.supervised_thresholds,
                          progress=progress, checkpoint_every=checkpoint_every)
        results[stage] = res
        if final is not None:  # (rank 0 writes; every rank holds the same weights)
            dd.main_only(_write_stage, final, tracker, stage, res.step, seed, recipe)
        fault_point("stage")
    return tracker, results
