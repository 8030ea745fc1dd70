"""Shared plumbing of the NRSfM methods: input validation, normalisation, the result container.

Every method works on centred, scale-normalised observations (orthographic NRSfM factors out the
per-frame translation) and returns shapes in the camera frame of each view, in the input's units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nrsfm_kit.data.types import NRSfMSequence
from nrsfm_kit.utils.checks import check_tensor


@dataclass
class NRSfMResult:
    """What every NRSfM method returns.

    Attributes:
        S: (F, P, 3) reconstructed shapes in each frame's camera frame (units of W); S[f] @ M[f]^T ~= W[f]
            up to the frame's translation.
        cameras: (F, 2, 3) orthographic cameras (orthonormal rows) mapping ``shapes`` to the image.
        shapes: (F, P, 3) shapes in the method's canonical (object) frame, W_f ~= shapes_f cameras_f^T.
        method: name of the method.
        history: training history (list of dicts) for the learned methods, else empty.
        extra: anything method-specific (e.g. the learned model, EM log-likelihoods).
    """

    S: torch.Tensor
    cameras: torch.Tensor
    shapes: torch.Tensor
    method: str
    history: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def complete_rotation(M: torch.Tensor) -> torch.Tensor:
    """(…, 2, 3) orthonormal rows -> (…, 3, 3) rotation [m1; m2; m1 x m2]."""
    return torch.cat([M, torch.linalg.cross(M[..., 0, :], M[..., 1, :], dim=-1)[..., None, :]], dim=-2)


def to_camera_frame(shapes: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
    """Canonical shapes (F, P, 3) and cameras (F, 2, 3) -> camera-frame shapes S R^T (F, P, 3)."""
    return shapes @ complete_rotation(cameras).transpose(-1, -2)


def validate_observations(
    W: torch.Tensor, visibility: torch.Tensor | None = None, *, name: str = "W"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check NRSfM observations and return ``(W, visibility)`` with missing entries zeroed.

    Args:
        W: (F, P, 2) 2D points; entries of missing points may be anything finite or NaN.
        visibility: (F, P) bool or None (all visible).

    Raises:
        ValueError naming the argument: wrong shape, F < 2, P < 4, a frame with no (or fewer than 4)
        visible points, non-finite visible coordinates.
    """
    if not isinstance(W, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape (F, P, 2), found {type(W).__name__}")
    dims: dict = {}
    check_tensor(name, W, ("F", "P", 2), dims=dims, finite=False)
    F, P = dims["F"], dims["P"]
    if F < 2:
        raise ValueError(f"{name}: expected at least 2 frames (F >= 2), found F = {F}")
    if P < 4:
        raise ValueError(f"{name}: expected at least 4 points (P >= 4), found P = {P}")
    if visibility is None:
        vis = torch.ones(F, P, dtype=torch.bool, device=W.device)
    else:
        if not isinstance(visibility, torch.Tensor):
            raise ValueError(f"visibility: expected a bool tensor of shape ({F}, {P}), found {type(visibility).__name__}")
        check_tensor("visibility", visibility, (F, P), floating=False, finite=False)
        vis = visibility.bool().to(W.device)
    counts = vis.sum(1)
    if (counts == 0).any():
        f = int(torch.nonzero(counts == 0)[0, 0])
        raise ValueError(f"visibility: expected at least 4 visible points per frame, found frame {f} with all points missing")
    if (counts < 4).any():
        f = int(torch.nonzero(counts < 4)[0, 0])
        raise ValueError(f"visibility: expected at least 4 visible points per frame, found frame {f} with {int(counts[f])}")
    bad = (~torch.isfinite(W)).any(-1) & vis
    if bad.any():
        raise ValueError(f"{name}: expected finite coordinates for visible points, found {int(bad.sum())} non-finite")
    W = torch.where(vis[..., None], W, torch.zeros((), dtype=W.dtype, device=W.device))
    return W, vis


def validate_sequence(seq: NRSfMSequence) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate an :class:`NRSfMSequence` (see :func:`validate_observations`) and its ground truth shape."""
    if not isinstance(seq, NRSfMSequence):
        raise ValueError(f"seq: expected an NRSfMSequence, found {type(seq).__name__}")
    W, vis = validate_observations(seq.W, seq.visibility, name="seq.W")
    if seq.S is not None:
        check_tensor("seq.S", seq.S, (W.shape[0], W.shape[1], 3))
    return W, vis


def measurement_matrix(W: torch.Tensor, visibility: torch.Tensor | None = None, *, center: bool = True) -> torch.Tensor:
    """The (2F, P) measurement matrix of factorisation methods (Tomasi-Kanade 1992, eq. 1), rows x_1, y_1, x_2, ...

    Args:
        W: (F, P, 2) observations (any unit).
        visibility: (F, P) bool or None (all visible). Missing entries are 0 in the result (fill them, e.g. by
            low-rank imputation, before factorising).
        center: subtract each frame's centroid (of its visible points) first, so that a rigid scene gives
            rank 3 (orthographic cameras: W_f = S M_f^T + 1 t_f^T).

    Returns:
        (2F, P) tensor: row 2f holds the x and row 2f + 1 the y coordinates of frame f.
    """
    if not isinstance(W, torch.Tensor):
        raise ValueError(f"W: expected a torch.Tensor of shape (F, P, 2), found {type(W).__name__}")
    dims: dict = {}
    check_tensor("W", W, ("F", "P", 2), dims=dims, finite=False)
    F, P = dims["F"], dims["P"]
    if visibility is not None:
        check_tensor("visibility", visibility, (F, P), floating=False, finite=False)
        vis = visibility.bool().to(W.device)[..., None]
        W = torch.where(vis, W, torch.zeros((), dtype=W.dtype, device=W.device))
        if center:
            w = vis.to(W.dtype)
            W = (W - (W * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1)) * w
    elif center:
        W = W - W.mean(1, keepdim=True)
    return W.permute(0, 2, 1).reshape(2 * F, P)


@dataclass
class Normalization:
    """Per-frame centring and one global scale: W_norm = (W - c_f) / scale."""

    centers: torch.Tensor  # (F, 2) visible centroid of each frame
    scale: float


def normalize_observations(W: torch.Tensor, vis: torch.Tensor) -> tuple[torch.Tensor, Normalization]:
    """Centre each frame on its visible centroid, divide by the RMS visible coordinate (one scale)."""
    w = vis.to(W.dtype)[..., None]
    centers = (W * w).sum(1) / w.sum(1)
    Wc = (W - centers[:, None]) * w
    scale = float(torch.sqrt((Wc**2).sum() / (w.sum() * 2)).clamp_min(1e-12))
    return Wc / scale, Normalization(centers=centers, scale=scale)


def resolve_handedness(S: torch.Tensor, iters: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Give all frames of a reconstruction one handedness, without 3D ground truth (a post-process, opt-in).

    Orthographic projection cannot tell a frame from its depth mirror z -> -z (camera frame): both reproject
    identically. A learned method may reconstruct runs of frames mirrored against the rest (PR-RRN on pickup:
    49 % of the frames, hidden by the per-frame e3D, which allows a reflection per frame; see
    :func:`nrsfm_kit.metrics.nrsfm.depth_flips`). Here each frame keeps the version, itself or its depth mirror,
    closer under a rotation-only Procrustes alignment to a reference shape: frame 0 first, then the mean of the
    aligned chosen shapes, until the choice is stable. The reprojection is unchanged.

    Measured (benchmarks/RESULTS.md): PR-RRN on pickup, mirrored frames 49 % -> 0.3 %, e3D with one alignment for
    the sequence 0.356 -> 0.082. Not applied by default: for a nearly left-right symmetric motion seen from the
    side (walking), a mirrored pose can be closer to the reference than the pose itself, and a reconstruction that
    was consistent gets split (PR-RRN on walking: sequence e3D 0.109 -> 0.337).

    Args:
        S: (F, P, 3) camera-frame shapes (``NRSfMResult.S``).

    Returns:
        (S', flipped): the shapes with the mirrored frames' depth negated, and (F,) bool of the frames changed.
    """
    from nrsfm_kit.geometry.procrustes import procrustes

    check_tensor("S", S, ("F", "P", 3))
    if int(iters) < 1:
        raise ValueError(f"iters: expected >= 1, found {iters}")
    mirror = torch.tensor([1.0, 1.0, -1.0], dtype=S.dtype, device=S.device)
    X = S - S.mean(1, keepdim=True)
    Xm = X * mirror

    def dist(A: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        R, _, _ = procrustes(A, ref.expand_as(A), allow_reflection=False)
        return (A @ R.transpose(-1, -2) - ref).flatten(1).norm(dim=1)

    ref = X[0]
    flip = torch.zeros(S.shape[0], dtype=torch.bool, device=S.device)
    for it in range(int(iters)):
        new = dist(Xm, ref) < dist(X, ref)
        Y = torch.where(new[:, None, None], Xm, X)
        R, _, _ = procrustes(Y, ref.expand_as(Y), allow_reflection=False)
        ref = (Y @ R.transpose(-1, -2)).mean(0)
        if it and torch.equal(new, flip):
            break
        flip = new
    return torch.where(flip[:, None, None], S * mirror, S), flip


def shape_space_residual(S: torch.Tensor, rank: int = 1, iters: int = 5) -> float:
    """How far a reconstruction is from a low-rank shape space, without 3D ground truth (restart selection).

    The low-rank prior of NRSfM made into a score: each frame of ``S`` is centred, all frames are scaled by one
    common factor (their mean norm), rotated (rotation only, no reflection) onto a reference shape by generalised
    Procrustes (frame 0 first, then the mean of the aligned frames, ``iters`` rounds), and the deviations from the
    mean aligned shape are stacked into an (F, 3P) matrix D. The score is the fraction of D's energy outside its
    ``rank`` leading singular directions: 1 - sum_{k <= rank} s_k^2 / sum_k s_k^2, in [0, 1]. It is invariant to a
    rotation of any frame, a translation and the global scale. It scores how *concentrated* the deformation is, not
    how large: a reconstruction whose frames move in many independent directions (depth guessed frame by frame)
    scores high, one that moves along a few modes scores low. (A block of frames mirrored in depth adds one strong
    direction; with ``rank`` large enough to hold it the score can even fall.)

    Measured (benchmarks/RESULTS.md, issue 17): among restarts that reproject within 2x of the best, the lowest
    score with rank 3 (``LearnedFitConfig.selection="shape_rank"``) was chosen leave-one-sequence-out and keeps a
    run within 10 % of the best e3D on 18 of 24 held-out (method, sequence) cases, against 15 for the lowest
    reprojection error. The same score divided by the total shape energy instead gave 13 of 24: the choice is
    fragile, see RESULTS.md.

    Args:
        S: (F, P, 3) shapes (camera or canonical frame: the score does not depend on per-frame rotations), F >= 2.
        rank: leading directions that do not count (>= 1, < min(F, 3P)).

    Returns:
        the residual energy fraction (float); 0 when the deviations are exactly of rank <= ``rank``.
    """
    from nrsfm_kit.geometry.procrustes import procrustes

    check_tensor("S", S, ("F", "P", 3))
    F, P = S.shape[0], S.shape[1]
    if F < 2:
        raise ValueError(f"S: expected at least 2 frames, found {F}")
    if not 1 <= int(rank) < min(F, 3 * P):
        raise ValueError(f"rank: expected an integer in [1, {min(F, 3 * P) - 1}], found {rank}")
    if int(iters) < 1:
        raise ValueError(f"iters: expected >= 1, found {iters}")
    if not bool(torch.isfinite(S).all()):
        raise ValueError("S: expected finite values, found NaN or inf")
    X = S.double() - S.double().mean(1, keepdim=True)
    scale = X.flatten(1).norm(dim=1).mean()
    if not float(scale) > 0:
        raise ValueError("S: expected shapes with extent, found every frame collapsed to a point")
    X = X / scale
    ref = X[0]
    for _ in range(int(iters)):
        R, _, _ = procrustes(X, ref.expand_as(X), allow_reflection=False)
        Y = X @ R.transpose(-1, -2)
        ref = Y.mean(0)
    D = (Y - ref).flatten(1)
    e = torch.linalg.svdvals(D) ** 2
    total = float(e.sum())
    if total <= 0.0:
        return 0.0
    return max(0.0, 1.0 - float(e[: int(rank)].sum()) / total)
