"""The deformation graph of the canonical model: built on the first frame, grown with the surface, with its motion.

DynamicFusion (Newcombe et al. 2015, sec. 3.4) samples the warp field's nodes on the canonical surface and
inserts new ones as the fused surface grows: wherever a canonical surface point is no longer within the node
coverage sigma of a node. We follow that with the suite's own graph pieces:

- the first graph is :func:`nrsfm_kit.graph.build_graph` on the first frame's masked depth (pixel-triangle
  mesh, erosion, sigma-coverage nodes, geodesic K = 8 edges, clusters), expressed in the canonical frame (the
  first camera's frame, or the world frame when the camera poses are known);
- :meth:`CanonicalGraph.grow` takes the canonical surface points (marching-cubes vertices), finds those farther
  than sigma from every node (Warp hash-grid query, :func:`nrsfm_kit.kernels.tsdf.nearest_nodes`), samples
  new nodes among them greedily with the same sigma-coverage rule (:func:`nrsfm_kit.graph.build.sample_nodes`),
  and connects each new node "like the others": its K = 8 nearest nodes (Euclidean, as DynamicFusion's
  regularisation graph; geodesic distances on the fused model are not available), weights
  exp(-d^2 / (2 sigma^2)) normalised; each new edge is mirrored into a free (-1) slot of the old node's row;
- a new node starts with the motion of the current warp field at its position (DynamicFusion: "initialised
  by the current warp"): t = Q(v) - v with Q the skinning of the existing nodes, R the rotation of its
  nearest existing node;
- :meth:`CanonicalGraph.anchors` gives any canonical point its 4 nearest nodes within the influence radius
  2 sigma (the reference's maximum influence) with Gaussian weights normalised to 1 (-1 / 0 padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from nrsfm_kit.graph.build import compute_clusters, sample_nodes
from nrsfm_kit.graph.types import DeformationGraph
from nrsfm_kit.kernels.tsdf import GraphMotionInput, nearest_nodes
from nrsfm_kit.kernels.warp_field import warp_points
from nrsfm_kit.utils.checks import check_positive, check_tensor

__all__ = ["CanonicalGraph"]


def _gauss(d: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-(d**2) / (2.0 * sigma**2))


@dataclass
class CanonicalGraph:
    """Nodes, edges and current motion of the canonical model's deformation graph (float32, CPU or CUDA).

    Attributes:
        nodes: (N, 3) canonical node positions v_i, metres.
        edges: (N, K) int64 neighbour ids, -1 padding. edge_weights: (N, K), rows normalised over valid edges.
        rotations: (N, 3, 3) current R_i. translations: (N, 3) current t_i, metres.
        sigma: node coverage, metres. influence: anchor radius (2 sigma).
        added: (N,) int64 frame at which each node was inserted (0 for the first graph).
    """

    nodes: torch.Tensor
    edges: torch.Tensor
    edge_weights: torch.Tensor
    rotations: torch.Tensor
    translations: torch.Tensor
    sigma: float = 0.05
    influence: float = 0.10
    added: torch.Tensor | None = None

    @classmethod
    def from_graph(cls, graph: DeformationGraph, *, pose: torch.Tensor | None = None) -> CanonicalGraph:
        """The canonical graph of a first-frame :class:`DeformationGraph` (``pose``: canonical -> that camera)."""
        graph.validate()
        nodes = graph.nodes.float()
        if pose is not None:
            P = torch.linalg.inv(pose.double()).float()
            nodes = nodes @ P[:3, :3].T + P[:3, 3]
        N = nodes.shape[0]
        eye = torch.eye(3, device=nodes.device).expand(N, 3, 3).contiguous()
        sigma = float(graph.node_coverage)
        return cls(nodes.contiguous(), graph.edges.long(), graph.edge_weights.float(), eye,
                   torch.zeros(N, 3, device=nodes.device), sigma, 2.0 * sigma,
                   torch.zeros(N, dtype=torch.int64, device=nodes.device))

    # --- queries ----------------------------------------------------------------------------------------------

    @property
    def num_nodes(self) -> int:
        return int(self.nodes.shape[0])

    def motion(self) -> GraphMotionInput:
        """The deformation as the TSDF integration kernel takes it."""
        return GraphMotionInput(self.nodes, self.rotations, self.translations, self.sigma, self.influence)

    def clusters(self) -> torch.Tensor:
        """(N,) int64 connected-component id of every node (symmetrised edges)."""
        c, _ = compute_clusters(self.edges.cpu().numpy())
        return torch.as_tensor(c, device=self.nodes.device)

    def anchors(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(anchors (P, 4) int64, weights (P, 4)) of canonical points: 4 nearest nodes within ``influence``,
        weights exp(-d^2 / (2 sigma^2)) normalised to 1; -1 / 0 padding (all -1: the point is unsupported)."""
        check_tensor("points", points, ("P", 3))
        P = points.shape[0]
        anchors = torch.full((P, 4), -1, dtype=torch.int64)
        w = torch.zeros(P, 4)
        if P and self.num_nodes:
            k = min(4, self.num_nodes)
            dd, ii = cKDTree(self.nodes.cpu().numpy()).query(points.detach().cpu().numpy(), k=k,
                                                             distance_upper_bound=self.influence)
            dd, ii = dd.reshape(P, k), ii.reshape(P, k)
            ok = np.isfinite(dd)
            ww = np.where(ok, _gauss(np.where(ok, dd, 0.0), self.sigma), 0.0)
            s = ww.sum(1, keepdims=True)
            ww = np.where(s > 0, ww / np.where(s > 0, s, 1.0), 0.0)
            anchors[:, :k] = torch.as_tensor(np.where(ok, ii, -1))
            w[:, :k] = torch.as_tensor(ww, dtype=torch.float32)
        return anchors.to(points.device), w.to(points.device)

    def warp(self, points: torch.Tensor, anchors: torch.Tensor | None = None,
             weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q(points) (P, 3), supported (P,) bool) under the current motion (unsupported points stay put)."""
        if anchors is None or weights is None:
            anchors, weights = self.anchors(points)
        ok = (anchors >= 0).any(1)
        q = points.clone()
        if bool(ok.any()):
            q[ok] = warp_points(points[ok].float().contiguous(), anchors[ok], weights[ok].float(), self.nodes,
                                self.rotations, self.translations)
        return q, ok

    # --- growth -----------------------------------------------------------------------------------------------

    def grow(self, points: torch.Tensor, frame: int = 0, num_neighbours: int | None = None) -> int:
        """Insert nodes where canonical surface ``points`` (P, 3) are farther than sigma from every node.

        Returns:
            the number of nodes added (0 when the surface is covered).
        """
        check_tensor("points", points, ("P", 3))
        if points.shape[0] == 0:
            return 0
        pts = points.detach().float().contiguous().to(self.nodes.device)
        ids, _ = nearest_nodes(pts, self.nodes, self.sigma)
        free = ids < 0
        if not bool(free.any()):
            return 0
        cand = pts[free].cpu().numpy()
        chosen = sample_nodes(cand, np.ones(len(cand), dtype=bool), self.sigma)
        new = torch.as_tensor(cand[chosen], dtype=torch.float32, device=self.nodes.device)
        M, N0 = new.shape[0], self.num_nodes
        K = self.edges.shape[1] if num_neighbours is None else int(num_neighbours)
        # motion of the new nodes from the current warp field (before they exist)
        q, ok = self.warp(new)
        R_new = torch.eye(3, device=new.device).expand(M, 3, 3).clone()
        if N0:
            _, near = cKDTree(self.nodes.cpu().numpy()).query(new.cpu().numpy(), k=1)
            R_new = self.rotations[torch.as_tensor(near, device=new.device).reshape(-1)].clone()
        t_new = torch.where(ok.unsqueeze(-1), q - new, torch.zeros_like(new))
        # edges: K nearest among all nodes (Euclidean), Gaussian weights, mirrored into free slots of old rows
        allv = torch.cat([self.nodes, new]).cpu().numpy()
        k = min(K + 1, len(allv))
        dd, ii = cKDTree(allv).query(allv[N0:], k=k)
        dd, ii = dd.reshape(M, k)[:, 1:], ii.reshape(M, k)[:, 1:]
        e_new = np.full((M, K), -1, dtype=np.int64)
        w_new = np.zeros((M, K))
        e_new[:, :k - 1] = ii
        w_new[:, :k - 1] = _gauss(dd, self.sigma)
        edges = np.concatenate([self.edges.cpu().numpy(), e_new]) if N0 else e_new
        wts = np.concatenate([self.edge_weights.cpu().numpy(), w_new]) if N0 else w_new
        for m in range(M):  # mirror each new edge (old node j -> new node) into a free slot of j's row
            for j, d in zip(ii[m], dd[m]):
                if j < N0 and (N0 + m) not in edges[j]:
                    free_slot = np.flatnonzero(edges[j] < 0)
                    if free_slot.size:
                        edges[j, free_slot[0]] = N0 + m
                        wts[j, free_slot[0]] = _gauss(np.asarray(d), self.sigma)
        ok_e = edges >= 0
        s = np.where(ok_e, wts, 0.0).sum(1, keepdims=True)
        wts = np.where(ok_e, wts / np.where(s > 0, s, 1.0), 0.0)
        dev = self.nodes.device
        self.nodes = torch.cat([self.nodes, new]).contiguous()
        self.edges = torch.as_tensor(edges, device=dev)
        self.edge_weights = torch.as_tensor(wts, dtype=torch.float32, device=dev)
        self.rotations = torch.cat([self.rotations, R_new]).contiguous()
        self.translations = torch.cat([self.translations, t_new]).contiguous()
        added = torch.full((M,), int(frame), dtype=torch.int64, device=dev)
        self.added = added if self.added is None else torch.cat([self.added, added])
        return M

    # --- checkpoints ------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}

    @classmethod
    def from_state_dict(cls, state: dict, device="cpu") -> CanonicalGraph:
        try:
            g = cls(**{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in state.items()})
        except TypeError as exc:
            raise ValueError(f"state: expected a CanonicalGraph state dict, found keys {sorted(state)}") from exc
        check_positive("sigma", g.sigma)
        return g
