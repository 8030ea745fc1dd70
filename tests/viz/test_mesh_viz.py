"""Mesh views: a Mesh3d with vertex colours, a frame-slider figure over meshes, bad inputs."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.fusion.volume import TriangleMesh
from nrsfm_kit.viz.mesh import mesh_sequence_figure, mesh_trace


def _mesh(shift=0.0):
    v = torch.tensor([[0.0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1.2]]) + shift
    return TriangleMesh(v, torch.tensor([[0, 1, 2], [1, 3, 2]]), torch.rand(4, 3))


def test_mesh_trace_and_sequence_figure():
    tr = mesh_trace(_mesh())
    assert len(tr.x) == 4 and list(tr.i) == [0, 1] and len(tr.vertexcolor) == 4
    fig = mesh_sequence_figure({f: _mesh(0.1 * f) for f in range(60)}, title="t", max_frames=10)
    assert len(fig.frames) == 10 and len(fig.layout.sliders[0].steps) == 10
    xr = fig.layout.scene.xaxis.range
    assert xr[0] < 0 and xr[1] > 1 + 0.1 * 59  # the union of all frames
    with pytest.raises(ValueError, match="faces"):
        mesh_trace(torch.zeros(3, 3), torch.tensor([[0, 1, 5]]))
    with pytest.raises(ValueError, match="meshes"):
        mesh_sequence_figure({})
