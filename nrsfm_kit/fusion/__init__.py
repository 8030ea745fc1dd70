"""Non-rigid fusion (DynamicFusion-style) of RGB-D sequences: canonical TSDF, tracking against the model,
keyframe correspondences, graph growth (Neural Non-Rigid Tracking sec. 4.5 / App. D.3, DeepDeform sec. 4).

- :mod:`.volume`: :class:`TSDFVolume` (Warp integration under the deformation graph, marching cubes);
- :mod:`.graph`: :class:`CanonicalGraph` (first-frame graph, growth, current motion);
- :mod:`.correspondences`: the correspondence sources ``none`` / ``dis`` / ``nnrt`` / ``deepdeform``;
- :mod:`.pipeline`: :class:`NonRigidFusion` (the per-frame loop) and :class:`FusionConfig`;
- :mod:`.run`: :func:`fuse_sequence` (a whole sequence with submission outputs, metrics, resume).

Names load lazily (PEP 562).
"""

from nrsfm_kit.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "volume": ["TSDFConfig", "TSDFVolume", "TriangleMesh", "marching_cubes", "volume_bytes"],
    "graph": ["CanonicalGraph"],
    "correspondences": ["SOURCES", "FrameData", "CorrespondenceSource", "make_source"],
    "pipeline": ["FusionConfig", "NonRigidFusion", "FrameRecord", "Keyframe"],
    "run": ["FusionResult", "fuse_sequence", "evaluate_meshes", "segment_meshes"],
})
