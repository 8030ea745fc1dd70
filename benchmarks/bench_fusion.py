"""Benchmark of non-rigid fusion (issue 16): TSDF integration, marching cubes and the whole per-frame pipeline.

Rows, side by side in one run, float32:

- **integration**: one 480x640 depth frame into a cubic TSDF of ``n^3`` voxels (n = 128 and 256): (a) ours, rigid
  (``nrsfm_kit.kernels.tsdf.integrate(..., motion=None)``, the Warp kernel, through ``TSDFVolume.integrate``),
  (b) ours under a deformation graph (``motion=GraphMotionInput(...)``: the ``build_graph`` nodes of the frame,
  small random node motions, sigma = 5 cm, influence 2 sigma: every voxel looks up its 4 nearest nodes in a
  ``wp.HashGrid`` and is skinned), (c) the torch reference ``backend="torch"`` (rigid; only at n = 128: slow), (d)
  Open3D's ``UniformTSDFVolume(length, resolution, sdf_trunc, RGB8, origin).integrate(rgbd, intrinsic, extrinsic)``
  on the same frame (rigid, the side-by-side reference; CPU only). The frame is the source frame of
  ``synthetic_rgbd_pair(480, 640, seed=0, time_gap=0.6, t_source=1.0)`` (as bench_matching), depth masked to the
  object of interest; the cube is fitted around its points (side = largest extent + 2 x 5 cm, voxel = side / n,
  truncation 4 cm for both libraries). Each repetition integrates the frame again into the same volume (the work of
  a call does not depend on the weights). ``ratio``: median over Open3D's at the same n (on CPU; CUDA rows are also
  divided by Open3D's CPU median, the only Open3D row).
- **extraction**: marching cubes of the same volumes after one integration (untimed): ours
  ``TSDFVolume.extract_mesh()`` (Warp ``IsoSurfaceMarchingCubes`` + our weight mask, unused vertices removed,
  trilinear colours) vs Open3D ``extract_triangle_mesh()``; vertex and triangle counts reported. ``ratio``: over
  Open3D at the same n.
- **pipeline**: the whole fusion loop on CPU, ``fuse_sequence(seq, FusionConfig(correspondences=X),
  progress=False, evaluate=False)`` over ``fusion_sequence("smoke")`` (12 frames at 128x192, arm + occluder) for X in
  none, dis, nnrt, and deepdeform on its first 5 frames (slow). Before the timed runs a 2-frame warm-up (kernel
  compilation, network loading) runs in the same process. ``median_ms``: the median of the per-frame
  ``rec.seconds["total"]`` over the frames after the first (every timed run pooled); the split (``corr_ms``,
  ``track_ms``, ``integ_ms``, ``extract_ms``) is the mean per frame over the same frames (extraction runs every 5th
  frame, so it is amortised), ``cpu_ms`` the run's process CPU time over its frames. ``ratio``: over the ``none``
  row. ``x_paper``: nnrt, the correspondence time per queried keyframe (each query runs the tracker's Phi + Psi
  twice: forward and the bi-directional check) over NNRT's 27 ms per keyframe; deepdeform, the whole frame over
  DeepDeform's 2299 ms per frame (both on their authors' GPUs).

CUDA rows (integration and extraction, ours and the torch reference, tensors on the GPU) when
``torch.cuda.is_available()``; Open3D's legacy volume and the pipeline (which keeps its state on the CPU) are CPU
only.

Threads: ``--threads`` for torch (``torch.set_num_threads``, ``OMP_NUM_THREADS``) and Open3D (oneTBB, which ignores
``OMP_NUM_THREADS``: bounded by ``o3d.utility.set_max_threads`` in each row); Warp's CPU kernels are single-threaded.

Median wall time over ``--reps`` repetitions after one warm-up, median process CPU time beside it; the pipeline
rows run ``--pipeline-reps`` sequences. The frame (and its graph nodes) is made once in this process and handed to
the workers in a temporary ``.pt`` file (removed at the end); pipeline workers render the deterministic synthetic
sequence themselves (untimed). Each row runs in its own spawned worker process (as bench_matching) so that its peak
memory is its own: on CPU the peak RSS of the worker above its RSS after the imports (the volume, the frame,
workspace, networks; reset through ``/proc/self/clear_refs`` before the row), on CUDA
``torch.cuda.max_memory_allocated`` after a reset (torch's allocator only: Warp's own allocations, e.g. its
marching-cubes buffers and hash grids, are not in it). ``--in-process`` (implied by ``--quick``) runs the rows in
this process: faster, but the CPU peaks are then lower bounds.

The row groups are the functions in ``ROW_FUNCTIONS`` (Settings -> row specs, plain dicts); each spec's ``group``
names its builder in ``BUILDERS`` (spec -> the timed call and its extra fields).

Usage: ``python benchmarks/bench_fusion.py [--quick] [--reps N] [--pipeline-reps N] [--json PATH] [--threads N]
[--device auto|cpu|cuda] [--in-process] [--only integration|extraction|pipeline ...]``. ``--quick``: volumes of 48^3 and 64^3 (torch reference at 48^3) on a
120x160 frame, 2 repetitions, pipeline none and dis on 3 frames (1 run), in-process (a smoke run for tests).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from nrsfm_kit.utils.bench import (
    available_cpus,
    machine_info,
    measure_row,
    run_spawned,
)
from nrsfm_kit.utils.bench import run_in_process as _run_in_process
from nrsfm_kit.utils.io import atomic_write_json

# Neural Non-Rigid Tracking (Bozic et al., NeurIPS 2020): 27 ms per keyframe for the correspondence prediction
# (Phi + Psi), 90 ms for 5 keyframes, on its authors' GPU. DeepDeform (Bozic et al., CVPR 2020): 2299 ms per frame.
PAPER_NNRT_KEYFRAME_MS = 27.0
PAPER_NNRT_5_KEYFRAMES_MS = 90.0
PAPER_DEEPDEFORM_FRAME_MS = 2299.0
PAIR_KW = {"seed": 0, "time_gap": 0.6, "t_source": 1.0}  # synthetic_rgbd_pair(H, W, **PAIR_KW): its source frame
MARGIN_M = 0.05  # added on each side of the frame's object points to make the cube
TRUNCATION_M = 0.04  # both libraries (TSDFConfig's default, Open3D's tutorial value)
MOTION_STD = (0.02, 0.005)  # node motion of the graph rows: rotation angle (rad) and translation (m) std
SOURCES = ("none", "dis", "nnrt", "deepdeform")
GROUPS = ("integration", "extraction", "pipeline")
METHOD_NAMES = {"open3d": "Open3D UniformTSDFVolume", "ours": "ours, rigid (Warp)",
                "ours_graph": "ours, deformation graph (Warp)", "torch": "ours, torch reference (rigid)"}
EXTRACT_NAMES = {"open3d": "Open3D extract_triangle_mesh", "ours": "ours extract_mesh (Warp marching cubes + mask)"}


@dataclass
class Settings:
    """What one run measures (built from the command line by :func:`main`)."""

    devices: list[str]
    sizes: list[int] = field(default_factory=lambda: [128, 256])
    torch_sizes: list[int] = field(default_factory=lambda: [128])  # the torch reference only here (slow)
    frame_size: tuple[int, int] = (480, 640)
    sources: list[str] = field(default_factory=lambda: list(SOURCES))
    pipeline_preset: str = "smoke"
    pipeline_frames: int = 12
    deepdeform_frames: int = 5
    groups: list[str] = field(default_factory=lambda: list(GROUPS))  # the row groups run (--only)
    reps: int = 5
    pipeline_reps: int = 2
    threads: int = 1
    data_dir: str = ""  # folder of the frame file, set by main

    @property
    def frame_path(self) -> str:
        return str(Path(self.data_dir) / f"frame_{self.frame_size[0]}x{self.frame_size[1]}.pt")


# ---------------------------------------------------------------------------------------------- rows

def _base(s: Settings, group: str, device: str, method: str, **kw) -> dict:
    return {"group": group, "device": device, "method": method, "reps": s.reps, "threads": s.threads, **kw}


def integration_rows(s: Settings) -> list[dict]:
    """Per size: Open3D (the reference) first, then ours rigid, ours with the graph, the torch reference."""
    rows = []
    H, W = s.frame_size
    for n in s.sizes:
        kw = {"size": int(n), "height": H, "width_px": W, "data_path": s.frame_path}
        rows.append(_base(s, "integration", "cpu", "open3d", **kw))
        for device in s.devices:
            rows.append(_base(s, "integration", device, "ours", **kw))
            rows.append(_base(s, "integration", device, "ours_graph", **kw))
            if n in s.torch_sizes:
                rows.append(_base(s, "integration", device, "torch", **kw))
    return rows


def extraction_rows(s: Settings) -> list[dict]:
    """Per size: Open3D first, then ours on every device."""
    rows = []
    H, W = s.frame_size
    for n in s.sizes:
        kw = {"size": int(n), "height": H, "width_px": W, "data_path": s.frame_path}
        rows.append(_base(s, "extraction", "cpu", "open3d", **kw))
        rows += [_base(s, "extraction", device, "ours", **kw) for device in s.devices]
    return rows


def pipeline_rows(s: Settings) -> list[dict]:
    """``fuse_sequence`` per correspondence source on CPU (``none`` first: the reference)."""
    order = sorted(s.sources, key=lambda x: SOURCES.index(x))
    return [_base(s, "pipeline", "cpu", src, reps=s.pipeline_reps, preset=s.pipeline_preset,
                  frames=s.deepdeform_frames if src == "deepdeform" else s.pipeline_frames, warmup=0)
            for src in order]


# The row groups of a run, in order. A new group is one more function (Settings -> list of specs) + a builder.
ROW_FUNCTIONS: list[Callable[[Settings], list[dict]]] = [integration_rows, extraction_rows, pipeline_rows]


def row_specs(s: Settings) -> list[dict]:
    """The specs of the groups in ``s.groups``, in the order of :data:`ROW_FUNCTIONS`."""
    return [sp for fn in ROW_FUNCTIONS if fn.__name__.removesuffix("_rows") in s.groups for sp in fn(s)]


# ---------------------------------------------------------------------------------------------- data

def make_frame_file(path: str | Path, height: int, width: int) -> dict:
    """The source frame of ``synthetic_rgbd_pair(height, width, **PAIR_KW)`` (depth masked to the object, RGB
    (H, W, 3), intrinsics, the object points' bounding box) and its ``build_graph`` nodes, saved to ``path``
    (plain tensors, loadable with ``weights_only=True``). Returns a summary."""
    from nrsfm_kit.data.rgbd import synthetic_rgbd_pair
    from nrsfm_kit.geometry import depth_to_points
    from nrsfm_kit.graph import build_graph

    pair = synthetic_rgbd_pair(height, width, **PAIR_KW)
    d, m = pair.source_depth.float(), pair.source_mask.bool()
    depth = torch.where(m & (d > 0), d, torch.zeros_like(d))
    graph = build_graph(d, m, pair.intrinsics)
    pts, ok = depth_to_points(depth, pair.intrinsics)
    p = pts[ok & (depth > 0)]
    lo, hi = p.min(0).values.double(), p.max(0).values.double()
    torch.save({"depth": depth.contiguous(), "image": pair.source_color.float().permute(1, 2, 0).contiguous(),
                "intrinsics": pair.intrinsics.float(), "lo": lo, "hi": hi, "nodes": graph.nodes.float().contiguous(),
                "sigma": float(graph.node_coverage)}, path)
    return {"height": height, "width_px": width, "nodes": graph.num_nodes, "depth_pixels": int((depth > 0).sum()),
            "extent_m": [round(float(x), 4) for x in (hi - lo)]}


_DATA_CACHE: dict[str, dict] = {}


def load_frame(path: str) -> dict:
    d = _DATA_CACHE.get(path)
    if d is None:
        d = torch.load(path, map_location="cpu", weights_only=True)
        _DATA_CACHE[path] = d  # in-process runs read the file once
    return d


def cube(frame: dict, n: int) -> tuple[tuple[float, float, float], float, float]:
    """(origin (corner of voxel 0) m, side m, voxel size m) of the n^3 cube around the frame's object."""
    lo, hi = frame["lo"], frame["hi"]
    side = float((hi - lo).max()) + 2 * MARGIN_M
    origin = tuple(float(c) for c in ((lo + hi) / 2 - side / 2))
    return origin, side, side / n


def graph_motion(frame: dict, device: str):
    """GraphMotionInput of the frame's nodes with small random motions (seed 0), sigma = node coverage."""
    from nrsfm_kit.geometry import so3_exp
    from nrsfm_kit.kernels.tsdf import GraphMotionInput

    g = torch.Generator().manual_seed(0)
    nodes = frame["nodes"]
    N = nodes.shape[0]
    R = so3_exp(MOTION_STD[0] * torch.randn(N, 3, generator=g)).float()
    t = MOTION_STD[1] * torch.randn(N, 3, generator=g)
    sigma = float(frame["sigma"])
    return GraphMotionInput(nodes.to(device), R.contiguous().to(device), t.to(device), sigma, 2.0 * sigma)


# ---------------------------------------------------------------------------------------------- builders
# builder(spec) -> (once: the timed call, extra: timings dict -> extra row fields)

def _ours_volume(frame: dict, n: int, device: str):
    from nrsfm_kit.fusion.volume import TSDFConfig, TSDFVolume

    origin, _, vs = cube(frame, n)
    return TSDFVolume.create((n, n, n), origin, TSDFConfig(voxel_size=vs, truncation=TRUNCATION_M), device=device)


def _open3d_volume(frame: dict, n: int):
    """(Open3D UniformTSDFVolume, rgbd image, intrinsic) of the frame for the n^3 cube."""
    import numpy as np
    import open3d as o3d

    origin, side, _ = cube(frame, n)
    integ = o3d.pipelines.integration
    vol = integ.UniformTSDFVolume(length=side, resolution=int(n), sdf_trunc=TRUNCATION_M,
                                  color_type=integ.TSDFVolumeColorType.RGB8, origin=np.asarray(origin, dtype=np.float64))
    rgb = np.ascontiguousarray((frame["image"].numpy() * 255.0).round().clip(0, 255).astype(np.uint8))
    depth = np.ascontiguousarray(frame["depth"].numpy().astype(np.float32))
    rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
        o3d.geometry.Image(rgb), o3d.geometry.Image(depth), depth_scale=1.0, depth_trunc=1e3,
        convert_rgb_to_intensity=False)
    H, W = depth.shape
    fx, fy, cx, cy = (float(v) for v in frame["intrinsics"])
    return vol, rgbd, o3d.camera.PinholeCameraIntrinsic(W, H, fx, fy, cx, cy)


def _volume_fields(frame: dict, n: int) -> dict:
    _, side, vs = cube(frame, n)
    return {"voxels": n**3, "side_m": side, "voxel_mm": vs * 1e3}


def build_integration(spec: dict) -> tuple[Callable[[], object], Callable[[dict], dict]]:
    """One frame into the n^3 volume: Open3D, ours rigid / with the graph, or the torch reference."""
    import numpy as np

    frame = load_frame(spec["data_path"])
    n, dev, method = int(spec["size"]), spec["device"], spec["method"]
    fields_ = _volume_fields(frame, n)
    if method == "open3d":
        vol, rgbd, intr = _open3d_volume(frame, n)
        extrinsic = np.eye(4)

        def once():
            vol.integrate(rgbd, intr, extrinsic)

        return once, lambda t: {**fields_, "nodes": 0, "updated_voxels": None}
    vol = _ours_volume(frame, n, dev)
    depth, image, intr = frame["depth"].to(dev), frame["image"].to(dev), frame["intrinsics"].to(dev)
    pose = torch.eye(4, device=dev)
    motion = graph_motion(frame, dev) if method == "ours_graph" else None
    backend = "torch" if method == "torch" else "warp"
    state: dict = {}

    def once():
        state["updated"] = vol.integrate(depth, image, intr, pose, motion, backend=backend)

    def extra(t: dict) -> dict:
        return {**fields_, "nodes": 0 if motion is None else int(motion.nodes.shape[0]),
                "updated_voxels": int(state["updated"].sum())}

    return once, extra


def build_extraction(spec: dict) -> tuple[Callable[[], object], Callable[[dict], dict]]:
    """Marching cubes of the n^3 volume after one (untimed) integration of the frame."""
    import numpy as np

    frame = load_frame(spec["data_path"])
    n, dev = int(spec["size"]), spec["device"]
    fields_ = _volume_fields(frame, n)
    state: dict = {}
    if spec["method"] == "open3d":
        vol, rgbd, intr = _open3d_volume(frame, n)
        vol.integrate(rgbd, intr, np.eye(4))

        def once():
            state.clear()
            state["mesh"] = vol.extract_triangle_mesh()

        def extra(t: dict) -> dict:
            m = state["mesh"]
            return {**fields_, "vertices": len(m.vertices), "triangles": len(m.triangles)}

        return once, extra
    vol = _ours_volume(frame, n, dev)
    vol.integrate(frame["depth"].to(dev), frame["image"].to(dev), frame["intrinsics"].to(dev))

    def once():
        state.clear()
        state["mesh"] = vol.extract_mesh()

    def extra(t: dict) -> dict:
        m = state["mesh"]
        return {**fields_, "vertices": m.num_vertices, "triangles": int(m.faces.shape[0])}

    return once, extra


def _split(records: list, frames_per_run: int) -> dict:
    """Median total and mean split (ms per frame) over the records of frames >= 1."""
    recs = [r for r in records if r.frame >= 1]
    if not recs:
        raise RuntimeError("pipeline: expected at least 2 frames per run (frame 0 only builds the model)")
    total = [r.seconds["total"] for r in recs]

    def mean(key: str) -> float:
        return 1e3 * sum(r.seconds.get(key, 0.0) for r in recs) / len(recs)

    queried = sum(r.keyframes_used + r.keyframes_ignored for r in recs)
    corr = mean("correspondences")
    return {"frame_ms_median": 1e3 * statistics.median(total), "frame_ms_mean": 1e3 * statistics.fmean(total),
            "corr_ms": corr, "track_ms": mean("tracking"), "integ_ms": mean("integration"),
            "extract_ms": mean("extraction"), "keyframes_per_frame": queried / len(recs),
            "corr_ms_per_keyframe": corr * len(recs) / queried if queried else None,
            "timed_frames": len(recs), "frames_per_run": frames_per_run,
            "nodes_final": int(records[-1].num_nodes),
            "keyframe_correspondences": statistics.fmean(r.keyframe_correspondences for r in recs)}


def build_pipeline(spec: dict) -> tuple[Callable[[], object], Callable[[dict], dict]]:
    """``fuse_sequence`` of the preset (first ``frames`` frames) with ``spec['method']`` correspondences; a
    2-frame warm-up run first (compiles the kernels, loads the networks)."""
    from nrsfm_kit.fusion.pipeline import FusionConfig
    from nrsfm_kit.fusion.run import fuse_sequence
    from nrsfm_kit.fusion.synthetic import fusion_sequence

    frames = int(spec["frames"])
    seq = fusion_sequence(spec["preset"], num_frames=frames)
    warm = fusion_sequence(spec["preset"], num_frames=2)
    cfg = FusionConfig(correspondences=spec["method"])
    fuse_sequence(warm, cfg, progress=False, evaluate=False)
    runs: list = []

    def once():
        runs.append(fuse_sequence(seq, cfg, progress=False, evaluate=False).records)
        del runs[:-int(spec["reps"])]

    def extra(t: dict) -> dict:
        out = _split([r for recs in runs for r in recs], frames)
        out["cpu_ms_per_frame"] = t["cpu"] * 1e3 / frames
        out["run_s"] = t["wall"]
        out["height"], out["width_px"] = (int(x) for x in seq.depths.shape[-2:])
        return out

    return once, extra


BUILDERS: dict[str, Callable[[dict], tuple[Callable[[], object], Callable[[dict], dict]]]] = {
    "integration": build_integration, "extraction": build_extraction, "pipeline": build_pipeline}


# ---------------------------------------------------------------------------------------------- measurement

def measure(spec: dict) -> dict:
    """Time one row spec (median over its reps after the warm-up) and its peak memory; returns the row."""
    import open3d  # (imports and Warp's runtime belong to the baseline)

    import nrsfm_kit.fusion.pipeline  # noqa: F401
    import nrsfm_kit.fusion.run  # noqa: F401
    import nrsfm_kit.fusion.volume  # noqa: F401
    import nrsfm_kit.kernels.tsdf  # noqa: F401
    from nrsfm_kit.warp_setup import init as warp_init

    warp_init()
    o3d_threads = _limit_open3d_threads(open3d, int(spec["threads"]))
    row = measure_row(spec, BUILDERS[spec["group"]], warmup=int(spec.get("warmup", 1)))
    row["open3d_threads"] = o3d_threads
    if spec["group"] == "pipeline":  # per frame, not per run
        row["median_ms"], row["cpu_ms"] = row["frame_ms_median"], row["cpu_ms_per_frame"]
    return row


def _limit_open3d_threads(o3d, threads: int) -> int | None:
    """Bound Open3D's CPU threads (it runs on oneTBB, which ignores ``OMP_NUM_THREADS``: without this its rows use
    every core). Returns the limit in effect (None: this Open3D has no ``utility.set_max_threads``)."""
    if not hasattr(o3d.utility, "set_max_threads"):
        return None
    o3d.utility.set_max_threads(int(threads))
    return int(o3d.utility.get_max_threads())


def run_isolated(spec: dict) -> dict:
    """:func:`measure` in a fresh spawned process (its own peak memory)."""
    return run_spawned(__file__, spec)


def run_in_process(spec: dict) -> dict:
    return _run_in_process(measure, spec)


# ---------------------------------------------------------------------------------------------- report

def add_ratios(rows: list[dict]) -> None:
    """``ratio`` = median / the reference's median: integration and extraction, Open3D (CPU) at the same size;
    pipeline, the ``none`` source. ``x_paper``: nnrt, correspondence ms per keyframe / 27 ms; deepdeform, frame ms
    / 2299 ms; None elsewhere."""
    ref: dict = {}
    for r in rows:
        if "median_ms" not in r:
            continue
        if r["group"] in ("integration", "extraction") and r["method"] == "open3d":
            ref.setdefault((r["group"], r["size"]), r["median_ms"])
        elif r["group"] == "pipeline" and r["method"] == "none":
            ref.setdefault(("pipeline",), r["median_ms"])
    for r in rows:
        if "median_ms" not in r:
            continue
        key = ("pipeline",) if r["group"] == "pipeline" else (r["group"], r["size"])
        base = ref.get(key)
        r["ratio"] = r["median_ms"] / base if base else None
        r["x_paper"], r["x_paper_of"] = None, None
        if r["group"] == "pipeline" and r["method"] == "nnrt" and r.get("corr_ms_per_keyframe"):
            r["x_paper"] = r["corr_ms_per_keyframe"] / PAPER_NNRT_KEYFRAME_MS
            r["x_paper_of"] = "correspondence ms per keyframe / NNRT's 27 ms"
        elif r["group"] == "pipeline" and r["method"] == "deepdeform":
            r["x_paper"] = r["median_ms"] / PAPER_DEEPDEFORM_FRAME_MS
            r["x_paper_of"] = "frame ms / DeepDeform's 2299 ms"


def _fmt(x, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


TABLE_HEAD = ("| group | method | device | size | median ms | CPU ms | ratio | x paper | peak MiB | reps | notes |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|")


def _method(r: dict) -> str:
    if r["group"] == "integration":
        return METHOD_NAMES[r["method"]]
    if r["group"] == "extraction":
        return EXTRACT_NAMES[r["method"]]
    return f"fuse_sequence, correspondences={r['method']}"


def _size(r: dict) -> str:
    if r["group"] == "pipeline":
        return f"{r.get('frames')} frames {r.get('height', '?')}x{r.get('width_px', '?')}"
    return f"{r['size']}^3 ({_fmt(r.get('voxel_mm'), '.1f')} mm)"


def _notes(r: dict) -> str:
    if r["group"] == "integration":
        n = f"{r['updated_voxels']:,} voxels updated" if r.get("updated_voxels") is not None else ""
        return n + (f", {r['nodes']} nodes" if r.get("nodes") else "")
    if r["group"] == "extraction":
        return f"{r.get('vertices', 0):,} vertices, {r.get('triangles', 0):,} triangles"
    n = (f"per frame: corr {r['corr_ms']:.0f} + track {r['track_ms']:.0f} + integ {r['integ_ms']:.0f} + extract "
         f"{r['extract_ms']:.0f} ms (mean); {r['timed_frames']} frames timed; {r['nodes_final']} nodes")
    if r.get("corr_ms_per_keyframe"):
        n += f"; {r['corr_ms_per_keyframe']:.0f} ms per keyframe ({r['keyframes_per_frame']:.1f} per frame)"
    return n


def table_line(r: dict) -> str:
    """One markdown row."""
    head = f"| {r['group']} | {_method(r)} | {r['device']} | {_size(r)} "
    if "error" in r:
        return head + f"| failed: {r['error']} | | | | | | |"
    return head + (f"| {r['median_ms']:.1f} | {r['cpu_ms']:.1f} | {_fmt(r.get('ratio'), '.2f')} "
                   f"| {_fmt(r.get('x_paper'), '.2f')} | {r['peak_mib']:.0f} | {r['reps']} | {_notes(r)} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="48^3 / 64^3 volumes on a 120x160 frame, 2 repetitions, pipeline none + dis on 3 frames, "
                         "in-process")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per row (median), after 1 warm-up")
    ap.add_argument("--pipeline-reps", type=int, default=2,
                    help="timed sequence runs per pipeline row (frames pooled), after a 2-frame warm-up")
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="write every row to this JSON file")
    ap.add_argument("--threads", type=int, default=available_cpus(),
                    help="torch (OpenMP) and Open3D (TBB, o3d.utility.set_max_threads) threads; default: the CPUs "
                         "this process may run on")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto: cpu, and cuda as well when available (integration / extraction rows)")
    ap.add_argument("--in-process", action="store_true", help="measure rows in this process (no workers)")
    ap.add_argument("--only", action="append", choices=GROUPS, default=None,
                    help="run only this row group (repeatable; default: all)")
    args, _ = ap.parse_known_args(argv)
    if args.reps < 1 or args.pipeline_reps < 1 or args.threads < 1:
        raise ValueError(f"--reps, --pipeline-reps, --threads: expected >= 1, found {args.reps}, "
                         f"{args.pipeline_reps}, {args.threads}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: expected a CUDA device, found none")
    devices = {"auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else []), "cpu": ["cpu"],
               "cuda": ["cuda"]}[args.device]
    if args.quick:
        s = Settings(devices=devices, sizes=[48, 64], torch_sizes=[48], frame_size=(120, 160),
                     sources=["none", "dis"], pipeline_frames=3, deepdeform_frames=3, reps=2, pipeline_reps=1,
                     threads=args.threads)
    else:
        s = Settings(devices=devices, reps=args.reps, pipeline_reps=args.pipeline_reps, threads=args.threads)
    if args.only:
        s.groups = [g for g in GROUPS if g in args.only]
    in_process = args.in_process or args.quick
    old_threads, old_env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(s.threads)  # inherited by the workers (torch; Open3D: see measure)
    torch.set_num_threads(s.threads)
    rows: list[dict] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench_fusion_") as tmp:
            s.data_dir = tmp
            machine = machine_info(s.threads)
            date = datetime.date.today().isoformat()
            print(f"# bench_fusion ({', '.join(devices)}; {machine['cpu']}, {machine['cpus_available']} CPUs "
                  f"available, {s.threads} torch / Open3D threads, Warp CPU kernels single-threaded; "
                  f"{machine['gpu'] or 'no GPU'}; torch {machine['torch']}, Warp {machine['warp']}; load average "
                  f"{_fmt(machine['load_average'], '.2f')}; {date})\n")
            specs = row_specs(s)
            frame = None
            if any(sp["group"] != "pipeline" for sp in specs):
                t0 = time.perf_counter()
                H, W = s.frame_size
                frame = make_frame_file(s.frame_path, H, W)
                frame["seconds"] = time.perf_counter() - t0
                print(f"frame {H}x{W}: source of synthetic_rgbd_pair(seed=0, time_gap=0.6, t_source=1.0), "
                      f"{frame['depth_pixels']} object depth pixels, extent {frame['extent_m']} m, graph of "
                      f"{frame['nodes']} nodes ({frame['seconds']:.1f} s, not timed)")
            print(f"\nfloat32, median of {s.reps} after 1 warm-up (pipeline: {s.pipeline_reps} run(s) after a "
                  f"2-frame warm-up, per-frame median), {'in-process' if in_process else 'one spawned worker per row'}"
                  f"\n")
            run = run_in_process if in_process else run_isolated
            print(TABLE_HEAD)
            for spec in specs:  # a group lists each reference row before the rows compared with it
                row = run(spec)
                row["load"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
                rows.append(row)
                add_ratios(rows)
                print(table_line(row), flush=True)
            _DATA_CACHE.clear()
        s.data_dir = ""
        print(f"\nPapers (their GPUs): NNRT {PAPER_NNRT_KEYFRAME_MS:g} ms per keyframe ({PAPER_NNRT_5_KEYFRAMES_MS:g} "
              f"ms for 5), DeepDeform {PAPER_DEEPDEFORM_FRAME_MS:g} ms per frame.")
        if "cuda" not in devices:
            print("No CUDA device: the GPU rows were not run.")
        if args.json is not None:
            atomic_write_json(args.json, {
                "benchmark": "bench_fusion", "date": date, "machine": machine,
                "command": " ".join(["benchmarks/bench_fusion.py"] + (argv if argv is not None else sys.argv[1:])),
                "settings": asdict(s), "in_process": in_process, "frame": frame, "rows": rows,
                "paper": {"nnrt_keyframe_ms": PAPER_NNRT_KEYFRAME_MS, "nnrt_5_keyframes_ms": PAPER_NNRT_5_KEYFRAMES_MS,
                          "deepdeform_frame_ms": PAPER_DEEPDEFORM_FRAME_MS},
                "pair_kwargs": PAIR_KW, "truncation_m": TRUNCATION_M, "margin_m": MARGIN_M})
            print(f"\nrows written to {args.json}")
    finally:
        _DATA_CACHE.clear()
        o3d = sys.modules.get("open3d")
        if in_process and o3d is not None and hasattr(o3d.utility, "set_max_threads"):
            o3d.utility.set_max_threads(0)  # measure() limited this process's Open3D threads: remove the limit
        torch.set_num_threads(old_threads)
        if old_env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old_env
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    rc = main()
    if rc:  # a clean exit raises nothing, so benchmarks/run_all.py (runpy) goes on to the next script
        sys.exit(rc)
