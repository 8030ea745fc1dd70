"""Workers of tests/train/test_distributed.py: one process of a 2-process data-parallel run (gloo on CPU).

Each worker joins the group through :func:`nrsfm_kit.train.distributed.init_from_env` (the variables torchrun would
set), runs its scenario through :func:`nrsfm_kit.train.fit` and saves what it saw to ``folder/<scenario>_<rank>.pt``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

N_ITEMS = 64


def problem(global_batch: int = 8):
    """A float64 MLP regression whose step draws a global batch of frame indices (and noise) and trains on its
    shard: ``(model, optimizer, scheduler, step_fn, state)``, the same on every rank and in one process."""
    from nrsfm_kit.train import seeded
    from nrsfm_kit.train.distributed import shard

    g = torch.Generator().manual_seed(1)
    X = torch.randn(N_ITEMS, 3, generator=g, dtype=torch.float64)
    y = torch.sin(X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)) + 0.3
    with seeded(0):
        model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5)
    sampler = torch.Generator().manual_seed(2)

    def step(m, i):
        idx = torch.randint(0, N_ITEMS, (global_batch,), generator=sampler)  # the global batch, same on all ranks
        noise = 0.01 * torch.randn(global_batch, dtype=torch.float64)  # the global RNG, drawn for the global batch
        mine, eps = shard(idx), shard(noise)
        loss = ((m(X[mine]).squeeze(-1) - y[mine] - eps) ** 2).mean()
        return {"loss": loss, "lr": opt.param_groups[0]["lr"]}

    return model, opt, sched, step, {"sampler": sampler}


def train(folder: Path | None, steps: int, global_batch: int = 8):
    from nrsfm_kit.train import TrainConfig, fit

    model, opt, sched, step, state = problem(global_batch)
    cfg = TrainConfig(steps=steps, log_every=2, checkpoint_every=5, grad_clip=0.5, progress=False)
    res = fit(model, step, opt, cfg, scheduler=sched, out_dir=folder, state=state)
    return {"params": [p.detach().clone() for p in model.parameters()], "history": res.history,
            "resumed_from": res.resumed_from, "step": res.step}


def prrrn_run(out_dir=None):
    """A tiny PR-RRN training (both pairwise terms, memory bank) through fit_learned: e3D, params."""
    from nrsfm_kit.data import synthetic_nrsfm
    from nrsfm_kit.metrics.nrsfm import e3d
    from nrsfm_kit.nrsfm import LearnedFitConfig, PRRRNConfig, fit_learned

    seq = synthetic_nrsfm(kind="lowrank", num_frames=40, num_points=12, rank=2)
    mcfg = PRRRNConfig(channels=(32, 16, 8), rot_hidden=(32, 8), n_mem=32, batch_size=8,
                       contrast_max_positive=None)
    res = fit_learned(seq, "prrrn", mcfg, LearnedFitConfig(epochs=4, progress=False, log_every=5,
                                                           checkpoint_every=10), out_dir=out_dir)
    model = res.extra["model"]
    return {"e3d": float(e3d(res.S.float(), seq.S.float())), "history": res.history,
            "params": [p.detach().clone() for p in model.parameters()]}


def diverged_state(folder: Path, rank: int) -> list[str]:
    """A run whose registered state differs across ranks (a per-rank counter): the warnings rank 0 gives."""
    import warnings

    from nrsfm_kit.train import TrainConfig, Value, fit

    model, opt, sched, step, state = problem()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fit(model, step, opt, TrainConfig(steps=2, progress=False), out_dir=folder,
            state={**state, "per_rank": Value(rank)})
    return [str(w.message) for w in seen if "differ across" in str(w.message)]


def _params(model) -> list:
    return [p.detach().clone() for p in model.parameters()]


def _buffers(model) -> list:
    return [b.detach().clone() for b in model.buffers() if b.is_floating_point()]


def pretrain_run(out_dir=None, pairs_per_step: int = 2):
    """Corpus pre-training of the depth net (2 videos, 4 steps, smoke sizes, torch EDM backend)."""
    from nrsfm_kit.edm.loss import EDMLossConfig
    from nrsfm_kit.edm.pretrain import PretrainConfig, pretrain_corpus

    cfg = PretrainConfig(frames=3, height=32, width=48, steps=4, net_width=8, pairs_per_step=pairs_per_step,
                         backend="torch", log_every=1, checkpoint_every=2, progress=False,
                         loss=EDMLossConfig(num_pairs=2000, beta=0.3, beta_scale="residual", lookup="edge"))
    res = pretrain_corpus(2, cfg, out_dir=out_dir)
    return {"history": res.history, "params": _params(res.model), "buffers": _buffers(res.model),
            "checkpoint": res.checkpoint}


def matcher_run(cache: Path, out_dir=None):
    """The matcher's heatmap stage, smoke preset (batch 8, GroupNorm), 3 steps on 2 synthetic pairs."""
    from nrsfm_kit.matching.data import synthetic_matching_pairs
    from nrsfm_kit.matching.training import matcher_preset, train_matcher

    p = matcher_preset("smoke")
    pairs = synthetic_matching_pairs("train", 2, p.height, p.width, seed=0, cache_dir=cache, progress=False)
    m, res = train_matcher(p, pairs, out_dir=out_dir, steps=3, stages=("heatmap",), progress=False,
                           checkpoint_every=2)
    return {"history": res["heatmap"].history, "params": _params(m)}


def tracker_run(cache: Path, out_dir=None):
    """The tracker's flow stage (Phi, L_corr), smoke preset, 3 steps of a global batch of 2 synthetic pairs."""
    from dataclasses import replace

    from nrsfm_kit.tracking.data import synthetic_tracking_pairs
    from nrsfm_kit.tracking.model import NeuralTracker
    from nrsfm_kit.tracking.training import preset, train_stage
    from nrsfm_kit.train import seeded

    p = preset("smoke")
    pairs = synthetic_tracking_pairs("train", 4, p.height, p.width, seed=0, cache_dir=cache, progress=False)
    with seeded(0):
        tracker = NeuralTracker(p.tracker)
    res = train_stage(tracker, "flow", pairs, replace(p.stages["flow"], steps=3, batch_size=2), out_dir=out_dir,
                      progress=False, log_every=1, checkpoint_every=2)
    return {"history": res.history, "params": _params(tracker)}


def methods(folder: Path) -> dict:
    """The scenario "methods": the depth pre-training, matcher and tracker trainings on this process group."""
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = {"pretrain": pretrain_run(folder / "pretrain"),
               "matcher": matcher_run(folder / "cache", folder / "matcher"),
               "tracker": tracker_run(folder / "cache", folder / "tracker")}
    out["diverged"] = [str(w.message) for w in seen if "differ across" in str(w.message)]
    for name, fn in (("pretrain_odd", lambda: pretrain_run(None, pairs_per_step=3)),):
        try:
            fn()
        except ValueError as e:
            out[name] = str(e)
    return out


def worker(rank: int, world_size: int, port: int, scenario: str, folder: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    import nrsfm_kit.train.loop as loop
    from nrsfm_kit.train import distributed as dd

    writes = []
    real_write = loop.write_checkpoint

    def counting_write(*args, **kwargs):
        writes.append(time.time())
        return real_write(*args, **kwargs)

    loop.write_checkpoint = counting_write  # which ranks write checkpoints
    assert dd.init_from_env(backend="gloo")
    folder = Path(folder)
    out = {"rank": dd.world()[0], "world_size": dd.world()[1], "pid": os.getpid()}
    try:
        if scenario == "all":
            out["full"] = train(folder / "full", 20)
            out["writes"] = len(writes)
            out["part"] = train(folder / "part", 10)
            # a new model, optimiser, scheduler and sampler, resumed from part/'s checkpoint (step 10) to 20
            out["resumed"] = train(folder / "part", 20)
            try:
                train(None, 2, global_batch=7)
            except ValueError as e:
                out["error"] = str(e)
            out["prrrn"] = prrrn_run(folder / "prrrn")
            out["writes_all"] = len(writes)
            # rank 0 refuses out_dir (a file is in the way): every rank gets the error, none waits forever
            (folder / "a_file").touch()
            try:
                train(folder / "a_file", 2)
            except ValueError as e:
                out["out_dir_error"] = str(e)
            out["diverged"] = diverged_state(folder / "diverged", rank)
        elif scenario == "methods":
            out.update(methods(folder))
            out["writes"] = len(writes)
        torch.save(out, folder / f"{scenario}_{rank}.pt")
    finally:
        dd.destroy()
