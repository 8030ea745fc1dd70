r"""PR-RRN (Zeng et al., ICCV 2021): Pairwise-Regularized Residual-Recursive Networks.

Shape network (an autoencoder of residual-recursive modules). The input 2D shape W (P x 2) is
reshaped to P x 2 x 1, i.e. P channels over a 2-pixel image, so every layer is a 1x1 convolution
that treats the x and y rows alike (like the block dictionaries of Deep NRSfM). A first layer maps
P -> C_1 channels; then each residual-recursive (RR) module applies one recursive layer T times with
a residual connection to the module's input,

    y_0 = x,   y_t = ReLU(L y_{t-1} + c) + x  (t = 1..T),   then   x' = ReLU(H y_T + d)  (C -> C/2)

for C = 128, 64, 32, 16 -> 8. The representation h (8 x 2) sits in the middle; the last module has no ReLU, so h is
signed: the contrastive loss pushes negatives to cos <= 0, which nonnegative (post-ReLU) vectors can only reach with
disjoint supports (measured: + contrast 0.29 with a ReLU'd h vs 0.16 signed, 600 steps on the synthetic skeleton). The decoder must produce a
shape in a *canonical* frame from a *camera-free* code: a linear layer maps h (both image-axis columns) to
one code column (8 x 1); the inverse modules, with tied (transposed) weights H^T, L^T, decode it to a
C_1-vector; a last layer, a 3D basis D (3 x P x C_1), gives S (P x 3) = sum_c x_c D[:, :, c]^T.

Why not decode column by column (x, y, depth) with the same 1x1 layers as the encoder? Every column of a
camera-frame shape S R^T lies in the same low-rank column space of the basis shapes, so a per-column decoder
reproduces W's two columns exactly and can put *any* element of that space in the depth column: the
reprojection is fitted, the depth is not (e3D ~0.5-0.7 on the synthetic skeleton). With one code and a
3D basis, the shapes are a low-rank model S = B(code) in one frame and the orthonormal camera pins the
depth (the metric constraint of factorisation methods), as the shared 3D dictionary does in Deep NRSfM.
The first layer (P -> C_1, one image axis per column) and the 3D basis are therefore separate parameters.

Rotation network: linear layers 2P -> 128 -> 32 -> 8 -> 6 (ReLUs), the 6 outputs reshaped to 2x3 and
orthonormalised (polar factor = U V^T of its SVD) into the orthographic camera R with W ~= S R^T.

Losses (missing points masked everywhere):
- reprojection  L_rep = mean_b ||vis (W_b - S_b R_b^T)||_F / ||vis W_b||_F;
- rigidity-based pairwise contrastive loss (eq. 10-14): the unit-normalised representation h of each
  frame is compared with a FIFO memory bank of N_mem = 1024 past (h, W) pairs; a bank entry is a
  positive when the two 2D shapes are (nearly) rigidly related, sqrt(msr) < tau = 0.02 (msr of eq. 9),
  a negative when sqrt(msr) > xi = 0.04, ignored in between (``threshold_on``: the thresholds applied
  to msr itself make ~all pairs positives on motion capture, see PRRRNConfig). Positives are pulled (1 - cos), negatives
  pushed until orthogonal (ReLU(cos));
- pairwise consistency loss (eq. 15-17): the estimated shapes are re-projected with a random
  permutation of the batch's cameras, W'_b = S_b R_{pi(b)}^T, and the networks must return the same
  shape and the permuted camera: ||S(W'_b) - S_b|| / ||S_b|| + ||R(W'_b) - R_{pi(b)}||_F (targets
  detached);
- eq. 18: the two pairwise terms alternate between steps, L = L_rep + lambda_1 L_contrast (even steps)
  and L = L_rep + lambda_2 L_consist (odd steps), lambda_1 = 0.1, lambda_2 = 0.2.

The loss formulas of the pairwise terms are this package's reading of the paper's description.
Defaults: channels 128..8, T = 3 for motion capture (2 for object categories), N_mem = 1024,
tau = 0.02, xi = 0.04, lambda_1 = 0.1, lambda_2 = 0.2 (paper, §4 and §5.1). Ours, each measured
(benchmarks/RESULTS.md, notebook 10): the thresholds compare sqrt(msr) (read on msr itself, >= 95 % of the
pairs of every sequence we have are positives and the contrastive term collapses h: pickup e3D 0.376 vs 0.152
without it, 0.077 on sqrt(msr)); the consistency term starts at mid-run (from step 0 it locks in the early
flat shapes: 0.245 vs 0.044 on the synthetic skeleton, even with lambda_2 = 0.02); batch 64 and Adam 1e-2 with
a cosine decay to 3e-5; no contrastive term on a sequence where more than 70 % of the frame pairs are positives
(it collapses h there; chosen leave-one-sequence-out, ``benchmarks/nrsfm_loo.py``).

On several processes (``torchrun``; each computes its shard of the global batch and the loop averages the
gradients) the pairwise terms are kept those of the global batch: the memory bank is updated with every process's
(h, W) of the step (``all_gather``, in the global batch's order), so it is the same bank on every process and the
single-process bank; the contrastive means over positive and negative pairs divide by the pair counts summed over
the processes; the consistency permutation is drawn over the global batch, with the cameras of the other shards
gathered. Each term is then the single-process one up to float round-off. What stays per process: the network
runs on the shard (no batch statistics here, so nothing differs), and the consistency re-estimation of a shard's
shapes runs on that process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from nrsfm_kit.geometry import orthonormalize
from nrsfm_kit.nrsfm.learned import LearnedBatch, LearnedMethod, check_budget_power
from nrsfm_kit.nrsfm.msr import msr_pairwise_masked
from nrsfm_kit.train import distributed as dd
from nrsfm_kit.utils.checks import check_tensor


@dataclass
class PRRRNConfig:
    """PR-RRN settings; defaults from the paper (ICCV 2021)."""

    channels: tuple[int, ...] = (128, 64, 32, 16, 8)  # RR module widths, halving (paper Fig. 3)
    recursions: int = 3  # T: 3 for MoCap, 2 for objects (paper §5.1)
    rot_hidden: tuple[int, ...] = (128, 32, 8)  # rotation network linear layers (paper)
    n_mem: int = 1024  # memory bank size N_mem (paper)
    tau: float = 0.02  # below tau: positive pair (paper)
    xi: float = 0.04  # above xi: negative pair (paper)
    # what tau and xi are compared with: "sqrt_msr" = sigma_4 / ||sigma||_2 (default, ours) or "msr" itself
    # (sigma_4^2 / sum sigma^2, eq. 9 read literally). Measured: with "msr", >= 95 % of all frame pairs of the
    # five real sequences and of the synthetic skeleton are positives and ~0 % negatives (median msr 1e-4 - 2.5e-3),
    # so the loss only pulls every h together; with "sqrt_msr" the skeleton sequences split ~25 % / ~55 %.
    # "quantile": tau and xi are quantiles (in [0, 1]) of this sequence's sqrt(msr) over all frame pairs, so every
    # sequence gets the same split whatever the scale of its deformation (e.g. tau=0.25, xi=0.5)
    threshold_on: str = "sqrt_msr"
    lambda1: float = 0.1  # weight of the contrastive loss (eq. 18)
    lambda2: float = 0.2  # weight of the consistency loss (eq. 18)
    use_contrast: bool = True  # ablation switches (paper Table 4): RRN, +contrast, +consist, full
    use_consist: bool = True
    # optimisation (ours: measured on the synthetic skeleton and the real sequences, see benchmarks/RESULTS.md)
    learning_rate: float = 1e-2  # Adam
    batch_size: int = 64
    lr_final: float = 0.003  # cosine decay of the learning rate to lr_final * learning_rate over the run (1 = constant)
    consist_rotation: float = 1.0  # weight of the camera term inside the consistency loss
    consist_warmup: float = 0.5  # fraction of the run before the consistency term starts (0 = from the start)
    # optimiser steps at 300 frames of the data-scaled budget (LearnedFitConfig(epochs=None)): base * sqrt(F / 300)
    base_steps: int = 2400
    # the budget's power of F: steps = base_steps * (F / 300) ** budget_power (0.5: sqrt; 1: the same epochs at
    # every F); see nrsfm_kit.nrsfm.learned.budget_steps
    budget_power: float = 0.5
    # None, or a fraction: the contrastive term is left out on a sequence whose fraction of positive pairs
    # (contrastive_split) is above it. Ours: with 72-93 % positives it collapses h (waving 0.096 -> 0.009 and cars
    # 0.227 -> 0.106 without it, face 0.027 -> 0.031); 0.7 won every leave-one-out fold (benchmarks/RESULTS.md)
    contrast_max_positive: float | None = 0.7
    # None, or a frame count: the contrastive term is left out on a sequence of more frames than this (1024: the
    # default n_mem, the frames the memory bank holds). Ours, P6 of benchmarks/RESULTS.md: at 2 000 frames the term
    # kept the reprojection error 2-3x higher at any weight, bank size or budget tried; chosen in every
    # leave-one-out fold, 6x faster at 10 000 frames; held out there, seeds 0 / 1 / 2 reach e3D 0.133 / 0.281 / 0.689
    # (with the term, seed 0: 0.687; EM-PPCA 0.218)
    contrast_max_frames: int | None = 1024

    def __post_init__(self):
        if not 0.0 < float(self.lr_final) <= 1.0:
            raise ValueError(f"lr_final: expected a fraction in (0, 1], found {self.lr_final}")
        if not 0.0 <= float(self.consist_warmup) < 1.0:
            raise ValueError(f"consist_warmup: expected a fraction in [0, 1), found {self.consist_warmup}")
        if not float(self.consist_rotation) >= 0.0:
            raise ValueError(f"consist_rotation: expected >= 0, found {self.consist_rotation}")
        if not float(self.learning_rate) > 0.0:
            raise ValueError(f"learning_rate: expected > 0, found {self.learning_rate}")
        if self.threshold_on not in ("sqrt_msr", "msr", "quantile"):
            raise ValueError(f"threshold_on: expected 'sqrt_msr', 'msr' or 'quantile', found {self.threshold_on!r}")
        if not 0.0 <= float(self.tau) <= float(self.xi):
            raise ValueError(f"tau, xi: expected 0 <= tau <= xi, found tau={self.tau}, xi={self.xi}")
        if self.threshold_on == "quantile" and float(self.xi) > 1.0:
            raise ValueError(f"xi: expected a quantile in [0, 1] with threshold_on='quantile', found {self.xi}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size: expected >= 1, found {self.batch_size}")
        if int(self.base_steps) < 1:
            raise ValueError(f"base_steps: expected >= 1, found {self.base_steps}")
        check_budget_power(self.budget_power)
        if self.contrast_max_positive is not None and not 0.0 <= float(self.contrast_max_positive) <= 1.0:
            raise ValueError(f"contrast_max_positive: expected None or a fraction in [0, 1], found "
                             f"{self.contrast_max_positive}")
        if self.contrast_max_frames is not None and not int(self.contrast_max_frames) >= 1:
            raise ValueError(f"contrast_max_frames: expected None or a frame count >= 1, found "
                             f"{self.contrast_max_frames}")


class RRModule(nn.Module):
    """Residual-recursive module: one layer L (C x C) applied T times with a residual, then H: C -> C_out.

    Operates on (B, C, X) tensors (1x1 convolutions over the X columns); ``activate=False`` drops the last ReLU
    (used for the bottleneck module, so the representation h is signed). :meth:`inverse` runs the tied
    transposed weights backwards: (B, C_out, X) -> (B, C, X).
    """

    def __init__(self, c_in: int, c_out: int, recursions: int):
        super().__init__()
        self.T = int(recursions)
        # small recursive weights: T residual recursions then keep activations O(1) at initialisation
        self.L = nn.Parameter(torch.randn(c_in, c_in) / np.sqrt(c_in) * 0.1)
        self.c = nn.Parameter(torch.zeros(c_in, 1))
        self.H = nn.Parameter(torch.randn(c_out, c_in) / np.sqrt(c_in * (1 + self.T)))
        self.d = nn.Parameter(torch.zeros(c_out, 1))
        self.c_inv = nn.Parameter(torch.zeros(c_in, 1))
        self.d_inv = nn.Parameter(torch.zeros(c_in, 1))

    def forward(self, x: torch.Tensor, activate: bool = True) -> torch.Tensor:
        y = x
        for _ in range(self.T):
            y = torch.relu(self.L @ y + self.c) + x
        out = self.H @ y + self.d
        return torch.relu(out) if activate else out

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.H.T @ x + self.d_inv)
        y = x
        for _ in range(self.T):
            y = torch.relu(self.L.T @ y + self.c_inv) + x
        return y


class PRRRN(nn.Module):
    """Shape + rotation networks. ``forward(W (B, P, 2)) -> (S (B, P, 3), R (B, 2, 3), h (B, 2 C_n))``."""

    def __init__(self, num_points: int, config: PRRRNConfig | None = None):
        super().__init__()
        if int(num_points) < 4:
            raise ValueError(f"num_points: expected >= 4, found {num_points}")
        self.config = cfg = config or PRRRNConfig()
        ch = [int(c) for c in cfg.channels]
        if len(ch) < 1 or min(ch) < 1:
            raise ValueError(f"channels: expected a non-empty list of positive widths, found {cfg.channels}")
        if int(cfg.recursions) < 1:
            raise ValueError(f"recursions: expected >= 1, found {cfg.recursions}")
        self.num_points = P = int(num_points)
        self.E0 = nn.Parameter(torch.randn(ch[0], P) / np.sqrt(P))
        self.e0 = nn.Parameter(torch.zeros(ch[0], 1))
        self.modules_rr = nn.ModuleList([RRModule(ch[i], ch[i + 1], cfg.recursions) for i in range(len(ch) - 1)])
        cn = ch[-1]
        # h (C_n x 2, one column per image axis) -> one camera-free code column (C_n x 1): the decoder works
        # on codes, not on image columns, so the 3D structure (depth included) lives in the shared basis
        self.lift = nn.Linear(2 * cn, cn)
        # last layer: a 3D basis (3, P, C_1) mapping the decoded C_1-vector to P x 3 (x, y, z slices)
        self.D_out = nn.Parameter(torch.randn(3, P, ch[0]) / np.sqrt(ch[0]))
        self.out_bias = nn.Parameter(torch.zeros(P, 3))
        dims = [2 * P, *[int(h) for h in cfg.rot_hidden]]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], 6))
        self.rot = nn.Sequential(*layers)
        with torch.no_grad():  # start near the identity camera (a well-conditioned 2x3)
            self.rot[-1].bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))

    def representation(self, W: torch.Tensor) -> torch.Tensor:
        """(B, P, 2) -> h (B, C_n, 2), the shape representation."""
        x = torch.relu(self.E0 @ W + self.e0)
        n = len(self.modules_rr)
        for i, m in enumerate(self.modules_rr):
            x = m(x, activate=i < n - 1)
        return x

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, C_n, 2) -> S (B, P, 3) through the inverse modules with tied weights."""
        B, cn, _ = h.shape
        x = self.lift(h.reshape(B, 2 * cn))[..., None]  # (B, C_n, 1) code
        for m in reversed(self.modules_rr):
            x = m.inverse(x)
        return torch.einsum("dpc,bc->bpd", self.D_out, x[..., 0]) + self.out_bias

    def rotation(self, W: torch.Tensor) -> torch.Tensor:
        """(B, P, 2) -> orthographic camera (B, 2, 3): 6 outputs as 2x3, orthonormalised (polar factor)."""
        return orthonormalize(self.rot(W.flatten(1)).reshape(-1, 2, 3))

    def forward(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_tensor("W", W, ("B", self.num_points, 2))
        h = self.representation(W)
        return self.decode(h), self.rotation(W), h.flatten(1)


def reprojection_loss(W: torch.Tensor, S: torch.Tensor, R: torch.Tensor, vis: torch.Tensor | None = None) -> torch.Tensor:
    """mean_b ||vis (W_b - S_b R_b^T)||_F / ||vis W_b||_F: W (B, P, 2), S (B, P, 3), R (B, 2, 3) -> scalar."""
    res = W - S @ R.transpose(-1, -2)
    Wm = W
    if vis is not None:
        m = vis.to(W.dtype)[..., None]
        res, Wm = res * m, W * m
    return (res.flatten(1).norm(dim=1) / Wm.flatten(1).norm(dim=1).clamp_min(1e-12)).mean()


class MemoryBank:
    """FIFO bank of (unit h, W, vis) of the last ``size`` frames seen in training (detached)."""

    def __init__(self, size: int, dim: int, num_points: int, dtype=torch.float32, device=None):
        if int(size) < 1:
            raise ValueError(f"n_mem: expected >= 1, found {size}")
        self.size = int(size)
        self.h = torch.zeros(self.size, dim, dtype=dtype, device=device)
        self.W = torch.zeros(self.size, num_points, 2, dtype=dtype, device=device)
        self.vis = torch.zeros(self.size, num_points, dtype=torch.bool, device=device)
        self.frames = torch.full((self.size,), -1, dtype=torch.long, device=device)
        self.count = 0
        self.ptr = 0

    def __len__(self) -> int:
        return min(self.count, self.size)

    def push(self, h: torch.Tensor, W: torch.Tensor, vis: torch.Tensor, frames: torch.Tensor | None = None) -> None:
        """Store a batch (replacing the oldest entries); ``frames`` (B,) optional frame indices (-1 = unknown)."""
        n = h.shape[0]
        idx = (self.ptr + torch.arange(n)) % self.size
        self.h[idx] = h.detach()
        self.W[idx] = W.detach()
        self.vis[idx] = vis.bool()
        self.frames[idx] = -1 if frames is None else frames.to(self.frames)
        self.ptr = int((self.ptr + n) % self.size)
        self.count += n

    def entries(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(h, W, vis) of the stored entries. h is a copy (autograd keeps it for the backward pass, after the
        next :meth:`push` has overwritten the bank); W and vis are views, valid until the next push."""
        n = len(self)
        return self.h[:n].clone(), self.W[:n], self.vis[:n]

    def state_dict(self) -> dict:
        """The bank's contents and write position (the training loop saves it in every checkpoint)."""
        return {"h": self.h.clone(), "W": self.W.clone(), "vis": self.vis.clone(), "frames": self.frames.clone(),
                "count": self.count, "ptr": self.ptr}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; ValueError when it is of another bank size, code size or point count."""
        if tuple(state["h"].shape) != tuple(self.h.shape) or tuple(state["W"].shape) != tuple(self.W.shape):
            raise ValueError(f"memory_bank: expected entries h {tuple(self.h.shape)}, W {tuple(self.W.shape)}, "
                             f"found h {tuple(state['h'].shape)}, W {tuple(state['W'].shape)}")
        self.h.copy_(state["h"])
        self.W.copy_(state["W"])
        self.vis.copy_(state["vis"])
        self.frames.copy_(state["frames"])
        self.count, self.ptr = int(state["count"]), int(state["ptr"])

    def frame_indices(self) -> torch.Tensor:
        """(N,) the sequence frame index of each stored entry (-1 where pushed without one); a view."""
        return self.frames[: len(self)]


def contrastive_loss(
    h: torch.Tensor,
    W: torch.Tensor,
    vis: torch.Tensor,
    bank_h: torch.Tensor,
    bank_W: torch.Tensor,
    bank_vis: torch.Tensor,
    tau: float = 0.02,
    xi: float = 0.04,
    msr_values: torch.Tensor | None = None,
    threshold_on: str = "msr",
    across_processes: bool = False,
) -> tuple[torch.Tensor, dict]:
    """Rigidity-based pairwise contrastive loss against a memory bank.

    Args:
        h: (B, D) representations (normalised here to unit length); W (B, P, 2), vis (B, P) the batch.
        bank_h (N, D) unit representations, bank_W (N, P, 2), bank_vis (N, P) the memory.
        tau, xi: thresholds for positives (value < tau) and negatives (value > xi).
        threshold_on: the value compared with tau and xi: ``"msr"`` (eq. 9) or ``"sqrt_msr"``
            (sigma_4 / ||sigma||_2, the ratio of the singular values rather than of their squares).
        msr_values: optional precomputed (B, N) msr of the pairs (msr depends on the 2D data only, so
            :class:`PRRRNMethod` looks it up in a per-sequence table instead of
            recomputing it every step); pairs with fewer than 4 common points must hold NaN there.
        across_processes: the batch is this process's shard of a global batch (data-parallel training, every
            process calls this with the same bank): the means are over the pairs of all processes (the counts
            summed across them, a collective) and scaled by the number of processes, so the average of the
            processes' losses and gradients is the global batch's; stats are the global counts. No effect on
            one process.

    Returns:
        (loss, stats) with loss = mean over positives of (1 - cos) + mean over negatives of ReLU(cos),
        stats the numbers of positive and negative pairs.
    """
    if threshold_on not in ("sqrt_msr", "msr"):
        raise ValueError(f"threshold_on: expected 'sqrt_msr' or 'msr', found {threshold_on!r}")
    hn = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    if bank_h.shape[0] == 0:
        return hn.sum() * 0.0, {"n_pos": 0.0, "n_neg": 0.0}
    with torch.no_grad():
        if msr_values is None:
            m = msr_pairwise_masked(W, bank_W, vis, bank_vis)
        else:
            check_tensor("msr_values", msr_values, (h.shape[0], bank_h.shape[0]), finite=False)
            m = msr_values
        enough = ~torch.isnan(m)
        if threshold_on == "sqrt_msr":
            m = m.clamp_min(0.0).sqrt()
        pos = (m < tau) & enough
        neg = (m > xi) & enough
    cos = hn @ bank_h.T
    zero = hn.sum() * 0.0
    size = dd.world()[1] if across_processes else 1
    if size > 1:
        n_pos, n_neg = (int(v) for v in dd.all_reduce_sum(torch.stack([pos.sum(), neg.sum()])).tolist())
        lp = (1 - cos)[pos].sum() * (size / n_pos) if n_pos else zero
        ln = torch.relu(cos)[neg].sum() * (size / n_neg) if n_neg else zero
        return lp + ln, {"n_pos": float(n_pos), "n_neg": float(n_neg)}
    lp = (1 - cos)[pos].mean() if pos.any() else zero
    ln = torch.relu(cos)[neg].mean() if neg.any() else zero
    return lp + ln, {"n_pos": float(pos.sum()), "n_neg": float(neg.sum())}


def msr_table(W: torch.Tensor, vis: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """msr (eq. 9) of every frame pair of a sequence: (F, P, 2), (F, P) -> (F, F), NaN where < 4 common points.

    Computed once per sequence in chunks of rows (memory O(chunk F)); the contrastive loss then looks its
    (batch, bank) block up by frame index: the same values as recomputing :func:`msr_pairwise` each step.
    """
    with torch.no_grad():
        return torch.cat([msr_pairwise_masked(W[i : i + chunk], W, vis[i : i + chunk], vis)
                          for i in range(0, W.shape[0], chunk)])


def consistency_loss(
    model: PRRRN,
    S: torch.Tensor,
    R: torch.Tensor,
    generator: torch.Generator | None = None,
    rotation_weight: float = 1.0,
    across_processes: bool = False,
) -> torch.Tensor:
    """Pairwise consistency (eq. 15-17): re-project S_b with a permuted camera R_pi(b), re-estimate.

    S (B, P, 3), R (B, 2, 3) current estimates (detached targets) -> scalar
    mean_b ||S'_b - S_b||_F / ||S_b||_F + ||R'_b - R_pi(b)||_F, with (S'_b, R'_b) the networks' output
    for the new view W'_b = S_b R_pi(b)^T.

    ``across_processes``: S, R are this process's shard of a global batch (data-parallel training; every process
    calls this at the same step): pi permutes the global batch (drawn from ``generator``, the same on every
    process) and the cameras of the other shards are gathered (a collective), so the shards' terms average to
    the global batch's. No effect on one process.
    """
    size = dd.world()[1] if across_processes else 1
    if size > 1:
        R_all = dd.all_gather_tensor(R)
        perm = torch.randperm(R_all.shape[0], generator=generator, device="cpu").to(S.device)
        St, Rt = S.detach(), R_all[perm][dd.shard_slice(R_all.shape[0], "batch_size")]
    else:
        B = S.shape[0]
        perm = torch.randperm(B, generator=generator, device="cpu").to(S.device)
        St, Rt = S.detach(), R.detach()[perm]
    Wn = St @ Rt.transpose(-1, -2)
    Wn = Wn - Wn.mean(1, keepdim=True)
    S2, R2, _ = model(Wn)
    Sc = St - St.mean(1, keepdim=True)
    S2c = S2 - S2.mean(1, keepdim=True)
    ls = ((S2c - Sc).flatten(1).norm(dim=1) / Sc.flatten(1).norm(dim=1).clamp_min(1e-12)).mean()
    lr = (R2 - Rt).flatten(1).norm(dim=1).mean()
    return ls + rotation_weight * lr


def consistency_error(model: PRRRN, W: torch.Tensor, chunk: int = 1024, seed: int = 0) -> float:
    """3D-free quality of a trained PR-RRN: the pairwise-consistency error (eq. 15-17) over all frames.

    Every frame's estimated shape is re-projected with another frame's camera (a fixed random permutation of
    all frames, ``seed``) and re-estimated; returns mean_f ||S'_f - S_f|| / ||S_f|| + ||R'_f - R_pi(f)||_F.
    A reconstruction with wrong depth projects to views the network does not map back to the same shape, so
    the error is high; it needs no 3D ground truth (used by :func:`~nrsfm_kit.nrsfm.learned.select_restart`).
    """
    F = W.shape[0]
    was = model.training
    model.eval()
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(F, generator=g).to(W.device)
    total = 0.0
    with torch.no_grad():
        S, R, _ = model(W)
        for i in range(0, F, chunk):
            sl = slice(i, min(F, i + chunk))
            St, Rt = S[sl], R[perm[sl]]
            Wn = St @ Rt.transpose(-1, -2)
            Wn = Wn - Wn.mean(1, keepdim=True)
            S2, R2, _ = model(Wn)
            Sc, S2c = St - St.mean(1, keepdim=True), S2 - S2.mean(1, keepdim=True)
            ls = (S2c - Sc).flatten(1).norm(dim=1) / Sc.flatten(1).norm(dim=1).clamp_min(1e-12)
            total += float((ls + (R2 - Rt).flatten(1).norm(dim=1)).sum())
    model.train(was)
    return total / F


def representation_stats(model: PRRRN, W: torch.Tensor) -> dict:
    """Collapse diagnostics of h over all frames W (F, P, 2): the mean pairwise cosine of the unit h
    (1 = every frame has the same code) and the participation ratio of their singular values (effective rank,
    between 1 and dim h)."""
    with torch.no_grad():
        h = model.representation(W).flatten(1)
        hn = h / h.norm(dim=1, keepdim=True).clamp_min(1e-12)
        F = hn.shape[0]
        G = hn @ hn.T
        mean_cos = float((G.sum() - G.diagonal().sum()) / max(F * (F - 1), 1))
        sv = torch.linalg.svdvals(hn - hn.mean(0, keepdim=True)) ** 2
        eff = float(sv.sum() ** 2 / (sv**2).sum().clamp_min(1e-30))
    return {"h_mean_cos": mean_cos, "h_eff_rank": eff}


def _pair_sample(W: torch.Tensor, vis: torch.Tensor, max_frames: int = 1024) -> torch.Tensor:
    """msr of the frame pairs of up to ``max_frames`` frames (all when F <= max_frames; else an even subsample)."""
    F = W.shape[0]
    idx = torch.arange(F) if F <= max_frames else torch.linspace(0, F - 1, max_frames).round().long()
    m = msr_table(W[idx], vis[idx])
    off = ~torch.eye(len(idx), dtype=torch.bool, device=m.device) & ~torch.isnan(m)
    return m[off]


def resolve_thresholds(W: torch.Tensor, vis: torch.Tensor, config: PRRRNConfig,
                       pairs: torch.Tensor | None = None) -> tuple[float, float, str]:
    """(tau, xi, threshold_on) as :func:`contrastive_loss` takes them: with ``threshold_on="quantile"`` the
    quantiles tau, xi of the sequence's sqrt(msr) over its frame pairs (up to 1024 frames sampled evenly; ``pairs``:
    those msr values when already computed), compared with sqrt(msr); otherwise the config's values unchanged."""
    if config.threshold_on != "quantile":
        return float(config.tau), float(config.xi), config.threshold_on
    v = (_pair_sample(W, vis) if pairs is None else pairs).clamp_min(0).sqrt().double()
    if v.numel() == 0:
        raise ValueError("W: expected frame pairs with >= 4 common visible points for quantile thresholds, found none")
    q = torch.quantile(v, torch.tensor([float(config.tau), float(config.xi)], dtype=v.dtype))
    return float(q[0]), float(q[1]), "sqrt_msr"


def contrastive_split(W: torch.Tensor, vis: torch.Tensor, config: PRRRNConfig | None = None) -> dict:
    """Fractions of frame pairs (i != j) that the contrastive loss treats as positives and negatives: a property of
    the data and of tau / xi / threshold_on only (msr is computed from the 2D tracks)."""
    cfg = config or PRRRNConfig()
    m = _pair_sample(W, vis)
    tau, xi, on = resolve_thresholds(W, vis, cfg, pairs=m)
    v = m.clamp_min(0).sqrt() if on == "sqrt_msr" else m
    n = max(int(v.numel()), 1)
    return {"pos_fraction": float((v < tau).sum()) / n, "neg_fraction": float((v > xi).sum()) / n,
            "median_sqrt_msr": float(m.clamp_min(0).sqrt().median()) if m.numel() else float("nan"),
            "tau": tau, "xi": xi}


class PRRRNMethod(LearnedMethod):
    """``"prrrn"``: :class:`PRRRN` trained on eq. 18 (reprojection + alternating contrastive / consistency terms).

    The memory bank holds the last ``n_mem`` frames; msr of all frame pairs is precomputed once when
    F <= ``LearnedFitConfig.msr_table_max_frames`` (the same values as recomputing it every step).
    """

    name = "prrrn"
    config_type = PRRRNConfig

    def build(self, num_points: int, config: PRRRNConfig) -> PRRRN:
        return PRRRN(num_points, config)

    def selection_measure(self, model, W, vis, config) -> float:
        return consistency_error(model, W)

    def earliest_stop(self, config: PRRRNConfig) -> float:
        """The consistency term starts at ``consist_warmup`` of the run and first raises the reprojection loss:
        convergence is judged only from a quarter of the run after it."""
        return min(1.0, float(config.consist_warmup) + 0.25) if config.use_consist else 0.0

    def scheduler(self, optimizer, config: PRRRNConfig, steps: int):
        if float(config.lr_final) == 1.0:
            return None
        lo = float(config.lr_final)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1)))
        )

    def training_loss(self, model, config, W, vis, *, optimizer, generator, steps, fit_config, state=None):
        mcfg = config
        tau, xi, on = mcfg.tau, mcfg.xi, "sqrt_msr"
        if mcfg.use_contrast and mcfg.contrast_max_frames is not None and W.shape[0] > int(mcfg.contrast_max_frames):
            mcfg = replace(mcfg, use_contrast=False)  # a long sequence: measured to fit worse with the term
        if mcfg.use_contrast and steps > 0:  # the thresholds and the split, from one pass over the frame pairs
            split = contrastive_split(W, vis, mcfg)
            tau, xi, on = split["tau"], split["xi"], "msr" if mcfg.threshold_on == "msr" else "sqrt_msr"
            if mcfg.contrast_max_positive is not None and split["pos_fraction"] > float(mcfg.contrast_max_positive):
                mcfg = replace(mcfg, use_contrast=False)  # most pairs positive: the term would collapse h
        warm = int(float(mcfg.consist_warmup) * steps)  # first consistency step
        bank = MemoryBank(mcfg.n_mem, 2 * mcfg.channels[-1], W.shape[1], device=W.device)
        if state is not None:
            state.register("memory_bank", bank)  # saved in every checkpoint: a resumed run sees the same bank
        table = None  # msr of all frame pairs, looked up by index (F <= msr_table_max_frames; else per step)
        if mcfg.use_contrast and steps > 0 and W.shape[0] <= int(fit_config.msr_table_max_frames):
            table = msr_table(W, vis)

        def loss_fn(net: nn.Module, step: int, b: LearnedBatch) -> dict:
            rep = reprojection_loss(b.W, b.S, b.M, b.vis)
            logs: dict = {"rep": rep.detach(), "lr": optimizer.param_groups[0]["lr"]}
            loss = rep
            use_c, use_k = mcfg.use_contrast, mcfg.use_consist and step >= warm
            if use_c and (not use_k or step % 2 == 0):  # eq. 18: alternate the two pairwise terms
                bh, bW, bv = bank.entries()
                mv = None if table is None else table[b.idx[:, None], bank.frame_indices()[None, :]]
                lc, stats = contrastive_loss(
                    b.h, b.W, b.vis, bh, bW, bv, tau, xi, msr_values=mv, threshold_on=on, across_processes=True
                )
                loss = loss + mcfg.lambda1 * lc
                logs.update(contrast=lc.detach(), **stats)
            elif use_k:
                lk = consistency_loss(net, b.S, b.M, generator, mcfg.consist_rotation, across_processes=True)
                loss = loss + mcfg.lambda2 * lk
                logs["consist"] = lk.detach()
            if use_c:
                hn = b.h.detach() / b.h.detach().norm(dim=-1, keepdim=True).clamp_min(1e-12)
                if b.global_idx is None:
                    bank.push(hn, b.W, b.vis, b.idx)
                else:  # every process's entries, in the global batch's order: one bank, the same on all ranks
                    g = b.global_idx
                    bank.push(dd.all_gather_tensor(hn), W[g], vis[g], g)
            logs["loss"] = loss
            return logs

        return loss_fn
