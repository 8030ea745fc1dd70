"""Training DeepDeform's matcher (App. A.2) through the one training loop (:func:`nrsfm_kit.train.fit`).

Two stages, each in its own folder ``<out>/<stage>`` (tqdm, atomic checkpoints, exact resume):

- ``heatmap``: heatmap + depth, L = L_H + lambda_D L_D (sec. 3);
- ``visibility``: only the visibility layers (encoder, bottleneck and decoder frozen), lambda_V L_V.

Batches are drawn by :class:`~nrsfm_kit.matching.data.PatchSampler` (augmentation, non-rigid weighting) with a
generator seeded by (seed, step): a resumed run draws exactly the batches the uninterrupted one would have.

Presets (:data:`TRAINING_PRESETS`):

- ``paper``: the paper's optimiser: SGD, momentum 0.9, lr 0.01, weight decay 5e-4, batch 32, lr / 10 every 30k
  steps; 224 x 224 patches, the full-width network, 480 x 640 frames. The total step counts (90k + 10k) are ours:
  the paper gives the schedule, not the length.
- ``teaching``: a CPU-sized run: the teaching network (64 x 64 patches, width 0.25), 128 x 192 synthetic pairs,
  batch 32, the paper's lambdas, Adam at lr 1e-3 decayed 10x after 70 % of the steps: in a side-by-side run of 300
  steps (seed 0, same batches) SGD (lr 0.01, momentum 0.9, clipped) reached a median validation error of 5.9 px,
  Adam 4.4 px, and a CPU run has only a few thousand steps.

Gradient clipping (ours, max norm 1): at the paper's lr 0.01 the first SGD step diverged (gradient norm 454 at step
0, the depth exp(.) overflowed at step 1) on the teaching network; the clip keeps the paper's optimiser usable.
- ``smoke``: a few steps, for tests.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from nrsfm_kit.models.matcher import MatcherConfig, SiameseMatcher
from nrsfm_kit.train import TrainConfig, TrainResult, fit, seeded
from nrsfm_kit.train import distributed as dd
from nrsfm_kit.utils.faults import fault_point
from nrsfm_kit.utils.io import atomic_save_torch

from .data import PatchBatch, PatchSampler, SamplingConfig
from .losses import MatcherLossConfig, matcher_loss

__all__ = ["MATCHER_STAGES", "MatcherStage", "MatcherTrainingPreset", "TRAINING_PRESETS", "matcher_preset",
           "train_matcher", "save_matcher", "load_matcher", "SHIPPED_MATCHER", "validation_metrics"]

MATCHER_STAGES = ("heatmap", "visibility")
#: the teaching matcher trained on synthetic pairs, shipped with the suite (datasets/weights/README.md)
SHIPPED_MATCHER = Path(__file__).resolve().parents[2] / "datasets" / "weights" / "matcher_teaching_synthetic.pt"


@dataclass
class MatcherStage:
    """One training stage: steps, optimiser settings (App. A.2: SGD) and the step-decay period."""

    steps: int
    optimizer: str = "sgd"  # "sgd" (App. A.2) or "adam" (teaching preset)
    grad_clip: float | None = 1.0  # max gradient norm (ours; see the module docstring)
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_step: int = 30_000  # lr / 10 every lr_step steps
    batch_size: int = 32

    def __post_init__(self) -> None:
        if int(self.steps) < 0:
            raise ValueError(f"steps: expected >= 0, found {self.steps}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer: expected 'sgd' or 'adam', found {self.optimizer!r}")
        for name in ("lr", "lr_step", "batch_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected > 0, found {getattr(self, name)!r}")


@dataclass
class MatcherTrainingPreset:
    """Everything a matcher training run needs: network, sampling, loss, stages and the synthetic data size."""

    name: str
    matcher: MatcherConfig
    stages: dict[str, MatcherStage]
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    loss: MatcherLossConfig = field(default_factory=MatcherLossConfig)
    height: int = 128
    width: int = 192
    train_pairs: int = 48
    val_pairs: int = 8
    test_pairs: int = 16
    eval_points: int = 64  # benchmark points per test pair
    val_batch: int = 64
    log_every: int = 25

    def __post_init__(self) -> None:
        if int(self.sampling.patch_size) != int(self.matcher.patch_size):
            raise ValueError(f"sampling.patch_size: expected the matcher's patch size {self.matcher.patch_size}, "
                             f"found {self.sampling.patch_size}")
        unknown = sorted(set(self.stages) - set(MATCHER_STAGES))
        if unknown:
            raise ValueError(f"stages: expected keys among {MATCHER_STAGES}, found {unknown}")


def _presets() -> dict[str, MatcherTrainingPreset]:
    paper_m = MatcherConfig.paper()
    teach_m = MatcherConfig.teaching()
    return {
        "paper": MatcherTrainingPreset(
            "paper", paper_m, {"heatmap": MatcherStage(90_000), "visibility": MatcherStage(10_000)},
            sampling=SamplingConfig(patch_size=224), height=480, width=640, train_pairs=400, val_pairs=40,
            test_pairs=40, eval_points=100, log_every=100),
        "teaching": MatcherTrainingPreset(
            "teaching", teach_m, {"heatmap": MatcherStage(4000, optimizer="adam", lr=1e-3, lr_step=2800),
                                  "visibility": MatcherStage(1000, optimizer="adam", lr=1e-3, lr_step=700)},
            sampling=SamplingConfig(patch_size=64), train_pairs=96),
        "smoke": MatcherTrainingPreset(
            "smoke", teach_m, {"heatmap": MatcherStage(4, batch_size=8), "visibility": MatcherStage(2, batch_size=8)},
            sampling=SamplingConfig(patch_size=64), height=64, width=96, train_pairs=2, val_pairs=1, test_pairs=2,
            eval_points=16, val_batch=16, log_every=2),
    }


TRAINING_PRESETS = tuple(_presets())


def matcher_preset(name: str) -> MatcherTrainingPreset:
    """A fresh copy of a preset (``paper``, ``teaching``, ``smoke``)."""
    p = _presets()
    if name not in p:
        raise ValueError(f"preset: expected one of {list(p)}, found {name!r}")
    return copy.deepcopy(p[name])


@torch.no_grad()
def validation_metrics(matcher: SiameseMatcher, batch) -> dict:
    """Median 2D error (patch pixels) of the heatmap argmax over the visible samples of a fixed batch, mean
    absolute depth error (metres) and the visibility accuracy at 0.5."""
    out = matcher(batch.source, batch.target)
    S = out.heatmap.shape[-1]
    k = out.heatmap.flatten(1).argmax(1)
    pred = torch.stack([k % S, k // S], -1).to(batch.target_px.dtype)
    vis = batch.visible
    res = {"val_vis_acc": float(((out.visibility >= 0.5) == vis).float().mean())}
    if vis.any():
        err = (pred[vis] - batch.target_px[vis]).norm(dim=-1)
        d = out.depth.flatten(1).gather(1, k[:, None]).squeeze(1)
        res.update(val_err_px=float(err.median()), val_acc_5px=float((err <= 5).float().mean()),
                   val_depth_m=float((d[vis] - batch.target_depth[vis]).abs().mean()))
    return res


def _to(batch, device):
    return batch if device.type == "cpu" else type(batch)(*[x.to(device) for x in batch])


def _stage_generator(seed: int, stage: str, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + MATCHER_STAGES.index(stage) * 10_000_019 + step)


def _global_mean(logs: dict, mine: torch.Tensor, everyone: torch.Tensor, stage: str, cfg: MatcherLossConfig
                 ) -> dict:
    """Several processes: L_H and L_D are means over a shard's *visible* samples, whose number differs between
    shards; rescaled by (visible in the shard x ranks / visible in the global batch), the mean over the ranks (what
    the loop's gradient average takes) is the mean over the global batch's visible samples, as on one process.
    L_V is a mean over all samples (equal shards): unchanged. One process: ``logs`` as they are."""
    n = dd.world()[1]
    if n == 1:
        return logs
    f = float(mine.sum()) * n / max(float(everyone.sum()), 1.0)
    out = {**logs, "heatmap": logs["heatmap"] * f, "depth": logs["depth"] * f}
    if stage != "visibility":  # (the visibility term of stage "all" is a mean over all samples: not rescaled)
        vis = cfg.lambda_visibility * logs["visibility"] if stage == "all" else 0.0
        out["loss"] = (logs["loss"] - vis) * f + vis
    return out


def train_matcher(preset: MatcherTrainingPreset, train_pairs, *, val_pairs=None, out_dir=None, seed: int = 0,
                  matcher: SiameseMatcher | None = None, stages=MATCHER_STAGES, progress: bool = True,
                  steps: int | None = None, device=None, checkpoint_every: int | None = None,
                  amp: str | None = None) -> tuple[SiameseMatcher, dict[str, TrainResult]]:
    """Train the matcher's stages in order (App. A.2); ``out_dir/<stage>`` holds each stage's checkpoint (resumed
    when present). ``steps`` overrides every stage's step count. ``device``: where the network trains (default:
    where its parameters are; patches are drawn on the CPU and moved per batch). Returns the matcher and each
    stage's result. ``checkpoint_every``: steps between checkpoints (default max(log_every, 100)); ``out_dir`` is
    locked while the run uses it. ``amp``: mixed precision (:class:`nrsfm_kit.train.TrainConfig` ``amp``: None =
    float32, "bf16", or "fp16" on CUDA).

    Several processes (torchrun, :mod:`nrsfm_kit.train.distributed`): every rank draws the same global batch and
    trains on its part (``batch_size`` a multiple of the process count); L_H and L_D are rescaled to the global
    batch's visible samples, so the run follows the one-process run (with BatchNorm, ``norm="batch"``, the batch
    statistics are the part's). Rank 0 writes ``out_dir``."""
    from nrsfm_kit.train.loop import check_amp

    check_amp(amp)
    for s in stages:
        if s not in MATCHER_STAGES:
            raise ValueError(f"stages: expected names among {MATCHER_STAGES}, found {s!r}")
    with dd.output_folder(out_dir, "out_dir"):  # (rank 0's folder on several processes)
        return _train_matcher(preset, train_pairs, val_pairs, out_dir, seed, matcher, stages, progress, steps,
                              device, checkpoint_every, amp)


def _train_matcher(preset, train_pairs, val_pairs, out_dir, seed, matcher, stages, progress, steps, device,
                   checkpoint_every, amp) -> tuple[SiameseMatcher, dict[str, TrainResult]]:
    if matcher is None:
        with seeded(seed):
            matcher = SiameseMatcher(preset.matcher)
    model = matcher
    if device is not None:
        model = model.to(device)
    dev = next(model.parameters()).device
    if int(model.config.patch_size) != int(preset.sampling.patch_size):
        raise ValueError(f"matcher: expected patch size {preset.sampling.patch_size} of the preset, found "
                         f"{model.config.patch_size}")
    sampler = PatchSampler(train_pairs, preset.sampling, seed=seed, progress=progress)
    val = None
    if val_pairs:
        vs = PatchSampler(val_pairs, preset.sampling, seed=seed + 7, augment=True)
        val = _to(vs.sample(preset.val_batch, torch.Generator().manual_seed(12345 + seed)), dev)
    results: dict[str, TrainResult] = {}
    for stage in stages:
        st = preset.stages.get(stage)
        if st is None:
            continue
        if steps is not None:
            st = replace(st, steps=int(steps))
        if stage == "visibility":
            model.freeze_for_visibility()
            params = list(model.visibility_parameters())
            loss_stage = "visibility"
        else:
            model.unfreeze()
            params = [p for p in model.parameters() if p.requires_grad]
            loss_stage = "heatmap_depth"
        if st.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=st.lr, momentum=st.momentum, weight_decay=st.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=st.lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=int(st.lr_step), gamma=0.1)

        dd.shard(st.batch_size, "batch_size")  # several processes: the global batch must split evenly

        def step_fn(m, step, _stage=stage, _st=st, _ls=loss_stage):
            full = sampler.sample(_st.batch_size, _stage_generator(seed, _stage, step))  # the same on every rank
            b = _to(PatchBatch(*[dd.shard(x, "batch_size") for x in full]), dev)  # this rank's part
            out = m(b.source, b.target)
            logs = matcher_loss(out, b.target_px, b.target_depth, b.visible, preset.loss, stage=_ls)
            return _global_mean(logs, b.visible, full.visible, _ls, preset.loss)

        def eval_fn(m, step):
            return validation_metrics(m, val) if val is not None else {}

        cfg = TrainConfig(steps=int(st.steps), seed=seed, grad_clip=st.grad_clip, log_every=preset.log_every,
                          checkpoint_every=int(checkpoint_every or max(preset.log_every, 100)), progress=progress,
                          desc=f"matcher {stage}", amp=amp)
        sub = None if out_dir is None else Path(out_dir) / stage
        results[stage] = fit(model, step_fn, opt, cfg, scheduler=sched, out_dir=sub, eval_fn=eval_fn)
        fault_point("stage")
    model.unfreeze()
    model.eval()
    return model, results


def save_matcher(path, matcher: SiameseMatcher, **meta) -> Path:
    """Write the matcher (weights + its :class:`MatcherConfig` + ``meta``) atomically."""
    return atomic_save_torch(path, {"kind": "deepdeform-matcher", "config": asdict(matcher.config),
                                    "state_dict": matcher.state_dict(), "meta": meta})


def load_matcher(path=None) -> SiameseMatcher:
    """Read a matcher written by :func:`save_matcher` (default: the shipped teaching matcher), in eval mode."""
    p = Path(path) if path is not None else SHIPPED_MATCHER
    if not p.is_file():
        raise FileNotFoundError(f"{p}: matcher checkpoint not found")
    ckpt = torch.load(p, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("kind") != "deepdeform-matcher":
        raise ValueError(f"{p}: expected a matcher checkpoint written by save_matcher (kind 'deepdeform-matcher'), "
                         f"found {type(ckpt).__name__} with kind {ckpt.get('kind') if isinstance(ckpt, dict) else None}")
    m = SiameseMatcher(MatcherConfig(**ckpt["config"]))
    m.load_state_dict(ckpt["state_dict"])
    return m.eval()
