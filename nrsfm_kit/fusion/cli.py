"""nrsfm-kit fuse: non-rigid fusion of an RGB-D sequence (canonical TSDF, tracking against the model, keyframes).

Examples::

    nrsfm-kit fuse --sequence synthetic --preset fast --correspondences dis --out build/fuse --json build/fuse.json
    nrsfm-kit fuse --sequence DeepDeform/val/seq003 --correspondences deepdeform --checkpoint matcher.pt --out OUT
    nrsfm-kit fuse --sequence $NRSFM_KIT_DATA/deepdeform/train/seq258 --correspondences dis --out build/seq258

Writes the per-frame meshes in DeepDeform's submission layout (``OUT/meshes/{seq}_{segment_end}_{frame}.ply``),
the canonical mesh (``OUT/canonical.ply``), ``OUT/result.json`` and, when the sequence has labels / masks, the
deformation and geometry errors (cm). Running the same command again on the same ``--out`` resumes after the
last checkpointed frame.
"""

from __future__ import annotations

from pathlib import Path

_SOURCES = ("none", "dis", "nnrt", "deepdeform")


def register(subparsers) -> None:
    p = subparsers.add_parser("fuse", help="non-rigid fusion of an RGB-D sequence (meshes, metrics; resumes)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--sequence", required=True,
                   help="a DeepDeform sequence folder (color/, depth/, mask/, intrinsics.txt) or 'synthetic' (no default)")
    p.add_argument("--preset", default="teaching",
                   help="synthetic sequence: teaching | fast | smoke (default teaching; with --smoke: smoke)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic sequence (default 0)")
    p.add_argument("--correspondences", default="none", choices=_SOURCES,
                   help="keyframe correspondence source: none (pure ICP) | dis | nnrt | deepdeform (default none)")
    p.add_argument("--checkpoint", default=None,
                   help="weights of the nnrt tracker / deepdeform matcher (default: the shipped teaching ones)")
    p.add_argument("--keyframe-every", type=int, default=50, help="frames between keyframes (default 50, NNRT)")
    p.add_argument("--no-keyframes", action="store_true",
                   help="no keyframes: correspondences from the previous frame only (default: keyframes on)")
    p.add_argument("--no-frame-to-frame", action="store_true",
                   help="do not use the previous frame as a temporary keyframe (default: used)")
    p.add_argument("--voxel-size", type=float, default=0.01, help="TSDF voxel size, metres (default 0.01)")
    p.add_argument("--truncation", type=float, default=0.04, help="TSDF truncation, metres (default 0.04)")
    p.add_argument("--device", default="cpu", help="where the TSDF is integrated / extracted: cpu | cuda (default cpu)")
    p.add_argument("--frames", type=int, default=None, help="fuse only the first N frames (default: all)")
    p.add_argument("--object", default=None, help="object id of the masks (mask/<frame>_<object>.png; default: the only one)")
    p.add_argument("--labels", default=None, help="match label JSON (default: <seq>/matches.json or <root>/<split>_matches.json)")
    p.add_argument("--out", required=True, help="output folder (meshes/, canonical.ply, state.pt, result.json; no default)")
    p.add_argument("--json", default=None, help="also write the summary + metrics here (default: not written)")
    p.add_argument("--no-resume", action="store_true", help="start again even if --out holds a checkpoint (default: resume)")
    p.set_defaults(func=_fuse, param_flags={"keyframe_every": "--keyframe-every", "voxel_size": "--voxel-size",
                                            "truncation": "--truncation", "checkpoint": "--checkpoint",
                                            "device": "--device"})


def _fuse(args) -> int:
    from nrsfm_kit.cli import (
        check_input_dir,
        check_input_file,
        check_int_arg,
        check_output_dir,
        check_output_file,
    )
    from nrsfm_kit.config import smoke

    check_int_arg("--keyframe-every", args.keyframe_every, 1)
    check_int_arg("--frames", args.frames, 1)
    out = check_output_dir("--out", args.out)
    if args.json is not None:
        check_output_file("--json", args.json)
    if args.checkpoint is not None:
        check_input_file("--checkpoint", args.checkpoint, "a tracker / matcher checkpoint")
        if args.correspondences in ("none", "dis"):
            raise ValueError(f"--checkpoint: the {args.correspondences!r} source has no weights")
    if args.sequence != "synthetic":
        check_input_dir("--sequence", args.sequence, "a DeepDeform sequence folder (color/, depth/, intrinsics.txt)")
    # (check_output_dir probed the nearest existing folder: unwritable or full is refused before any work; the
    # folder itself is created with the first file, so a bad sequence leaves no empty folder behind)

    from nrsfm_kit.fusion.correspondences import make_source
    from nrsfm_kit.fusion.pipeline import FusionConfig
    from nrsfm_kit.fusion.run import fuse_sequence
    from nrsfm_kit.fusion.volume import TSDFConfig
    from nrsfm_kit.utils.io import atomic_write_json, json_safe

    cfg = FusionConfig(tsdf=TSDFConfig(voxel_size=args.voxel_size, truncation=args.truncation),
                       correspondences=args.correspondences,
                       keyframe_every=None if args.no_keyframes else args.keyframe_every,
                       frame_to_frame=not args.no_frame_to_frame, device=args.device)
    if args.sequence == "synthetic":
        from nrsfm_kit.fusion.synthetic import fusion_sequence

        preset = "smoke" if smoke() and args.preset == "teaching" else args.preset
        kw = {} if args.frames is None else {"num_frames": max(2, args.frames)}
        seq = fusion_sequence(preset, seed=args.seed, **kw)
    else:
        from nrsfm_kit.data.deepdeform_sequence import load_deepdeform_sequence

        frames = None if args.frames is None else slice(0, args.frames)
        seq = load_deepdeform_sequence(args.sequence, object_id=args.object, frames=frames, labels=args.labels,
                                       progress=True)
    source = make_source(args.correspondences, args.checkpoint)
    res = fuse_sequence(seq, cfg, source=source, out_dir=out, resume=not args.no_resume, progress=True)
    summary = res.summary()
    if res.resumed_from is not None:
        print(f"resumed after frame {res.resumed_from}")
    print(f"fused {seq.num_frames} frames ({args.correspondences}): {summary['canonical_vertices']} canonical vertices, "
          f"{summary['nodes']} nodes, {res.seconds:.1f} s")
    if res.report is not None:
        print(f"deformation error {res.report.deformation_cm:.2f} cm, geometry error {res.report.geometry_cm:.2f} cm")
    print(f"wrote {out}/meshes ({len(list((Path(out) / 'meshes').glob('*.ply')))} PLY), {out}/canonical.ply, "
          f"{out}/result.json")
    if args.json is not None:
        atomic_write_json(args.json, {"summary": json_safe(summary),
                                      "metrics": res.report.to_dict() if res.report is not None else None})
        print(f"wrote {args.json}")
    return 0
