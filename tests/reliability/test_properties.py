"""Property-based tests (hypothesis) of the geometry core, the warp field and every writer -> reader pair.

Each test states its property in its docstring. Sizes are small and example counts modest so the file runs in
well under a minute on two CPU cores; no example database is written (``database=None``). Values that need a
geometric structure (rotations, well-spread point sets) come from a hypothesis-drawn seed; values whose edge cases
matter for a file format (0 / 65535 depth, -inf flow, float32 extremes, NaN junk at invalid pixels) are drawn
element by element with ``hypothesis.extra.numpy``.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.extra import numpy as hnp

from nrsfm_kit.data.deepdeform import (
    load_deepdeform_labels,
    load_deepdeform_pair,
    read_flow_binary,
    save_deepdeform_pair,
    write_flow_binary,
)
from nrsfm_kit.data.imageio import (
    read_color,
    read_depth_png,
    read_intrinsics_txt,
    read_mask,
    write_color,
    write_depth_png,
    write_mask,
)
from nrsfm_kit.data.mocap import load_amc, load_asf, write_amc, write_asf
from nrsfm_kit.data.nrsfm import load_nrsfm_mat, save_nrsfm_mat
from nrsfm_kit.data.pascal3d import load_c3dpo_keypoints, save_c3dpo_keypoints
from nrsfm_kit.data.sintel import read_cam, read_dpt, read_flo, write_cam, write_dpt, write_flo
from nrsfm_kit.data.skeleton import Bone, Skeleton
from nrsfm_kit.data.types import NRSfMSequence, RGBDPair, RGBDSequence
from nrsfm_kit.data.volumedeform import load_volumedeform_sequence, save_volumedeform_sequence
from nrsfm_kit.edm.video_io import read_intrinsics, write_depth_maps, write_embeddings
from nrsfm_kit.geometry import procrustes, procrustes_align, random_rotation, so3_exp, so3_log
from nrsfm_kit.graph import io as gio
from nrsfm_kit.graph.motion import node_rotations_from_translations
from nrsfm_kit.graph.types import DeformationGraph
from nrsfm_kit.kernels.warp_field import (
    arap_residuals,
    arap_residuals_torch,
    warp_point_image,
    warp_points,
    warp_points_torch,
)
from nrsfm_kit.metrics.nrsfm import e3d, mpjpe, stress
from nrsfm_kit.metrics.reconstruction import read_mesh_ply, write_mesh_ply
from nrsfm_kit.tracking.io import read_graph_folder, write_ply, write_tracking_outputs
from nrsfm_kit.train.state import PREVIOUS, read_checkpoint, write_checkpoint

F64 = torch.float64
EYE = torch.eye(3, dtype=F64)

# one settings object for the file: no example database, no deadline (first calls compile Warp kernels, load
# OpenCV codecs, render the synthetic scene)
BASE = settings(deadline=None, database=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])


def cfg(n: int) -> settings:
    return settings(BASE, max_examples=n)


# Hypothesis also caches source constants (its pytest plugin, right after collection) and unicode tables under
# its home directory, ``./.hypothesis`` by default even with database=None: point it at a temporary folder from
# import time on, and restore the default once this module's tests are done.
_HYPOTHESIS_HOME = tempfile.TemporaryDirectory(prefix="nrsfm-kit-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME.name)


@pytest.fixture(scope="module", autouse=True)
def _hypothesis_home():
    yield
    set_hypothesis_home_dir(None)
    _HYPOTHESIS_HOME.cleanup()


# ==================================================================================================
# strategies and helpers
# ==================================================================================================

SEEDS = st.integers(0, 2**32 - 1)
FIN32 = st.floats(width=32, allow_nan=False, allow_infinity=False)  # incl. -0.0, subnormals, +-3.4e38
ANY32 = st.floats(width=32)  # incl. NaN and +-inf
FIN64 = st.floats(allow_nan=False, allow_infinity=False)
SMALL = st.integers(1, 6)

unit_axes = (
    hnp.arrays(np.float64, 3, elements=st.floats(-1, 1))
    .filter(lambda a: np.linalg.norm(a) > 0.1)
    .map(lambda a: a / np.linalg.norm(a))
)
angles = st.one_of(
    st.just(0.0),
    st.floats(1e-8, 1e-3),  # Taylor branches
    st.floats(1e-3, math.pi - 1e-3),  # general branch
    st.floats(math.pi - 1e-3, math.pi),  # near-pi branch
    st.just(math.pi),
)


def quat_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a (not necessarily unit) quaternion (w, x, y, z): independent of so3_exp."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation by ``angle`` about the unit ``axis`` through its quaternion (cos a/2, sin a/2 axis)."""
    return quat_matrix(np.concatenate([[math.cos(angle / 2)], math.sin(angle / 2) * np.asarray(axis)]))


quaternions = hnp.arrays(np.float64, 4, elements=st.floats(-1, 1)).filter(lambda q: np.linalg.norm(q) > 0.1)
rotations = st.one_of(quaternions.map(quat_matrix), st.builds(axis_angle_matrix, unit_axes, angles))


def rng_rotations(rng: np.random.Generator, n: int, reflect: bool = False) -> np.ndarray:
    """(n, 3, 3) random rotations (det -1 for a random subset when ``reflect``)."""
    R = np.stack([quat_matrix(rng.normal(size=4)) for _ in range(n)])
    if reflect:
        flip = rng.random(n) < 0.5
        R[flip] = R[flip] @ np.diag([1.0, 1.0, -1.0])
    return R


def bits(a) -> np.ndarray:
    """Bit pattern of a float array (exact comparisons that tell -0.0 from 0.0 and keep NaN payloads)."""
    a = np.ascontiguousarray(a.numpy() if isinstance(a, torch.Tensor) else a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def assert_bits(found, expected) -> None:
    found = found.numpy() if isinstance(found, torch.Tensor) else np.asarray(found)
    expected = np.asarray(expected)
    assert found.dtype == expected.dtype and found.shape == expected.shape, (found.dtype, found.shape, expected.shape)
    np.testing.assert_array_equal(bits(found), bits(expected))


def shapes2(max_side: int = 6):
    return st.tuples(st.integers(1, max_side), st.integers(1, max_side))


# ==================================================================================================
# 1. SO(3) exp / log (nrsfm_kit/geometry/so3.py)
# ==================================================================================================


def assert_rotation(R: torch.Tensor, tol: float = 1e-14) -> None:
    eye = EYE.expand_as(R)
    assert (R @ R.mT - eye).abs().max() <= tol, "exp(w) is not orthogonal"
    assert (torch.linalg.det(R) - 1).abs().max() <= tol, "det exp(w) != +1"


@cfg(100)
@given(axis=unit_axes, angle=angles)
@example(axis=np.array([0.0, 0.0, 1.0]), angle=math.pi)
@example(axis=np.array([1.0, 1.0, 1.0]) / math.sqrt(3), angle=math.pi - 1e-3)
@example(axis=np.array([0.6, -0.8, 0.0]), angle=1e-8)
@example(axis=np.array([0.0, 1.0, 0.0]), angle=0.0)
@example(axis=np.array([0.0, 0.6, 0.8]), angle=0.999e-3)  # just inside exp's Taylor branch (t^2 < 1e-6)
@example(axis=np.array([0.0, 0.6, 0.8]), angle=1.001e-3)  # just outside it
@example(axis=np.array([0.8, 0.0, 0.6]), angle=0.999e-4)  # just inside log's Taylor branch (sin^2 < 1e-8)
@example(axis=np.array([0.8, 0.0, 0.6]), angle=math.acos(-0.99) + 1e-9)  # log's near-pi switch (cos < -0.99)
def test_so3_log_inverts_exp_on_every_branch(axis, angle):
    """For w = angle * axis (float64, angle in {0} u [1e-8, pi]): exp(w) is a rotation (R R^T = I, det +1), it
    equals the rotation of the same axis-angle built from a quaternion, log(exp(w)) == w to 1e-13 relative for
    angle < pi (Taylor, general and near-pi branches), and at angle pi (log is +-w) log returns a vector of norm
    pi with exp(log(R)) == R."""
    w = torch.tensor(axis * angle, dtype=F64)
    R = so3_exp(w)
    assert_rotation(R)
    assert torch.allclose(R, torch.from_numpy(axis_angle_matrix(axis, angle)), rtol=0, atol=1e-14)
    w2 = so3_log(R)
    assert torch.isfinite(w2).all()
    assert float(w2.norm()) <= math.pi + 1e-13
    assert (so3_exp(w2) - R).abs().max() <= 1e-13
    tol = 1e-13 * max(angle, 1e-300)
    if math.pi - angle > 1e-12:
        assert float((w2 - w).norm()) <= tol, f"log(exp(w)) = {w2.tolist()} != w = {w.tolist()}"
    else:  # log is two-valued at pi: either sign of the axis
        assert min(float((w2 - w).norm()), float((w2 + w).norm())) <= 1e-12


@cfg(100)
@given(R=rotations)
@example(R=np.diag([1.0, -1.0, -1.0]))  # exactly pi about x
@example(R=np.diag([-1.0, -1.0, 1.0]))  # exactly pi about z
@example(R=np.eye(3))
def test_so3_exp_of_log_is_the_rotation(R):
    """For any rotation matrix R (quaternion-built, including angle 0, near pi and exactly pi): w = log(R) has
    norm in [0, pi] and exp(log(R)) == R to 1e-13."""
    Rt = torch.from_numpy(R)
    w = so3_log(Rt)
    assert torch.isfinite(w).all() and float(w.norm()) <= math.pi + 1e-13
    assert (so3_exp(w) - Rt).abs().max() <= 1e-13


@cfg(25)
@given(seed=SEEDS, n=st.integers(1, 64))
def test_random_rotation_is_in_so3_and_log_exp_round_trips(seed, n):
    """random_rotation(n) (float64) gives matrices with R R^T = I and det +1, and exp(log(R)) == R for each."""
    R = random_rotation(n, generator=torch.Generator().manual_seed(seed), dtype=F64)
    assert R.shape == (n, 3, 3)
    assert_rotation(R)
    assert (so3_exp(so3_log(R)) - R).abs().max() <= 1e-13


@cfg(50)
@given(ws=st.lists(st.tuples(unit_axes, angles), min_size=1, max_size=12), lead=st.sampled_from([0, 1, 2]))
def test_so3_batched_maps_equal_the_single_maps(ws, lead):
    """The batched exp / log (any leading shape, rows from different branches mixed in one batch) give, row by
    row, what the single-vector calls give (the per-row branch selection does not leak across rows)."""
    w = torch.tensor(np.stack([a * t for a, t in ws]), dtype=F64)
    wb = {0: w, 1: w[None], 2: w[:, None]}[lead]  # (B, 3), (1, B, 3), (B, 1, 3)
    Rb = so3_exp(wb)
    assert Rb.shape == (*wb.shape, 3)
    singles = torch.stack([so3_exp(v) for v in w])
    assert torch.allclose(Rb.reshape(-1, 3, 3), singles, rtol=0, atol=1e-15)
    lb = so3_log(Rb)
    assert lb.shape == wb.shape
    assert torch.allclose(lb.reshape(-1, 3), torch.stack([so3_log(R) for R in singles]), rtol=0, atol=1e-15)


# ==================================================================================================
# 2. Procrustes (nrsfm_kit/geometry/procrustes.py) and the NRSfM metrics (nrsfm_kit/metrics/nrsfm.py)
# ==================================================================================================


def _points(rng, n, log_scale=0.0):
    return rng.normal(size=(n, 3)) * 10.0**log_scale


def _err(X, Y, **kw) -> float:
    return float((procrustes_align(X, Y, **kw) - Y).norm())


@cfg(100)
@given(seed=SEEDS, n=st.integers(4, 20), log_scale=st.floats(-3, 3), R=rotations, s=st.floats(1e-2, 1e2),
       t=hnp.arrays(np.float64, 3, elements=st.floats(-1e3, 1e3)), reflect=st.booleans())
def test_procrustes_recovers_a_similarity(seed, n, log_scale, R, s, t, reflect):
    """For X (n >= 4 points in general position, any spread 1e-3..1e3) and Y = s Q X + t (|t| up to 1e3 times
    the spread of s X, beyond which centring Y alone loses the digits): procrustes(X, Y, scale=True) recovers Q, s, t
    and aligns X onto Y with ~0 error, with Q a rotation (allow_reflection False) or a rotation times a reflection
    (allow_reflection True); with s = 1 and scale=False it recovers the rigid motion and returns s = 1."""
    rng = np.random.default_rng(seed)
    X = torch.from_numpy(_points(rng, n, log_scale))
    Q = torch.from_numpy(R @ np.diag([1.0, 1.0, -1.0]) if reflect else R)
    tt = torch.from_numpy(t * s * 10.0**log_scale)
    Y = s * X @ Q.T + tt
    Rh, th, sh = procrustes(X, Y, scale=True, allow_reflection=reflect)
    ytol = 1e-9 * float(Y.abs().max())
    assert torch.allclose(Rh, Q, rtol=0, atol=1e-9)
    assert abs(float(sh) - s) <= 1e-9 * s
    assert torch.allclose(th, tt, rtol=0, atol=ytol)
    assert _err(X, Y, scale=True, allow_reflection=reflect) <= ytol * math.sqrt(n)
    Y1 = X @ Q.T + tt
    Rh, th, sh = procrustes(X, Y1, allow_reflection=reflect)
    assert torch.allclose(Rh, Q, rtol=0, atol=1e-9) and float(sh) == 1.0
    assert torch.allclose(th, tt, rtol=0, atol=1e-9 * float(Y1.abs().max()))


@cfg(100)
@given(seed=SEEDS, n=st.integers(3, 20), R=rotations, s=st.floats(1e-2, 1e2),
       t=hnp.arrays(np.float64, 3, elements=st.floats(-1e3, 1e3)))
def test_procrustes_aligned_error_is_invariant_to_what_it_aligns(seed, n, R, s, t):
    """For unrelated point sets X, Y, the residual ||align(X') - Y|| is the same for X' = X moved by what the
    alignment allows: s R X + t (similarity, scale=True), R X + t (rigid), Q X + t with det Q = -1
    (allow_reflection=True); the det of R is +1 without allow_reflection; allowing more (scale, reflection)
    never increases the residual."""
    rng = np.random.default_rng(seed)
    X, Y = torch.from_numpy(_points(rng, n)), torch.from_numpy(_points(rng, n))
    Rt, tt = torch.from_numpy(R), torch.from_numpy(t)
    Qt = Rt @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=F64))
    tol = 1e-9 * float(Y.norm())
    e_sim, e_rig, e_ref = _err(X, Y, scale=True), _err(X, Y), _err(X, Y, allow_reflection=True)
    assert abs(_err(s * X @ Rt.T + tt, Y, scale=True) - e_sim) <= tol
    assert abs(_err(X @ Rt.T + tt, Y) - e_rig) <= tol
    assert abs(_err(X @ Qt.T + tt, Y, allow_reflection=True) - e_ref) <= tol
    assert abs(_err(X @ Qt.T + tt, Y, allow_reflection=True, scale=True) - _err(X, Y, allow_reflection=True, scale=True)) <= tol
    assert e_sim <= e_rig + tol and e_ref <= e_rig + tol
    assert abs(float(torch.linalg.det(procrustes(X @ Qt.T, Y)[0])) - 1) <= 1e-12


@cfg(50)
@given(seed=SEEDS, n_in=st.integers(3, 12), n_out=st.integers(1, 8), R=rotations, s=st.floats(0.1, 10),
       c=st.floats(1e-3, 1e3))
def test_procrustes_ignores_zero_weight_points(seed, n_in, n_out, R, s, c):
    """With weights 0 on arbitrary outliers and positive weights on points with Y = s R X + t, the weighted
    procrustes recovers (R, s, t) exactly as without the outliers; scaling all weights by c > 0 changes nothing."""
    rng = np.random.default_rng(seed)
    X = torch.from_numpy(_points(rng, n_in + n_out))
    Rt, tt = torch.from_numpy(R), torch.from_numpy(rng.normal(size=3))
    Y = s * X @ Rt.T + tt
    Y[n_in:] = torch.from_numpy(rng.normal(size=(n_out, 3)) * 100)  # outliers
    w = torch.from_numpy(rng.uniform(0.1, 1.0, n_in + n_out))
    w[n_in:] = 0
    for weights in (w, c * w):
        Rh, th, sh = procrustes(X, Y, scale=True, weights=weights)
        assert torch.allclose(Rh, Rt, rtol=0, atol=1e-9)
        assert abs(float(sh) - s) <= 1e-9 * s
        assert torch.allclose(th, tt, rtol=0, atol=1e-8)


@cfg(50)
@given(seed=SEEDS, F=st.integers(1, 5), P=st.integers(3, 12), c=st.floats(1e-2, 1e2))
def test_e3d_invariances_and_exact_values(seed, F, P, c):
    """e3D (PR-RRN eq. 19, per-frame O(3) Procrustes after centring) of a prediction is unchanged by a rotation or
    reflection plus translation of each frame; the sequence-aligned e3D by one O(3) transform of the whole sequence
    plus per-frame translations; mpjpe and stress likewise; a ground truth moved that way has e3D ~0; and e3D is
    not scale-invariant: a copy scaled by c > 0 has e3D = |c - 1| exactly (no scale in the alignment)."""
    rng = np.random.default_rng(seed)
    S_pred, S_gt = (torch.from_numpy(rng.normal(size=(F, P, 3))) for _ in range(2))
    Qf = torch.from_numpy(rng_rotations(rng, F, reflect=True))
    Qs = torch.from_numpy(rng_rotations(rng, 1, reflect=True)[0])
    tf = torch.from_numpy(rng.normal(size=(F, 1, 3)) * 10)
    moved = S_pred @ Qf.mT + tf
    assert abs(float(e3d(moved, S_gt)) - float(e3d(S_pred, S_gt))) <= 1e-10
    assert abs(float(mpjpe(moved, S_gt)) - float(mpjpe(S_pred, S_gt))) <= 1e-10
    assert abs(float(stress(moved, S_gt)) - float(stress(S_pred, S_gt))) <= 1e-10
    moved_seq = S_pred @ Qs.T + tf
    assert abs(float(e3d(moved_seq, S_gt, "sequence")) - float(e3d(S_pred, S_gt, "sequence"))) <= 1e-10
    assert float(e3d(S_gt @ Qf.mT + tf, S_gt)) <= 1e-12
    assert float(e3d(S_gt @ Qs.T + tf, S_gt, "sequence")) <= 1e-12
    assert abs(float(e3d(c * S_gt + tf, S_gt)) - abs(c - 1)) <= 1e-10 * max(c, 1)


# ==================================================================================================
# 3. writer -> reader round trips
# ==================================================================================================


@cfg(50)
@given(hw=shapes2(), C=st.sampled_from([2, 3]), with_valid=st.booleans(), data=st.data())
def test_deepdeform_flow_binary_round_trip(hw, C, with_valid, data):
    """write_flow_binary -> read_flow_binary (.oflow / .sflow, float32): every valid value comes back bit for bit
    (float32 extremes, subnormals, -0.0), invalid pixels (written -inf, whatever junk - NaN, inf - the input held
    there) read as 0 with valid False, and the valid mask comes back exactly (all True without a mask)."""
    H, W = hw
    flow = data.draw(hnp.arrays(np.float32, (H, W, C), elements=FIN32))
    if with_valid:
        valid = data.draw(hnp.arrays(np.bool_, (H, W)))
        junk = data.draw(hnp.arrays(np.float32, (H, W, C), elements=ANY32))
        given_flow = np.where(valid[..., None], flow, junk)
    else:
        valid, given_flow = np.ones((H, W), bool), flow
    expected = np.where(valid[..., None], flow, np.float32(0)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        p = write_flow_binary(Path(d) / "x.sflow", torch.from_numpy(given_flow),
                              torch.from_numpy(valid) if with_valid else None)
        f, v = read_flow_binary(p, channels=C)
    np.testing.assert_array_equal(v.numpy(), valid)
    assert_bits(f, expected)


@cfg(50)
@given(hw=shapes2(), data=st.data())
@example(hw=(1, 2), data=None)
def test_sintel_flo_dpt_cam_round_trip(hw, data):
    """write_flo -> read_flo: values with |u|, |v| <= 1e9 come back bit for bit with valid True, pixels with a
    component beyond 1e9 (Sintel's "unknown", incl. +-inf) read as 0 with valid False; write_dpt -> read_dpt:
    finite depths >= 0 bit for bit; write_cam -> read_cam: float64 matrices bit for bit."""
    H, W = hw
    if data is None:  # the boundary of "unknown": 1e9 is known, the next float32 up and inf are not
        flow = np.array([[[1e9, -1e9], [np.nextafter(np.float32(1e9), np.float32(np.inf)), 0.0]]], np.float32)
        depth = np.array([[0.0, np.finfo(np.float32).max]], np.float32)
        M, N = np.eye(3), np.arange(12.0).reshape(3, 4)
    else:
        flow = data.draw(hnp.arrays(np.float32, (H, W, 2), elements=st.floats(width=32, allow_nan=False)))
        depth = data.draw(hnp.arrays(np.float32, (H, W), elements=st.floats(0, width=32, allow_infinity=False)))
        M = data.draw(hnp.arrays(np.float64, (3, 3), elements=FIN64))
        N = data.draw(hnp.arrays(np.float64, (3, 4), elements=FIN64))
    known = (np.abs(flow) <= 1e9).all(-1)
    with tempfile.TemporaryDirectory() as d:
        f, v = read_flo(write_flo(Path(d) / "a.flo", torch.from_numpy(flow)))
        z = read_dpt(write_dpt(Path(d) / "a.dpt", torch.from_numpy(depth)))
        M2, N2 = read_cam(write_cam(Path(d) / "a.cam", M, N))
    np.testing.assert_array_equal(v.numpy(), known)
    assert_bits(f, np.where(known[..., None], flow, np.float32(0)).astype(np.float32))
    assert_bits(z, depth)
    assert_bits(M2, M)
    assert_bits(N2, N)


DEPTH_SCALES = st.sampled_from([1000.0, 5000.0, 4000.0, 1.0, 10000.0])


@cfg(50)
@given(k=hnp.arrays(np.uint16, shapes2(8), elements=st.integers(0, 65535)), scale=DEPTH_SCALES)
@example(k=np.array([[0, 65535], [1, 65534]], np.uint16), scale=1000.0)
def test_depth_png_round_trip_of_quantised_depth(k, scale):
    """write_depth_png(k / scale metres) -> the PNG holds exactly the uint16 values k (0 = invalid and 65535
    included) and read_depth_png returns k / scale (float32 division) for every pixel."""
    with tempfile.TemporaryDirectory() as d:
        p = write_depth_png(Path(d) / "d.png", torch.from_numpy(k / scale), scale=scale)
        raw = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        z = read_depth_png(p, scale=scale, dtype=F64)
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, k)
    np.testing.assert_array_equal(z.numpy(), (k.astype(np.float32) / np.float32(scale)).astype(np.float64))


@cfg(50)
@given(data=st.data(), hw=shapes2(8), scale=DEPTH_SCALES)
def test_depth_png_precision_of_arbitrary_depth(data, hw, scale):
    """For any depth in [0, 65535 / scale] metres, write_depth_png -> read_depth_png is within half a quantum
    (0.5 / scale metres, plus float32 rounding) of the input."""
    d = data.draw(hnp.arrays(np.float64, hw, elements=st.floats(0, 65535 / scale)))
    with tempfile.TemporaryDirectory() as tmp:
        z = read_depth_png(write_depth_png(Path(tmp) / "d.png", torch.from_numpy(d), scale=scale), scale=scale,
                           dtype=F64).numpy()
    assert (np.abs(z - d) <= 0.5 / scale + 1e-7 * d + 1e-12).all()


@cfg(25)
@given(k=hnp.arrays(np.uint16, shapes2(8), elements=st.integers(0, 65535)))
@example(k=np.array([[65535]], np.uint16))
def test_depth_png_read_then_write_reproduces_the_file(k):
    """A 16-bit depth PNG read with read_depth_png (default float32) and written back with write_depth_png (same
    scale) holds the same uint16 values (reader and writer agree on the whole 16-bit range)."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "d.png"
        assert cv2.imwrite(str(p), k)
        q = write_depth_png(Path(d) / "e.png", read_depth_png(p), scale=1000.0)
        np.testing.assert_array_equal(cv2.imread(str(q), cv2.IMREAD_UNCHANGED), k)


@cfg(50)
@given(k=hnp.arrays(np.uint8, st.tuples(st.just(3), st.integers(1, 8), st.integers(1, 8))), data=st.data())
def test_colour_png_round_trip(k, data):
    """write_color -> read_color (PNG): an 8-bit RGB image k / 255 comes back exactly, channels in RGB order; any
    float image (values outside [0, 1] included) comes back within half a quantum (0.5 / 255) of its clamp to
    [0, 1]."""
    c = torch.from_numpy(k).float() / 255.0
    x = data.draw(hnp.arrays(np.float32, k.shape, elements=st.floats(-2, 3, width=32)))
    with tempfile.TemporaryDirectory() as d:
        r = read_color(write_color(Path(d) / "c.png", c))
        rx = read_color(write_color(Path(d) / "x.png", torch.from_numpy(x)))
    assert r.dtype == torch.float32 and r.shape == c.shape
    assert torch.equal(r, c)
    assert (rx - torch.from_numpy(x).clamp(0, 1)).abs().max() <= 0.5 / 255 + 1e-6


@cfg(50)
@given(rgb=hnp.arrays(np.uint8, 3), hw=shapes2(16))
def test_colour_jpeg_round_trip_of_flat_images(rgb, hw):
    """write_color -> read_color (JPEG, quality 95): a constant-colour image comes back within 2 / 255 per
    channel (JPEG is lossy; a flat image has no texture for it to lose), channels in RGB order."""
    c = torch.from_numpy(np.broadcast_to(rgb[:, None, None], (3, *hw)).copy()).float() / 255.0
    with tempfile.TemporaryDirectory() as d:
        r = read_color(write_color(Path(d) / "c.jpg", c))
    assert r.shape == c.shape
    assert (r - c).abs().max() <= 2 / 255 + 1e-6


@cfg(50)
@given(m=hnp.arrays(np.bool_, shapes2(8)), value=st.integers(1, 65535))
def test_mask_png_round_trip(m, value):
    """write_mask (uint16, any non-zero value on the mask) -> read_mask returns the boolean mask exactly."""
    with tempfile.TemporaryDirectory() as d:
        r = read_mask(write_mask(Path(d) / "m.png", torch.from_numpy(m), value=value))
    np.testing.assert_array_equal(r.numpy(), m)


intrinsics4 = st.tuples(st.floats(2**-10, 1e5, width=32), st.floats(2**-10, 1e5, width=32),
                        st.floats(-1e5, 1e5, width=32), st.floats(-1e5, 1e5, width=32))


@cfg(25)
@given(T=st.integers(1, 3), hw=shapes2(5), intr=intrinsics4, data=st.data())
def test_volumedeform_sequence_round_trip(T, hw, intr, data):
    """save_volumedeform_sequence -> load_volumedeform_sequence: 8-bit colours (PNG) and millimetre depths (0 and
    65.535 m included) come back exactly, and the intrinsics written to intrinsics.txt read back bit for bit
    through both intrinsics readers (read_intrinsics_txt, edm read_intrinsics)."""
    H, W = hw
    k = data.draw(hnp.arrays(np.uint8, (T, 3, H, W)))
    mm = data.draw(hnp.arrays(np.uint16, (T, H, W), elements=st.integers(0, 65535)))
    intr_t = torch.tensor(intr, dtype=torch.float32)
    seq = RGBDSequence(torch.from_numpy(k).float() / 255.0, torch.from_numpy(mm / 1000.0), intr_t)
    with tempfile.TemporaryDirectory() as d:
        folder = save_volumedeform_sequence(seq, Path(d) / "seq")
        got = load_volumedeform_sequence(folder)
        k_txt, k_edm = read_intrinsics_txt(folder / "intrinsics.txt"), read_intrinsics(folder / "intrinsics.txt")
    assert torch.equal(got.colors, seq.colors)
    np.testing.assert_array_equal(got.depths.numpy(), mm.astype(np.float32) / np.float32(1000.0))
    for found in (got.intrinsics, k_txt, k_edm):
        assert_bits(found, intr_t.numpy())


@cfg(25)
@given(hw=shapes2(5), rgb=hnp.arrays(np.uint8, (2, 3)), intr=intrinsics4, with_mask=st.booleans(), data=st.data())
def test_deepdeform_pair_round_trip(hw, rgb, intr, with_mask, data):
    """save_deepdeform_pair -> load_deepdeform_pair: depths in millimetres, the source mask, the optical and
    scene flow (float32, 0 where invalid) with their valid mask, and the 4x4 intrinsics come back exactly; the
    (flat) JPEG colours within 2 / 255; the object id is found from the flow file names."""
    H, W = hw
    colors = [torch.from_numpy(np.broadcast_to(c[:, None, None], (3, H, W)).copy()).float() / 255.0 for c in rgb]
    mm = [data.draw(hnp.arrays(np.uint16, (H, W), elements=st.integers(0, 65535))) for _ in range(2)]
    of = data.draw(hnp.arrays(np.float32, (H, W, 2), elements=FIN32))
    sf = data.draw(hnp.arrays(np.float32, (H, W, 3), elements=FIN32))
    valid = data.draw(hnp.arrays(np.bool_, (H, W)))
    mask = data.draw(hnp.arrays(np.bool_, (H, W))) if with_mask else None
    pair = RGBDPair(colors[0], colors[1], torch.from_numpy(mm[0] / 1000.0), torch.from_numpy(mm[1] / 1000.0),
                    torch.tensor(intr, dtype=torch.float32), optical_flow=torch.from_numpy(of),
                    scene_flow=torch.from_numpy(sf), flow_valid=torch.from_numpy(valid),
                    source_mask=None if mask is None else torch.from_numpy(mask))
    with tempfile.TemporaryDirectory() as d:
        seq = save_deepdeform_pair(pair, Path(d) / "seq000", source_id=3, target_id=7, object_id="shirt")
        got = load_deepdeform_pair(seq, 3, "000007")
    for a, b in ((got.source_color, colors[0]), (got.target_color, colors[1])):
        assert (a - b).abs().max() <= 2 / 255 + 1e-6
    for a, b in ((got.source_depth, mm[0]), (got.target_depth, mm[1])):
        np.testing.assert_array_equal(a.numpy(), b.astype(np.float32) / np.float32(1000.0))
    assert_bits(got.intrinsics, np.array(intr, np.float32))
    np.testing.assert_array_equal(got.flow_valid.numpy(), valid)
    assert_bits(got.optical_flow, np.where(valid[..., None], of, np.float32(0)).astype(np.float32))
    assert_bits(got.scene_flow, np.where(valid[..., None], sf, np.float32(0)).astype(np.float32))
    if with_mask:
        np.testing.assert_array_equal(got.source_mask.numpy(), mask)
    else:
        assert got.source_mask is None
    assert got.name.endswith("shirt:000003->000007")


@cfg(5)
@given(seed=st.integers(0, 10_000), T=st.integers(2, 4), hw=st.tuples(st.integers(12, 20), st.integers(16, 24)),
       per_pair=st.integers(1, 4), stride=st.integers(1, 2))
def test_deepdeform_sequence_export_round_trip(seed, T, hw, per_pair, stride):
    """export_synthetic_sequence -> load_deepdeform_labels / load_deepdeform_sequence: the JSON match labels give
    the in-memory matches to their stored 4 decimals (the record's files exist), the sequence reads back with its
    millimetre depths, masks and intrinsics exactly; exporting another sequence keeps the first's records, and
    re-exporting the first (overwrite) replaces its records."""
    from nrsfm_kit.data.deepdeform_sequence import (
        export_synthetic_sequence,
        load_deepdeform_sequence,
        synthetic_sequence,
    )

    kw = dict(num_frames=T, height=hw[0], width=hw[1], matches_per_pair=per_pair, pair_stride=stride)
    assume(T > stride)  # at least one annotated pair
    try:
        mem = synthetic_sequence(seq_id="a", seed=seed, **kw)
    except ValueError:  # the object left frame 0 at this tiny size: not a file-format question
        assume(False)
    with tempfile.TemporaryDirectory() as d:
        folder = export_synthetic_sequence(d, seq_id="a", seed=seed, **kw)
        labels = load_deepdeform_labels(d, "train", "matches")
        got = load_deepdeform_sequence(folder)
        assert [lab.seq_id for lab in labels] == ["a"] * len(mem.matches)
        for lab, m in zip(labels, mem.matches):
            assert (int(lab.source_id), int(lab.target_id)) == (m.source_frame, m.target_frame)
            assert lab.object_id == mem.object_id
            assert all(p.is_file() for p in lab.paths.values()) and len(lab.paths) == 4
            for found, want in ((lab.source_pixels, m.source_px), (lab.target_pixels, m.target_px)):
                assert found.shape == want.shape
                assert (found.double() - want.double()).abs().max() <= 5e-5 + 1e-5
        assert got.frame_ids == list(range(T))
        np.testing.assert_array_equal(
            got.depths.numpy(), np.round(mem.depths.double().numpy() * 1000).astype(np.float32) / np.float32(1000))
        assert torch.equal(got.masks, mem.masks)
        assert_bits(got.intrinsics, mem.intrinsics.float().numpy())
        assert (got.colors - mem.colors).abs().mean() <= 0.05  # JPEG
        assert len(got.matches) == len(mem.matches)
        # same scene (the object is in frame 0) under another id, then the first re-exported with one match a pair
        export_synthetic_sequence(d, seq_id="b", seed=seed, **kw)
        ids = [lab.seq_id for lab in load_deepdeform_labels(d, "train", "matches")]
        assert ids == ["a"] * len(mem.matches) + ["b"] * len(mem.matches)
        one = {**kw, "matches_per_pair": 1}
        mem1 = synthetic_sequence(seq_id="a", seed=seed, **one)
        export_synthetic_sequence(d, seq_id="a", seed=seed, overwrite=True, **one)
        labels = load_deepdeform_labels(d, "train", "matches")
        assert [lab.seq_id for lab in labels] == ["a"] * len(mem1.matches) + ["b"] * len(mem.matches)
        for lab, m in zip(labels, mem1.matches):
            assert lab.source_pixels.shape == m.source_px.shape
            assert (lab.target_pixels.double() - m.target_px.double()).abs().max() <= 5e-5 + 1e-5


def _nrsfm_close(a: torch.Tensor, b: np.ndarray, rtol: float) -> bool:
    b = np.asarray(b, dtype=np.float64)
    return bool(torch.allclose(a.double(), torch.from_numpy(b), rtol=rtol, atol=rtol * max(np.abs(b).max(), 1.0)))


@cfg(50)
@given(FP=st.tuples(SMALL, SMALL), layout=st.sampled_from(["X", "WS"]), data=st.data())
def test_nrsfm_mat_round_trip_camera_frame(FP, layout, data):
    """save_nrsfm_mat -> load_nrsfm_mat (float64), camera-frame shapes S with W = S[..., :2]: layout "X" gives
    back S where visible (0 elsewhere), layout "WS" the whole S, both the visibility exactly and W where visible
    (0 elsewhere), bit for bit."""
    F, P = FP
    S = data.draw(hnp.arrays(np.float64, (F, P, 3), elements=st.floats(-1e6, 1e6)))
    vis = data.draw(hnp.arrays(np.bool_, (F, P)))
    W = np.where(vis[..., None], S[..., :2], 0.0)
    seq = NRSfMSequence(W=torch.from_numpy(W), visibility=torch.from_numpy(vis), S=torch.from_numpy(S))
    with tempfile.TemporaryDirectory() as d:
        got = load_nrsfm_mat(save_nrsfm_mat(Path(d) / "s.mat", seq, layout=layout), dtype=F64)
    np.testing.assert_array_equal(got.visibility.numpy(), vis)
    np.testing.assert_array_equal(got.W.numpy(), W)
    np.testing.assert_array_equal(got.S.numpy(), np.where(vis[..., None], S, 0.0) if layout == "X" else S)
    assert got.cameras is None


@cfg(50)
@given(seed=SEEDS, FP=st.tuples(SMALL, st.integers(2, 6)), data=st.data())
def test_nrsfm_mat_round_trip_world_frame_with_cameras(seed, FP, data):
    """save_nrsfm_mat(layout "WS") of a sequence with world shapes S_world and orthographic cameras M_f = R_f[:2]
    -> load_nrsfm_mat: S_world bit for bit, the cameras and the camera-frame shapes S = S_world R_f^T to 1e-12,
    W where visible (0 elsewhere) and the visibility exactly."""
    F, P = FP
    rng = np.random.default_rng(seed)
    vis = data.draw(hnp.arrays(np.bool_, (F, P)).filter(lambda v: v.any()))
    Sw = rng.normal(size=(F, P, 3)) * 10
    R = rng_rotations(rng, F)
    S = Sw @ R.transpose(0, 2, 1)
    W = np.where(vis[..., None], S[..., :2], 0.0)
    seq = NRSfMSequence(W=torch.from_numpy(W), visibility=torch.from_numpy(vis), S=torch.from_numpy(S),
                        cameras=torch.from_numpy(R[:, :2].copy()), S_world=torch.from_numpy(Sw))
    with tempfile.TemporaryDirectory() as d:
        got = load_nrsfm_mat(save_nrsfm_mat(Path(d) / "s.mat", seq, layout="WS"), dtype=F64)
    np.testing.assert_array_equal(got.visibility.numpy(), vis)
    np.testing.assert_array_equal(got.W.numpy(), W)
    np.testing.assert_array_equal(got.S_world.numpy(), Sw)
    assert _nrsfm_close(got.cameras, R[:, :2], 1e-12)
    assert _nrsfm_close(got.S, S, 1e-12)


@cfg(50)
@given(FP=st.tuples(SMALL, SMALL), with_S=st.booleans(), data=st.data())
def test_c3dpo_keypoints_round_trip(FP, with_S, data):
    """save_c3dpo_keypoints -> load_c3dpo_keypoints (float64): visible keypoints bit for bit (invisible ones read
    as 0), the visibility exactly, and the 3D keypoints bit for bit when present (None otherwise)."""
    F, P = FP
    W = data.draw(hnp.arrays(np.float64, (F, P, 2), elements=FIN64))
    vis = data.draw(hnp.arrays(np.bool_, (F, P)))
    S = data.draw(hnp.arrays(np.float64, (F, P, 3), elements=FIN64)) if with_S else None
    seq = NRSfMSequence(W=torch.from_numpy(W), visibility=torch.from_numpy(vis),
                        S=None if S is None else torch.from_numpy(S))
    with tempfile.TemporaryDirectory() as d:
        got = load_c3dpo_keypoints(save_c3dpo_keypoints(Path(d) / "k.json", seq), dtype=F64)
    np.testing.assert_array_equal(got.visibility.numpy(), vis)
    np.testing.assert_array_equal(got.W.numpy(), np.where(vis[..., None], W, 0.0))
    if with_S:
        assert_bits(got.S, S)
    else:
        assert got.S is None


AXIS_ORDERS = st.sampled_from(["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"])
DOFS = st.lists(st.sampled_from(["rx", "ry", "rz"]), unique=True, max_size=3).map(tuple)


@st.composite
def skeletons(draw):
    """A random Acclaim tree: bones b0..bn, each parented to root or an earlier bone, random rest directions,
    lengths (m), axes (deg), axis orders and dofs; random root position / orientation / axis order."""
    n = draw(st.integers(1, 6))
    vec = hnp.arrays(np.float64, 3, elements=st.floats(-180, 180))
    bones = []
    for i in range(n):
        d = draw(hnp.arrays(np.float64, 3, elements=st.floats(-1, 1)).filter(lambda a: np.linalg.norm(a) > 0.1))
        bones.append(Bone(f"b{i}", draw(st.sampled_from(["root"] + [f"b{j}" for j in range(i)])),
                          d / np.linalg.norm(d), draw(st.floats(1e-3, 2.0)), draw(vec), draw(AXIS_ORDERS), draw(DOFS)))
    return Skeleton(bones=bones, root_position=draw(hnp.arrays(np.float64, 3, elements=st.floats(-5, 5))),
                    root_orientation=draw(vec), root_axis_order=draw(AXIS_ORDERS))


@cfg(40)
@given(sk=skeletons(), length_unit=st.sampled_from([0.45, 1.0, 0.1]), F=st.integers(1, 4), data=st.data())
def test_mocap_asf_amc_round_trip(sk, length_unit, F, data):
    """write_asf -> load_asf gives the same skeleton (names, parents, dofs, axis orders exactly; directions,
    lengths, axes, root to the 6 decimals the ASF text keeps: 1e-6 file units), and write_amc -> load_amc gives
    the motion (root metres / degrees, bone degrees) to the same precision."""
    to_m = 0.0254 / length_unit  # one ASF length unit in metres
    root = data.draw(hnp.arrays(np.float64, (F, 6), elements=st.floats(-360, 360)))
    values = {b.name: data.draw(hnp.arrays(np.float64, (F, len(b.dof)), elements=st.floats(-360, 360)))
              for b in sk.bones if b.dof}
    with tempfile.TemporaryDirectory() as d:
        got = load_asf(write_asf(Path(d) / "s.asf", sk, length_unit=length_unit))
        r2, v2 = load_amc(write_amc(Path(d) / "m.amc", got, root, values, length_unit=length_unit), got)
    assert [(b.name, b.parent, b.dof, b.axis_order) for b in got.bones] == \
        [(b.name, b.parent, b.dof, b.axis_order) for b in sk.bones]
    for a, b in zip(got.bones, sk.bones):
        np.testing.assert_allclose(a.direction, b.direction, rtol=0, atol=3e-6)
        assert abs(a.length - b.length) <= 6e-7 * to_m
        np.testing.assert_allclose(a.axis, b.axis, rtol=0, atol=6e-7)
    np.testing.assert_allclose(got.root_position, sk.root_position, rtol=0, atol=6e-7 * to_m)
    np.testing.assert_allclose(got.root_orientation, sk.root_orientation, rtol=0, atol=6e-7)
    assert got.root_axis_order == sk.root_axis_order and got.root_dof_order == sk.root_dof_order
    np.testing.assert_allclose(r2[:, :3], root[:, :3], rtol=0, atol=6e-7 * to_m)
    np.testing.assert_allclose(r2[:, 3:], root[:, 3:], rtol=0, atol=6e-7)
    assert set(v2) == set(values)
    for name, v in values.items():
        np.testing.assert_allclose(v2[name], v, rtol=0, atol=6e-7)


@st.composite
def graphs(draw):
    """A DeformationGraph with arbitrary finite float32 values and ids spanning [-1, N - 1] (padding included)."""
    N, K, A = draw(st.integers(0, 6)), draw(st.integers(0, 4)), draw(st.integers(1, 4))
    H, W = draw(shapes2(4))
    ids = st.integers(-1, N - 1)
    f32 = lambda shape: draw(hnp.arrays(np.float32, shape, elements=FIN32))
    clusters = draw(hnp.arrays(np.int64, N, elements=st.integers(0, max(N - 1, 0))))
    return DeformationGraph(
        nodes=torch.from_numpy(f32((N, 3))),
        edges=torch.from_numpy(draw(hnp.arrays(np.int64, (N, K), elements=ids))),
        edge_weights=torch.from_numpy(f32((N, K))),
        clusters=torch.from_numpy(clusters),
        cluster_sizes=torch.from_numpy(np.bincount(clusters).astype(np.int64)),
        pixel_anchors=torch.from_numpy(draw(hnp.arrays(np.int64, (H, W, A), elements=ids))),
        pixel_weights=torch.from_numpy(f32((H, W, A))),
        node_coverage=draw(st.floats(1e-3, 1.0)),
    )


@cfg(50)
@given(g=graphs(), deform=st.booleans(), data=st.data())
def test_graph_binary_files_round_trip(g, deform, data):
    """save_graph -> load_graph and read_graph_folder (reference binary layout): nodes, edge weights and pixel
    weights bit for bit (float32 extremes included), edges / anchors (with -1 padding) and clusters exactly,
    cluster sizes recomputed, node coverage kept; the optional node deformations bit for bit."""
    dfm = data.draw(hnp.arrays(np.float32, (g.num_nodes, 3), elements=FIN32)) if deform else None
    with tempfile.TemporaryDirectory() as d:
        paths = gio.save_graph(d, "pair_geodesic_0.05", g, node_deformations=dfm)
        got = [gio.load_graph(d, "pair_geodesic_0.05", node_coverage=g.node_coverage),
               read_graph_folder(d, node_coverage=g.node_coverage)]
        if deform:
            assert_bits(gio.read_node_deformations(paths["node_deformations"]), dfm)
        else:
            assert "node_deformations" not in paths
    for h in got:
        for name in ("nodes", "edge_weights", "pixel_weights"):
            assert_bits(getattr(h, name), getattr(g, name).numpy())
        for name in ("edges", "clusters", "pixel_anchors", "cluster_sizes"):
            a, b = getattr(h, name), getattr(g, name)
            assert a.dtype == torch.int64 and torch.equal(a, b), name
        assert h.node_coverage == g.node_coverage


@st.composite
def meshes(draw):
    V = draw(st.integers(0, 10))
    verts = draw(hnp.arrays(np.float32, (V, 3), elements=FIN32))
    faces = draw(hnp.arrays(np.int64, (draw(st.integers(0, 8)) if V else 0, 3), elements=st.integers(0, max(V - 1, 0))))
    colors = draw(st.none() | hnp.arrays(np.uint8, (V, 3)))
    return verts, faces, colors


@cfg(50)
@given(mesh=meshes(), data=st.data())
def test_ply_mesh_and_point_cloud_round_trip(mesh, data):
    """write_mesh_ply -> read_mesh_ply: float32 vertices bit for bit, faces exactly, 8-bit colours k / 255 exactly
    (None without colours); write_ply (point clouds) -> read_mesh_ply: the same for the points, no faces; float
    colours in [0, 1] come back within half a quantum (0.5 / 255)."""
    verts, faces, k = mesh
    cols = None if k is None else k.astype(np.float64) / 255.0
    want_c = None if k is None else (k / 255.0).astype(np.float32)
    x = data.draw(hnp.arrays(np.float64, verts.shape, elements=st.floats(0, 1)))
    with tempfile.TemporaryDirectory() as d:
        v, f, c = read_mesh_ply(write_mesh_ply(Path(d) / "m.ply", verts.astype(np.float64), faces, cols))
        pv, pf, pc = read_mesh_ply(write_ply(Path(d) / "p.ply", torch.from_numpy(verts), None if k is None else torch.from_numpy(cols)))
        _, _, xc = read_mesh_ply(write_mesh_ply(Path(d) / "x.ply", verts, faces, x))
    for vv, ff, cc, want_f in ((v, f, c, faces), (pv, pf, pc, np.zeros((0, 3), np.int64))):
        assert_bits(vv, verts)
        assert ff.dtype == torch.int64
        np.testing.assert_array_equal(ff.numpy(), want_f)
        if k is None:
            assert cc is None
        else:
            assert_bits(cc, want_c)
    assert (np.abs(xc.numpy() - x) <= 0.5 / 255 + 1e-6).all()


@cfg(50)
@given(depth=hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5)),
                        elements=st.one_of(st.floats(allow_subnormal=False),
                                          st.sampled_from([0.0, -1.0, 1e-5, 65.535, 65.5355, 1e6]))),
       scale=DEPTH_SCALES)
def test_edm_depth_maps_round_trip(depth, scale):
    """edm write_depth_maps -> read_depth_png: every finite depth > 0 reads back as round(d * scale) clipped to
    [1, 65535] quanta (a valid depth never becomes the invalid 0), every other value (0, negative, NaN, +-inf)
    as 0; one preview PNG per frame is written beside it."""
    names = [f"{t:06d}" for t in range(depth.shape[0])]
    q = depth * scale
    ok = np.isfinite(q) & (q > 0)
    want = np.where(ok, np.clip(np.round(np.where(ok, q, 0)), 1, 65535), 0).astype(np.float32) / np.float32(scale)
    with tempfile.TemporaryDirectory() as d:
        files = write_depth_maps(d, torch.from_numpy(depth), names, scale=scale)
        got = np.stack([read_depth_png(p, scale=scale).numpy() for p in files["depth"]])
        assert [p.name for p in files["preview"]] == [f"{n}.png" for n in names]
        assert all(p.is_file() for p in files["preview"])
    np.testing.assert_array_equal(got, want)
    assert ((got > 0) == ok).all()


@cfg(25)
@given(emb=hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.just(3), st.integers(1, 4), st.integers(1, 4)),
                      elements=FIN32))
def test_edm_embeddings_round_trip(emb):
    """edm write_embeddings -> embeddings.npy: the (T, 3, H, W) float32 embeddings come back bit for bit."""
    names = [f"f{t}" for t in range(emb.shape[0])]
    with tempfile.TemporaryDirectory() as d:
        files = write_embeddings(d, torch.from_numpy(emb), names)
        assert_bits(np.load(files["npy"]), emb)
        assert len(files["preview"]) == len(names)


@cfg(30)
@given(hw=shapes2(5), seed=SEEDS, N=st.integers(1, 5), intr=intrinsics4, data=st.data())
def test_tracking_outputs_round_trip(hw, seed, N, intr, data):
    """write_tracking_outputs -> readers: deformed.ply holds the warped points (float32), scene_flow.sflow
    warped - source at exactly the tracked pixels (-inf, i.e. invalid, elsewhere), optical_flow.oflow
    pi(warped) - (col, row) at the tracked pixels whose warped z > 1e-6 m, graph_motion.npz the node motion bit
    for bit, result.json the summary."""
    H, W = hw
    rng = np.random.default_rng(seed)
    idx = np.sort(data.draw(st.lists(st.integers(0, H * W - 1), min_size=1, max_size=H * W, unique=True)))
    P = len(idx)
    src = rng.normal(size=(P, 3))
    warped = rng.normal(size=(P, 3))
    warped[:, 2] = data.draw(hnp.arrays(np.float64, P, elements=st.one_of(st.floats(-1, 10), st.sampled_from([0.0, 1e-6, 2e-6]))))
    R, t = rng.normal(size=(N, 3, 3)), rng.normal(size=(N, 3))
    nv = rng.random(N) < 0.5
    result = {"nodes": N, "name": "x", "rmse": float(rng.random()), "per_iter": [1.0, 0.5], "nested": {"a": [1, 2]}}
    with tempfile.TemporaryDirectory() as d:
        paths = write_tracking_outputs(d, warped_points=torch.from_numpy(warped), colors=None,
                                       pixel_index=torch.from_numpy(idx), image_size=(H, W),
                                       source_points=torch.from_numpy(src), intrinsics=torch.tensor(intr, dtype=F64),
                                       rotations=torch.from_numpy(R), translations=torch.from_numpy(t),
                                       node_valid=torch.from_numpy(nv), result=result)
        v, f, _ = read_mesh_ply(paths["deformed"])
        sf, sv = read_flow_binary(paths["scene_flow"], channels=3)
        of, ov = read_flow_binary(paths["optical_flow"], channels=2)
        npz = dict(np.load(paths["graph_motion"]))
        summary = json.loads(Path(paths["result"]).read_text())
    assert_bits(v, warped.astype(np.float32))
    assert f.shape == (0, 3)
    tracked = np.zeros(H * W, bool)
    tracked[idx] = True
    np.testing.assert_array_equal(sv.numpy().reshape(-1), tracked)
    assert_bits(sf.numpy().reshape(-1, 3)[idx], (warped - src).astype(np.float32))
    fx, fy, cx, cy = (float(x) for x in intr)
    proj = warped[:, 2] > 1e-6
    want_valid = np.zeros(H * W, bool)
    want_valid[idx[proj]] = True
    np.testing.assert_array_equal(ov.numpy().reshape(-1), want_valid)
    z = np.where(proj, warped[:, 2], 1.0)
    uv = np.stack([fx * warped[:, 0] / z + cx - idx % W, fy * warped[:, 1] / z + cy - idx // W], -1)
    np.testing.assert_allclose(of.numpy().reshape(-1, 2)[idx[proj]], uv[proj], rtol=1e-6, atol=1e-3)
    assert_bits(npz["rotations"], R)
    assert_bits(npz["translations"], t)
    np.testing.assert_array_equal(npz["valid"], nv)
    assert summary == result


def _same(a, b) -> bool:
    """Deep equality of checkpoint payloads: tensors bit for bit (dtype and shape too), NaN == NaN."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and \
            np.array_equal(bits(a.contiguous()), bits(b.contiguous()))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


@st.composite
def payloads(draw):
    shapes = st.lists(st.tuples(st.sampled_from(["w", "b", "layer.0.weight", "bn.running_mean"]),
                                hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
                                st.sampled_from([np.float32, np.float64])), max_size=4, unique_by=lambda x: x[0])
    model = {name: torch.from_numpy(np.asarray(draw(hnp.arrays(dt, shp, elements=st.floats(width=32)))))
             for name, shp, dt in draw(shapes)}
    return {"model": model, "step": draw(st.integers(0, 2**40)),
            "history": draw(st.lists(st.floats(), max_size=5)),
            "config": {"lr": draw(st.floats(allow_nan=False)), "name": draw(st.text(max_size=8))}}


@cfg(15)
@given(first=payloads(), second=payloads())
def test_checkpoint_round_trip_keeps_the_previous_one(first, second):
    """write_checkpoint -> read_checkpoint returns the payload (tensors bit for bit, NaN/inf floats, nested
    values); a second write returns the second payload from checkpoint.pt and the first from checkpoint.prev.pt."""
    with tempfile.TemporaryDirectory() as d:
        p1 = write_checkpoint(d, first)
        assert _same(read_checkpoint(p1), first)
        p2 = write_checkpoint(d, second)
        assert p2 == p1
        assert _same(read_checkpoint(p2), second)
        assert _same(read_checkpoint(Path(d) / PREVIOUS), first)


@cfg(5)
@given(seed=SEEDS, meta=st.dictionaries(st.sampled_from(["steps", "note"]), st.integers(0, 100), max_size=2))
def test_matcher_and_tracker_checkpoints_round_trip(seed, meta):
    """save_matcher -> load_matcher and save_tracker -> load_tracker give a network of the same configuration
    whose weights and buffers equal the saved (randomly perturbed) ones bit for bit (the matcher in eval mode, as
    load_matcher documents)."""
    from nrsfm_kit.matching.training import load_matcher, save_matcher
    from nrsfm_kit.models.matcher import MatcherConfig, SiameseMatcher
    from nrsfm_kit.tracking.model import NeuralTracker
    from nrsfm_kit.tracking.training import TrackerConfig, load_tracker, save_tracker

    g = torch.Generator().manual_seed(seed)
    m = SiameseMatcher(MatcherConfig(width=0.25, patch_size=64, num_down=3))
    tr = NeuralTracker(TrackerConfig(width=0.25))
    for net in (m, tr):
        with torch.no_grad():
            for v in net.state_dict().values():
                if v.is_floating_point():
                    v.add_(torch.randn(v.shape, generator=g, dtype=v.dtype))
    with tempfile.TemporaryDirectory() as d:
        m2 = load_matcher(save_matcher(Path(d) / "m.pt", m, **meta))
        tr2 = load_tracker(save_tracker(Path(d) / "t.pt", tr, **meta))
    assert not m2.training
    for a, b in ((m, m2), (tr, tr2)):
        assert a.config == b.config
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(_same(sa[k], sb[k]) for k in sa)


# ==================================================================================================
# 4. the warp field (nrsfm_kit/kernels/warp_field.py) and node motion (nrsfm_kit/graph/motion.py)
# ==================================================================================================


@st.composite
def skinned_points(draw, normalise: bool):
    """Nodes, points with anchors in [-1, N) (-1 = padding) and non-negative weights, float64; with ``normalise``
    the weights of each point sum to 1 over its valid anchors (a point without valid anchor keeps weight 0)."""
    N, P, A = draw(st.integers(1, 8)), draw(st.integers(1, 16)), draw(st.integers(1, 4))
    coords = st.floats(-10, 10)
    nodes = draw(hnp.arrays(np.float64, (N, 3), elements=coords))
    points = draw(hnp.arrays(np.float64, (P, 3), elements=coords))
    anchors = draw(hnp.arrays(np.int64, (P, A), elements=st.integers(-1, N - 1)))
    w = draw(hnp.arrays(np.float64, (P, A), elements=st.floats(0, 1)))
    if normalise:
        w = np.where(anchors >= 0, w + 0.1, 0.0)
        tot = w.sum(-1, keepdims=True)
        w = np.where(tot > 0, w / np.where(tot > 0, tot, 1), 0.0)
    return tuple(torch.from_numpy(x) for x in (nodes, points, anchors, w))


def _all_warps(points, anchors, weights, nodes, R, t):
    """Q(p) by the Warp kernel (point list and point image) and by the torch reference."""
    img = warp_point_image(points[None], anchors[None], weights[None], nodes, R, t)[0]
    return {"warp": warp_points(points, anchors, weights, nodes, R, t), "image": img,
            "torch": warp_points_torch(points, anchors, weights, nodes, R, t)}


@cfg(60)
@given(sk=skinned_points(normalise=False))
def test_warp_field_identity_motion_returns_the_points(sk):
    """With R_i = I and t_i = 0 for every node, Q(p) = (sum of p's valid weights) p: with normalised weights the
    input points exactly (to 1e-12), 0 for a point without a valid anchor; the same for the Warp point-list and
    point-image kernels and the torch reference. The ARAP residuals of that motion are 0 on every edge."""
    nodes, points, anchors, w = sk
    N = nodes.shape[0]
    R, t = EYE.expand(N, 3, 3).contiguous(), torch.zeros(N, 3, dtype=F64)
    want = (w * (anchors >= 0)).sum(-1, keepdim=True) * points
    for name, q in _all_warps(points, anchors, w, nodes, R, t).items():
        assert torch.allclose(q, want, rtol=0, atol=1e-12 * (1 + float(want.abs().max()))), name
    edges = anchors[:N] if anchors.shape[0] >= N else torch.full((N, 2), -1)
    for r in (arap_residuals(nodes, edges, R, t), arap_residuals_torch(nodes, edges, R, t)):
        assert r.abs().max() <= 1e-12


@cfg(60)
@given(sk=skinned_points(normalise=True), R0=rotations, T=hnp.arrays(np.float64, 3, elements=st.floats(-10, 10)))
def test_warp_field_global_rigid_motion_moves_points_rigidly(sk, R0, T):
    """With every node moved by one rigid motion (R_i = R0, t_i = R0 v_i + T - v_i) and normalised weights,
    Q(p) = R0 p + T for every point with a valid anchor (0 for the others), in the Warp kernels and the torch
    reference; the ARAP residuals of a rigid motion vanish on every edge (and on padding)."""
    nodes, points, anchors, w = sk
    N = nodes.shape[0]
    R0t, Tt = torch.from_numpy(R0), torch.from_numpy(T)
    R = R0t.expand(N, 3, 3).contiguous()
    t = nodes @ R0t.T + Tt - nodes
    has = (anchors >= 0).any(-1, keepdim=True)
    want = torch.where(has, points @ R0t.T + Tt, torch.zeros_like(points))
    for name, q in _all_warps(points, anchors, w, nodes, R, t).items():
        assert torch.allclose(q, want, rtol=0, atol=1e-11), name
    edges = torch.from_numpy(np.stack([np.roll(np.arange(N), k) for k in (1, 2)], 1))
    edges[::2, 1] = -1
    for r in (arap_residuals(nodes, edges, R, t), arap_residuals_torch(nodes, edges, R, t)):
        assert r.abs().max() <= 1e-11


@st.composite
def spread_graphs(draw):
    """Nodes at random positions, each with 2..K distinct other nodes as neighbours (so every neighbourhood spans
    a plane), -1 padding whose weights are junk, positive weights on valid edges."""
    seed, N = draw(SEEDS), draw(st.integers(3, 8))
    rng = np.random.default_rng(seed)
    K = draw(st.integers(2, min(N - 1, 4)))
    nodes = rng.normal(size=(N, 3)) * 0.1 + [0, 0, 1]
    edges = np.full((N, K + 1), -1)
    for i in range(N):
        k = rng.integers(2, K + 1)
        edges[i, :k] = rng.choice(np.delete(np.arange(N), i), size=k, replace=False)
    w = np.where(edges >= 0, rng.uniform(0.1, 1.0, edges.shape), rng.normal(size=edges.shape) * 100)
    return torch.from_numpy(nodes), torch.from_numpy(edges), torch.from_numpy(w)


@cfg(60)
@given(g=spread_graphs(), R0=rotations, T=hnp.arrays(np.float64, 3, elements=st.floats(-1, 1)))
def test_node_rotations_of_a_rigid_motion(g, R0, T):
    """node_rotations_from_translations: translations of one rigid motion (t_i = R0 v_i + T - v_i) give R_i = R0
    for every node whose neighbourhood spans a plane, zero translations give R_i = I, and the weights on -1
    padding are ignored."""
    nodes, edges, w = g
    R0t = torch.from_numpy(R0)
    t = nodes @ R0t.T + torch.from_numpy(T) - nodes
    R = node_rotations_from_translations(nodes, edges, w, t)
    assert torch.allclose(R, R0t.expand_as(R), rtol=0, atol=1e-9)
    R = node_rotations_from_translations(nodes, edges, w, torch.zeros_like(nodes))
    assert torch.allclose(R, EYE.expand_as(R), rtol=0, atol=1e-9)


@cfg(25)
@given(nodes=hnp.arrays(np.float64, (2, 3), elements=st.floats(-1, 1)).filter(
    lambda v: np.linalg.norm(v[1] - v[0]) > 1e-3))
@example(nodes=np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]]))
def test_node_rotations_of_zero_motion_are_identity_for_single_neighbour_nodes(nodes):
    """Zero translations give identity node rotations also for nodes with a single neighbour (the identity is a
    minimiser; any other rotation about the edge would move anchored points under a motion that moves nothing)."""
    v = torch.from_numpy(nodes)
    R = node_rotations_from_translations(v, torch.tensor([[1], [0]]), torch.ones(2, 1, dtype=F64), torch.zeros_like(v))
    assert torch.allclose(R, EYE.expand_as(R), rtol=0, atol=1e-9), R
