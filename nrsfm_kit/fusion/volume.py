"""The canonical model of non-rigid fusion: a TSDF on a uniform voxel grid, integration, marching cubes.

DynamicFusion (Newcombe, Fox, Seitz, CVPR 2015) and the reconstruction pipelines of DeepDeform (sec. 4) and
Neural Non-Rigid Tracking (sec. 4.5, App. D.3) keep the object's shape in a *canonical* truncated signed
distance field F (KinectFusion's projective TSDF, Newcombe et al. 2011) and move it to each live frame with the
embedded deformation graph:

- :class:`TSDFVolume` holds F (normalised to [-1, 1]), the weights W and the colours C of an (nx, ny, nz) grid
  of ``voxel_size`` voxels (voxel centres at ``origin + (idx + 1/2) voxel_size``, Open3D's convention);
- :meth:`TSDFVolume.integrate` fuses one RGB-D frame: every voxel centre is warped by the graph (its own 4
  nearest nodes within the influence radius, Gaussian skinning), posed into the camera, projected, and its F
  and C updated by the capped running average (maths and kernel: :mod:`warp_kernels.tsdf`, bridge and torch
  reference: :mod:`nrsfm_kit.kernels.tsdf`); voxels without a node within reach are not updated;
- :meth:`TSDFVolume.extract_mesh` is marching cubes on F = 0: Warp's ``wp.geometry.IsoSurfaceMarchingCubes``
  (we chose it over scikit-image / Open3D because it is the suite's kernel library, runs on CPU and CUDA, and
  works on our own grid without copying it into another library's volume type). Marching cubes knows nothing
  of weights, so a triangle is kept only when both grid corners of each of its vertices' edges were observed
  (W > 0) with at least ``min_weight``: this removes the spurious surfaces between observed and never-observed
  voxels (what the ``mask`` argument of scikit-image's marching cubes does). Vertex colours are the
  trilinear interpolation of C.

Defaults (:class:`TSDFConfig`): voxel size 1 cm and truncation 4 cm are Open3D's RGB-D integration tutorial
values rounded (``voxel_length = 4 / 512`` m ~ 7.8 mm, ``sdf_trunc = 0.04`` m), a few voxels of truncation as
KinectFusion recommends; the weight cap 64 is our choice (DeepDeform states the exponential moving average but
not its constant): after 64 frames new observations keep a weight of 1/65 each.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from nrsfm_kit.kernels.tsdf import GraphMotionInput, VolumeGrid, integrate
from nrsfm_kit.utils.checks import check_positive, check_tensor

__all__ = ["TSDFConfig", "TSDFVolume", "TriangleMesh", "volume_bytes", "available_memory_bytes",
           "marching_cubes", "vertex_normals"]

_BYTES_PER_VOXEL = 4 + 4 + 12  # F, W float32 + C 3 x float32


@dataclass
class TSDFConfig:
    """Voxel grid settings (see the module docstring for the sources of the defaults)."""

    voxel_size: float = 0.01  # metres
    truncation: float = 0.04  # metres (eta beyond -truncation: not integrated; F = min(1, eta / truncation))
    max_weight: float = 64.0  # cap of W (running average -> exponential moving average)
    margin: float = 0.15  # metres added around the first frame's object when the grid is fitted to it
    max_voxels: int = 512**3  # refuse larger grids (a typo in voxel_size would otherwise fill the memory)
    min_weight: float = 1.0  # extraction: corners with W below it count as unobserved

    def __post_init__(self) -> None:
        check_positive("voxel_size", self.voxel_size)
        check_positive("truncation", self.truncation)
        check_positive("max_weight", self.max_weight)
        check_positive("margin", self.margin, strict=False)
        check_positive("min_weight", self.min_weight, strict=False)
        if not isinstance(self.max_voxels, int) or self.max_voxels < 8:
            raise ValueError(f"max_voxels: expected an int >= 8, found {self.max_voxels!r}")
        if self.truncation < self.voxel_size:
            raise ValueError(f"truncation: expected at least one voxel ({self.voxel_size} m), found {self.truncation}")


class TriangleMesh(NamedTuple):
    """A triangle mesh: vertices (V, 3) metres, faces (F, 3) int64, colours (V, 3) in [0, 1] (or None)."""

    vertices: torch.Tensor
    faces: torch.Tensor
    colors: torch.Tensor | None = None

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])


def volume_bytes(shape: tuple[int, int, int]) -> int:
    """Bytes of the TSDF state (F, W, C as float32) of a grid of ``shape`` voxels."""
    return int(np.prod([int(s) for s in shape])) * _BYTES_PER_VOXEL


def available_memory_bytes(device: torch.device | str = "cpu") -> int | None:
    """Free memory of ``device`` in bytes (MemAvailable on Linux CPUs, cudaMemGetInfo on CUDA); None if unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _gib(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


@dataclass
class TSDFVolume:
    """TSDF state of a uniform grid (float32 tensors on one device).

    Attributes:
        sdf: (nx, ny, nz) normalised signed distance F in [-1, 1] (1 where never observed).
        weight: (nx, ny, nz) integration weights W (0 = never observed).
        color: (nx, ny, nz, 3) RGB in [0, 1].
        origin: (3,) metres, corner of voxel (0, 0, 0) in the canonical frame.
        config: :class:`TSDFConfig`.
        frames: number of integrated frames.
    """

    sdf: torch.Tensor
    weight: torch.Tensor
    color: torch.Tensor
    origin: tuple[float, float, float]
    config: TSDFConfig = field(default_factory=TSDFConfig)
    frames: int = 0

    # --- construction ----------------------------------------------------------------------------------------

    @classmethod
    def create(cls, shape, origin, config: TSDFConfig | None = None, *, device="cpu") -> TSDFVolume:
        """An empty volume of ``shape`` = (nx, ny, nz) voxels with voxel (0, 0, 0)'s corner at ``origin`` (metres).

        Raises:
            ValueError: a shape that is not 3 ints >= 2, more voxels than ``config.max_voxels``, or a grid whose
                state would not fit in the free memory of ``device`` (the message gives the size it needs).
        """
        cfg = TSDFConfig() if config is None else config
        if not isinstance(cfg, TSDFConfig):
            raise ValueError(f"config: expected a TSDFConfig, found {type(cfg).__name__}")
        shape = tuple(int(s) for s in shape) if hasattr(shape, "__len__") else ()
        if len(shape) != 3 or min(shape) < 2:
            raise ValueError(f"shape: expected 3 voxel counts >= 2 (nx, ny, nz), found {shape!r}")
        origin = tuple(float(o) for o in origin)
        if len(origin) != 3 or not all(math.isfinite(o) for o in origin):
            raise ValueError(f"origin: expected 3 finite metres, found {origin!r}")
        n = int(np.prod(shape))
        need = volume_bytes(shape)
        if n > cfg.max_voxels:
            raise ValueError(f"shape: expected at most config.max_voxels = {cfg.max_voxels} voxels, found {shape} = "
                             f"{n} voxels (it would need {_gib(need)}); raise voxel_size or max_voxels")
        free = available_memory_bytes(device)
        if free is not None and need > 0.8 * free:
            raise ValueError(f"shape: a {shape} voxel grid does not fit in memory: it needs {_gib(need)} for the TSDF "
                             f"state, {_gib(free)} are free on {device}; raise voxel_size (now {cfg.voxel_size} m)")
        return cls(torch.ones(shape, device=device), torch.zeros(shape, device=device),
                   torch.zeros(*shape, 3, device=device), origin, cfg)

    @classmethod
    def around(cls, points: torch.Tensor, config: TSDFConfig | None = None, *, device="cpu") -> TSDFVolume:
        """A volume covering the bounding box of ``points`` (P, 3) metres plus ``config.margin`` on each side."""
        cfg = TSDFConfig() if config is None else config
        check_tensor("points", points, ("P", 3))
        if points.shape[0] == 0:
            raise ValueError("points: expected at least one point to fit the volume around, found none")
        lo = points.min(0).values.double() - cfg.margin
        hi = points.max(0).values.double() + cfg.margin
        shape = tuple(int(s) for s in torch.ceil((hi - lo) / cfg.voxel_size - 1e-4).clamp(min=2).long().tolist())
        return cls.create(shape, tuple(lo.tolist()), cfg, device=device)

    # --- properties -----------------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.sdf.shape)

    @property
    def grid(self) -> VolumeGrid:
        return VolumeGrid(self.origin, float(self.config.voxel_size))

    @property
    def nbytes(self) -> int:
        return volume_bytes(self.shape)

    def observed(self) -> torch.Tensor:
        """(nx, ny, nz) bool, voxels with W > 0."""
        return self.weight > 0

    # --- integration / extraction -----------------------------------------------------------------------------

    def integrate(self, depth: torch.Tensor, color: torch.Tensor, intrinsics, pose: torch.Tensor | None = None,
                  motion: GraphMotionInput | None = None, *, backend: str = "warp") -> torch.Tensor:
        """Fuse one frame (see :func:`nrsfm_kit.kernels.tsdf.integrate`).

        Args:
            depth: (H, W) metres (<= 0 or non-finite = invalid; mask the object beforehand).
            color: (3, H, W) or (H, W, 3) RGB in [0, 1].
            intrinsics: (4,) fx, fy, cx, cy pixels (or 3x3 / 4x4).
            pose: (4, 4) canonical -> camera transform (identity by default).
            motion: the graph deformation of the canonical voxels, or None (rigid / static).
            backend: ``"warp"`` or ``"torch"``.

        Returns:
            (nx, ny, nz) bool, the updated voxels.
        """
        from nrsfm_kit.geometry import as_intrinsics

        dev = self.sdf.device
        check_tensor("depth", depth, ("H", "W"), finite=False)
        H, W = depth.shape
        if color.dim() == 3 and color.shape[0] == 3 and color.shape[-1] != 3:
            color = color.permute(1, 2, 0)
        check_tensor("color", color, (H, W, 3))
        intr = as_intrinsics(intrinsics, dtype=torch.float32, device=dev)
        pose = torch.eye(4, device=dev) if pose is None else pose.to(device=dev, dtype=torch.float32)
        upd = integrate(self.sdf, self.weight, self.color, depth.to(dev, torch.float32).contiguous(),
                        color.to(dev, torch.float32).contiguous(), intr, pose, self.grid,
                        self.config.truncation, self.config.max_weight, motion, backend=backend)
        self.frames += 1
        return upd

    def extract_mesh(self, min_weight: float | None = None) -> TriangleMesh:
        """Marching cubes on F = 0 with unobserved corners masked (module docstring); canonical frame, metres."""
        return marching_cubes(self.sdf, self.weight, self.color, self.grid,
                              self.config.min_weight if min_weight is None else min_weight)

    # --- checkpoints ----------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"sdf": self.sdf.cpu(), "weight": self.weight.cpu(), "color": self.color.cpu(),
                "origin": list(self.origin), "config": vars(self.config).copy(), "frames": self.frames}

    @classmethod
    def from_state_dict(cls, state: dict, device="cpu") -> TSDFVolume:
        try:
            cfg = TSDFConfig(**state["config"])
            vol = cls(state["sdf"].to(device), state["weight"].to(device), state["color"].to(device),
                      tuple(float(o) for o in state["origin"]), cfg, int(state["frames"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"state: expected a TSDFVolume state dict, found keys {sorted(state)} ({exc})") from None
        if vol.weight.shape != vol.sdf.shape or vol.color.shape != (*vol.sdf.shape, 3):
            raise ValueError(f"state: inconsistent shapes sdf {tuple(vol.sdf.shape)}, weight "
                             f"{tuple(vol.weight.shape)}, color {tuple(vol.color.shape)}")
        return vol


# ==================================================================================================
# marching cubes
# ==================================================================================================


def _trilinear(values: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Trilinear interpolation of (nx, ny, nz, C) values at continuous voxel-centre coordinates g (V, 3)."""
    shape = torch.tensor(values.shape[:3], device=g.device)
    g0 = torch.floor(g).long()
    f = g - g0.to(g.dtype)
    out = torch.zeros(g.shape[0], values.shape[-1], dtype=values.dtype, device=g.device)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                idx = torch.minimum(torch.clamp(g0 + torch.tensor([dx, dy, dz], device=g.device), min=0), shape - 1)
                w = ((f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1])
                     * (f[:, 2] if dz else 1 - f[:, 2]))
                out += w.unsqueeze(-1) * values[idx[:, 0], idx[:, 1], idx[:, 2]]
    return out


def marching_cubes(sdf: torch.Tensor, weight: torch.Tensor, color: torch.Tensor | None, grid: VolumeGrid,
                   min_weight: float = 1.0) -> TriangleMesh:
    """Zero level set of a TSDF as a triangle mesh (Warp's ``IsoSurfaceMarchingCubes``), observed cells only.

    Args:
        sdf: (nx, ny, nz) float32. weight: (nx, ny, nz). color: (nx, ny, nz, 3) or None. grid: the voxel grid.
        min_weight: grid corners with a weight below it (or 0) are unobserved: triangles touching an edge with
            such a corner are dropped.

    Returns:
        :class:`TriangleMesh` in metres (vertex colours trilinear in ``color``; None without colours); unused
        vertices are removed. An empty mesh (0 vertices) when nothing crosses zero.
    """
    import warp as wp

    from nrsfm_kit.kernels._bridge import warp_device, wview

    check_tensor("sdf", sdf, ("X", "Y", "Z"), finite=True)
    check_tensor("weight", weight, tuple(sdf.shape))
    dev = sdf.device
    nx, ny, nz = sdf.shape
    vs = float(grid.voxel_size)
    empty = TriangleMesh(torch.zeros(0, 3, device=dev), torch.zeros(0, 3, dtype=torch.int64, device=dev),
                         None if color is None else torch.zeros(0, 3, device=dev))
    observed = weight >= max(float(min_weight), 1e-12)
    if not bool(observed.any()):
        return empty
    # unobserved voxels: F = 1 (free); their triangles are removed below in any case
    field = torch.where(observed, sdf, torch.ones_like(sdf)).float().contiguous()
    warp_device(field)
    import warp.geometry  # noqa: F401  (registers wp.geometry)

    verts, idx = wp.geometry.IsoSurfaceMarchingCubes.extract(wview(field), 0.0, lower=wp.vec3(0.0, 0.0, 0.0),
                                                             upper=wp.vec3(float(nx - 1), float(ny - 1), float(nz - 1)))
    g = wp.to_torch(verts).reshape(-1, 3).to(dev).clone()  # continuous voxel indices
    faces = wp.to_torch(idx).reshape(-1, 3).to(dev).long().clone()
    if faces.numel() == 0:
        return empty
    # each vertex lies on one grid edge: the axis with the fractional coordinate
    frac = (g - torch.round(g)).abs()
    axis = frac.argmax(1)
    c0 = torch.round(g).long()
    c0[torch.arange(len(g)), axis] = torch.floor(g[torch.arange(len(g)), axis]).long()
    c1 = c0.clone()
    c1[torch.arange(len(g)), axis] += 1
    lim = torch.tensor([nx - 1, ny - 1, nz - 1], device=dev)
    c0, c1 = torch.minimum(c0.clamp(min=0), lim), torch.minimum(c1.clamp(min=0), lim)
    ok_v = observed[c0[:, 0], c0[:, 1], c0[:, 2]] & observed[c1[:, 0], c1[:, 1], c1[:, 2]]
    faces = faces[ok_v[faces].all(1)]
    if faces.numel() == 0:
        return empty
    used = torch.unique(faces)
    remap = torch.full((len(g),), -1, dtype=torch.int64, device=dev)
    remap[used] = torch.arange(len(used), device=dev)
    g = g[used]
    faces = remap[faces]
    vertices = torch.as_tensor(grid.origin, dtype=torch.float32, device=dev) + (g + 0.5) * vs
    cols = None if color is None else _trilinear(color.float(), g).clamp(0, 1)
    return TriangleMesh(vertices, faces, cols)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (V, 3) of a triangle mesh (0 for isolated vertices).

    Marching cubes orients faces consistently; the sign is fixed by the caller (e.g. towards the camera).
    """
    check_tensor("vertices", vertices, ("V", 3))
    n = torch.zeros_like(vertices)
    if faces.numel():
        a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
        fn = torch.linalg.cross(b - a, c - a)
        for k in range(3):
            n.index_add_(0, faces[:, k], fn)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
