"""One entry point for every NRSfM method: ``fit_nrsfm(seq, method, ...) -> (NRSfMResult, metrics)``.

The learned methods (Deep NRSfM, PR-RRN) train through the suite's one loop :func:`nrsfm_kit.train.fit`
(tqdm, seeds, atomic checkpoints with resume, JSON metrics): one step = one minibatch of frames drawn
from the (centred, scale-normalised) sequence; an epoch is ceil(F / batch_size) steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from nrsfm_kit.data.types import NRSfMSequence
from nrsfm_kit.metrics.nrsfm import e3d, nrsfm_report, reprojection_error
from nrsfm_kit.nrsfm.classical import EMPPCAConfig, TomasiKanadeConfig, em_ppca, tomasi_kanade
from nrsfm_kit.nrsfm.cli import METHODS  # defined beside the CLI, which must not import torch
from nrsfm_kit.nrsfm.common import NRSfMResult, normalize_observations, to_camera_frame, validate_sequence
from nrsfm_kit.nrsfm.deep_nrsfm import DeepNRSfM, DeepNRSfMConfig, mutual_coherence
from nrsfm_kit.nrsfm.deep_nrsfm import reprojection_loss as dnrsfm_loss
from nrsfm_kit.nrsfm.prrrn import (
    PRRRN,
    MemoryBank,
    PRRRNConfig,
    consistency_loss,
    contrastive_loss,
    msr_table,
)
from nrsfm_kit.nrsfm.prrrn import reprojection_loss as prrrn_loss
from nrsfm_kit.train import TrainConfig, fit


@dataclass
class LearnedFitConfig:
    """Training schedule of the learned methods (architecture settings live in their own configs)."""

    epochs: int = 100
    seed: int = 0
    progress: bool = True
    log_every: int = 50
    checkpoint_every: int = 500
    grad_clip: float | None = 10.0
    eval_every_log: bool = True  # e3D on the whole sequence at each log step when ground truth exists
    msr_table_max_frames: int = 2048  # PR-RRN: precompute msr of all frame pairs up to this F (F^2 floats)
    # independent trainings with seeds seed, seed+1, ...; the one with the lowest reprojection error over all
    # frames is kept (unsupervised model selection: no 3D ground truth is used)
    restarts: int = 1


def _predict(model: torch.nn.Module, Wn: torch.Tensor, method: str, chunk: int = 4096):
    """Run the model over all frames: canonical shapes (F, P, 3) and cameras (F, 2, 3)."""
    shapes, cams = [], []
    for i in range(0, Wn.shape[0], chunk):
        S, M, _ = model(Wn[i : i + chunk])
        shapes.append(S)
        cams.append(M.transpose(-1, -2) if method == "dnrsfm" else M)
    return torch.cat(shapes), torch.cat(cams)


def fit_learned(
    seq: NRSfMSequence,
    method: str,
    model_config: DeepNRSfMConfig | PRRRNConfig | None = None,
    config: LearnedFitConfig | None = None,
    out_dir: str | Path | None = None,
    resume: bool = True,
) -> NRSfMResult:
    """Train Deep NRSfM (``"dnrsfm"``) or PR-RRN (``"prrrn"``) on one sequence (unsupervised: W only).

    Args:
        seq: the sequence; ``seq.S`` (if any) is used only for logging e3D, never for training.
        model_config: :class:`DeepNRSfMConfig` / :class:`PRRRNConfig` (defaults from the papers).
        config: the schedule (:class:`LearnedFitConfig`).
        out_dir: checkpoint / metrics.json folder (resumes from it when ``resume``).

    Returns:
        :class:`NRSfMResult` (shapes in the units of W), ``history`` the logged training entries,
        ``extra["model"]`` the trained network.
    """
    cfg = config or LearnedFitConfig()
    if int(cfg.epochs) < 0:
        raise ValueError(f"epochs: expected >= 0, found {cfg.epochs}")
    if int(cfg.restarts) < 1:
        raise ValueError(f"restarts: expected >= 1, found {cfg.restarts}")
    if int(cfg.restarts) > 1:
        return _best_of_restarts(seq, method, model_config, cfg, out_dir, resume)
    W, vis = validate_sequence(seq)
    Wn, norm = normalize_observations(W.float(), vis)
    F, P, _ = Wn.shape
    torch.manual_seed(cfg.seed)
    if method == "dnrsfm":
        mcfg = model_config or DeepNRSfMConfig()
        if not isinstance(mcfg, DeepNRSfMConfig):
            raise ValueError(f"model_config: expected DeepNRSfMConfig for dnrsfm, found {type(mcfg).__name__}")
        model: torch.nn.Module = DeepNRSfM(P, mcfg)
    elif method == "prrrn":
        mcfg = model_config or PRRRNConfig()
        if not isinstance(mcfg, PRRRNConfig):
            raise ValueError(f"model_config: expected PRRRNConfig for prrrn, found {type(mcfg).__name__}")
        model = PRRRN(P, mcfg)
    else:
        raise ValueError(f"method: expected 'dnrsfm' or 'prrrn', found {method!r}")
    model = model.to(Wn.device)  # the device follows the input tensors
    bs = max(1, min(int(mcfg.batch_size), F))
    steps = int(cfg.epochs) * math.ceil(F / bs)
    opt = torch.optim.Adam(model.parameters(), lr=mcfg.learning_rate)
    sched = None
    if method == "dnrsfm":
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: mcfg.lr_decay_rate ** (s / mcfg.lr_decay_steps)
        )
    elif float(mcfg.lr_final) != 1.0:
        lo = float(mcfg.lr_final)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1)))
        )
    warm = int(float(mcfg.consist_warmup) * steps) if method == "prrrn" else 0  # first consistency step
    gen = torch.Generator().manual_seed(cfg.seed)
    bank = MemoryBank(mcfg.n_mem, 2 * mcfg.channels[-1], P, device=Wn.device) if method == "prrrn" else None
    table = None  # msr of all frame pairs, looked up by index (F <= cfg.msr_table_max_frames; else per step)
    if method == "prrrn" and mcfg.use_contrast and steps > 0 and F <= int(cfg.msr_table_max_frames):
        table = msr_table(Wn, vis)
    S_gt = None if seq.S is None else seq.S.to(Wn.device)

    def step_fn(net: torch.nn.Module, step: int) -> dict:
        idx = torch.randint(0, F, (bs,), generator=gen).to(Wn.device)
        Wb, vb = Wn[idx], vis[idx]
        S, M, h = net(Wb)
        if method == "dnrsfm":
            loss = dnrsfm_loss(Wb, S, M, vb)
            return {"loss": loss, "rep": loss.detach()}
        rep = prrrn_loss(Wb, S, M, vb)
        logs: dict = {"rep": rep.detach(), "lr": opt.param_groups[0]["lr"]}
        loss = rep
        use_c, use_k = mcfg.use_contrast, mcfg.use_consist and step >= warm
        if use_c and (not use_k or step % 2 == 0):  # eq. 18: alternate the two pairwise terms
            bh, bW, bv = bank.entries()
            mv = None if table is None else table[idx[:, None], bank.frame_indices()[None, :]]
            lc, stats = contrastive_loss(
                h, Wb, vb, bh, bW, bv, mcfg.tau, mcfg.xi, msr_values=mv, threshold_on=mcfg.threshold_on
            )
            loss = loss + mcfg.lambda1 * lc
            logs.update(contrast=lc.detach(), **stats)
        elif use_k:
            lk = consistency_loss(net, S, M, gen, mcfg.consist_rotation)
            loss = loss + mcfg.lambda2 * lk
            logs["consist"] = lk.detach()
        if use_c:
            hn = h.detach() / h.detach().norm(dim=-1, keepdim=True).clamp_min(1e-12)
            bank.push(hn, Wb, vb, idx)
        logs["loss"] = loss
        return logs

    def eval_fn(net: torch.nn.Module, step: int) -> dict:
        out: dict = {}
        if method == "dnrsfm":
            out["coherence"] = float(mutual_coherence(net.final_dictionary()))
        if S_gt is not None and cfg.eval_every_log:
            shapes, cams = _predict(net, Wn, method)
            S_eval = to_camera_frame(shapes, cams) * norm.scale  # back to the units of W (e3D is not scale-free)
            out["e3d"] = float(e3d(S_eval, S_gt))
        return out

    tcfg = TrainConfig(
        steps=steps,
        seed=cfg.seed,
        grad_clip=cfg.grad_clip,
        log_every=max(1, min(cfg.log_every, steps or 1)),
        checkpoint_every=cfg.checkpoint_every,
        progress=cfg.progress,
        desc=method,
    )
    res = fit(model, step_fn, opt, tcfg, scheduler=sched, out_dir=out_dir, resume=resume, eval_fn=eval_fn)
    model.eval()
    with torch.no_grad():
        shapes, cams = _predict(model, Wn, method)
    shapes = shapes * norm.scale
    extra = {"model": model, "train": res}
    if method == "dnrsfm":
        extra["coherence"] = float(mutual_coherence(model.final_dictionary().detach()))
    return NRSfMResult(
        S=to_camera_frame(shapes, cams), cameras=cams, shapes=shapes, method=method, history=res.history, extra=extra
    )


def select_restart(reprojections) -> int:
    """Index of the restart to keep: the lowest reprojection error, ties to the earliest (no 3D used)."""
    return min(range(len(reprojections)), key=lambda k: (reprojections[k], k))


def _best_of_restarts(seq, method, model_config, cfg: LearnedFitConfig, out_dir, resume) -> NRSfMResult:
    """Train ``cfg.restarts`` times (seeds seed + k) and keep the lowest reprojection error (no 3D used)."""
    W, vis = validate_sequence(seq)
    runs = []
    for k in range(int(cfg.restarts)):
        sub = None if out_dir is None else Path(out_dir) / f"restart_{k}"
        res = fit_learned(seq, method, model_config, replace(cfg, restarts=1, seed=cfg.seed + k), sub, resume)
        rep = float(reprojection_error(W.float(), res.S.float(), None, vis))
        runs.append((rep, k, res))
    k_best = select_restart([rep for rep, _, _ in runs])
    best = runs[k_best][2]
    best.extra["restarts"] = [{"seed": cfg.seed + k, "reproj": rep} for rep, k, _ in runs]
    best.extra["restart_seed"] = cfg.seed + k_best
    return best


def fit_nrsfm(
    seq: NRSfMSequence,
    method: str,
    *,
    epochs: int | None = None,
    model_config=None,
    config: LearnedFitConfig | None = None,
    out_dir: str | Path | None = None,
    resume: bool = True,
) -> tuple[NRSfMResult, dict]:
    """Fit any method and evaluate it.

    Args:
        seq: an :class:`NRSfMSequence`.
        method: one of ``"tk"``, ``"em-ppca"``, ``"dnrsfm"``, ``"prrrn"``.
        epochs: overrides ``config.epochs`` for the learned methods (EM-PPCA: the number of EM iterations).
        model_config: the method's config dataclass (TomasiKanadeConfig, EMPPCAConfig, DeepNRSfMConfig,
            PRRRNConfig), defaults from the papers.

    Returns:
        (result, metrics): metrics has ``reproj`` (units of W) and, with ground truth, e3d (per-frame
        alignment), e3d_seq, mpjpe, stress; plus ``coherence`` for Deep NRSfM.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, found {method!r}")
    W, vis = validate_sequence(seq)
    if method == "tk":
        res = tomasi_kanade(W, vis, model_config or TomasiKanadeConfig())
    elif method == "em-ppca":
        mc = model_config or EMPPCAConfig()
        if epochs is not None:
            mc = replace(mc, iters=int(epochs))
        res = em_ppca(W, vis, mc)
    else:
        cfg = config or LearnedFitConfig()
        if epochs is not None:
            cfg = replace(cfg, epochs=int(epochs))
        res = fit_learned(seq, method, model_config, cfg, out_dir=out_dir, resume=resume)
    metrics: dict = {"method": method, "sequence": seq.name, "frames": W.shape[0], "points": W.shape[1]}
    if seq.S is not None:
        metrics.update(nrsfm_report(res.S.float(), seq.S.float(), W.float(), vis))
    else:
        metrics["reproj"] = float(reprojection_error(W.float(), res.S.float(), None, vis))
    if "coherence" in res.extra:
        metrics["coherence"] = res.extra["coherence"]
    if "restart_seed" in res.extra:
        metrics["restart_seed"] = res.extra["restart_seed"]
    return res, metrics
