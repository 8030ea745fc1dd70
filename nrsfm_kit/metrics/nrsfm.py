"""NRSfM evaluation metrics: e3D (per-frame and sequence alignment), MPJPE, EDM stress, 2D reprojection.

Conventions: shapes are rows, ``S`` of shape (F, P, 3) in the camera frame (any unit; e3D is
unit-free), observations ``W`` (F, P, 2), orthographic cameras ``M`` (F, 2, 3) with ``W = S M^T``.

Orthographic NRSfM recovers each shape only up to a rotation (the camera is estimated jointly) and
up to the depth flip z -> -z (a shape and its mirror image project identically). Every 3D metric
therefore first removes each frame's centroid and then aligns the reconstruction onto the ground
truth with an orthogonal Procrustes that allows reflections (O(3), so the flip is absorbed).
"""

from __future__ import annotations

import torch

from nrsfm_kit.geometry import procrustes
from nrsfm_kit.utils.checks import check_tensor

_ALIGN = ("frame", "sequence", "none")


def _check_pair(S_pred: torch.Tensor, S_gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dims: dict = {}
    check_tensor("S_pred", S_pred, ("F", "P", 3), dims=dims)
    check_tensor("S_gt", S_gt, ("F", "P", 3), dims=dims)
    if dims["P"] < 3:
        raise ValueError(f"S_gt: expected at least 3 points per frame, found {dims['P']}")
    dtype = torch.promote_types(S_pred.dtype, S_gt.dtype)
    return S_pred.to(dtype), S_gt.to(dtype)


def center(S: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Remove each frame's (weighted) centroid: (..., P, D) -> (..., P, D).

    ``weights``: optional (..., P) non-negative weights (e.g. a visibility mask); the centroid is
    taken over the weighted points, every point is shifted.
    """
    if weights is None:
        return S - S.mean(-2, keepdim=True)
    w = weights.to(S.dtype)
    tot = w.sum(-1, keepdim=True).clamp_min(1e-12)
    return S - ((w[..., None] * S).sum(-2) / tot)[..., None, :]


def align_shapes(S_pred: torch.Tensor, S_gt: torch.Tensor, alignment: str = "frame") -> torch.Tensor:
    """Centre both sequences per frame and align ``S_pred`` onto ``S_gt`` (rotation or reflection).

    Args:
        S_pred, S_gt: (F, P, 3) reconstructed and ground-truth shapes.
        alignment: ``"frame"`` one orthogonal Procrustes per frame (PR-RRN eq. 19, Deep NRSfM);
            ``"sequence"`` one orthogonal transform for the whole sequence (the classical protocol
            of Akhter et al. / Torresani et al., which then also exposes per-frame depth flips);
            ``"none"`` centring only.

    Returns:
        (F, P, 3) aligned reconstruction (centred like the centred ground truth).
    """
    S_pred, S_gt = _check_pair(S_pred, S_gt)
    if alignment not in _ALIGN:
        raise ValueError(f"alignment: expected one of {_ALIGN}, found {alignment!r}")
    X, Y = center(S_pred), center(S_gt)
    if alignment == "none":
        return X
    if alignment == "frame":
        R, _, _ = procrustes(X, Y, allow_reflection=True)
        return X @ R.transpose(-1, -2)
    F, P, _ = X.shape
    R, _, _ = procrustes(X.reshape(F * P, 3), Y.reshape(F * P, 3), allow_reflection=True)
    return X @ R.T


def e3d_per_frame(S_pred: torch.Tensor, S_gt: torch.Tensor, alignment: str = "frame") -> torch.Tensor:
    """Per-frame normalised 3D error ||S_f^gt - S_f||_F / ||S_f^gt||_F after alignment: (F,)."""
    A = align_shapes(S_pred, S_gt, alignment)
    Y = center(_check_pair(S_pred, S_gt)[1])
    den = Y.flatten(1).norm(dim=1)
    if (den <= 0).any():
        raise ValueError("S_gt: expected non-degenerate frames, found a frame with all points equal")
    return (A - Y).flatten(1).norm(dim=1) / den


def depth_flips(S_pred: torch.Tensor, S_gt: torch.Tensor) -> dict:
    """Per-frame depth flips of a reconstruction (a diagnostic of NRSfM failure modes).

    Orthographic NRSfM recovers each frame only up to the reflection z -> -z. The per-frame O(3) Procrustes of
    :func:`e3d` absorbs a flip in every frame separately; the classical sequence-level alignment absorbs one for the
    whole sequence. A frame is *flipped* when the handedness of its own best alignment differs from that of most
    frames: sign det(R_f) != the majority sign (ties: the sign of the sequence-level alignment). The majority, not
    the sequence alignment, is the reference because with random cameras one rotation cannot align all frames.

    Returns:
        dict with ``flipped`` (F,) bool, ``flip_fraction`` (float), ``e3d_frame`` (per-frame alignment, reflections
        allowed), ``e3d_frame_rotation`` (per-frame rotation only: the flips then count), ``e3d_sequence`` (one
        alignment for the sequence), all floats. A reconstruction that flips frames has ``e3d_frame`` well below the
        other two: the per-frame metric hides an inconsistency that a user of the 3D shapes would see.
    """
    S_pred, S_gt = _check_pair(S_pred, S_gt)
    X, Y = center(S_pred), center(S_gt)
    F, P, _ = X.shape
    R_f, _, _ = procrustes(X, Y, allow_reflection=True)
    R_s, _, _ = procrustes(X.reshape(F * P, 3), Y.reshape(F * P, 3), allow_reflection=True)
    sign_f = torch.sign(torch.linalg.det(R_f))
    total = float(sign_f.sum())
    ref = (1.0 if total > 0 else -1.0) if total != 0 else float(torch.sign(torch.linalg.det(R_s)))
    flipped = sign_f != ref
    den = Y.flatten(1).norm(dim=1)
    if (den <= 0).any():
        raise ValueError("S_gt: expected non-degenerate frames, found a frame with all points equal")
    R_rot, _, _ = procrustes(X, Y, allow_reflection=False)
    e_rot = ((X @ R_rot.transpose(-1, -2) - Y).flatten(1).norm(dim=1) / den).mean()
    return {"flipped": flipped, "flip_fraction": float(flipped.float().mean()),
            "e3d_frame": float(e3d(S_pred, S_gt, "frame")), "e3d_frame_rotation": float(e_rot),
            "e3d_sequence": float(e3d(S_pred, S_gt, "sequence"))}


def e3d(S_pred: torch.Tensor, S_gt: torch.Tensor, alignment: str = "frame") -> torch.Tensor:
    """Normalised mean 3D error (PR-RRN eq. 19): e3D = 1/F sum_f ||S_f^gt - S_f||_F / ||S_f^gt||_F.

    Args:
        S_pred, S_gt: (F, P, 3) reconstruction and ground truth (any common unit).
        alignment: see :func:`align_shapes` (default per-frame Procrustes, reflections allowed).

    Returns:
        scalar tensor (unit-free; 0 is perfect, 1 is the error of predicting the centroid).
    """
    return e3d_per_frame(S_pred, S_gt, alignment).mean()


def mpjpe(S_pred: torch.Tensor, S_gt: torch.Tensor, alignment: str = "frame") -> torch.Tensor:
    """Mean per-joint position error: mean over frames and points of ||s_fp^gt - s_fp||_2 after alignment.

    Same units as the inputs (e.g. millimetres for motion capture). Returns a scalar tensor.
    """
    A = align_shapes(S_pred, S_gt, alignment)
    Y = center(_check_pair(S_pred, S_gt)[1])
    return (A - Y).norm(dim=-1).mean()


def stress(S_pred: torch.Tensor, S_gt: torch.Tensor) -> torch.Tensor:
    """EDM stress (Kruskal stress-1), alignment-free: per frame sqrt(sum (d_ij - d^gt_ij)^2 / sum d^gt_ij^2).

    d_ij are Euclidean distances between points i < j of a frame; invariant to rotation, reflection
    and translation (not to scale). Returns the mean over frames (scalar tensor, unit-free).
    """
    S_pred, S_gt = _check_pair(S_pred, S_gt)
    P = S_gt.shape[1]
    i, j = torch.triu_indices(P, P, offset=1, device=S_gt.device)
    d = (S_pred[:, i] - S_pred[:, j]).norm(dim=-1)
    g = (S_gt[:, i] - S_gt[:, j]).norm(dim=-1)
    den = (g * g).sum(-1)
    if (den <= 0).any():
        raise ValueError("S_gt: expected non-degenerate frames, found a frame with all points equal")
    return torch.sqrt(((d - g) ** 2).sum(-1) / den).mean()


def reprojection_error(
    W: torch.Tensor,
    S: torch.Tensor,
    cameras: torch.Tensor | None = None,
    visibility: torch.Tensor | None = None,
    *,
    relative: bool = False,
) -> torch.Tensor:
    """2D reprojection error of an orthographic reconstruction.

    Args:
        W: (F, P, 2) observations.
        S: (F, P, 3) shapes; with ``cameras`` None they are in each camera's frame (projection = the
            first two coordinates), else in the cameras' object frame with W ~= S M^T.
        cameras: optional (F, 2, 3) orthographic cameras.
        visibility: (F, P) bool (missing points ignored).
        relative: return the mean over frames of ||W_f - proj_f||_F / ||W_f||_F instead.

    Each frame is centred on its visible centroid first (orthographic NRSfM factors out translation).

    Returns:
        scalar tensor: mean over visible points of ||w - proj(s)||_2 (units of W), or the relative error.
    """
    dims: dict = {}
    check_tensor("W", W, ("F", "P", 2), dims=dims)
    check_tensor("S", S, (dims["F"], dims["P"], 3))
    if cameras is not None:
        check_tensor("cameras", cameras, (dims["F"], 2, 3))
    if visibility is None:
        vis = torch.ones(W.shape[:2], dtype=torch.bool, device=W.device)
    else:
        check_tensor("visibility", visibility, (dims["F"], dims["P"]), floating=False)
        vis = visibility.bool()
    if (vis.sum(1) == 0).any():
        raise ValueError("visibility: expected at least one visible point per frame, found a frame with none")
    w = vis.to(W.dtype)
    dtype = torch.promote_types(W.dtype, S.dtype)
    Wc = center(W.to(dtype), w)
    proj = S.to(dtype)[..., :2] if cameras is None else S.to(dtype) @ cameras.to(dtype).transpose(-1, -2)
    proj = center(proj, w)
    res = (Wc - proj) * w[..., None]
    if relative:
        return (res.flatten(1).norm(dim=1) / (Wc * w[..., None]).flatten(1).norm(dim=1).clamp_min(1e-12)).mean()
    return res.norm(dim=-1).sum() / w.sum()


def nrsfm_report(
    S_pred: torch.Tensor,
    S_gt: torch.Tensor,
    W: torch.Tensor | None = None,
    visibility: torch.Tensor | None = None,
) -> dict[str, float]:
    """All metrics as floats: e3d, e3d_seq, mpjpe, stress, and reproj when ``W`` is given.

    ``S_pred`` (F, P, 3) in each camera's frame (as :class:`~nrsfm_kit.nrsfm.common.NRSfMResult.S`).
    """
    out = {
        "e3d": float(e3d(S_pred, S_gt, "frame")),
        "e3d_seq": float(e3d(S_pred, S_gt, "sequence")),
        "mpjpe": float(mpjpe(S_pred, S_gt, "frame")),
        "stress": float(stress(S_pred, S_gt)),
    }
    if W is not None:
        out["reproj"] = float(reprojection_error(W, S_pred, None, visibility))
    return out
