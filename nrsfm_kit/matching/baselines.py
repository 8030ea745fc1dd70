"""Hand-crafted sparse matching baselines of DeepDeform's matching comparison (Bozic et al., CVPR 2020, Table 1).

Every baseline answers the same question as DeepDeform's matcher: for each given source pixel, where is it in
the target frame? One interface, :class:`MatchingBaseline`::

    target_px, valid = BASELINES["sift"].match(pair, source_px)          # (K, 2) px, (K,) bool
    target_px, valid = match_baseline("orb", pair, source_px, stride=2)  # options override the defaults

Registered (:data:`BASELINES`, name -> object; add one with ``BASELINES["mine"] = MyBaseline()``):

- ``sift``, ``orb``, ``akaze`` (OpenCV; :class:`DescriptorBaseline`): a descriptor at each source point and at
  candidate target locations, match = the candidate of nearest descriptor (L2 for SIFT, Hamming for the binary
  ORB / AKAZE descriptors) inside the search window. SURF is absent: it is patented ("non-free") and not in the
  free OpenCV builds on PyPI (``SURF_create`` raises there).
- ``fpfh`` (Open3D; :class:`FPFHBaseline`): FPFH features of the back-projected source and target depth.
- ``dis`` (OpenCV DIS optical flow; :class:`DISBaseline`): the flow read at the source points.

Search window
    DeepDeform's matcher sees a 224 x 224 target patch centred at the source pixel's location
    (:data:`DEEPDEFORM_WINDOW`). The descriptor and FPFH baselines search the same window: a candidate ``t`` is
    allowed for a source point ``s`` when ``|t_x - s_x| <= window / 2`` and ``|t_y - s_y| <= window / 2``
    (``window=None``: the whole image). A point whose window holds no candidate is returned with
    ``valid = False`` (a rejection, see :mod:`nrsfm_kit.metrics.matching`).

Descriptors at given points (what OpenCV does with user keypoints)
    All descriptors (source points, target grid, detected target keypoints) are computed with one keypoint
    template, upright (angle 0) and at one scale, so that source and target descriptors are comparable (a
    source point has no detected scale or orientation). Detected target keypoints contribute candidate
    *locations* (sub-pixel, at corners and blobs) beside the dense grid of stride ``stride`` px. The images are
    padded by reflection (``cv2.BORDER_REFLECT_101``) first, so that ORB's border filter keeps points near the
    image edge.

    - SIFT: ``cv2.KeyPoint`` of diameter ``keypoint_size`` px (the descriptor spans about ``6 * keypoint_size``
      px) at octave 0, layer 0, so the descriptor reads SIFT's first Gaussian level (sigma 1.6). Packing the
      octave / layer that SIFT's detector gives that size localises worse (measured on a pure 5 px
      translation at 12 px: 60 % of the points within 2 px against 92 %, and a lower accuracy on the
      synthetic and DeepDeform pairs), because a coarser octave resamples the shift.
    - ORB: octave 0, angle 0 (``compute`` keeps the given angle), a ``patch_size`` px rBRIEF patch.
    - AKAZE: ``compute`` with a plain ``cv2.KeyPoint`` fails OpenCV's assertion ``0 <= class_id < evolution
      levels`` (``class_id`` is AKAZE's nonlinear-scale-space level). We give each keypoint the level ``level``:
      ``class_id = level``, ``octave = level // 4``, ``size = 4.8 * 2 ** (level / 4)`` px, exactly what AKAZE's
      detector writes for that level (4 sublevels per octave), with the upright MLDB descriptor. No detected
      keypoint is substituted for a source point. OpenCV 5 moved AKAZE from the main build to opencv-contrib
      (``cv2.xfeatures2d.AKAZE_create``); with a build that has neither ``cv2.AKAZE_create`` nor that one,
      ``akaze`` raises ImportError (:meth:`MatchingBaseline.available` says so beforehand).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from nrsfm_kit.data.types import RGBDPair
from nrsfm_kit.geometry.pinhole import as_intrinsics
from nrsfm_kit.metrics.matching import check_source_pixels
from nrsfm_kit.tracking.io import DIS_PRESETS, dis_flow
from nrsfm_kit.utils.checks import check_finite, check_shape

__all__ = [
    "AKAZEConfig", "BASELINES", "DEEPDEFORM_WINDOW", "DISBaseline", "DISConfig", "DescriptorBaseline",
    "FPFHBaseline", "FPFHConfig", "MatchingBaseline", "ORBConfig", "SIFTConfig", "match_baseline",
]

DEEPDEFORM_WINDOW = 224  # px: side of DeepDeform's target patch, centred at the source pixel's location

# AKAZE's detector: size = 2 * derivative_factor (1.5) * soffset (1.6) * 2 ** (level / nOctaveLayers) px
_AKAZE_BASE_SIZE = 4.8
_AKAZE_LAYERS = 4  # OpenCV's default nOctaveLayers


# ==================================================================================================
# configs (each default says where it comes from)
# ==================================================================================================


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, found {value!r}")


def _check_pos(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) <= 0:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name}: expected a finite number > 0{extra}, found {value!r}")


@dataclass(frozen=True)
class DescriptorConfig:
    """Options shared by the descriptor baselines.

    Attributes:
        window: search window side in px (:data:`DEEPDEFORM_WINDOW` = DeepDeform's target patch), None = the
            whole image.
        stride: dense target grid spacing, px (4: a candidate every 4 px; matches are quantised to it, up to
            ``stride / sqrt(2)`` px off).
        detect: add the detector's target keypoints to the candidates.
        max_keypoints: at most this many detected target keypoints (strongest response first).
        max_distance: reject a match whose descriptor distance exceeds this (L2 for SIFT, bits for the binary
            descriptors); None = never reject.
    """

    window: int | None = DEEPDEFORM_WINDOW
    stride: int = 4
    detect: bool = True
    max_keypoints: int = 2000
    max_distance: float | None = None

    def __post_init__(self):
        if self.window is not None:
            _check_int("window", self.window, 1)
        _check_int("stride", self.stride, 1)
        if not isinstance(self.detect, bool):
            raise ValueError(f"detect: expected a bool, found {self.detect!r}")
        _check_int("max_keypoints", self.max_keypoints, 0)
        _check_pos("max_distance", self.max_distance, allow_none=True)


@dataclass(frozen=True)
class SIFTConfig(DescriptorConfig):
    """SIFT options. ``keypoint_size``: keypoint diameter in px (the descriptor spans about 6x it: 12 px -> a
    ~72 px patch, a third of DeepDeform's 224 px window)."""

    keypoint_size: float = 12.0

    def __post_init__(self):
        super().__post_init__()
        _check_pos("keypoint_size", self.keypoint_size)


@dataclass(frozen=True)
class ORBConfig(DescriptorConfig):
    """ORB options. ``patch_size``: rBRIEF patch side in px (31, OpenCV's and the ORB paper's default)."""

    patch_size: int = 31

    def __post_init__(self):
        super().__post_init__()
        _check_int("patch_size", self.patch_size, 2)


@dataclass(frozen=True)
class AKAZEConfig(DescriptorConfig):
    """AKAZE options.

    Attributes:
        level: nonlinear-scale-space level of every descriptor (0 .. 4 * octaves - 1; 2 -> keypoint size 6.8 px,
            MLDB pattern ~60 px).
        threshold: detector response threshold of the target keypoints (0.001, OpenCV's default).
    """

    level: int = 2
    threshold: float = 0.001

    def __post_init__(self):
        super().__post_init__()
        _check_int("level", self.level, 0)
        _check_pos("threshold", self.threshold)


@dataclass(frozen=True)
class FPFHConfig:
    """FPFH options (defaults of Open3D's global-registration tutorial, scaled to a 1 cm voxel).

    Attributes:
        window: search window side in px (see the module docstring), None = the whole image.
        voxel_size: voxel down-sampling of both clouds, metres (None = keep every valid pixel's point).
        normal_radius: normal estimation radius, metres (2 voxels), with at most ``normal_max_nn`` (30) neighbours.
        feature_radius: FPFH radius, metres (5 voxels), with at most ``feature_max_nn`` (100) neighbours.
        max_distance: reject a match whose feature distance (L2 of the 33-bin histograms) exceeds this; None =
            never reject.
    """

    window: int | None = DEEPDEFORM_WINDOW
    voxel_size: float | None = 0.01
    normal_radius: float = 0.02
    normal_max_nn: int = 30
    feature_radius: float = 0.05
    feature_max_nn: int = 100
    max_distance: float | None = None

    def __post_init__(self):
        if self.window is not None:
            _check_int("window", self.window, 1)
        _check_pos("voxel_size", self.voxel_size, allow_none=True)
        _check_pos("normal_radius", self.normal_radius)
        _check_pos("feature_radius", self.feature_radius)
        _check_int("normal_max_nn", self.normal_max_nn, 1)
        _check_int("feature_max_nn", self.feature_max_nn, 1)
        _check_pos("max_distance", self.max_distance, allow_none=True)


@dataclass(frozen=True)
class DISConfig:
    """DIS options. ``preset``: OpenCV's DIS preset (``"medium"``, as :func:`~nrsfm_kit.tracking.io.dis_flow`)."""

    preset: str = "medium"

    def __post_init__(self):
        if self.preset not in DIS_PRESETS:
            raise ValueError(f"preset: expected one of {sorted(DIS_PRESETS)}, found {self.preset!r}")


# ==================================================================================================
# inputs
# ==================================================================================================


@dataclass
class _Inputs:
    """Validated numpy views of a pair and the source points."""

    source_rgb: np.ndarray  # (H, W, 3) float in [0, 1]
    target_rgb: np.ndarray
    source_depth: np.ndarray  # (H, W) float64 metres, 0 = invalid
    target_depth: np.ndarray
    intrinsics: tuple[float, float, float, float]
    px: np.ndarray  # (K, 2) float64 source pixels
    pixel: np.ndarray  # (K, 2) int64 integer source pixels floor(p + 0.5)
    pair: RGBDPair

    @property
    def size(self) -> tuple[int, int]:
        return self.source_depth.shape

    def gray(self, which: str) -> np.ndarray:
        import cv2

        rgb = self.source_rgb if which == "source" else self.target_rgb
        u8 = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
        return cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY)


def _color(name: str, x, dims: dict) -> np.ndarray:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a (3, H, W) torch.Tensor, found {type(x).__name__}")
    check_shape(name, x, (3, "H", "W"), dims)
    a = x.detach().cpu().double().numpy()
    check_finite(name, a)
    if a.size and (a.min() < -1e-6 or a.max() > 1 + 1e-6):
        raise ValueError(f"{name}: expected RGB values in [0, 1], found range [{a.min():.4g}, {a.max():.4g}]")
    return np.ascontiguousarray(a.transpose(1, 2, 0))


def _inputs(pair: RGBDPair, source_px) -> _Inputs:
    if not isinstance(pair, RGBDPair):
        raise ValueError(f"pair: expected an RGBDPair, found {type(pair).__name__}")
    dims: dict = {}
    sc = _color("pair.source_color", pair.source_color, dims)
    tc = _color("pair.target_color", pair.target_color, dims)
    depth = []
    for name in ("source_depth", "target_depth"):
        d = getattr(pair, name)
        if not isinstance(d, torch.Tensor):
            raise ValueError(f"pair.{name}: expected an (H, W) torch.Tensor, found {type(d).__name__}")
        check_shape(f"pair.{name}", d, ("H", "W"), dims)
        a = d.detach().cpu().double().numpy()
        depth.append(np.where(np.isfinite(a) & (a > 0), a, 0.0))
    fx, fy, cx, cy = (float(v) for v in as_intrinsics(pair.intrinsics, dtype=torch.float64))
    px, xi, yi = check_source_pixels(pair, source_px, require_depth=True)
    return _Inputs(sc, tc, depth[0], depth[1], (fx, fy, cx, cy), px, np.stack([xi, yi], -1), pair)


def _window_mask(src: np.ndarray, cand: np.ndarray, window: int | None) -> np.ndarray:
    """(K, M) bool: candidate m inside source point k's window (Chebyshev distance <= window / 2)."""
    if window is None:
        return np.ones((len(src), len(cand)), dtype=bool)
    d = np.abs(src[:, None, :] - cand[None, :, :]).max(-1)
    return d <= window / 2.0


def _window_cover(src: np.ndarray, size: tuple[int, int], window: int | None) -> np.ndarray:
    """(H, W) bool: pixels inside at least one source point's window."""
    H, W = size
    if window is None:
        return np.ones((H, W), dtype=bool)
    h = window / 2.0
    cover = np.zeros((H + 1, W + 1), dtype=np.int32)
    x0 = np.clip(np.ceil(src[:, 0] - h), 0, W).astype(int)
    x1 = np.clip(np.floor(src[:, 0] + h) + 1, 0, W).astype(int)
    y0 = np.clip(np.ceil(src[:, 1] - h), 0, H).astype(int)
    y1 = np.clip(np.floor(src[:, 1] + h) + 1, 0, H).astype(int)
    np.add.at(cover, (y0, x0), 1)
    np.add.at(cover, (y0, x1), -1)
    np.add.at(cover, (y1, x0), -1)
    np.add.at(cover, (y1, x1), 1)
    return cover.cumsum(0).cumsum(1)[:H, :W] > 0


def _nearest(query: np.ndarray, train: np.ndarray, allowed: np.ndarray, norm: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest train descriptor of each query among the allowed ones (cv2.BFMatcher with a mask).

    Returns (index (K,) int64, -1 where none allowed; distance (K,) float64, inf where none)."""
    import cv2

    idx = np.full(len(query), -1, dtype=np.int64)
    dist = np.full(len(query), np.inf)
    if len(query) == 0 or len(train) == 0:
        return idx, dist
    matches = cv2.BFMatcher(norm).knnMatch(query, train, k=1, mask=allowed.astype(np.uint8))
    for row in matches:
        if row:
            m = row[0]
            idx[m.queryIdx] = m.trainIdx
            dist[m.queryIdx] = m.distance
    return idx, dist


def _result(target: np.ndarray, ok: np.ndarray, pair: RGBDPair) -> tuple[torch.Tensor, torch.Tensor]:
    target = np.where(ok[:, None], target, np.nan)
    return torch.from_numpy(target).to(pair.source_depth.dtype), torch.from_numpy(ok.astype(bool))


# ==================================================================================================
# the interface
# ==================================================================================================


class MatchingBaseline:
    """One sparse matcher: ``match(pair, source_px) -> (target_px, valid)``.

    Attributes:
        name: registered name.
        config: the default options (a frozen dataclass); ``match(..., **options)`` overrides fields of it.
    """

    name: str = ""
    config_type: type = DescriptorConfig

    def __init__(self, config=None):
        self.config = self.config_type() if config is None else config
        if not isinstance(self.config, self.config_type):
            raise ValueError(f"config: expected a {self.config_type.__name__}, found {type(self.config).__name__}")

    def available(self) -> bool:
        """Whether the libraries this baseline needs are installed."""
        return True

    def _options(self, options: dict):
        fields = {f.name for f in dataclasses.fields(self.config)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ValueError(f"{unknown[0]}: expected an option of {self.name} ({sorted(fields)}), found {unknown}")
        return dataclasses.replace(self.config, **options) if options else self.config

    def match(self, pair: RGBDPair, source_px, **options) -> tuple[torch.Tensor, torch.Tensor]:
        """Match source pixels into the target frame.

        Args:
            pair: an :class:`RGBDPair`: colours (3, H, W) in [0, 1], depths (H, W) metres (0 = invalid),
                intrinsics (4,) fx, fy, cx, cy px.
            source_px: (K, 2) source pixels (x = column, y = row; float), K >= 1, inside the image and on valid
                source depth (at the pixel ``floor(p + 0.5)``).
            **options: fields of this baseline's config overriding the defaults.

        Returns:
            target_px: (K, 2) predicted target pixels, px (dtype of ``pair.source_depth``; NaN where rejected);
            valid: (K,) bool, False where the baseline has no match (nothing in the window, or over
            ``max_distance``).

        Raises:
            ValueError: empty ``source_px``, a point outside the image or on a depth hole (the message names the
                index and the value), colour / depth sizes that differ, colours outside [0, 1], unknown options.
            ImportError: the baseline's library is not installed (see :meth:`available`).
        """
        cfg = self._options(options)
        return self._match(_inputs(pair, source_px), cfg)

    def _match(self, data: _Inputs, cfg) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}._match")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, config={self.config!r})"


class DescriptorBaseline(MatchingBaseline):
    """Nearest-descriptor matching inside the search window (SIFT / ORB / AKAZE: see the module docstring)."""

    binary: bool = False

    def _extractor(self, cfg):  # pragma: no cover - abstract
        raise NotImplementedError

    def _keypoints(self, pts: np.ndarray, cfg) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def _pad(self, cfg) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _describe(self, ext, img: np.ndarray, pts: np.ndarray, cfg) -> tuple[np.ndarray | None, np.ndarray]:
        """Descriptors at (N, 2) image points: (descriptors of the kept points, kept (N,) bool)."""
        import cv2
        from scipy.spatial import cKDTree

        ok = np.zeros(len(pts), dtype=bool)
        if len(pts) == 0:
            return None, ok
        try:
            kps, desc = ext.compute(img, self._keypoints(pts, cfg))
        except cv2.error as e:
            raise ValueError(f"{self.name}: OpenCV could not compute descriptors with {cfg!r}: {e}") from None
        if desc is None or not kps:
            return None, ok
        if len(kps) == len(pts):
            out = np.asarray([k.pt for k in kps])
            if np.abs(out - pts).max() < 1e-3:
                return desc, np.ones(len(pts), dtype=bool)
        # OpenCV dropped or reordered some: associate by position
        d, j = cKDTree(np.asarray([k.pt for k in kps])).query(pts)
        ok = d < 1e-3
        return np.ascontiguousarray(desc[j[ok]]), ok

    def _detect(self, ext, gray: np.ndarray, cfg) -> np.ndarray:
        if not cfg.detect or cfg.max_keypoints == 0:
            return np.zeros((0, 2))
        kps = sorted(ext.detect(gray, None), key=lambda k: -k.response)[: cfg.max_keypoints]
        return np.asarray([k.pt for k in kps], dtype=np.float64).reshape(-1, 2)

    def _match(self, data: _Inputs, cfg):
        import cv2

        H, W = data.size
        pad = self._pad(cfg)
        border = lambda g: cv2.copyMakeBorder(g, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
        gs, gt = data.gray("source"), data.gray("target")
        ext = self._extractor(cfg)
        # candidates: the dense grid and the detected keypoints, inside some source point's window
        cover = _window_cover(data.px, (H, W), cfg.window)
        gy, gx = np.mgrid[0:H:cfg.stride, 0:W:cfg.stride]
        grid = np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float64)
        grid = grid[cover[grid[:, 1].astype(int), grid[:, 0].astype(int)]]
        det = self._detect(ext, gt, cfg)
        if len(det):
            xi = np.clip(np.floor(det[:, 0] + 0.5), 0, W - 1).astype(int)
            yi = np.clip(np.floor(det[:, 1] + 0.5), 0, H - 1).astype(int)
            det = det[cover[yi, xi] & (det[:, 0] >= 0) & (det[:, 0] <= W - 1) & (det[:, 1] >= 0) & (det[:, 1] <= H - 1)]
        cand = np.concatenate([grid, det])
        d_src, ok_src = self._describe(ext, border(gs), data.px + pad, cfg)
        d_tgt, ok_tgt = self._describe(ext, border(gt), cand + pad, cfg)
        cand = cand[ok_tgt]
        K = len(data.px)
        if d_src is None or d_tgt is None:
            return _result(np.zeros((K, 2)), np.zeros(K, dtype=bool), data.pair)
        allowed = _window_mask(data.px[ok_src], cand, cfg.window)
        norm = cv2.NORM_HAMMING if self.binary else cv2.NORM_L2
        j, dist = _nearest(d_src, d_tgt, allowed, norm)
        found = j >= 0
        if cfg.max_distance is not None:
            found &= dist <= cfg.max_distance
        target = np.zeros((K, 2))
        ok = np.zeros(K, dtype=bool)
        rows = np.flatnonzero(ok_src)
        target[rows[found]] = cand[j[found]]
        ok[rows[found]] = True
        return _result(target, ok, data.pair)


class SIFTBaseline(DescriptorBaseline):
    """SIFT (Lowe 2004; ``cv2.SIFT_create``), L2 distance. Options: :class:`SIFTConfig`."""

    name = "sift"
    config_type = SIFTConfig

    def _extractor(self, cfg: SIFTConfig):
        import cv2

        return cv2.SIFT_create(nfeatures=cfg.max_keypoints)

    def _pad(self, cfg: SIFTConfig) -> int:
        return int(math.ceil(6.0 * cfg.keypoint_size)) + 4  # descriptor half-diagonal ~ 5.3 keypoint sizes

    def _keypoints(self, pts: np.ndarray, cfg: SIFTConfig) -> list:
        import cv2

        # octave 0, layer 0: the descriptor reads SIFT's first Gaussian level (sigma 1.6) at any keypoint size
        return [cv2.KeyPoint(float(x), float(y), float(cfg.keypoint_size), 0.0, 0.0, 0) for x, y in pts]


class ORBBaseline(DescriptorBaseline):
    """ORB (Rublee et al. 2011; ``cv2.ORB_create``), upright rBRIEF, Hamming distance. Options: :class:`ORBConfig`."""

    name = "orb"
    config_type = ORBConfig
    binary = True

    def _extractor(self, cfg: ORBConfig):
        import cv2

        return cv2.ORB_create(nfeatures=max(cfg.max_keypoints, 1), edgeThreshold=cfg.patch_size,
                              patchSize=cfg.patch_size)

    def _pad(self, cfg: ORBConfig) -> int:
        return 2 * cfg.patch_size + 2  # ORB drops keypoints within edgeThreshold (= patch_size) of the border

    def _keypoints(self, pts: np.ndarray, cfg: ORBConfig) -> list:
        import cv2

        return [cv2.KeyPoint(float(x), float(y), float(cfg.patch_size), 0.0, 0.0, 0) for x, y in pts]


def _akaze_factory():
    import cv2

    for mod in (cv2, getattr(cv2, "xfeatures2d", None)):
        if mod is not None and hasattr(mod, "AKAZE_create"):
            return mod
    return None


class AKAZEBaseline(DescriptorBaseline):
    """AKAZE (Alcantarilla et al. 2013), upright MLDB binary descriptor, Hamming distance. Options:
    :class:`AKAZEConfig`. Needs ``cv2.AKAZE_create`` (OpenCV 4) or ``cv2.xfeatures2d.AKAZE_create``
    (opencv-contrib, OpenCV 5)."""

    name = "akaze"
    config_type = AKAZEConfig
    binary = True

    def available(self) -> bool:
        return _akaze_factory() is not None

    def _extractor(self, cfg: AKAZEConfig):
        mod = _akaze_factory()
        if mod is None:
            import cv2

            raise ImportError(
                f"akaze: this OpenCV build ({cv2.__version__}) has no AKAZE (OpenCV 5 moved it to opencv-contrib: "
                "install opencv-contrib-python-headless for cv2.xfeatures2d.AKAZE_create)"
            )
        upright = getattr(mod, "AKAZE_DESCRIPTOR_MLDB_UPRIGHT", 4)
        return mod.AKAZE_create(descriptor_type=upright, threshold=float(cfg.threshold),
                                nOctaveLayers=_AKAZE_LAYERS)

    def _pad(self, cfg: AKAZEConfig) -> int:
        size = _AKAZE_BASE_SIZE * 2.0 ** (cfg.level / _AKAZE_LAYERS)
        return int(math.ceil(8.0 * size)) + 8  # MLDB pattern: 10 * (size / 2) px around the point

    def _keypoints(self, pts: np.ndarray, cfg: AKAZEConfig) -> list:
        import cv2

        size = _AKAZE_BASE_SIZE * 2.0 ** (cfg.level / _AKAZE_LAYERS)
        octave = cfg.level // _AKAZE_LAYERS
        return [cv2.KeyPoint(float(x), float(y), float(size), 0.0, 0.0, octave, cfg.level) for x, y in pts]


class FPFHBaseline(MatchingBaseline):
    """FPFH (Rusu et al. 2009; Open3D) of the back-projected depth, L2 feature distance. Options: :class:`FPFHConfig`.

    Source: the valid source pixels' points, voxel down-sampled and kept within ``normal_radius +
    feature_radius`` of a query, plus the K query points themselves (so each query has its own feature);
    normals (estimated on that cloud, oriented towards the camera) and FPFH at the queries. Target: every valid
    target pixel's point, voxel down-sampled; normals on all of them, FPFH at the candidates (points whose
    projection lies in some query's window). Match: the candidate of nearest feature among those whose
    projection is inside the query's window; the prediction is that point's projection (sub-pixel; quantised by
    the voxel: 1 cm at 2 m and fx = 575 px is ~3 px). Cost: ~4 s for a 640 x 480 DeepDeform pair, one thread.
    """

    name = "fpfh"
    config_type = FPFHConfig

    @staticmethod
    def _cloud(depth: np.ndarray, intr) -> np.ndarray:
        fx, fy, cx, cy = intr
        v, u = np.nonzero(depth > 0)
        z = depth[v, u]
        return np.stack([z * (u - cx) / fx, z * (v - cy) / fy, z], -1)

    @staticmethod
    def _features(pts: np.ndarray, indices: np.ndarray, cfg: FPFHConfig) -> np.ndarray:
        """(len(indices), 33) float32 FPFH of ``pts[indices]`` (normals towards the camera, on all of ``pts``)."""
        import open3d as o3d

        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
        pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=cfg.normal_radius, max_nn=cfg.normal_max_nn))
        pcd.orient_normals_towards_camera_location(np.zeros(3))
        param = o3d.geometry.KDTreeSearchParamHybrid(radius=cfg.feature_radius, max_nn=cfg.feature_max_nn)
        try:  # Open3D >= 0.18: features (and the SPFH they need) only at the given points
            f = np.asarray(o3d.pipelines.registration.compute_fpfh_feature(pcd, param, [int(i) for i in indices]).data)
        except TypeError:  # pragma: no cover - older Open3D: every point, then select
            f = np.asarray(o3d.pipelines.registration.compute_fpfh_feature(pcd, param).data)[:, indices]
        return np.ascontiguousarray(f.T, dtype=np.float32)

    @staticmethod
    def _downsample(pts: np.ndarray, voxel: float | None) -> np.ndarray:
        if voxel is None or len(pts) == 0:
            return pts
        import open3d as o3d

        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts)).voxel_down_sample(float(voxel))
        return np.asarray(pcd.points)

    def _match(self, data: _Inputs, cfg: FPFHConfig):
        import cv2
        from scipy.spatial import cKDTree

        H, W = data.size
        fx, fy, cx, cy = data.intrinsics
        K = len(data.px)
        zq = data.source_depth[data.pixel[:, 1], data.pixel[:, 0]]
        query = np.stack([zq * (data.px[:, 0] - cx) / fx, zq * (data.px[:, 1] - cy) / fy, zq], -1)
        # source cloud: down-sampled points that can influence a query's normal or feature, then the queries
        src = self._downsample(self._cloud(data.source_depth, data.intrinsics), cfg.voxel_size)
        reach = cfg.feature_radius + cfg.normal_radius
        if len(src):
            near, _ = cKDTree(query).query(src, distance_upper_bound=reach)
            src = src[np.isfinite(near)]
        f_src = self._features(np.concatenate([src, query]), np.arange(len(src), len(src) + K), cfg)
        # target cloud: down-sampled points projecting into some query's window
        tgt = self._downsample(self._cloud(data.target_depth, data.intrinsics), cfg.voxel_size)
        uv = np.stack([fx * tgt[:, 0] / tgt[:, 2] + cx, fy * tgt[:, 1] / tgt[:, 2] + cy], -1) if len(tgt) else \
            np.zeros((0, 2))
        inside = (uv[:, 0] >= 0) & (uv[:, 0] <= W - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= H - 1)
        cover = _window_cover(data.px, (H, W), cfg.window)
        ui = np.clip(np.floor(uv[:, 0] + 0.5), 0, W - 1).astype(int)
        vi = np.clip(np.floor(uv[:, 1] + 0.5), 0, H - 1).astype(int)
        cand = np.flatnonzero(inside & cover[vi, ui])
        if len(cand) == 0:
            return _result(np.zeros((K, 2)), np.zeros(K, dtype=bool), data.pair)
        f_tgt = self._features(tgt, cand, cfg)
        uv = uv[cand]
        j, dist = _nearest(f_src, f_tgt, _window_mask(data.px, uv, cfg.window), cv2.NORM_L2)
        ok = j >= 0
        if cfg.max_distance is not None:
            ok &= dist <= cfg.max_distance
        target = np.where(ok[:, None], uv[np.maximum(j, 0)], 0.0)
        return _result(target, ok, data.pair)


class DISBaseline(MatchingBaseline):
    """DIS optical flow (Kroeger et al. 2016; :func:`nrsfm_kit.tracking.io.dis_flow`) read bilinearly at the source
    points (``cv2.remap``): target = source + flow. Never rejects. Options: :class:`DISConfig`."""

    name = "dis"
    config_type = DISConfig

    def _match(self, data: _Inputs, cfg: DISConfig):
        import cv2

        flow = dis_flow(data.pair.source_color, data.pair.target_color, preset=cfg.preset).cpu().numpy()
        mx = data.px[:, 0].astype(np.float32).reshape(-1, 1)
        my = data.px[:, 1].astype(np.float32).reshape(-1, 1)
        f = cv2.remap(np.ascontiguousarray(flow), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        f = f.reshape(-1, 2).astype(np.float64)
        return _result(data.px + f, np.ones(len(data.px), dtype=bool), data.pair)


BASELINES: dict[str, MatchingBaseline] = {
    b.name: b for b in (SIFTBaseline(), ORBBaseline(), AKAZEBaseline(), FPFHBaseline(), DISBaseline())
}


def match_baseline(name: str, pair: RGBDPair, source_px, **options) -> tuple[torch.Tensor, torch.Tensor]:
    """``BASELINES[name].match(pair, source_px, **options)``: (target_px (K, 2) px, valid (K,) bool).

    Raises:
        ValueError: an unknown ``name`` (the message lists the registered ones), or what
            :meth:`MatchingBaseline.match` raises.
    """
    if not isinstance(name, str) or name not in BASELINES:
        raise ValueError(f"name: expected one of {sorted(BASELINES)}, found {name!r}")
    return BASELINES[name].match(pair, source_px, **options)
