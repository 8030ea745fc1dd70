"""The shared training loop.

Every learned method (Deep NRSfM, PR-RRN, the depth networks, the correspondence weights) trains
through :func:`fit`: a step function returns a dict with a scalar ``"loss"`` tensor (and any other
scalars to log); the loop does backward, gradient clipping, the optimiser step, a tqdm progress
bar, periodic atomic checkpoints in ``out_dir`` and resumes from the last one when asked.

Resume is exact: the checkpoint holds the model, optimiser, scheduler, global RNGs, history and every object
registered in the run's :class:`~nrsfm_kit.train.state.TrainState` (``state=``: samplers' generators, memory
banks, counters), so a run killed at any point and started again ends with the same parameters, bit for bit on
CPU. The last two checkpoints are kept; a truncated, corrupted or foreign one is detected when the run starts
(falling back to the previous one where it is good). While a run uses ``out_dir`` the folder is locked
(:class:`~nrsfm_kit.utils.io.folder_lock`), and an unwritable or full ``out_dir`` fails before the first step.

Non-finite losses never flow on silently: the step that produced one raises FloatingPointError.
"""

from __future__ import annotations

import contextlib
import math
import random
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nrsfm_kit.train.state import (
    CHECKPOINT,
    PREVIOUS,
    CheckpointError,
    TrainState,
    check_model_state,
    read_checkpoint,
    write_checkpoint,
)
from nrsfm_kit.utils.faults import fault_point
from nrsfm_kit.utils.io import atomic_write_json, check_writable, folder_lock, stale_temporaries

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
    resume_notes: list[str] = field(default_factory=list)  # checkpoints found unusable and skipped on resume

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


@contextlib.contextmanager
def seeded(seed: int):
    """Run a block (typically a model's construction) under ``seed`` without touching the global RNG streams.

    Model initialisation happens before :func:`fit` seeds the run, so a model built outside this scope would
    start from whatever torch's process-wide generator holds, and an interrupted run rebuilt in a new process
    would start from other weights than the run it resumes.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


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


def _check_optimizer_state(optimizer: torch.optim.Optimizer, state: dict, where: str) -> None:
    groups, saved = optimizer.param_groups, state.get("param_groups", [])
    sizes, found = [len(g["params"]) for g in groups], [len(g["params"]) for g in saved]
    if sizes != found:
        raise CheckpointError(f"{where}: expected optimiser parameter groups of sizes {sizes}, found {found} "
                              "(a checkpoint of another model or optimiser)")


def _load_resumable(out: Path, model, optimizer, scheduler, state: TrainState) -> tuple[dict | None, list[str]]:
    """The newest usable checkpoint of ``out`` applied to the run's objects, and what was skipped (and why).

    Tries checkpoint.pt, then checkpoint.prev.pt; each is verified (digest, model keys and shapes, optimiser
    groups, registered state names) before anything is loaded. None when there is no checkpoint; CheckpointError
    listing every reason when none is usable.
    """
    paths = [p for p in (out / CHECKPOINT, out / PREVIOUS) if p.is_file()]
    if not paths:
        return None, []
    notes: list[str] = []
    for path in paths:
        try:
            ckpt = read_checkpoint(path)
            check_model_state(model, ckpt["model"], str(path))
            _check_optimizer_state(optimizer, ckpt["optimizer"], str(path))
            state.check(ckpt.get("state", {}), str(path))
        except CheckpointError as e:
            notes.append(str(e))
            continue
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        state.load_state_dict(ckpt.get("state", {}), str(path))
        _set_rng_state(ckpt["rng"])
        if notes:
            warnings.warn(f"out_dir: skipped an unusable checkpoint ({notes[0]}); resuming from {path} "
                          f"(step {int(ckpt['step'])})", RuntimeWarning, stacklevel=3)
        return ckpt, notes
    raise CheckpointError(f"out_dir: expected a checkpoint to resume from in {out}, found none usable: "
                          + " | ".join(notes) + " (use another folder, or resume=False to start afresh)")


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
    state: TrainState | dict | None = None,
) -> TrainResult:
    """Train ``model`` for ``config.steps`` optimiser steps.

    Args:
        model: the module whose parameters ``optimizer`` updates.
        step_fn: ``step_fn(model, step) -> {"loss": scalar tensor, **other scalars}``.
        optimizer: a torch optimiser over the model's parameters.
        config: loop settings (:class:`TrainConfig`).
        scheduler: optional LR scheduler, stepped after every optimiser step.
        out_dir: folder for ``checkpoint.pt`` (and ``checkpoint.prev.pt``, the one before) and ``metrics.json``
            (written atomically); None = no files. Locked while the run uses it; checked writable first.
        resume: continue from the newest usable checkpoint in ``out_dir`` when there is one (False: start
            afresh, replacing what is there).
        eval_fn: optional ``eval_fn(model, step) -> dict`` of scalars, called at each log step and at the end.
        stop_fn: optional ``stop_fn(history) -> bool`` called after each log entry; True ends the run there
            (convergence-based stopping). The stop is saved in the checkpoint: resuming a stopped run trains
            no further.
        state: the run's other state (:class:`~nrsfm_kit.train.state.TrainState`, or a dict name -> generator /
            object with ``state_dict``): saved in every checkpoint and restored on resume.

    Returns:
        :class:`TrainResult` with the final step and the logged history.
    """
    cfg = config or TrainConfig()
    reg = state if isinstance(state, TrainState) else TrainState(state)
    out = Path(out_dir) if out_dir is not None else None
    if out is None:
        return _fit(model, step_fn, optimizer, cfg, scheduler, None, resume, eval_fn, stop_fn, reg)
    check_writable(out, "out_dir")
    with folder_lock(out, "out_dir"):
        for tmp in stale_temporaries(out):  # left by a run killed mid-write; never under a final name
            tmp.unlink(missing_ok=True)
        return _fit(model, step_fn, optimizer, cfg, scheduler, out, resume, eval_fn, stop_fn, reg)


def _fit(model, step_fn, optimizer, cfg: TrainConfig, scheduler, out: Path | None, resume: bool, eval_fn, stop_fn,
         reg: TrainState) -> TrainResult:
    start, history, resumed_from, stopped, notes = 0, [], None, False, []
    ckpt = None
    if out is not None and resume:
        ckpt, notes = _load_resumable(out, model, optimizer, scheduler, reg)
    if ckpt is not None:
        start, history = int(ckpt["step"]), list(ckpt["history"])
        stopped = bool(ckpt.get("stopped", False))
        resumed_from = start
    else:
        seed_everything(cfg.seed)
        if out is not None:
            (out / PREVIOUS).unlink(missing_ok=True)  # a fresh run: an older run's checkpoint is no fallback
    fresh = [ckpt is None]  # the first save of a fresh run replaces an older run's checkpoint, keeps no copy

    saved_at: list = [None]

    def save(step: int) -> None:
        if out is None or saved_at[0] == step:  # (the end of a run on a checkpoint step: one copy, not two)
            return
        saved_at[0] = step
        write_checkpoint(out, {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "step": step,
            "history": history,
            "rng": _rng_state(),
            "state": reg.state_dict(),
            "config": asdict(cfg),
            "stopped": stopped,
        }, keep_previous=not fresh[0])
        fresh[0] = False
        atomic_write_json(out / METRICS, {"step": step, "config": asdict(cfg), "history": history,
                                          "stopped": stopped})
        fault_point("saved")

    model.train()
    # gradients left on the model by earlier work (a previous stage trained other parameters) must not enter this
    # run: clipping sees only this optimiser's parameters, and nothing stale survives (a resumed process has none)
    model.zero_grad(set_to_none=True)
    in_opt = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trained = [p for p in model.parameters() if id(p) in in_opt]
    end = start if stopped else cfg.steps
    bar = tqdm(range(start, end), desc=cfg.desc, disable=not cfg.progress, initial=start, total=cfg.steps)
    step = start
    for step in bar:
        fault_point("step")
        optimizer.zero_grad(set_to_none=True)
        logs = step_fn(model, step)
        if "loss" not in logs:
            raise ValueError(f"step_fn: expected a dict with key 'loss', found keys {sorted(logs)}")
        loss = logs["loss"]
        if not torch.isfinite(loss.detach()).all():
            raise FloatingPointError(f"loss is not finite at step {step}: {float(loss.detach())}")
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(trained, cfg.grad_clip)
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
    if out is not None and (final != start or ckpt is None or not (out / METRICS).is_file()):
        save(final)  # (a resumed run that was already complete rewrites nothing)
    return TrainResult(step=final, history=history, resumed_from=resumed_from, stopped=stopped, resume_notes=notes)
