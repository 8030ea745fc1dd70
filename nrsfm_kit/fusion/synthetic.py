"""Synthetic fusion sequences with exact ground truth (named presets of the DeepDeform-format generator).

Each preset renders :func:`nrsfm_kit.data.deepdeform_sequence.synthetic_sequence`: the bending "arm"
(capped cylinder, the object of interest) with a rigid box moving in front of it (occlusions), a textured room
behind, a static camera at 10 frames per second, masks of the arm and ground-truth sparse matches from frame f
to f + 10 within each 100-frame segment (DeepDeform's JSON label layout when exported). ``fast`` triples the
speed of every motion law (the arm's tip then moves up to ~10 cm per frame: beyond the 5 cm association radius
of projective ICP), the setting where correspondence terms matter (DeepDeform Table 2 / NNRT Table 2).

| preset | frames | size | speed | keyframes (every 50) |
|---|---|---|---|---|
| teaching | 120 | 128 x 192 | 1 | 0, 50, 100 |
| fast | 120 | 128 x 192 | 3 | 0, 50, 100 |
| smoke | 12 | 128 x 192 | 3 | 0 (keyframe_every 5 in the tests) |

128 x 192 is the size the shipped learned tracker and matcher were trained at (datasets/weights/README.md).
"""

from __future__ import annotations

__all__ = ["SEQUENCE_PRESETS", "fusion_sequence", "export_fusion_sequence"]

SEQUENCE_PRESETS: dict[str, dict] = {
    "teaching": {"num_frames": 120, "speed": 1.0},
    "fast": {"num_frames": 120, "speed": 3.0},
    "smoke": {"num_frames": 12, "speed": 3.0},
}

_COMMON = {"height": 128, "width": 192, "object_name": "cylinder", "objects": ("cylinder", "box"), "fps": 10.0,
           "pair_stride": 10, "matches_per_pair": 30}


def fusion_sequence(preset: str = "teaching", *, seed: int = 0, **overrides):
    """The synthetic sequence of ``preset`` (module table) as a
    :class:`~nrsfm_kit.data.deepdeform_sequence.DeepDeformSequence`; keyword ``overrides`` go to
    :func:`~nrsfm_kit.data.deepdeform_sequence.synthetic_sequence` (e.g. ``num_frames``, ``speed``)."""
    from nrsfm_kit.data.deepdeform_sequence import synthetic_sequence

    if preset not in SEQUENCE_PRESETS:
        raise ValueError(f"preset: expected one of {list(SEQUENCE_PRESETS)}, found {preset!r}")
    kw = {**_COMMON, **SEQUENCE_PRESETS[preset], **overrides}
    kw.setdefault("seq_id", f"synth_{preset}_s{seed}")
    return synthetic_sequence(seed=seed, **kw)


def export_fusion_sequence(out_root, preset: str = "teaching", *, seed: int = 0, **overrides):
    """Write the preset's sequence in the DeepDeform layout under ``out_root`` (returns the sequence folder)."""
    from nrsfm_kit.data.deepdeform_sequence import export_synthetic_sequence

    if preset not in SEQUENCE_PRESETS:
        raise ValueError(f"preset: expected one of {list(SEQUENCE_PRESETS)}, found {preset!r}")
    kw = {**_COMMON, **SEQUENCE_PRESETS[preset], **overrides}
    kw.setdefault("seq_id", f"synth_{preset}_s{seed}")
    return export_synthetic_sequence(out_root, seed=seed, **kw)
