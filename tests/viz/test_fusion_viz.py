import numpy as np
import pytest
import torch

from nrsfm_kit.fusion.pipeline import FrameRecord
from nrsfm_kit.fusion.volume import TriangleMesh
from nrsfm_kit.viz.fusion import (
    REJECTION_KEYS,
    errors_figure,
    fusion_slider_figure,
    mesh_trace,
    rejections_figure,
    tsdf_slice_figure,
)


def _tetra(shift=0.0):
    v = torch.tensor([[0.0, 0, 1], [0.1, 0, 1], [0, 0.1, 1], [0, 0, 1.1]]) + shift
    f = torch.tensor([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    return TriangleMesh(v, f, torch.rand(4, 3))


def test_mesh_trace_colours_and_bad_faces():
    m = _tetra()
    tr = mesh_trace(m, name="m", vertex_colors=True)
    assert tr.type == "mesh3d" and len(tr.x) == 4 and tuple(tr.i) == (0, 0, 0, 1)
    assert tr.vertexcolor[0].startswith("rgb(") and tr.color is None
    plain = mesh_trace((m.vertices, m.faces), color="red")
    assert plain.color == "red" and plain.vertexcolor is None
    with pytest.raises(ValueError, match="mesh.faces: expected vertex ids"):
        mesh_trace((m.vertices, m.faces + 1))
    with pytest.raises(ValueError, match="mesh.vertices: expected shape"):
        mesh_trace((m.vertices[:, :2], m.faces))


def test_tsdf_slice_blank_where_unobserved():
    F = torch.linspace(-1, 1, 4 * 5 * 6).reshape(4, 5, 6)
    W = torch.ones(4, 5, 6)
    W[:, :, 0] = 0
    fig = tsdf_slice_figure(F, W, (0.0, 0.0, 0.0), 0.01, axis=1, index=2)
    z = np.asarray(fig.data[0].z, dtype=float)  # (nz, nx): rows = the z axis
    assert z.shape == (6, 4) and np.isnan(z[0]).all() and np.isfinite(z[1:]).all()
    assert np.isclose(fig.data[0].x[0], 0.005) and "y = 0.025" in fig.layout.title.text
    with pytest.raises(ValueError, match="index: expected a slice"):
        tsdf_slice_figure(F, W, (0, 0, 0), 0.01, axis=0, index=4)
    with pytest.raises(ValueError, match="weight: expected the shape of sdf"):
        tsdf_slice_figure(F, W[:2], (0, 0, 0), 0.01)


def test_errors_and_rejections_figures():
    fig = errors_figure({"none": {0: 0.01, 5: float("nan"), 3: 0.02}, "dis": {1: 0.005}})
    assert len(fig.data) == 2 and tuple(fig.data[0].x) == (0, 3) and np.allclose(fig.data[0].y, [1.0, 2.0])
    with pytest.raises(ValueError, match="curves: expected a non-empty mapping"):
        errors_figure({})
    recs = [FrameRecord(f, torch.eye(3)[None], torch.zeros(1, 3), 1, keyframe_correspondences=10 + f,
                        keyframes_ignored=f % 2, rejected={"weight": f, "depth": 1}) for f in range(1, 4)]
    fig = rejections_figure(recs)
    assert len(fig.data) == 2 + len(REJECTION_KEYS)
    assert tuple(fig.data[1].y) == (1, 2, 3) and tuple(fig.data[-1].y) == (1, 0, 1)
    with pytest.raises(ValueError, match="records: expected at least one"):
        rejections_figure([])


def test_fusion_slider_frames_and_fixed_ranges():
    snaps = [{"label": f"frame {k}", "canonical": _tetra(), "live": _tetra(0.05 * k),
              "points": torch.randn(50, 3) * 0.01 + 1} for k in range(3)]
    fig = fusion_slider_figure(snaps, title="t", max_points=20)
    assert len(fig.frames) == 3 and len(fig.layout.sliders[0].steps) == 3
    assert [t.type for t in fig.data] == ["mesh3d", "mesh3d", "scatter3d"]
    assert fig.frames[2].data[1].scene == "scene2" and len(fig.frames[0].data[2].x) == 20
    hi = fig.layout.scene2.xaxis.range[1]
    assert hi >= 0.1 + 0.1  # the last live mesh (shifted by 0.1 m) is inside the fixed range
    with pytest.raises(ValueError, match=r"snapshots\[0\]: expected keys"):
        fusion_slider_figure([{"label": "a", "live": _tetra()}])
    with pytest.raises(ValueError, match="expected distinct labels"):
        fusion_slider_figure([snaps[0], snaps[0]])
