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

Mixed precision (``TrainConfig(amp=...)``, off by default): ``"fp16"`` runs ``step_fn`` under
``torch.autocast("cuda", torch.float16)`` with a :class:`torch.amp.GradScaler` (CUDA only; the scaler is part of the
run's state, so it is checkpointed and resumed like the rest; a step whose scaled gradients overflow is skipped by
the scaler, as usual), ``"bf16"`` under ``torch.autocast(device, torch.bfloat16)`` without a scaler (CUDA, or
CPU). The parameters and the optimiser stay float32; with ``amp=None`` the loop is the float32 loop, unchanged.

Data-parallel training (:mod:`nrsfm_kit.train.distributed`, launched with ``torchrun``): when torch.distributed is
initialised with more than one process, every process runs this loop on the same model (not wrapped in
DistributedDataParallel: the same maths, explicitly). The parameters are broadcast from rank 0 at the start (after
a resume); every rank runs ``step_fn`` on its shard of the global batch (the step function takes its part with
:func:`~nrsfm_kit.train.distributed.shard`; every rank is seeded with the same seed, so the global draw is the
same everywhere); the gradients are averaged over the ranks before clipping and the optimiser step; the logged
scalars of ``step_fn`` are averaged over the ranks (``eval_fn``'s are rank 0's), so every rank holds the same
history. Rank 0 alone shows the progress bar, takes the folder lock and writes the checkpoints and metrics.json;
the others wait at a barrier after each save. On resume rank 0 picks the usable checkpoint and sends it to every
rank (no shared file system needed), so a killed multi-process run resumes. With one process nothing of this
happens: the loop is the single-process loop, bit for bit.
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

from nrsfm_kit.train import distributed as dd
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
    amp: str | None = None  # mixed precision: None (float32), "fp16" (CUDA, with a gradient scaler) or "bf16"

    def __post_init__(self):
        if int(self.steps) < 0:
            raise ValueError(f"steps: expected >= 0, found {self.steps}")
        if int(self.log_every) < 1:
            raise ValueError(f"log_every: expected >= 1, found {self.log_every}")
        if int(self.checkpoint_every) < 1:
            raise ValueError(f"checkpoint_every: expected >= 1, found {self.checkpoint_every}")
        if self.grad_clip is not None and not (self.grad_clip > 0):
            raise ValueError(f"grad_clip: expected None or > 0, found {self.grad_clip}")
        check_amp(self.amp)


AMP_MODES = (None, "fp16", "bf16")


def check_amp(amp) -> str | None:
    """``amp`` when it is a mixed-precision mode of the loop (:data:`AMP_MODES`); ValueError naming it otherwise
    (the check of every config that passes ``amp`` on to :class:`TrainConfig`)."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp: expected one of {AMP_MODES}, found {amp!r}")
    return amp
AMP_SCALER = "amp_grad_scaler"  # the TrainState name of the fp16 gradient scaler


def _amp_setup(model: torch.nn.Module, cfg: TrainConfig, reg: TrainState):
    """(autocast context factory, GradScaler or None) for ``cfg.amp`` on the model's device."""
    if cfg.amp is None:
        return contextlib.nullcontext, None
    param = next(iter(model.parameters()), None)
    device = param.device.type if param is not None else "cpu"
    if cfg.amp == "fp16" and device != "cuda":
        raise ValueError(f"amp: 'fp16' needs a CUDA model (gradient scaling), found the model on {device!r}; use "
                         "amp='bf16' on CPU or amp=None")
    if device not in ("cuda", "cpu"):
        raise ValueError(f"amp: expected a model on 'cuda' or 'cpu', found {device!r}")
    dtype = torch.float16 if cfg.amp == "fp16" else torch.bfloat16
    scaler = None
    if cfg.amp == "fp16":  # checkpointed with the run (TrainState): a resumed run keeps its loss scale
        scaler = reg.register(AMP_SCALER, torch.amp.GradScaler("cuda"))
    return (lambda: torch.autocast(device_type=device, dtype=dtype)), scaler


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


def _find_resumable(out: Path, model, optimizer, state: TrainState) -> tuple[dict | None, Path | None, list[str]]:
    """The newest usable checkpoint of ``out`` (payload, path) and what was skipped (and why), nothing loaded.

    Tries checkpoint.pt, then checkpoint.prev.pt; each is verified (digest, model keys and shapes, optimiser
    groups, registered state names). (None, None, []) when there is no checkpoint; CheckpointError listing every
    reason when none is usable.
    """
    paths = [p for p in (out / CHECKPOINT, out / PREVIOUS) if p.is_file()]
    if not paths:
        return None, None, []
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
        return ckpt, path, notes
    raise CheckpointError(f"out_dir: expected a checkpoint to resume from in {out}, found none usable: "
                          + " | ".join(notes) + " (use another folder, or resume=False to start afresh)")


def _load_resumable(out: Path, model, optimizer, scheduler, state: TrainState,
                    parallel: bool = False) -> tuple[dict | None, list[str]]:
    """The newest usable checkpoint of ``out`` applied to the run's objects, and what was skipped (and why).

    See :func:`_find_resumable`. ``parallel``: rank 0 finds and reads it and sends it to every rank (all ranks
    then load the same checkpoint, and only rank 0 needs to see ``out``).
    """
    if parallel:
        ckpt, path, notes = dd.main_only(_find_resumable, out, model, optimizer, state)
    else:
        ckpt, path, notes = _find_resumable(out, model, optimizer, state)
    if ckpt is None:
        return None, []
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    state.load_state_dict(ckpt.get("state", {}), str(path))
    _set_rng_state(ckpt["rng"])
    if notes and dd.is_main():
        warnings.warn(f"out_dir: skipped an unusable checkpoint ({notes[0]}); resuming from {path} "
                      f"(step {int(ckpt['step'])})", RuntimeWarning, stacklevel=3)
    return ckpt, notes


def _digest(obj, h) -> None:
    """Feed a nested structure of tensors, arrays and plain values into the hash ``h`` (order-preserving)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, np.ndarray):
        h.update(f"A{obj.dtype}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, dict):
        h.update(b"{")
        for k, v in obj.items():
            h.update(repr(k).encode())
            _digest(v, h)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for v in obj:
            _digest(v, h)
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def _replica_digests(model, reg: TrainState) -> dict:
    """SHA-256 of what a checkpoint saves from rank 0 alone (model, RNGs, each registered state), per part."""
    import hashlib

    parts = {"model": model.state_dict(), "rng": _rng_state(), **{f"state[{k!r}]": v for k, v in
                                                                  reg.state_dict().items()}}
    out = {}
    for name, value in parts.items():
        h = hashlib.sha256()
        _digest(value, h)
        out[name] = h.hexdigest()
    return out


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
        :class:`TrainResult` with the final step and the logged history (the same on every rank).

    On more than one process (torch.distributed initialised, :mod:`nrsfm_kit.train.distributed`): call it on
    every rank with the same arguments; ``step_fn`` computes its rank's shard of the global batch
    (:func:`~nrsfm_kit.train.distributed.shard`) and the loop averages the gradients; ``out_dir`` is needed on
    rank 0 only. Every registered ``state`` must evolve identically on every rank (rank 0's is saved; a
    checkpoint where it differs warns). See the module docstring.
    """
    cfg = config or TrainConfig()
    reg = state if isinstance(state, TrainState) else TrainState(state)
    out = Path(out_dir) if out_dir is not None else None
    if dd.world()[1] > 1:
        return _fit_parallel(model, step_fn, optimizer, cfg, scheduler, out, resume, eval_fn, stop_fn, reg)
    if out is None:
        return _fit(model, step_fn, optimizer, cfg, scheduler, None, resume, eval_fn, stop_fn, reg)
    check_writable(out, "out_dir")
    with folder_lock(out, "out_dir"):
        for tmp in stale_temporaries(out):  # left by a run killed mid-write; never under a final name
            tmp.unlink(missing_ok=True)
        return _fit(model, step_fn, optimizer, cfg, scheduler, out, resume, eval_fn, stop_fn, reg)


def _fit_parallel(model, step_fn, optimizer, cfg: TrainConfig, scheduler, out: Path | None, resume: bool, eval_fn,
                  stop_fn, reg: TrainState) -> TrainResult:
    """:func:`fit` on more than one process: rank 0 alone checks, locks and cleans ``out`` (its failure stops
    every rank), then every rank runs the loop."""
    with contextlib.ExitStack() as held:
        if out is not None:
            def prepare() -> None:
                check_writable(out, "out_dir")
                held.enter_context(folder_lock(out, "out_dir"))
                for tmp in stale_temporaries(out):
                    tmp.unlink(missing_ok=True)

            dd.main_only(prepare)
        return _fit(model, step_fn, optimizer, cfg, scheduler, out, resume, eval_fn, stop_fn, reg, parallel=True)


def _mean_logs(local: dict) -> dict:
    """The step function's logged scalars averaged over the ranks (each key over the ranks that logged it; the
    sum in rank order, so every rank gets the same floats)."""
    gathered = dd.gather_objects(local)
    keys = list(dict.fromkeys(k for g in gathered for k in g))
    out = {}
    for k in keys:
        vals = [g[k] for g in gathered if k in g]
        total = 0.0
        for v in vals:
            total += v
        out[k] = total / len(vals)
    return out


def _fit(model, step_fn, optimizer, cfg: TrainConfig, scheduler, out: Path | None, resume: bool, eval_fn, stop_fn,
         reg: TrainState, parallel: bool = False) -> TrainResult:
    start, history, resumed_from, stopped, notes = 0, [], None, False, []
    ckpt = None
    main = dd.is_main()
    autocast, scaler = _amp_setup(model, cfg, reg)  # (before the resume: the fp16 scaler is part of the state)
    if out is not None and resume:
        ckpt, notes = _load_resumable(out, model, optimizer, scheduler, reg, parallel)
    if ckpt is not None:
        start, history = int(ckpt["step"]), list(ckpt["history"])
        stopped = bool(ckpt.get("stopped", False))
        resumed_from = start
    else:
        seed_everything(cfg.seed)
        if out is not None and main:
            (out / PREVIOUS).unlink(missing_ok=True)  # a fresh run: an older run's checkpoint is no fallback
    fresh = [ckpt is None]  # the first save of a fresh run replaces an older run's checkpoint, keeps no copy
    if parallel:
        dd.broadcast_parameters(model)  # every rank starts from rank 0's parameters (fresh or resumed)
    diverged: list = []  # parts of the replicated state found different across ranks (warned once)

    saved_at: list = [None]

    def save(step: int) -> None:
        if out is None or saved_at[0] == step:  # (the end of a run on a checkpoint step: one copy, not two)
            return
        saved_at[0] = step
        if parallel:
            _check_replicas()
            if not main:  # rank 0 writes; the others wait until the files are on disk
                dd.barrier()
                fault_point("saved")
                return
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
        if parallel:
            dd.barrier()
        fault_point("saved")

    def _check_replicas() -> None:
        """Warn (rank 0, once) when what rank 0 saves for every rank differs across ranks: a resume would then
        not continue the other ranks exactly (e.g. a registered state that each rank updates on its own shard)."""
        digests = dd.gather_objects(_replica_digests(model, reg))
        bad = sorted(k for k in digests[0] if any(d.get(k) != digests[0][k] for d in digests[1:]))
        new = [k for k in bad if k not in diverged]
        if new and main:
            warnings.warn(f"fit: {', '.join(new)} differ across the {len(digests)} processes at a checkpoint; only "
                          "rank 0's are saved, so a resumed run will not continue the other processes exactly "
                          "(keep such state identical on every rank, e.g. update it with all ranks' values)",
                          RuntimeWarning, stacklevel=2)
        diverged.extend(new)

    def _stop(hist: list[dict]) -> bool:
        decision = bool(stop_fn(hist))
        return bool(dd.broadcast_object(decision)) if parallel else decision  # (rank 0 decides for all)

    model.train()
    # gradients left on the model by earlier work (a previous stage trained other parameters) must not enter this
    # run: clipping sees only this optimiser's parameters, and nothing stale survives (a resumed process has none)
    model.zero_grad(set_to_none=True)
    in_opt = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trained = [p for p in model.parameters() if id(p) in in_opt]
    stepped = [p for group in optimizer.param_groups for p in group["params"]]  # gradients averaged across ranks
    end = start if stopped else cfg.steps
    bar = tqdm(range(start, end), desc=cfg.desc, disable=not cfg.progress or not main, initial=start,
               total=cfg.steps)
    step = start
    for step in bar:
        fault_point("step")
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            logs = step_fn(model, step)
        if "loss" not in logs:
            raise ValueError(f"step_fn: expected a dict with key 'loss', found keys {sorted(logs)}")
        loss = logs["loss"]
        finite = bool(torch.isfinite(loss.detach()).all())
        if parallel:
            if dd.any_rank(not finite):  # every rank stops at the same step
                where = "" if not finite else " on another process"
                raise FloatingPointError(f"loss is not finite at step {step}{where}: {float(loss.detach())}")
        elif not finite:
            raise FloatingPointError(f"loss is not finite at step {step}: {float(loss.detach())}")
        (loss if scaler is None else scaler.scale(loss.float())).backward()
        if parallel:
            dd.all_reduce_gradients(stepped)  # the mean over the ranks: the global batch's gradient
        if cfg.grad_clip is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)  # clip the true gradients
            torch.nn.utils.clip_grad_norm_(trained, cfg.grad_clip)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)  # skipped when the scaled gradients overflowed
            scaler.update()
        if scheduler is not None:
            scheduler.step()
        if parallel:
            dd.average_buffers(model)  # (BatchNorm running statistics: one set on every rank)
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            scalars = {k: _scalar(v) for k, v in logs.items()}
            entry = {"step": done, **(_mean_logs(scalars) if parallel else scalars)}  # (one history on all ranks)
            if eval_fn is not None:
                was_training = model.training
                model.eval()
                with torch.no_grad():
                    evals = {k: _scalar(v) for k, v in eval_fn(model, done).items()}
                model.train(was_training)
                entry.update(dd.broadcast_object(evals) if parallel else evals)  # (rank 0's: one history)
            entry = {k: (v if math.isfinite(v) else None) for k, v in entry.items()}
            history.append(entry)
            bar.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k != "step" and v is not None})
            if stop_fn is not None and done < cfg.steps and _stop(history):
                stopped = True
                bar.close()
                break
        if done % cfg.checkpoint_every == 0:
            save(done)
    final = max(step + 1, start) if end > start else start
    if out is not None:
        need = final != start or ckpt is None or not (out / METRICS).is_file()
        if parallel:
            need = bool(dd.broadcast_object(need))  # (rank 0 sees out_dir: it decides)
        if need:
            save(final)  # (a resumed run that was already complete rewrites nothing)
    return TrainResult(step=final, history=history, resumed_from=resumed_from, stopped=stopped, resume_notes=notes)
