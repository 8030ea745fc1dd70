"""The embedded deformation graph container shared by graph construction, the warp field and the solver."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DeformationGraph:
    """An embedded deformation graph (Sumner et al.) built on one RGB-D frame.

    Attributes:
        nodes: (N, 3) float, node positions v_i in the camera frame, metres.
        edges: (N, K) int64, neighbour node ids per node, -1 padding.
        edge_weights: (N, K) float, normalised per node (rows sum to 1 over valid edges), 0 on padding.
        clusters: (N,) int64, connected-component id of each node.
        cluster_sizes: (C,) int64, number of nodes per cluster.
        pixel_anchors: (H, W, A) int64, A = 4 nearest nodes of every valid pixel, -1 where invalid.
        pixel_weights: (H, W, A) float, skinning weights alpha (sum to 1 on valid pixels), 0 where invalid.
        node_coverage: sigma in metres used for sampling and weights.
    """

    nodes: torch.Tensor
    edges: torch.Tensor
    edge_weights: torch.Tensor
    clusters: torch.Tensor
    cluster_sizes: torch.Tensor
    pixel_anchors: torch.Tensor
    pixel_weights: torch.Tensor
    node_coverage: float = 0.05

    @property
    def num_nodes(self) -> int:
        return int(self.nodes.shape[0])

    def to(self, device=None, dtype=None) -> DeformationGraph:
        """Copy to a device; ``dtype`` applies to the float fields only."""

        def f(t):
            return t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device=device)

        return DeformationGraph(
            f(self.nodes), f(self.edges), f(self.edge_weights), f(self.clusters), f(self.cluster_sizes),
            f(self.pixel_anchors), f(self.pixel_weights), self.node_coverage,
        )
