"""Embedded deformation graph from RGB-D (Neural Non-Rigid Tracking §3, App. A; Sumner et al. 2007).

- :func:`build_graph` (:mod:`nrsfm_kit.graph.build`): mesh from depth, erosion, sigma-coverage node
  sampling, geodesic (or Euclidean) edges, clean-up, clusters, pixel anchors and skinning weights.
- :mod:`nrsfm_kit.graph.io`: the reference implementation's binary graph files.
- :mod:`nrsfm_kit.graph.motion`: node rotations from node translations (e.g. scene flow at the nodes).
- :mod:`nrsfm_kit.graph.synthetic`: synthetic depth surfaces and smooth deformations with ground truth.
- The warp field Q and ARAP residuals as Warp kernels: :mod:`nrsfm_kit.kernels.warp_field`.

Names load lazily (PEP 562): ``import nrsfm_kit.graph.cli`` does not import torch.
"""

from nrsfm_kit.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "build": ["GraphBuildInfo", "GraphConfig", "build_graph", "build_graph_with_info"],
    "types": ["DeformationGraph"],
})
