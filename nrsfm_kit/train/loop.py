"""The shared training loop.

Every learned method (Deep NRSfM, PR-RRN, the depth networks, the correspondence weights) trains
through :func:`fit`: a step function returns a dict with a scalar ``"loss"`` tensor (and any other
scalars to log); the loop does backward, gradient clipping, the optimiser step, a tqdm progress
bar, periodic atomic checkpoints in ``out_dir`` and resumes from the last one when asked.

Non-finite losses never flow on silently: the step that produced one raises FloatingPointError.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nrsfm_kit.utils.io import atomic_save_torch, atomic_write_json

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"


@dataclass
class TrainConfig:
    """Loop settings (method hyper-parameters live in each method's own config)."""

    steps: int = 1000
    seed: int = 0
    grad_clip: float | None = None  # max global gradient norm, None = no clipping
    log_every: int = 10  # history entry every N steps
    checkpoint_every: int = 200  # atomic checkpoint every N steps (and at the end) when out_dir is set
    progress: bool = True  # tqdm bar
    desc: str = "train"

    def __post_init__(self):
        if int(self.steps) < 0:
            raise ValueError(f"steps: expected >= 0, found {self.steps}")
        if int(self.log_every) < 1:
            raise ValueError(f"log_every: expected >= 1, found {self.log_every}")
        if int(self.checkpoint_every) < 1:
            raise ValueError(f"checkpoint_every: expected >= 1, found {self.checkpoint_every}")
        if self.grad_clip is not None and not (self.grad_clip > 0):
            raise ValueError(f"grad_clip: expected None or > 0, found {self.grad_clip}")


@dataclass
class TrainResult:
    """What :func:`fit` returns: the step reached and the logged history (list of dicts)."""

    step: int
    history: list[dict] = field(default_factory=list)
    resumed_from: int | None = None
    stopped: bool = False  # ended before config.steps because ``stop_fn`` said so (convergence)

    def last(self, key: str, default=float("nan")):
        for entry in reversed(self.history):
            if key in entry:
                return entry[key]
        return default


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 (seeds legacy global-state users too)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])


def _scalar(v) -> float:
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().mean())
    return float(v)


def fit(
    model: torch.nn.Module,
    step_fn: Callable[[torch.nn.Module, int], dict],
    optimizer: torch.optim.Optimizer,
    config: TrainConfig | None = None,
    *,
    scheduler=None,
    out_dir: str | Path | None = None,
    resume: bool = True,
    eval_fn: Callable[[torch.nn.Module, int], dict] | None = None,
    stop_fn: Callable[[list[dict]], bool] | None = None,
) -> TrainResult:
    """Train ``model`` for ``config.steps`` optimiser steps.

    Args:
        model: the module whose parameters ``optimizer`` updates.
        step_fn: ``step_fn(model, step) -> {"loss": scalar tensor, **other scalars}``.
        optimizer: a torch optimiser over the model's parameters.
        config: loop settings (:class:`TrainConfig`).
        scheduler: optional LR scheduler, stepped after every optimiser step.
        out_dir: folder for ``checkpoint.pt`` and ``metrics.json`` (written atomically); None = no files.
        resume: continue from ``out_dir/checkpoint.pt`` when it exists.
        eval_fn: optional ``eval_fn(model, step) -> dict`` of scalars, called at each log step and at the end.
        stop_fn: optional ``stop_fn(history) -> bool`` called after each log entry; True ends the run there
            (convergence-based stopping). The stop is saved in the checkpoint: resuming a stopped run trains
            no further.

    Returns:
        :class:`TrainResult` with the final step and the logged history.
    """
    cfg = config or TrainConfig()
    out = Path(out_dir) if out_dir is not None else None
    start, history, resumed_from, stopped = 0, [], None, False
    if out is not None and resume and (out / CHECKPOINT).exists():
        ckpt = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        start, history = int(ckpt["step"]), list(ckpt["history"])
        stopped = bool(ckpt.get("stopped", False))
        _set_rng_state(ckpt["rng"])
        resumed_from = start
    else:
        seed_everything(cfg.seed)

    def save(step: int) -> None:
        if out is None:
            return
        atomic_save_torch(
            out / CHECKPOINT,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "step": step,
                "history": history,
                "rng": _rng_state(),
                "config": asdict(cfg),
                "stopped": stopped,
            },
        )
        atomic_write_json(out / METRICS, {"step": step, "config": asdict(cfg), "history": history,
                                          "stopped": stopped})

    model.train()
    end = start if stopped else cfg.steps
    bar = tqdm(range(start, end), desc=cfg.desc, disable=not cfg.progress, initial=start, total=cfg.steps)
    step = start
    for step in bar:
        optimizer.zero_grad(set_to_none=True)
        logs = step_fn(model, step)
        if "loss" not in logs:
            raise ValueError(f"step_fn: expected a dict with key 'loss', found keys {sorted(logs)}")
        loss = logs["loss"]
        if not torch.isfinite(loss.detach()).all():
            raise FloatingPointError(f"loss is not finite at step {step}: {float(loss.detach())}")
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            entry = {"step": done, **{k: _scalar(v) for k, v in logs.items()}}
            if eval_fn is not None:
                was_training = model.training
                model.eval()
                with torch.no_grad():
                    entry.update({k: _scalar(v) for k, v in eval_fn(model, done).items()})
                model.train(was_training)
            entry = {k: (v if math.isfinite(v) else None) for k, v in entry.items()}
            history.append(entry)
            bar.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k != "step" and v is not None})
            if stop_fn is not None and done < cfg.steps and stop_fn(history):
                stopped = True
                bar.close()
                break
        if done % cfg.checkpoint_every == 0:
            save(done)
    final = max(step + 1, start) if end > start else start
    save(final)
    return TrainResult(step=final, history=history, resumed_from=resumed_from, stopped=stopped)
