"""Synthetic deforming RGB-D pairs and sequences with exact ground truth (Open3D ray casting).

Scene (:func:`nrsfm_kit.data.scenes.build_scene`, static camera = world frame): a textured back wall
and floor, a waving/bending cloth sheet, a bending capped cylinder ("arm") and a rigidly moving box.
For every source pixel the ground truth follows the hit material point (triangle id + barycentrics) to
the target time: optical flow (pixels), scene flow (metres), visibility (in view and not occluded) and
object masks; :meth:`SyntheticRGBDPair.node_translations` evaluates the same deformation at arbitrary
graph nodes. Depth can carry Kinect-like noise and holes (:func:`nrsfm_kit.data.render.kinect_noise`);
the ground truth always refers to the clean geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from nrsfm_kit.data._args import check_float_dtype, check_int, to_tensor
from nrsfm_kit.data.render import DeformingScene, Frame, apply_pose, kinect_noise
from nrsfm_kit.data.scenes import OBJECTS, build_scene
from nrsfm_kit.data.types import RGBDPair, RGBDSequence
from nrsfm_kit.utils.checks import check_positive, check_tensor


def _np2t(a, dtype):
    return to_tensor(a, dtype)


def _node_translations(
    scene: DeformingScene, nodes: torch.Tensor, t_src: float, t_tgt: float
) -> torch.Tensor:
    check_tensor("nodes", nodes, ("N", 3))
    X = nodes.detach().cpu().double().numpy()
    T_s = np.asarray(scene.pose_at(t_src), dtype=np.float64)
    T_t = np.asarray(scene.pose_at(t_tgt), dtype=np.float64)
    Xw = (X - T_s[:3, 3]) @ T_s[:3, :3]  # camera -> world
    gid, tri, bary, _ = scene.closest_surface(Xw, t_src)
    src = apply_pose(T_s, scene.surface_points(gid, tri, bary, t_src))
    tgt = apply_pose(T_t, scene.surface_points(gid, tri, bary, t_tgt))
    return torch.as_tensor(tgt - src, dtype=nodes.dtype, device=nodes.device)


@dataclass
class SyntheticRGBDPair(RGBDPair):
    """An :class:`RGBDPair` from the synthetic generator, with the extra ground truth it knows.

    Extra attributes:
        source_depth_clean, target_depth_clean: (H, W) metres, noise-free depth (equal to the depth
            fields when no Kinect noise was requested).
        source_points: (H, W, 3) camera-frame surface point of every source pixel (0 where none).
        target_points: (H, W, 3) where those material points are at the target time (camera frame).
        source_object_ids: (H, W) int64 index into ``object_names`` (-1 no surface).
        source_triangle_ids: (H, W) int64 triangle of that object hit by the pixel's ray (-1 none).
        source_barycentrics: (H, W, 3) float barycentric coordinates of the hit in that triangle.
        object_names: names of the scene objects (``wall``, ``floor``, ``cloth``, ``cylinder``, ``box``).
        times: (t_source, t_target) in seconds.
        scene: the :class:`DeformingScene` (for further ground truth queries).
    """

    source_depth_clean: torch.Tensor | None = None
    target_depth_clean: torch.Tensor | None = None
    source_points: torch.Tensor | None = None
    target_points: torch.Tensor | None = None
    source_object_ids: torch.Tensor | None = None
    source_triangle_ids: torch.Tensor | None = None
    source_barycentrics: torch.Tensor | None = None
    object_names: list[str] = field(default_factory=list)
    times: tuple[float, float] = (0.0, 0.0)
    scene: DeformingScene | None = field(default=None, repr=False)

    def node_translations(self, nodes: torch.Tensor) -> torch.Tensor:
        """Ground-truth translation of deformation-graph nodes from the source to the target time.

        Args:
            nodes: (N, 3) node positions in the source camera frame, metres (normally sampled on the
                source surface, e.g. from the back-projected source depth).
        Returns:
            (N, 3) metres: each node is attached to its closest point on the source surface (triangle +
            barycentrics, Open3D ``compute_closest_points``) and its translation is that material point's
            displacement at the target time (exact for nodes on the surface).
        """
        return _node_translations(self.scene, nodes, *self.times)


def _depth_maps(frame: Frame, kinect: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    clean = frame.depth
    noisy = kinect_noise(clean, frame.normal_dot_view, rng) if kinect else clean
    return noisy, clean


def _make_pair(
    scene: DeformingScene,
    src: Frame,
    tgt: Frame,
    kinect: bool,
    rng: np.random.Generator,
    dtype: torch.dtype,
    name: str,
) -> SyntheticRGBDPair:
    gt = scene.correspondences(src, tgt.t)
    sd, sdc = _depth_maps(src, kinect, rng)
    td, tdc = _depth_maps(tgt, kinect, rng)
    col = lambda f: _np2t(f.color.transpose(2, 0, 1), dtype)
    return SyntheticRGBDPair(
        source_color=col(src),
        target_color=col(tgt),
        source_depth=_np2t(sd, dtype),
        target_depth=_np2t(td, dtype),
        intrinsics=_np2t(scene.intrinsics, dtype),
        optical_flow=_np2t(gt["optical_flow"], dtype),
        scene_flow=_np2t(gt["scene_flow"], dtype),
        flow_valid=torch.as_tensor(gt["flow_valid"]),
        visibility=torch.as_tensor(gt["visibility"]),
        source_mask=torch.as_tensor(src.labels > 0),
        target_mask=torch.as_tensor(tgt.labels > 0),
        segmentation=torch.as_tensor(src.labels, dtype=torch.int64),
        name=name,
        source_depth_clean=_np2t(sdc, dtype),
        target_depth_clean=_np2t(tdc, dtype),
        source_points=_np2t(src.points, dtype),
        target_points=_np2t(gt["points"], dtype),
        source_object_ids=torch.as_tensor(src.object_ids, dtype=torch.int64),
        source_triangle_ids=torch.as_tensor(src.triangle_ids, dtype=torch.int64),
        source_barycentrics=_np2t(src.bary, dtype),
        object_names=[o.name for o in scene.objects],
        times=(float(src.t), float(tgt.t)),
        scene=scene,
    )


def _check_common(height, width, objects, seed, dtype=torch.float32) -> None:
    check_int("height", height, 8)
    check_int("width", width, 8)
    if isinstance(objects, str) or not all(o in OBJECTS for o in objects) or len(set(objects)) != len(objects):
        raise ValueError(f"objects: expected distinct names from {OBJECTS}, found {objects!r}")
    check_int("seed", seed, 0)
    check_float_dtype(dtype)


def synthetic_rgbd_pair(
    height: int = 240,
    width: int = 320,
    *,
    objects: tuple[str, ...] = OBJECTS,
    time_gap: float = 0.2,
    t_source: float = 0.0,
    kinect_noise: bool = False,
    shading: float = 0.25,
    camera_motion: float = 0.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> SyntheticRGBDPair:
    """A deforming RGB-D frame pair with exact ground truth for every source pixel.

    Args:
        height, width: image size in pixels (the camera has a 60 degree horizontal field of view).
        objects: subset of ``("cloth", "cylinder", "box")`` in front of the static wall and floor.
        time_gap: seconds between source and target (0.2 s moves the objects by a few centimetres, the
            DeepDeform regime; larger gaps give larger deformations).
        t_source: time of the source frame in seconds.
        kinect_noise: corrupt both depth maps with Kinect-like noise and holes.
        shading: headlight shading weight (0 = pure albedo).
        camera_motion: 0 (default) keeps the camera static like a tripod capture; > 0 moves it along the
            hand-held-like path of :func:`nrsfm_kit.data.scenes.build_scene` (then the scene flow, defined as
            target-camera point minus source-camera point, includes the camera motion).
        seed: textures, object phases and noise are deterministic for a seed.
        dtype: floating dtype of the tensors.

    Returns:
        :class:`SyntheticRGBDPair`: colour (3, H, W), depth (H, W) metres (0 = hole), intrinsics (4,),
        optical_flow (H, W, 2) px, scene_flow (H, W, 3) m, flow_valid, visibility, masks of the
        non-background objects, segmentation (0 static, 1 rigid, 2 non-rigid), and the extra ground truth
        (clean depth, surface points, object ids, :meth:`~SyntheticRGBDPair.node_translations`).
    """
    _check_common(height, width, objects, seed, dtype)
    check_positive("time_gap", time_gap)
    check_positive("t_source", t_source, strict=False)
    if not 0.0 <= float(shading) <= 1.0:
        raise ValueError(f"shading: expected a value in [0, 1], found {shading!r}")
    check_positive("camera_motion", camera_motion, strict=False)
    scene = build_scene(tuple(objects), int(height), int(width), int(seed), camera_motion=float(camera_motion))
    scene.shading = float(shading)
    t0, t1 = float(t_source), float(t_source) + float(time_gap)
    src, tgt = scene.render(t0), scene.render(t1)
    rng = np.random.default_rng([int(seed), 7])
    return _make_pair(scene, src, tgt, kinect_noise, rng, dtype, f"synthetic-rgbd-pair-s{seed}")


@dataclass
class SyntheticRGBDSequence(RGBDSequence):
    """An :class:`RGBDSequence` from the synthetic generator; ground truth between any two frames.

    Extra attributes: ``depths_clean`` (T, H, W), ``times`` (T,) seconds, ``object_names``, ``scene``.
    """

    depths_clean: torch.Tensor | None = None
    times: list[float] = field(default_factory=list)
    object_names: list[str] = field(default_factory=list)
    scene: DeformingScene | None = field(default=None, repr=False)
    _frames: list = field(default_factory=list, repr=False)
    _kinect: bool = False
    _seed: int = 0

    def pair(self, i: int, j: int) -> SyntheticRGBDPair:
        """Frames i -> j as a :class:`SyntheticRGBDPair` with its ground truth (flows, visibility...)."""
        T = self.num_frames
        for name, k in (("i", i), ("j", j)):
            if not 0 <= int(k) < T:
                raise ValueError(f"{name}: expected a frame index in [0, {T}), found {k!r}")
        rng = np.random.default_rng([self._seed, 7, i, j])
        p = _make_pair(self.scene, self._frames[i], self._frames[j], False, rng, self.colors.dtype,
                       f"{self.name}[{i}->{j}]")  # fmt: skip
        # reuse the sequence's (possibly noisy) depth maps so that pair and sequence agree
        p.source_depth, p.target_depth = self.depths[i].clone(), self.depths[j].clone()
        return p

    def node_translations(self, nodes: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """(N, 3) ground-truth translations of nodes given in frame i's camera frame, from frame i to j."""
        T = self.num_frames
        for name, k in (("i", i), ("j", j)):
            if not 0 <= int(k) < T:
                raise ValueError(f"{name}: expected a frame index in [0, {T}), found {k!r}")
        return _node_translations(self.scene, nodes, self.times[i], self.times[j])


def synthetic_rgbd_sequence(
    num_frames: int = 8,
    height: int = 240,
    width: int = 320,
    *,
    objects: tuple[str, ...] = OBJECTS,
    fps: float = 10.0,
    kinect_noise: bool = False,
    shading: float = 0.25,
    camera_motion: float = 0.0,
    seed: int = 0,
    progress: bool = False,
    dtype: torch.dtype = torch.float32,
    speed: float = 1.0,
) -> SyntheticRGBDSequence:
    """A deforming RGB-D sequence (static camera unless ``camera_motion`` > 0) with GT between any two frames.

    Frame t is rendered at t / fps seconds. Returns a :class:`SyntheticRGBDSequence` with colors
    (T, 3, H, W), depths (T, H, W) metres (noisy when ``kinect_noise``), masks (T, H, W) of the
    non-background objects, segmentation (T, H, W), poses (T, 4, 4) world -> camera, and ``pair(i, j)`` /
    ``node_translations(nodes, i, j)`` for the ground truth. ``speed`` (> 0) scales the objects' motion laws
    (:func:`nrsfm_kit.data.scenes.build_scene`; 1 = the default motion). See :func:`synthetic_rgbd_pair` for the
    other arguments.
    """
    check_int("num_frames", num_frames, 2)
    _check_common(height, width, objects, seed, dtype)
    check_positive("fps", fps)
    if not 0.0 <= float(shading) <= 1.0:
        raise ValueError(f"shading: expected a value in [0, 1], found {shading!r}")
    check_positive("camera_motion", camera_motion, strict=False)
    check_positive("speed", speed)
    scene = build_scene(tuple(objects), int(height), int(width), int(seed), speed=float(speed),
                        camera_motion=float(camera_motion))
    scene.shading = float(shading)
    times = [k / float(fps) for k in range(int(num_frames))]
    frames = [scene.render(t) for t in tqdm(times, desc="render RGB-D", disable=not progress, leave=False)]
    rng = np.random.default_rng([int(seed), 11])
    depths = [_depth_maps(f, kinect_noise, rng) for f in frames]
    return SyntheticRGBDSequence(
        colors=_np2t(np.stack([f.color for f in frames]).transpose(0, 3, 1, 2), dtype),
        depths=_np2t(np.stack([d[0] for d in depths]), dtype),
        intrinsics=_np2t(scene.intrinsics, dtype),
        masks=torch.as_tensor(np.stack([f.labels > 0 for f in frames])),
        segmentation=torch.as_tensor(np.stack([f.labels for f in frames]), dtype=torch.int64),
        poses=_np2t(np.stack([f.T_cw for f in frames]), dtype),
        name=f"synthetic-rgbd-seq-s{seed}",
        depths_clean=_np2t(np.stack([d[1] for d in depths]), dtype),
        times=times,
        object_names=[o.name for o in scene.objects],
        scene=scene,
        _frames=frames,
        _kinect=bool(kinect_noise),
        _seed=int(seed),
    )


class SyntheticRGBDPairs(torch.utils.data.Dataset):
    """A torch Dataset of synthetic RGB-D pairs generated on the fly (pair i uses seed ``seed + i``).

    Each item is a dict of tensors (collatable with the default ``DataLoader`` collate): ``source_color``,
    ``target_color`` (3, H, W), ``source_depth``, ``target_depth`` (H, W), ``intrinsics`` (4,),
    ``optical_flow`` (H, W, 2), ``scene_flow`` (H, W, 3), ``flow_valid``, ``visibility``, ``source_mask``,
    ``target_mask`` (H, W) bool, ``segmentation`` (H, W) int64, ``source_points`` (H, W, 3). The time gap of
    pair i is drawn uniformly in ``time_gap_range`` (seconds) and its source time in [0, 10) s, so the
    deformations vary across items. Keyword arguments go to :func:`synthetic_rgbd_pair`.
    """

    KEYS = ("source_color", "target_color", "source_depth", "target_depth", "intrinsics", "optical_flow",
            "scene_flow", "flow_valid", "visibility", "source_mask", "target_mask", "segmentation",
            "source_points")  # fmt: skip

    def __init__(
        self,
        num_pairs: int,
        height: int = 240,
        width: int = 320,
        seed: int = 0,
        time_gap_range: tuple[float, float] = (0.1, 0.4),
        **kwargs,
    ):
        check_int("num_pairs", num_pairs, 1)
        lo, hi = (float(x) for x in time_gap_range)
        if not 0 < lo <= hi:
            raise ValueError(f"time_gap_range: expected 0 < low <= high, found {time_gap_range!r}")
        _check_common(height, width, kwargs.get("objects", OBJECTS), seed, kwargs.get("dtype", torch.float32))
        self.num_pairs, self.height, self.width, self.seed = int(num_pairs), int(height), int(width), int(seed)
        self.time_gap_range, self.kwargs = (lo, hi), kwargs

    def __len__(self) -> int:
        return self.num_pairs

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.num_pairs:
            raise IndexError(f"i: expected an index in [0, {self.num_pairs}), found {i}")
        rng = np.random.default_rng([self.seed, i, 3])
        gap = float(rng.uniform(*self.time_gap_range))
        t0 = float(rng.uniform(0.0, 10.0))
        p = synthetic_rgbd_pair(self.height, self.width, time_gap=gap, t_source=t0, seed=self.seed + i, **self.kwargs)
        return {k: getattr(p, k) for k in self.KEYS}
