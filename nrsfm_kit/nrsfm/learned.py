"""Training of the learned NRSfM methods through the suite's one loop :func:`nrsfm_kit.train.fit`.

A learned method is a :class:`LearnedMethod`: it builds its network (:meth:`LearnedMethod.build`), says
how to schedule the learning rate and what loss one minibatch gives (:meth:`LearnedMethod.training_loss`),
and predicts shapes and cameras for all frames (:meth:`LearnedMethod.predict`). :func:`fit_learned` does
the rest for every such method (tqdm, seeds, atomic checkpoints with resume, JSON metrics): one step =
one minibatch of frames drawn from the (centred, scale-normalised) sequence; an epoch is
ceil(F / batch_size) steps.

Budgets that scale with the data. Without an explicit number of epochs a run gets
:func:`budget_steps` = ``base_steps * sqrt(F / 300)`` optimiser steps (``base_steps`` in each method's config;
300 frames is the size of the classic benchmark sequences), so a 1100-frame sequence gets 1.9x the steps and
0.5x the epochs of a 300-frame one, and stops early once the reprojection loss over the whole sequence has
converged (:func:`converged`). The batch is the method's (capped at F). Why sqrt: the frames of one sequence are
strongly correlated (one moving object), so the steps needed grow far slower than the data. ``base_steps`` was
chosen leave-one-sequence-out (``benchmarks/nrsfm_loo.py``, benchmarks/RESULTS.md: 2400 beat 1200 for PR-RRN and 4800
at the former learning rate for Deep NRSfM); the exponent 1/2 is a prior, not tuned.

Model selection without 3D. With ``restarts`` > 1, the runs (seeds seed, seed + 1, ...) are ranked by
:func:`select_restart`: among the runs whose reprojection error is within (1 + ``selection_slack``) x the lowest,
the one with the lowest measure (:func:`restart_measure`). The default measure is the low-rank shape prior,
:func:`~nrsfm_kit.nrsfm.common.shape_space_residual` with 3 directions, and the slack is 1 (within 2x): chosen
leave-one-sequence-out over 12 sequences x 2 methods x 3 seeds, where the held-out sequences' kept run is within
10 % of the best on 18 of 24 (the former rule, the method's own measure -- the mutual coherence of Deep NRSfM's
final dictionary, paper sec. 5.4; PR-RRN's pairwise-consistency error -- with slack 0.1: 12 of 24; the lowest
reprojection error: 15 of 24). Why the slack is wide: a PR-RRN run that fits the images best is often one that
fits them with wrong depth (benchmarks/RESULTS.md).

Data-parallel training (``torchrun``, :mod:`nrsfm_kit.train.distributed`). Every process draws the same global
mini-batch of ``batch_size`` frames from the run's generator and takes its contiguous shard
(``LearnedBatch.idx``; ``LearnedBatch.global_idx`` is the whole draw); the loop averages the gradients, so the
batch size keeps its single-process meaning (the global batch) and must be a multiple of the number of
processes. Rank 0 alone checks and writes ``out_dir`` (settings.json, checkpoints); every process must train the
same run (method, model, sequence, seed, schedule: checked before training). What is computed on the shard only:
anything that couples the items of a batch (batch statistics; neither Deep NRSfM nor PR-RRN has a BatchNorm). Deep
NRSfM's loss is a mean over frames: the averaged gradient is the global batch's up to float round-off. PR-RRN's
pairwise terms are made global explicitly (:class:`~nrsfm_kit.nrsfm.prrrn.PRRRNMethod`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path

import torch

from nrsfm_kit.data.types import NRSfMSequence
from nrsfm_kit.metrics.nrsfm import e3d, reprojection_error
from nrsfm_kit.nrsfm.common import (
    NRSfMResult,
    normalize_observations,
    shape_space_residual,
    to_camera_frame,
    validate_sequence,
)
from nrsfm_kit.nrsfm.registry import NRSfMMethod, get_method, method_names
from nrsfm_kit.train import TrainConfig, fit
from nrsfm_kit.train import distributed as dd
from nrsfm_kit.train.state import CHECKPOINT, PREVIOUS, TrainState
from nrsfm_kit.utils.faults import fault_point
from nrsfm_kit.utils.io import atomic_write_json

SETTINGS = "settings.json"  # what a checkpoint folder was written with (see check_run_folder)


REF_FRAMES = 300  # the frame count at which a run gets base_steps steps (the classic benchmark sequences' size)


def check_budget_power(power: float) -> None:
    """ValueError unless ``power`` (the budget's power of F, ``budget_power`` of the method configs) is in [0, 1]."""
    if not 0.0 <= float(power) <= 1.0:
        raise ValueError(f"budget_power: expected a power in [0, 1], found {power}")


def budget_steps(base_steps: int, num_frames: int, ref_frames: int = REF_FRAMES, power: float = 0.5) -> int:
    """Optimiser steps of the data-scaled budget: ceil(base_steps * (F / ref_frames) ** power), at least 1
    (power 1/2 by default: a sqrt in F; 1: the same number of epochs at every F; 0: a fixed number of steps)."""
    if int(base_steps) < 1:
        raise ValueError(f"base_steps: expected >= 1, found {base_steps}")
    if int(num_frames) < 1:
        raise ValueError(f"num_frames: expected >= 1, found {num_frames}")
    check_budget_power(power)
    return max(1, math.ceil(int(base_steps) * (int(num_frames) / int(ref_frames)) ** float(power)))


SELECTIONS = ("shape_rank", "method", "reprojection")  # restart selection rules (LearnedFitConfig.selection)


@dataclass
class LearnedFitConfig:
    """Training schedule of the learned methods (architecture settings live in their own configs)."""

    # None: the data-scaled budget (budget_steps from the method config's base_steps) with convergence stopping;
    # an int: exactly that many epochs of ceil(F / batch) steps, no early stop
    epochs: int | None = None
    seed: int = 0
    progress: bool = True
    log_every: int = 50
    checkpoint_every: int = 500
    grad_clip: float | None = 10.0
    eval_every_log: bool = True  # e3D on the whole sequence at each log step when ground truth exists
    msr_table_max_frames: int = 2048  # PR-RRN: precompute msr of all frame pairs up to this F (F^2 floats)
    # independent trainings with seeds seed, seed+1, ...; one is kept by select_restart (reprojection error and the
    # method's selection measure; unsupervised model selection: no 3D ground truth is used)
    restarts: int = 1
    # how the restart is chosen (select_restart): "shape_rank" = among the runs within (1 + selection_slack) x the
    # lowest reprojection error, the lowest common.shape_space_residual(S, selection_rank) (the low-rank shape
    # prior); "method" = the same with the method's own measure (Deep NRSfM: dictionary coherence; PR-RRN:
    # consistency error); "reprojection" = the lowest reprojection error. shape_rank, rank 3, slack 1 were chosen
    # leave-one-sequence-out over 12 sequences x 2 methods x 3 seeds (benchmarks/RESULTS.md, issue 17)
    selection: str = "shape_rank"
    selection_slack: float = 1.0  # runs within (1 + slack) x the lowest reprojection error compete on the measure
    selection_rank: int = 3
    # convergence stopping (data-scaled budget only): after stop_after of the budget, stop when the lowest
    # whole-sequence reprojection loss of the last stop_window of the budget is less than stop_tol (relative)
    # below the lowest before it
    stop_tol: float = 0.002
    stop_window: float = 0.1
    stop_after: float = 0.5
    amp: str | None = None  # mixed precision of the training loop (nrsfm_kit.train.TrainConfig.amp): None, "fp16", "bf16"

    def __post_init__(self):
        if self.epochs is not None and int(self.epochs) < 0:
            raise ValueError(f"epochs: expected None (data-scaled budget) or >= 0, found {self.epochs}")
        if int(self.restarts) < 1:
            raise ValueError(f"restarts: expected >= 1, found {self.restarts}")
        if not float(self.selection_slack) >= 0.0:
            raise ValueError(f"selection_slack: expected >= 0, found {self.selection_slack}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection: expected one of {', '.join(SELECTIONS)}, found {self.selection!r}")
        if int(self.selection_rank) < 1:
            raise ValueError(f"selection_rank: expected an integer >= 1, found {self.selection_rank}")
        if not float(self.stop_tol) >= 0.0:
            raise ValueError(f"stop_tol: expected >= 0, found {self.stop_tol}")
        for name in ("stop_window", "stop_after"):
            v = float(getattr(self, name))
            if not 0.0 < v <= 1.0:
                raise ValueError(f"{name}: expected a fraction in (0, 1], found {v}")


@dataclass
class LearnedBatch:
    """One training minibatch and the network's outputs on it.

    Attributes:
        idx: (B,) frame indices; W (B, P, 2) normalised observations; vis (B, P) bool.
        S: (B, P, 3) canonical shapes; M: the network's cameras (its own layout); h: its representation.
        global_idx: (B * world_size,) the frame indices of the whole mini-batch drawn on every process, of which
            ``idx`` is this process's shard (:func:`nrsfm_kit.train.distributed.shard`); None = ``idx`` (one
            process).
    """

    idx: torch.Tensor
    W: torch.Tensor
    vis: torch.Tensor
    S: torch.Tensor
    M: torch.Tensor
    h: torch.Tensor
    global_idx: torch.Tensor | None = None


LossFn = Callable[[torch.nn.Module, int, LearnedBatch], dict]


class LearnedMethod(NRSfMMethod):
    """A learned NRSfM method: a network ``model(W) -> (S, M, h)`` trained on one sequence, unsupervised.

    Subclasses set ``name`` and ``config_type`` (a dataclass with at least ``batch_size`` and
    ``learning_rate``) and implement :meth:`build` and :meth:`training_loss`.
    """

    config_type: type = object

    def fit(self, seq, *, epochs=None, model_config=None, config=None, out_dir=None, resume=True) -> NRSfMResult:
        """Train on ``seq`` (:func:`fit_learned`); ``epochs`` overrides ``config.epochs``."""
        cfg = config or LearnedFitConfig()
        if epochs is not None:
            cfg = replace(cfg, epochs=int(epochs))
        return fit_learned(seq, self, model_config, cfg, out_dir=out_dir, resume=resume)

    def check_model_config(self, config):
        """``config`` checked to be a ``config_type`` (None: the defaults)."""
        cfg = config or self.config_type()
        if not isinstance(cfg, self.config_type):
            raise ValueError(
                f"model_config: expected {self.config_type.__name__} for {self.name}, found {type(cfg).__name__}"
            )
        return cfg

    def build(self, num_points: int, config) -> torch.nn.Module:
        """The untrained network for sequences of ``num_points`` points."""
        raise NotImplementedError(f"{type(self).__name__}.build")

    def scheduler(self, optimizer: torch.optim.Optimizer, config, steps: int):
        """Learning-rate scheduler stepped after every optimiser step, or None (constant rate)."""
        return None

    def training_loss(
        self,
        model: torch.nn.Module,
        config,
        W: torch.Tensor,
        vis: torch.Tensor,
        *,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        steps: int,
        fit_config: LearnedFitConfig,
        state: TrainState | None = None,
    ) -> LossFn:
        """``loss(net, step, batch) -> {"loss": scalar tensor, **logged scalars}`` for one training run.

        Args:
            W: (F, P, 2) the whole normalised sequence, vis (F, P); ``generator`` the run's CPU generator
                (also the one drawing the minibatches); ``steps`` the run's number of optimiser steps.
            state: the run's :class:`~nrsfm_kit.train.state.TrainState`: register here every piece of state the
                loss keeps across steps (a memory bank, a counter) so a resumed run continues exactly; the
                generator is registered already.
        """
        raise NotImplementedError(f"{type(self).__name__}.training_loss")

    def camera_rows(self, M: torch.Tensor) -> torch.Tensor:
        """The network's camera output -> (B, 2, 3) orthonormal rows (W ~= shapes cameras^T)."""
        return M

    def diagnostics(self, model: torch.nn.Module) -> dict:
        """Scalars logged at each log step and stored in ``NRSfMResult.extra`` (none by default)."""
        return {}

    def budget(self, num_frames: int, num_points: int, config) -> int:
        """Optimiser steps of a run with the data-scaled budget (``epochs=None``): :func:`budget_steps` of the
        config's ``base_steps`` and F. P does not enter (see the module docstring)."""
        return budget_steps(int(config.base_steps), num_frames, power=float(getattr(config, "budget_power", 0.5)))

    def earliest_stop(self, config) -> float:
        """Fraction of the budget before which convergence stopping never ends a run (a loss that changes phase,
        such as PR-RRN's consistency term from mid-run, must get time after the change); 0 by default."""
        return 0.0

    def selection_measure(self, model: torch.nn.Module, W: torch.Tensor, vis: torch.Tensor, config) -> float | None:
        """A 3D-free quality measure of a trained run, lower = better (None: the method has none); used by
        :func:`select_restart` among the runs with a near-lowest reprojection error."""
        return None

    def predict(self, model: torch.nn.Module, W: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the model over all frames W (F, P, 2): canonical shapes (F, P, 3) and cameras (F, 2, 3)."""
        shapes, cams = [], []
        for i in range(0, W.shape[0], chunk):
            S, M, _ = model(W[i : i + chunk])
            shapes.append(S)
            cams.append(self.camera_rows(M))
        return torch.cat(shapes), torch.cat(cams)


def _learned_method(method: str | LearnedMethod) -> LearnedMethod:
    m = get_method(method) if isinstance(method, str) else method
    if not isinstance(m, LearnedMethod):
        learned = tuple(n for n in method_names() if isinstance(get_method(n), LearnedMethod))
        raise ValueError(f"method: expected one of the learned methods {learned}, found {method!r}")
    return m


def run_settings(seq: NRSfMSequence, method: str | LearnedMethod, model_config=None,
                 config: LearnedFitConfig | None = None) -> dict:
    """What one training run's checkpoint folder is tied to (JSON-ready): the method, its model config, the seed
    and gradient clipping, and the sequence (name, F, P and a SHA-256 of W and the visibility, so the same data
    read from another path still matches). Not the number of epochs: a resumed run may train further."""
    learner = _learned_method(method)
    cfg = config or LearnedFitConfig()
    mcfg = learner.check_model_config(model_config)
    W, vis = validate_sequence(seq)
    digest = hashlib.sha256(W.detach().cpu().float().contiguous().numpy().tobytes())
    digest.update(vis.detach().cpu().bool().contiguous().numpy().tobytes())
    settings = {
        "method": learner.name,
        "model_config": asdict(mcfg) if is_dataclass(mcfg) else repr(mcfg),
        "seed": int(cfg.seed),
        "grad_clip": cfg.grad_clip,
        "sequence": {"name": seq.name, "frames": int(W.shape[0]), "points": int(W.shape[1]),
                     "sha256": digest.hexdigest()},
    }
    return json.loads(json.dumps(settings, default=str))


def _flat(d, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_run_folder(out_dir: str | Path, settings: dict, *, write: bool = True, overwrite: bool = False) -> None:
    """Refuse a checkpoint folder written with other settings (another method, model, sequence, seed).

    Resuming is by folder: ``out_dir/settings.json`` records :func:`run_settings` of the run that wrote it.
    A folder with other settings, or with a checkpoint but no settings.json (written by another tool or an
    older version), raises ValueError naming the differences instead of loading a checkpoint that does not
    fit. ``write`` records ``settings`` in a new folder; ``overwrite`` (a run with ``resume=False``, which
    starts afresh) records them whatever the folder holds.
    """
    out = Path(out_dir)
    path = out / SETTINGS
    if overwrite:
        atomic_write_json(path, settings)
        return
    if path.is_file():
        try:
            found = json.loads(path.read_text())
        except ValueError:
            raise ValueError(f"out_dir: expected {path} to be the JSON written by fit_learned, found invalid JSON "
                             "(use another folder)") from None
        if found != settings:
            a, b = _flat(found) if isinstance(found, dict) else {}, _flat(settings)
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            if "method" in diff:  # another method: its model settings differ anyway, name the method only
                diff = ["method"]

            def show(v) -> str:
                r = repr(v)
                return r if len(r) <= 24 else r[:21] + "..."

            shown = "; ".join(f"{k}: {show(a.get(k))} there, {show(b.get(k))} now" for k in diff[:4])
            more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
            raise ValueError(f"out_dir: expected a new folder or one written with the same settings, found {path} "
                             f"with other settings ({shown}{more}); use another folder")
    elif (out / CHECKPOINT).exists() or (out / PREVIOUS).exists():
        found = out / CHECKPOINT if (out / CHECKPOINT).exists() else out / PREVIOUS
        raise ValueError(f"out_dir: expected a new folder or one written by fit_learned, found {found} "
                         f"without {SETTINGS} (written by another tool or an older version); use another folder")
    elif write:
        atomic_write_json(path, settings)


def check_out_dir(seq: NRSfMSequence, method: str | LearnedMethod, out_dir: str | Path, model_config=None,
                  config: LearnedFitConfig | None = None) -> None:
    """Refuse ``out_dir`` (its ``restart_<k>`` folders with ``config.restarts`` > 1) when another run wrote it.

    What :func:`fit_learned` checks before it trains, for callers that check everything before any work
    (``nrsfm-kit nrsfm fit``); writes nothing. See :func:`check_run_folder`.
    """
    cfg = config or LearnedFitConfig()
    if int(cfg.restarts) <= 1:
        runs = [(Path(out_dir), cfg)]
    else:
        runs = [(Path(out_dir) / f"restart_{k}", replace(cfg, restarts=1, seed=cfg.seed + k))
                for k in range(int(cfg.restarts))]
    for folder, run_cfg in runs:
        check_run_folder(folder, run_settings(seq, method, model_config, run_cfg), write=False)


def fit_learned(
    seq: NRSfMSequence,
    method: str | LearnedMethod,
    model_config=None,
    config: LearnedFitConfig | None = None,
    out_dir: str | Path | None = None,
    resume: bool = True,
) -> NRSfMResult:
    """Train a learned method (``"dnrsfm"``, ``"prrrn"`` or a :class:`LearnedMethod`) on one sequence (W only).

    Args:
        seq: the sequence; ``seq.S`` (if any) is used only for logging e3D, never for training.
        model_config: the method's config (:class:`DeepNRSfMConfig` / :class:`PRRRNConfig`, defaults from
            the papers).
        config: the schedule (:class:`LearnedFitConfig`).
        out_dir: checkpoint / metrics.json folder (resumes from it when ``resume``); its settings.json ties it
            to this run (:func:`check_run_folder`): a folder written for another method, model, sequence or seed
            is refused before any training.

    Returns:
        :class:`NRSfMResult` (shapes in the units of W), ``history`` the logged training entries,
        ``extra["model"]`` the trained network, plus the method's :meth:`~LearnedMethod.diagnostics`.
    """
    learner = _learned_method(method)
    cfg = config or LearnedFitConfig()
    if not isinstance(cfg, LearnedFitConfig):
        raise ValueError(f"config: expected a LearnedFitConfig, found {type(cfg).__name__}")
    cfg.__post_init__()  # fields may have been changed after construction
    # fails before any work when out_dir cannot be written; one run per folder (rank 0's, on several processes)
    with dd.output_folder(out_dir, "out_dir"):
        return _fit_learned(seq, learner, model_config, cfg, out_dir, resume)


def _fit_learned(seq, learner: LearnedMethod, model_config, cfg: LearnedFitConfig, out_dir, resume: bool):
    if dd.world()[1] > 1:  # every process must train the same run (before rank 0 writes anything)
        _check_same_run(seq, learner, model_config, cfg)
    if int(cfg.restarts) > 1:
        if out_dir is not None and resume:  # every restart's folder is checked before the first one trains
            dd.main_only(check_out_dir, seq, learner, out_dir, model_config, cfg)
        return _best_of_restarts(seq, learner, model_config, cfg, out_dir, resume)
    if out_dir is not None:
        dd.main_only(check_run_folder, out_dir, run_settings(seq, learner, model_config, cfg), overwrite=not resume)
    W, vis = validate_sequence(seq)
    Wn, norm = normalize_observations(W.float(), vis)
    F, P, _ = Wn.shape
    torch.manual_seed(cfg.seed)
    mcfg = learner.check_model_config(model_config)
    model = learner.build(P, mcfg).to(Wn.device)  # the device follows the input tensors
    bs = max(1, min(int(mcfg.batch_size), F))
    auto = cfg.epochs is None
    steps = learner.budget(F, P, mcfg) if auto else int(cfg.epochs) * math.ceil(F / bs)
    dd.shard(bs, "batch_size")  # several processes: a global batch that does not split evenly is refused here
    opt = torch.optim.Adam(model.parameters(), lr=mcfg.learning_rate)
    sched = learner.scheduler(opt, mcfg, steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    state = TrainState({"sampler": gen})  # what the checkpoint holds beyond model / optimiser / schedule
    loss_fn = learner.training_loss(model, mcfg, Wn, vis, optimizer=opt, generator=gen, steps=steps, fit_config=cfg,
                                    state=state)
    S_gt = None if seq.S is None else seq.S.to(Wn.device)

    def step_fn(net: torch.nn.Module, step: int) -> dict:
        drawn = torch.randint(0, F, (bs,), generator=gen).to(Wn.device)  # the global batch (the same on every rank)
        idx = dd.shard(drawn, "batch_size")  # this rank's part (all of it on one process)
        Wb, vb = Wn[idx], vis[idx]
        S, M, h = net(Wb)
        return loss_fn(net, step, LearnedBatch(idx=idx, W=Wb, vis=vb, S=S, M=M, h=h,
                                               global_idx=None if idx is drawn else drawn))

    def eval_fn(net: torch.nn.Module, step: int) -> dict:
        out = dict(learner.diagnostics(net))
        need_e3d = S_gt is not None and cfg.eval_every_log
        if auto or need_e3d:
            shapes, cams = learner.predict(net, Wn)
            out["rep_all"] = float(sequence_reprojection(Wn, shapes, cams, vis))  # what convergence is judged on
            if need_e3d:
                S_eval = to_camera_frame(shapes, cams) * norm.scale  # back to the units of W (e3D is not scale-free)
                out["e3d"] = float(e3d(S_eval, S_gt))
        return out

    def stop_fn(history: list[dict]) -> bool:
        return converged(history, steps, cfg, learner.earliest_stop(mcfg))

    tcfg = TrainConfig(
        steps=steps,
        seed=cfg.seed,
        grad_clip=cfg.grad_clip,
        log_every=max(1, min(cfg.log_every, steps or 1)),
        checkpoint_every=cfg.checkpoint_every,
        progress=cfg.progress,
        desc=learner.name,
        amp=cfg.amp,
    )
    res = fit(model, step_fn, opt, tcfg, scheduler=sched, out_dir=out_dir, resume=resume, eval_fn=eval_fn,
              stop_fn=stop_fn if auto else None, state=state)
    model.eval()
    with torch.no_grad():
        shapes, cams = learner.predict(model, Wn)
        measure = learner.selection_measure(model, Wn, vis, mcfg)
    shapes = shapes * norm.scale
    extra = {"model": model, "train": res, **learner.diagnostics(model), "steps": res.step, "budget": steps,
             "stopped": res.stopped, "selection_measure": measure}
    return NRSfMResult(
        S=to_camera_frame(shapes, cams), cameras=cams, shapes=shapes, method=learner.name, history=res.history,
        extra=extra,
    )


def _check_same_run(seq, learner: LearnedMethod, model_config, cfg: LearnedFitConfig) -> None:
    """ValueError unless every process trains the same run as rank 0 (method, model, sequence fingerprint, seed,
    schedule; the progress bar aside)."""
    schedule = {k: v for k, v in asdict(cfg).items() if k != "progress"}
    mine = json.loads(json.dumps({"settings": run_settings(seq, learner, model_config, cfg), "fit": schedule},
                                 default=str))
    runs = dd.gather_objects(mine)
    other = [r for r, run in enumerate(runs) if run != runs[0]]
    if other:
        a, b = _flat(runs[0]), _flat(runs[other[0]])
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise ValueError(f"seq: expected every process to train the same run as rank 0, found process {other[0]} "
                         f"with other {', '.join(diff[:4])} (launch every process with the same arguments)")


def sequence_reprojection(W: torch.Tensor, shapes: torch.Tensor, cams: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """mean_f ||vis (W_f - shapes_f cams_f^T)||_F / ||vis W_f||_F over all frames: W (F, P, 2), shapes (F, P, 3),
    cams (F, 2, 3), vis (F, P) -> scalar (the training loss of both learned methods, on the whole sequence)."""
    m = vis.to(W.dtype)[..., None]
    res = (W - shapes @ cams.transpose(-1, -2)) * m
    return (res.flatten(1).norm(dim=1) / (W * m).flatten(1).norm(dim=1).clamp_min(1e-12)).mean()


def converged(history: list[dict], steps: int, cfg: LearnedFitConfig, not_before: float = 0.0) -> bool:
    """Convergence of a run of ``steps`` steps from its logged whole-sequence reprojection loss ``rep_all``.

    True when the last entry is past max(``cfg.stop_after``, ``not_before``) x ``steps`` and the lowest loss
    logged in the last ``cfg.stop_window * steps`` steps is less than ``cfg.stop_tol`` (relative) below the
    lowest logged before.
    """
    pts = [(int(e["step"]), float(e["rep_all"])) for e in history if e.get("rep_all") is not None]
    if not pts:
        return False
    last = pts[-1][0]
    if last < max(float(cfg.stop_after), float(not_before)) * steps:
        return False
    start = last - float(cfg.stop_window) * steps
    before = [r for s, r in pts if s <= start]
    recent = [r for s, r in pts if s > start]
    if not before or not recent:
        return False
    b = min(before)
    return b - min(recent) <= float(cfg.stop_tol) * b


def select_restart(reprojections, measures=None, slack: float = 0.1) -> int:
    """Index of the restart to keep (no 3D used).

    Without ``measures`` (or when any is None): the lowest reprojection error, ties to the earliest. With them:
    among the runs whose reprojection error is at most (1 + ``slack``) x the lowest, the lowest measure (ties to
    the lower reprojection error). Non-finite values never win.
    """
    reps = [float(r) for r in reprojections]
    if not reps:
        raise ValueError("reprojections: expected at least one run, found none")
    if float(slack) < 0:
        raise ValueError(f"slack: expected >= 0, found {slack}")
    big = float("inf")
    key_rep = [r if math.isfinite(r) else big for r in reps]
    if measures is None or any(m is None for m in measures):
        return min(range(len(reps)), key=lambda k: (key_rep[k], k))
    if len(measures) != len(reps):
        raise ValueError(f"measures: expected {len(reps)} values (one per run), found {len(measures)}")
    best = min(key_rep)
    pool = [k for k in range(len(reps)) if key_rep[k] <= (1 + float(slack)) * best] or [key_rep.index(best)]
    key_m = [float(m) if math.isfinite(float(m)) else big for m in measures]
    return min(pool, key=lambda k: (key_m[k], key_rep[k], k))


def restart_measure(res: NRSfMResult, cfg: LearnedFitConfig) -> float | None:
    """The 3D-free measure ``cfg.selection`` ranks a restart by (lower is better; None: reprojection only).

    "shape_rank": :func:`~nrsfm_kit.nrsfm.common.shape_space_residual` of the run's camera-frame shapes with
    ``cfg.selection_rank`` directions (capped at min(F, 3P) - 1 for very short sequences); "method": the method's
    own measure (``extra["selection_measure"]``); "reprojection": None.
    """
    if cfg.selection == "reprojection":
        return None
    if cfg.selection == "method":
        return res.extra.get("selection_measure")
    F, P = res.S.shape[0], res.S.shape[1]
    rank = min(int(cfg.selection_rank), min(F, 3 * P) - 1)
    if rank < 1:
        return None  # one frame: no shape space to score, reprojection only
    try:
        return shape_space_residual(res.S.float(), rank)
    except ValueError:  # (shapes and rank are valid here) non-finite or collapsed shapes: such a run never wins
        return float("inf")


def _best_of_restarts(seq, method, model_config, cfg: LearnedFitConfig, out_dir, resume) -> NRSfMResult:
    """Train ``cfg.restarts`` times (seeds seed + k) and keep the run :func:`select_restart` picks (no 3D used).

    ``extra["restarts"]`` lists every run's seed, reprojection error, selection measure and (reported only,
    never used to choose) its e3D when the sequence has ground truth.
    """
    W, vis = validate_sequence(seq)
    runs = []
    for k in range(int(cfg.restarts)):
        sub = None if out_dir is None else Path(out_dir) / f"restart_{k}"
        res = fit_learned(seq, method, model_config, replace(cfg, restarts=1, seed=cfg.seed + k), sub, resume)
        fault_point("stage")  # restart k is complete (its folder holds its final checkpoint)
        rep = float(reprojection_error(W.float(), res.S.float(), None, vis))
        row = {"seed": cfg.seed + k, "reproj": rep, "measure": restart_measure(res, cfg),
               "steps": res.extra.get("steps")}
        if seq.S is not None:
            row["e3d"] = float(e3d(res.S.float(), seq.S.float().to(res.S.device)))
        runs.append((row, res))
    k_best = select_restart([r["reproj"] for r, _ in runs], [r["measure"] for r, _ in runs], cfg.selection_slack)
    best = runs[k_best][1]
    best.extra["restarts"] = [r for r, _ in runs]
    best.extra["restart_seed"] = cfg.seed + k_best
    return best
