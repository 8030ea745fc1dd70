"""A whole sequence through non-rigid fusion: submission meshes, DeepDeform metrics, checkpoints and resume.

:func:`fuse_sequence` drives :class:`~nrsfm_kit.fusion.pipeline.NonRigidFusion` over a
:class:`~nrsfm_kit.data.deepdeform_sequence.DeepDeformSequence` (loaded from a DeepDeform folder or synthetic),
with a tqdm bar over the frames. At the end of each 100-frame segment (and of the sequence) the canonical mesh of
that moment is warped into every frame of the segment with the frame's own node motion (nodes inserted later in
the segment get the motion the warp field had at their position then, the rule used when they were inserted),
so one segment's meshes share vertex count and order (DeepDeform's submission layout). With ``out_dir``:

- ``meshes/{seq}_{segment_end:06d}_{frame:06d}.ply`` per frame (binary PLY with colours, atomic writes);
- ``canonical.ply``: the final canonical mesh;
- ``state.pt``: a checkpoint every ``checkpoint_every`` frames and after each segment's meshes, holding the
  fusion state and the motions of the open segment; a run started again on the same folder resumes after the
  last checkpointed frame (the frames after it are recomputed and their files rewritten under the same names:
  nothing is lost or duplicated). A checkpoint of another sequence, size or configuration is refused;
- ``result.json``: configuration, per-frame records, the metrics when the sequence has labels / masks.

Metrics (:mod:`nrsfm_kit.metrics.reconstruction`, DeepDeform's definitions): the geometry error on every frame
with a mask, the deformation error on every annotated pair whose two frames lie in one segment (assigned to the
target frame), both averaged per segment (capped at 0.30 m) and reported in cm. The benchmark erodes masks by
5 / 2 iterations at 640 x 480; on smaller frames the iterations scale with the width (``erosion_scale``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nrsfm_kit.fusion.correspondences import CorrespondenceSource
from nrsfm_kit.fusion.graph import CanonicalGraph
from nrsfm_kit.fusion.pipeline import FrameRecord, FusionConfig, NonRigidFusion
from nrsfm_kit.fusion.volume import TriangleMesh
from nrsfm_kit.kernels.warp_field import warp_points

__all__ = ["FusionResult", "fuse_sequence", "motion_for_nodes", "segment_meshes", "evaluate_meshes",
           "STATE_FILE", "RESULT_FILE"]

STATE_FILE = "state.pt"
RESULT_FILE = "result.json"
_STATE_FORMAT = "nrsfm-kit-fuse-run-1"


@dataclass
class FusionResult:
    """Output of :func:`fuse_sequence`.

    Attributes:
        records: one :class:`FrameRecord` per processed frame (motions included).
        meshes: frame index -> :class:`TriangleMesh` of the frame (live mesh of its segment's canonical mesh).
        canonical: the final canonical mesh.
        report: :class:`~nrsfm_kit.metrics.reconstruction.ReconstructionReport` or None (no labels / masks).
        fusion: the final :class:`NonRigidFusion` state.
        seconds: wall time; resumed_from: the frame a resumed run continued after (None: fresh run).
    """

    records: list[FrameRecord]
    meshes: dict[int, TriangleMesh]
    canonical: TriangleMesh
    report: object | None
    fusion: NonRigidFusion
    seconds: float = 0.0
    resumed_from: int | None = None
    files: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        out = {"frames": len(self.meshes), "seconds": self.seconds, "resumed_from": self.resumed_from,
               "canonical_vertices": self.canonical.num_vertices,
               "nodes": self.fusion.graph.num_nodes if self.fusion.graph is not None else 0}
        if self.report is not None:
            out.update(geometry_cm=self.report.geometry_cm, deformation_cm=self.report.deformation_cm)
        return out


def motion_for_nodes(graph: CanonicalGraph, rotations: torch.Tensor, translations: torch.Tensor):
    """Motion of all current nodes at an earlier frame whose motion covers only the first n nodes.

    The missing nodes get what the warp field of that frame gives at their positions: t = Q(v) - v with the
    first n nodes' skinning, R of their nearest such node (identity / zero where no node is within reach).
    """
    n = rotations.shape[0]
    N = graph.num_nodes
    if n == N:
        return rotations, translations
    if n > N:
        raise ValueError(f"rotations: expected at most the graph's {N} nodes, found {n}")
    old = CanonicalGraph(graph.nodes[:n], graph.edges[:n].clamp(max=n - 1), graph.edge_weights[:n], rotations,
                         translations, graph.sigma, graph.influence)
    new = graph.nodes[n:]
    q, ok = old.warp(new)
    d = torch.cdist(new, graph.nodes[:n])
    near = d.argmin(1)
    R = torch.where(ok.view(-1, 1, 1), rotations[near], torch.eye(3).expand(N - n, 3, 3))
    t = torch.where(ok.unsqueeze(-1), q - new, torch.zeros_like(new))
    return torch.cat([rotations, R]), torch.cat([translations, t])


def segment_meshes(fusion: NonRigidFusion, records: list[FrameRecord]) -> dict[int, TriangleMesh]:
    """The current canonical mesh warped into each frame of ``records`` with its motion (one topology)."""
    mesh = fusion.canonical_mesh()
    anchors, weights = fusion.graph.anchors(mesh.vertices)
    supported = (anchors >= 0).any(1)
    out = {}
    for rec in records:
        R, t = motion_for_nodes(fusion.graph, rec.rotations, rec.translations)
        v = mesh.vertices.clone()
        if bool(supported.any()):
            v[supported] = warp_points(mesh.vertices[supported].contiguous(), anchors[supported],
                                       weights[supported], fusion.graph.nodes, R.contiguous(), t.contiguous())
        out[rec.frame] = TriangleMesh(v, mesh.faces, mesh.colors)
    return out


def _erosion(base: int, width: int, scale: bool) -> int:
    return max(1, int(round(base * width / 640))) if scale else base


def evaluate_meshes(sequence, meshes: dict[int, TriangleMesh], *, segment_length: int = 100,
                    erosion_scale: bool = True):
    """DeepDeform metrics of per-frame meshes (index in the sequence -> mesh; a missing frame counts 0.30 m).

    Returns a :class:`~nrsfm_kit.metrics.reconstruction.ReconstructionReport` keyed by ``sequence.name``, or None
    when the sequence has neither masks nor matches.
    """
    from nrsfm_kit.metrics.reconstruction import (
        DEFORMATION_EROSION,
        GEOMETRY_EROSION,
        ReconstructionReport,
        deformation_error,
        geometry_error,
    )

    T = sequence.num_frames
    W = int(sequence.depths.shape[-1])
    avail = getattr(sequence, "mask_available", None)
    has_mask = sequence.masks is not None and (avail is None or bool(torch.as_tensor(avail).any()))
    matches = list(getattr(sequence, "matches", []) or [])
    if not has_mask and not matches:
        return None
    ge, de = {}, {}
    g_it = _erosion(GEOMETRY_EROSION, W, erosion_scale)
    d_it = _erosion(DEFORMATION_EROSION, W, erosion_scale)
    if has_mask:
        for i in range(T):
            if avail is not None and not bool(avail[i]):
                continue
            m = meshes.get(i)
            e = geometry_error(sequence.depths[i], sequence.masks[i], sequence.intrinsics,
                               None if m is None else m.vertices, erosion=g_it)
            ge[i] = float(e.mean()) if e.numel() else float("nan")
    index_of = getattr(sequence, "index_of", lambda f: int(f))
    for mt in matches:
        try:
            i, j = index_of(mt.source_frame), index_of(mt.target_frame)
        except (ValueError, KeyError):
            continue
        if i // segment_length != j // segment_length or sequence.masks is None:
            continue
        ms, mtg = meshes.get(i), meshes.get(j)
        r = deformation_error(mt.source_px, mt.target_px, sequence.depths[i], sequence.depths[j], sequence.masks[i],
                              sequence.masks[j], sequence.intrinsics, None if ms is None else ms.vertices,
                              None if mtg is None else mtg.vertices, erosion=d_it)
        if r.errors.numel():
            de.setdefault(j, []).append(r.errors)
    de_mean = {j: float(torch.cat(v).mean()) for j, v in de.items()}
    name = sequence.name or "sequence"
    return ReconstructionReport.from_frames({name: ge} if ge else {}, {name: de_mean} if de_mean else {},
                                            segment_length=segment_length)


def _identity(sequence) -> dict:
    return {"name": sequence.name, "frames": int(sequence.num_frames), "size": list(sequence.depths.shape[-2:]),
            "frame_ids": [int(f) for f in getattr(sequence, "frame_ids", range(sequence.num_frames))]}


def _load_state(path: Path, sequence, config: FusionConfig) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a cut or corrupted file
        raise ValueError(f"{path}: unreadable fusion checkpoint ({type(exc).__name__}: {exc}); delete it to start "
                         f"again") from None
    if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
        raise ValueError(f"{path}: expected a fusion checkpoint (format {_STATE_FORMAT!r}), found "
                         f"{state.get('format') if isinstance(state, dict) else type(state).__name__!r}")
    ident = _identity(sequence)
    if state["sequence"] != ident:
        diff = [k for k in ident if state["sequence"].get(k) != ident[k]]
        raise ValueError(f"{path}: the checkpoint belongs to another sequence (differs in {diff}: "
                         f"{ {k: state['sequence'].get(k) for k in diff} } vs { {k: ident[k] for k in diff} }); use "
                         f"another --out folder")
    if state["config"] != config.to_dict():
        diff = sorted(k for k in config.to_dict() if state["config"].get(k) != config.to_dict()[k])
        raise ValueError(f"{path}: the checkpoint was written with other settings ({diff}); use another --out "
                         f"folder or the same settings")
    return state


def fuse_sequence(sequence, config: FusionConfig | None = None, *, source: CorrespondenceSource | None = None,
                  out_dir: str | Path | None = None, seq_name: str | None = None, resume: bool = True,
                  checkpoint_every: int = 10, progress: bool = True, evaluate: bool = True,
                  stop_after: int | None = None) -> FusionResult:
    """Fuse a whole RGB-D sequence (module docstring).

    Args:
        sequence: a :class:`DeepDeformSequence` (or any :class:`RGBDSequence`: colors, depths, intrinsics, masks).
        config: :class:`FusionConfig`. source: a correspondence source instance (default from the config).
        out_dir: folder for meshes, checkpoint and ``result.json`` (None: nothing written, no resume).
        seq_name: sequence id in the mesh file names (default: ``sequence.seq_id`` or its name).
        resume: continue from ``out_dir/state.pt`` when present.
        checkpoint_every: frames between checkpoints (also after every segment).
        progress: tqdm bar over the frames. evaluate: compute the metrics when labels / masks exist.
        stop_after: process frames up to this index and return (a deliberate interruption, for tests).

    Raises:
        ValueError: bad config, a checkpoint of another run in ``out_dir``, a first frame without object pixels.
    """
    from tqdm.auto import tqdm

    from nrsfm_kit.metrics.reconstruction import submission_name, write_mesh_ply
    from nrsfm_kit.utils.io import atomic_save_torch, atomic_write_json, json_safe

    t_start = time.perf_counter()
    cfg = FusionConfig() if config is None else config
    if not isinstance(cfg, FusionConfig):
        raise ValueError(f"config: expected a FusionConfig, found {type(cfg).__name__}")
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every: expected an int >= 1, found {checkpoint_every!r}")
    T = sequence.num_frames
    if T < 1:
        raise ValueError("sequence: expected at least one frame, found none")
    name = seq_name or getattr(sequence, "seq_id", None) or (sequence.name or "sequence").replace("/", "_")
    ids = [int(f) for f in getattr(sequence, "frame_ids", range(T))] or list(range(T))
    out = Path(out_dir) if out_dir is not None else None
    fusion = NonRigidFusion(sequence.intrinsics, cfg, source)
    records: list[FrameRecord] = []  # records of the open segment
    all_records: list[FrameRecord] = []
    meshes: dict[int, TriangleMesh] = {}
    files: list[str] = []
    start, resumed = 0, None
    if out is not None:
        # (no folder is made here: the atomic writers create out/ and out/meshes/ with their first file, so a run that
        # fails on its first frame leaves nothing behind)
        state = _load_state(out / STATE_FILE, sequence, cfg) if resume else None
        if state is not None:
            fusion.load_state_dict(state["fusion"])
            records = state["open_segment"]
            all_records = state["records"]
            start = fusion.frame + 1
            resumed = fusion.frame

    def checkpoint():
        if out is None:
            return
        atomic_save_torch(out / STATE_FILE, {"format": _STATE_FORMAT, "sequence": _identity(sequence),
                                             "config": cfg.to_dict(), "fusion": fusion.state_dict(),
                                             "open_segment": records, "records": all_records})

    def close_segment():
        nonlocal records
        seg = segment_meshes(fusion, records)
        end = ids[records[-1].frame]
        for f, m in seg.items():
            meshes[f] = m
            if out is not None:
                p = out / "meshes" / submission_name(name, end, ids[f])
                write_mesh_ply(p, m.vertices, m.faces, m.colors)
                files.append(p.name)
        records = []

    masks = sequence.masks
    avail = getattr(sequence, "mask_available", None)
    bar = tqdm(range(start, T), desc=f"fuse {name} ({cfg.correspondences})", disable=not progress, leave=False,
               initial=start, total=T)
    for f in bar:
        m = None
        if masks is not None and (avail is None or bool(avail[f])):
            m = masks[f]
        rec = fusion.step(sequence.colors[f], sequence.depths[f], m)
        records.append(rec)
        all_records.append(rec)
        bar.set_postfix(nodes=rec.num_nodes, assoc=rec.associations, kf=rec.keyframe_correspondences)
        last_of_segment = (f + 1) % cfg.segment_length == 0 or f == T - 1
        if last_of_segment:
            close_segment()
            checkpoint()
        elif (f + 1) % checkpoint_every == 0:
            checkpoint()
        if stop_after is not None and f >= stop_after:
            break
    # meshes of earlier segments of a resumed run are on disk (re-read for the metrics)
    if out is not None and resumed is not None:
        from nrsfm_kit.metrics.reconstruction import read_mesh_ply

        for f in range(T):
            if f in meshes:
                continue
            hits = sorted((out / "meshes").glob(f"{name}_*_{ids[f]:06d}.ply"))
            if hits:
                v, fc, c = read_mesh_ply(hits[-1])
                meshes[f] = TriangleMesh(v, fc, c)
    canonical = fusion.canonical_mesh()
    finished = stop_after is None or fusion.frame >= T - 1
    report = evaluate_meshes(sequence, meshes, segment_length=cfg.segment_length) if (evaluate and finished) else None
    result = FusionResult(all_records, meshes, canonical, report, fusion, time.perf_counter() - t_start, resumed, files)
    if out is not None and finished:
        write_mesh_ply(out / "canonical.ply", canonical.vertices, canonical.faces, canonical.colors)
        atomic_write_json(out / RESULT_FILE, {
            "sequence": _identity(sequence), "config": cfg.to_dict(), "summary": json_safe(result.summary()),
            "metrics": report.to_dict() if report is not None else None,
            "frames": [json_safe(r.summary()) for r in all_records]})
    return result

