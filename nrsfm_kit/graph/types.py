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

    def validate(self) -> DeformationGraph:
        """Check shapes, dtypes, index ranges and finiteness; return ``self`` (raise ValueError otherwise).

        Errors name the field, what was expected and what was found.
        """
        from nrsfm_kit.utils.checks import check_shape, check_tensor

        dims: dict = {}
        check_tensor("nodes", self.nodes, ("N", 3), dims=dims)
        check_tensor("edge_weights", self.edge_weights, ("N", "K"), dims=dims)
        check_shape("edges", self.edges, ("N", "K"), dims)
        check_shape("clusters", self.clusters, ("N",), dims)
        check_tensor("pixel_weights", self.pixel_weights, ("H", "W", "A"), dims=dims)
        check_shape("pixel_anchors", self.pixel_anchors, ("H", "W", "A"), dims)
        check_shape("cluster_sizes", self.cluster_sizes, ("C",), dims)
        n = dims["N"]
        for name in ("edges", "clusters", "cluster_sizes", "pixel_anchors"):
            t = getattr(self, name)
            if t.is_floating_point() or t.dtype == torch.bool:
                raise ValueError(f"{name}: expected an integer tensor (int64), found dtype {t.dtype}")
        for name, t, lo in (("edges", self.edges, -1), ("pixel_anchors", self.pixel_anchors, -1),
                            ("clusters", self.clusters, 0)):
            if t.numel() and (int(t.min()) < lo or int(t.max()) >= n):
                raise ValueError(f"{name}: expected ids in [{lo}, {n - 1}], found range [{int(t.min())}, {int(t.max())}]")
        if self.clusters.numel():
            sizes = torch.bincount(self.clusters, minlength=int(self.cluster_sizes.numel()))
            if sizes.shape != self.cluster_sizes.shape or not torch.equal(sizes.cpu(), self.cluster_sizes.cpu().long()):
                raise ValueError(
                    f"cluster_sizes: expected the node counts of clusters {sizes.tolist()}, "
                    f"found {self.cluster_sizes.tolist()}"
                )
        if not (float(self.node_coverage) > 0):
            raise ValueError(f"node_coverage: expected a value > 0 metres, found {self.node_coverage!r}")
        return self
