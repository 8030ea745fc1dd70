"""Pair-tracker I/O: centre crop + intrinsics, DIS flow, object mask, graph folders, PLY and output files."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from nrsfm_kit.data.deepdeform import read_flow_binary
from nrsfm_kit.data.types import RGBDPair
from nrsfm_kit.geometry import depth_to_points
from nrsfm_kit.graph import build_graph
from nrsfm_kit.graph import io as gio
from nrsfm_kit.graph.synthetic import synthetic_depth
from nrsfm_kit.tracking.io import (
    OUTPUT_FILES,
    center_crop_offsets,
    center_crop_pair,
    crop_intrinsics,
    dis_flow,
    object_mask_from_nodes,
    read_graph_folder,
    write_ply,
    write_tracking_outputs,
)

# ------------------------------------------------------------------------------------------------
# cropping
# ------------------------------------------------------------------------------------------------


def test_center_crop_offsets_exact():
    assert center_crop_offsets(480, 640) == (16, 0)  # DeepDeform 480 x 640 -> 448 x 640
    assert center_crop_offsets(481, 700, (448, 640)) == (16, 30)
    assert center_crop_offsets(128, 192, (128, 192)) == (0, 0)


@pytest.mark.parametrize("size", [(450, 640), (448, 600), (0, 64), (448,), "ab"])
def test_center_crop_offsets_rejects_sizes_not_divisible_by_64(size):
    with pytest.raises(ValueError, match=r"size: expected \(height, width\) positive integers divisible by 64"):
        center_crop_offsets(480, 640, size)


def test_center_crop_offsets_rejects_crops_larger_than_the_image():
    with pytest.raises(ValueError, match=r"size: expected a crop no larger than the image \(480, 640\), found \(512, 640\)"):
        center_crop_offsets(480, 640, (512, 640))
    with pytest.raises(ValueError, match=r"size: .*no larger than the image \(480, 600\), found \(448, 640\)"):
        center_crop_offsets(480, 600)


def test_crop_intrinsics_shifts_the_principal_point_exactly():
    intr = torch.tensor([525.0, 526.0, 319.5, 239.5])
    out = crop_intrinsics(intr, 16, 0)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert out.tolist() == [525.0, 526.0, 319.5, 223.5]  # cx unchanged: no +0.5 as in the reference
    assert intr.tolist() == [525.0, 526.0, 319.5, 239.5]  # input untouched

    K = np.array([[525.0, 0, 319.5], [0, 526.0, 239.5], [0, 0, 1]])
    Kc = crop_intrinsics(K, 16, 30)
    assert isinstance(Kc, np.ndarray) and Kc.shape == (3, 3) and Kc.dtype == np.float64
    np.testing.assert_array_equal(Kc, [[525.0, 0, 289.5], [0, 526.0, 223.5], [0, 0, 1]])
    assert K[0, 2] == 319.5

    K4 = torch.eye(4, dtype=torch.float64)
    K4[0, 0], K4[1, 1], K4[0, 2], K4[1, 2] = 500.0, 500.0, 100.0, 80.0
    out4 = crop_intrinsics(K4, 8, 4)
    assert out4.shape == (4, 4) and out4.dtype == torch.float64
    assert (out4[0, 2].item(), out4[1, 2].item(), out4[0, 0].item()) == (96.0, 72.0, 500.0)


def test_crop_intrinsics_bad_input():
    with pytest.raises(ValueError, match=r"intrinsics: expected shape \(\.\.\., 4\)"):
        crop_intrinsics(torch.ones(2), 0, 0)
    with pytest.raises(ValueError, match="y0, x0: expected integer pixel offsets"):
        crop_intrinsics(torch.ones(4), 0.5, 0)


def _pair(H: int = 160, W: int = 200) -> RGBDPair:
    n = H * W
    grid = torch.arange(n, dtype=torch.float32).view(H, W)
    return RGBDPair(
        source_color=torch.stack([grid, grid + 1, grid + 2]) / (n + 2),
        target_color=torch.stack([grid, grid, grid]) / (n + 2),
        source_depth=1.0 + grid / n,
        target_depth=2.0 + grid / n,
        intrinsics=torch.tensor([150.0, 150.0, 99.5, 79.5]),
        optical_flow=torch.stack([grid, -grid], -1),
        scene_flow=torch.stack([grid, grid * 2, grid * 3], -1),
        flow_valid=torch.ones(H, W, dtype=torch.bool),
        visibility=torch.ones(H, W, dtype=torch.bool),
        source_mask=(grid.long() % 3 == 0),
        target_mask=None,
        segmentation=grid.long() % 5,
        name="p",
    )


def test_center_crop_pair_crops_every_image_and_the_intrinsics():
    pair = _pair()
    pair.optical_flow = torch.zeros(160, 200, 2)
    pair.optical_flow[20, 10] = torch.tensor([-7.0, 0.0])  # crop column 6 -> -1: leaves the crop
    pair.optical_flow[21, 10] = torch.tensor([-6.0, 0.0])  # -> column 0: stays inside
    pair.optical_flow[22, 10] = torch.tensor([-7.0, 0.0])  # leaves, but its flow is unknown
    pair.flow_valid[22, 10] = False
    out = center_crop_pair(pair, (128, 192))
    y0, x0 = 16, 4
    assert type(out) is RGBDPair and out.name == "p" and out.target_mask is None
    torch.testing.assert_close(out.source_color, pair.source_color[:, y0:y0 + 128, x0:x0 + 192], rtol=0, atol=0)
    torch.testing.assert_close(out.target_color, pair.target_color[:, y0:y0 + 128, x0:x0 + 192], rtol=0, atol=0)
    for name in ("source_depth", "target_depth", "scene_flow", "optical_flow", "flow_valid", "source_mask",
                 "segmentation"):
        a, b = getattr(out, name), getattr(pair, name)[y0:y0 + 128, x0:x0 + 192]
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert out.source_depth.data_ptr() != pair.source_depth.data_ptr()  # a copy, not a view
    assert out.intrinsics.tolist() == [150.0, 150.0, 95.5, 63.5]
    expected_vis = torch.ones(128, 192, dtype=torch.bool)
    expected_vis[20 - y0, 10 - x0] = False
    assert torch.equal(out.visibility, expected_vis)


def test_center_crop_pair_keeps_only_the_rgbdpair_fields_of_a_subclass():
    @dataclasses.dataclass
    class Extra(RGBDPair):
        extra: str = "x"

    p = _pair(128, 128)
    sub = Extra(**{f.name: getattr(p, f.name) for f in dataclasses.fields(RGBDPair)}, extra="y")
    out = center_crop_pair(sub, (64, 128))
    assert type(out) is RGBDPair and out.source_depth.shape == (64, 128)
    assert out.intrinsics.tolist() == [150.0, 150.0, 99.5, 47.5]


def test_center_crop_pair_bad_input():
    p = _pair()
    with pytest.raises(ValueError, match="size: expected .* divisible by 64"):
        center_crop_pair(p, (100, 192))
    with pytest.raises(ValueError, match=r"size: expected a crop no larger than the image \(160, 200\)"):
        center_crop_pair(p, (192, 192))
    bad = dataclasses.replace(p, target_color=torch.zeros(3, 128, 200))
    with pytest.raises(ValueError, match=r"pair.target_color: expected the image size \(H, W\) = \(160, 200\) of "
                                         r"pair.source_color, found \(128, 200\)"):
        center_crop_pair(bad, (128, 192))
    bad = dataclasses.replace(p, optical_flow=torch.zeros(160, 2))
    with pytest.raises(ValueError, match=r"pair.optical_flow: expected shape \(H, W, C\), found \(160, 2\)"):
        center_crop_pair(bad, (128, 192))
    bad = dataclasses.replace(p, source_color=torch.zeros(160, 200))
    with pytest.raises(ValueError, match=r"pair.source_color: expected shape \(C, H, W\)"):
        center_crop_pair(bad, (128, 192))
    with pytest.raises(ValueError, match="pair: expected an RGBDPair, found dict"):
        center_crop_pair({}, (128, 192))


# ------------------------------------------------------------------------------------------------
# DIS optical flow
# ------------------------------------------------------------------------------------------------


def _textured(H: int, W: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.stack([gaussian_filter(rng.random((H, W)), 2.0) for _ in range(3)])
    return (img - img.min()) / (img.max() - img.min())


def test_dis_flow_recovers_an_integer_translation():
    big = _textured(110, 140)
    H, W, dx, dy = 96, 128, 3, 2
    source = torch.from_numpy(big[:, dy:dy + H, dx:dx + W]).float()  # source(x) = target(x + (dx, dy))
    target = big[:, :H, :W]  # numpy input works too
    flow = dis_flow(source, target)
    assert flow.shape == (H, W, 2) and flow.dtype == torch.float32
    err = torch.linalg.norm(flow - torch.tensor([float(dx), float(dy)]), dim=-1)
    assert float(err.median()) < 0.5


def test_dis_flow_bad_input():
    img = torch.rand(3, 32, 32)
    with pytest.raises(ValueError, match=r"source_color: expected shape \(3, H, W\)"):
        dis_flow(img.permute(1, 2, 0), img)
    with pytest.raises(ValueError, match=r"target_color: expected shape \(3, H, W\) with \{'H': 32, 'W': 32\}, found \(3, 32, 40\)"):
        dis_flow(img, torch.rand(3, 32, 40))
    with pytest.raises(ValueError, match=r"source_color: expected RGB values in \[0, 1\], found range"):
        dis_flow(img * 255, img)
    nan = img.clone()
    nan[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="target_color: expected finite values, found 1 non-finite"):
        dis_flow(img, nan)
    with pytest.raises(ValueError, match=r"preset: expected one of \['fast', 'medium', 'ultrafast'\], found 'slow'"):
        dis_flow(img, img, preset="slow")
    with pytest.raises(ValueError, match="source_color: expected an image of at least 16 x 16 pixels"):
        dis_flow(torch.rand(3, 8, 8), torch.rand(3, 8, 8))


# ------------------------------------------------------------------------------------------------
# object mask from nodes
# ------------------------------------------------------------------------------------------------


def test_object_mask_from_nodes_exact():
    x = torch.tensor([0.0, 0.05, 0.099, 0.101, 0.3, 0.0])
    points = torch.stack([x, torch.zeros(6), torch.ones(6)], -1).view(1, 6, 3)
    points[0, 5] = float("nan")  # an invalid pixel may hold anything
    valid = torch.tensor([[True, False, True, True, True, False]])
    nodes = torch.tensor([[0.0, 0.0, 1.0], [0.5, 0.0, 1.0]])
    mask = object_mask_from_nodes(points, valid, nodes, node_coverage=0.05)
    assert mask.dtype == torch.bool
    assert mask.tolist() == [[True, False, True, False, False, False]]
    # 2 sigma = 0.5: the second node's radius covers 0.3 as well; numpy inputs are accepted
    mask2 = object_mask_from_nodes(points.numpy(), valid.numpy(), nodes.numpy(), node_coverage=0.25)
    assert mask2.tolist() == [[True, False, True, True, True, False]]


def test_object_mask_from_nodes_bad_input():
    points, valid, nodes = torch.zeros(2, 3, 3), torch.ones(2, 3, dtype=torch.bool), torch.zeros(1, 3)
    with pytest.raises(ValueError, match=r"nodes: expected at least one node, found shape \(0, 3\)"):
        object_mask_from_nodes(points, valid, torch.zeros(0, 3))
    with pytest.raises(ValueError, match="valid: expected at least one valid pixel, found none of 6"):
        object_mask_from_nodes(points, torch.zeros(2, 3, dtype=torch.bool), nodes)
    with pytest.raises(ValueError, match=r"valid: expected shape \(H, W\) with \{'H': 2, 'W': 3\}, found \(3, 2\)"):
        object_mask_from_nodes(points, torch.ones(3, 2, dtype=torch.bool), nodes)
    bad = points.clone()
    bad[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="points: expected finite values at valid pixels, found 1 non-finite"):
        object_mask_from_nodes(bad, valid, nodes)
    with pytest.raises(ValueError, match="node_coverage: expected a finite value > 0"):
        object_mask_from_nodes(points, valid, nodes, node_coverage=0.0)


# ------------------------------------------------------------------------------------------------
# graph folders
# ------------------------------------------------------------------------------------------------

STEM = "shirt_000000_000110_euclidean_0.05"


@pytest.fixture(scope="module")
def scene():
    depth, mask, intr = synthetic_depth(60, 80, "wave", extent=0.6)
    graph = build_graph(depth, mask, intr, geodesic=False)  # Euclidean anchors, as read_graph_folder computes
    points, _ = depth_to_points(torch.from_numpy(depth).double(), torch.from_numpy(intr))
    return graph, points


def _same(a, b, names=("nodes", "edges", "edge_weights", "clusters", "cluster_sizes", "pixel_anchors")):
    for name in names:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and torch.equal(x, y), name


def test_read_graph_folder_with_pixel_files(tmp_path, scene):
    graph, points = scene
    gio.save_graph(tmp_path, STEM, graph)
    g = read_graph_folder(tmp_path)  # the single stem is found
    _same(g, graph, names=("nodes", "edges", "edge_weights", "clusters", "cluster_sizes", "pixel_anchors",
                           "pixel_weights"))
    g2 = read_graph_folder(tmp_path, STEM, source_points=points, node_coverage=0.05)
    _same(g2, graph)
    with pytest.raises(ValueError, match=r"source_points: expected the image size \(60, 80\) of .*pixel_anchors"):
        read_graph_folder(tmp_path, source_points=points[:50])


def test_read_graph_folder_computes_missing_anchors_from_the_source_points(tmp_path, scene):
    graph, points = scene
    gio.save_graph(tmp_path, STEM, graph)
    shutil.rmtree(tmp_path / "pixel_anchors")
    shutil.rmtree(tmp_path / "pixel_weights")
    g = read_graph_folder(tmp_path, source_points=points)
    g.validate()
    assert g.pixel_anchors.shape == (60, 80, 4) and g.pixel_weights.dtype == torch.float32
    _same(g, graph)  # the same 4 Euclidean-nearest nodes as build_graph(geodesic=False)
    torch.testing.assert_close(g.pixel_weights, graph.pixel_weights, rtol=0, atol=1e-5)
    invalid = points[..., 2] <= 0
    assert invalid.any() and (g.pixel_anchors[invalid] == -1).all() and (g.pixel_weights[invalid] == 0).all()
    torch.testing.assert_close(g.pixel_weights[~invalid].sum(-1), torch.ones(int((~invalid).sum())))
    with pytest.raises(ValueError, match=r"source_points: expected an \(H, W, 3\) point image to compute the "
                                         r"anchors \(.*pixel_anchors.* is absent\), found None"):
        read_graph_folder(tmp_path)
    with pytest.raises(ValueError, match=r"source_points: expected shape \(H, W, 3\), found \(60, 80\)"):
        read_graph_folder(tmp_path, source_points=points[..., 0])


def test_read_graph_folder_missing_and_ambiguous_files(tmp_path, scene):
    graph, _ = scene
    with pytest.raises(FileNotFoundError, match="graph_nodes: expected a folder of graph node files"):
        read_graph_folder(tmp_path)
    (tmp_path / "graph_nodes").mkdir()
    with pytest.raises(FileNotFoundError, match=r"graph_nodes: expected one graph file <name>.bin, found none"):
        read_graph_folder(tmp_path)
    gio.save_graph(tmp_path, "a", graph)
    gio.save_graph(tmp_path, "b", graph)
    with pytest.raises(ValueError, match=r"name: expected one graph in .*graph_nodes when name is None, found "
                                         r"stems \['a', 'b'\]"):
        read_graph_folder(tmp_path)
    assert read_graph_folder(tmp_path, "b").num_nodes == graph.num_nodes
    with pytest.raises(FileNotFoundError, match=r"graph_nodes/c.bin: expected the nodes file of graph 'c', found none"):
        read_graph_folder(tmp_path, "c")
    (tmp_path / "pixel_weights" / "b.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"pixel_weights/b.bin: expected it beside .*pixel_anchors/b.bin"):
        read_graph_folder(tmp_path, "b")
    shutil.rmtree(tmp_path / "graph_clusters")
    with pytest.raises(FileNotFoundError, match=r"graph_clusters: expected a folder of graph files"):
        read_graph_folder(tmp_path, "a")
    with pytest.raises(ValueError, match="name: expected a file stem without folders"):
        read_graph_folder(tmp_path, "x/y")


@pytest.mark.parametrize("pixel_files", [True, False])
def test_read_graph_folder_inconsistent_files(tmp_path, scene, pixel_files):
    graph, points = scene
    paths = gio.save_graph(tmp_path, STEM, graph)
    if not pixel_files:
        paths["pixel_anchors"].unlink()
        paths["pixel_weights"].unlink()
    kw = {"source_points": points}
    n = graph.num_nodes
    good_edges = paths["edges"].read_bytes()
    paths["edges"].write_bytes(good_edges[:-3])
    with pytest.raises(ValueError, match=r"graph_edges/.*\.bin: expected \d+ bytes .*\(truncated\)"):
        read_graph_folder(tmp_path, **kw)
    e = graph.edges[:-1]
    gio.write_edges(paths["edges"], torch.where(e >= n - 1, -1, e))  # a valid graph of another node count
    with pytest.raises(ValueError, match=rf"graph_edges/{STEM}.bin: expected {n} rows"):
        read_graph_folder(tmp_path, **kw)
    paths["edges"].write_bytes(good_edges)
    gio.write_edge_weights(paths["edge_weights"], graph.edge_weights[:, :-1])
    with pytest.raises(ValueError, match=rf"graph_edges_weights/{STEM}.bin: expected shape \({n}, 8\)"):
        read_graph_folder(tmp_path, **kw)
    gio.write_edge_weights(paths["edge_weights"], graph.edge_weights)
    gio.write_clusters(paths["clusters"], graph.clusters[:-2])
    with pytest.raises(ValueError, match=rf"graph_clusters/{STEM}.bin: expected {n} nodes"):
        read_graph_folder(tmp_path, **kw)


# ------------------------------------------------------------------------------------------------
# PLY and tracking outputs
# ------------------------------------------------------------------------------------------------


def test_write_ply_reads_back_with_open3d(tmp_path):
    o3d = pytest.importorskip("open3d")
    pts = torch.tensor([[0.0, 0.1, 1.0], [-0.25, 0.5, 2.0], [1.5, -2.0, 0.75]])
    cols = torch.tensor([[0.0, 0.5, 1.0], [1.0, 0.0, 0.0], [0.2, 0.4, 0.6]])
    p = write_ply(tmp_path / "sub" / "c.ply", pts, cols)
    assert p == tmp_path / "sub" / "c.ply"
    raw = p.read_bytes()
    assert raw.startswith(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n")
    assert len(raw) == raw.index(b"end_header\n") + len(b"end_header\n") + 3 * (12 + 3)
    pc = o3d.io.read_point_cloud(str(p))
    np.testing.assert_array_equal(np.asarray(pc.points), pts.numpy().astype(np.float64))
    c8 = np.round(cols.numpy().astype(np.float64) * 255)
    np.testing.assert_allclose(np.asarray(pc.colors) * 255, c8, atol=1e-9)
    pc2 = o3d.io.read_point_cloud(str(write_ply(tmp_path / "n.ply", pts.numpy())))
    assert len(pc2.points) == 3 and not pc2.has_colors()


def test_write_ply_bad_input(tmp_path):
    pts = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"points: expected shape \(P, 3\) with \{'P': 3\}, found \(3, 2\)"):
        write_ply(tmp_path / "a.ply", torch.zeros(3, 2))
    bad = pts.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="points: expected finite values, found 1 non-finite"):
        write_ply(tmp_path / "a.ply", bad)
    with pytest.raises(ValueError, match=r"colors: expected shape \(P, 3\) with \{'P': 3\}, found \(2, 3\)"):
        write_ply(tmp_path / "a.ply", pts, torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"colors: expected RGB values in \[0, 1\], found range \[0, 255\]"):
        write_ply(tmp_path / "a.ply", pts, torch.full((3, 3), 255.0).index_fill_(0, torch.tensor([0]), 0.0))
    assert not (tmp_path / "a.ply").exists()


def _outputs():
    H, W = 4, 5
    fx, fy, cx, cy = 100.0, 50.0, 2.0, 1.5
    idx = torch.tensor([0, 7, 19, 12])
    u, v = (idx % W).double(), (idx // W).double()
    src = torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones(4, dtype=torch.float64)], -1)
    shift = torch.tensor([[0.01, 0.02, 0.0], [0.03, -0.04, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, -2.0]],
                         dtype=torch.float64)
    N = 3
    kwargs = dict(
        warped_points=src + shift,
        colors=torch.rand(4, 3),
        pixel_index=idx,
        image_size=(H, W),
        source_points=src,
        intrinsics=torch.tensor([fx, fy, cx, cy]),
        rotations=torch.eye(3).expand(N, 3, 3).clone(),
        translations=torch.arange(N * 3, dtype=torch.float32).view(N, 3) / 10,
        node_valid=torch.tensor([True, False, True]),
        result={"energy": np.float32(0.25), "iterations": np.int64(7), "per_iter": torch.tensor([3.0, 1.0]),
                "flag": np.bool_(True), "scalar": torch.tensor(2.5), "path": Path("/x/y"), "tuple": (1, 2),
                "nested": {1: np.arange(3)}},
    )
    return kwargs, (H, W)


def test_write_tracking_outputs_round_trip(tmp_path):
    kw, (H, W) = _outputs()
    paths = write_tracking_outputs(tmp_path / "out", **kw)
    assert set(paths) == set(OUTPUT_FILES) and all(p.parent == tmp_path / "out" and p.is_file() for p in paths.values())
    assert paths["scene_flow"].name == "scene_flow.sflow" and paths["optical_flow"].name == "optical_flow.oflow"

    sflow, svalid = read_flow_binary(paths["scene_flow"], channels=3)
    tracked = torch.zeros(H * W, dtype=torch.bool)
    tracked[kw["pixel_index"]] = True
    assert sflow.shape == (H, W, 3) and torch.equal(svalid.view(-1), tracked)
    expected = (kw["warped_points"] - kw["source_points"]).float()
    torch.testing.assert_close(sflow.view(-1, 3)[kw["pixel_index"]], expected)

    oflow, ovalid = read_flow_binary(paths["optical_flow"], channels=2)
    # pixel 12 is tracked but its warped point has z = -1 (no projection): invalid in the optical flow
    assert torch.equal(ovalid.view(-1), tracked & (torch.arange(H * W) != 12))
    # shifts (dx, dy) at depth 1 move the projection by (fx dx, fy dy) = (1, 1) and (3, -2) pixels
    expected_uv = torch.tensor([[1.0, 1.0], [3.0, -2.0], [0.0, 0.0]])
    torch.testing.assert_close(oflow.view(-1, 2)[kw["pixel_index"][:3]], expected_uv, rtol=0, atol=1e-5)
    assert (oflow.view(-1, 2)[~tracked] == 0).all()

    with np.load(paths["graph_motion"]) as z:
        assert sorted(z.files) == ["rotations", "translations", "valid"]
        np.testing.assert_array_equal(z["rotations"], kw["rotations"].numpy())
        np.testing.assert_array_equal(z["translations"], kw["translations"].numpy())
        assert z["valid"].dtype == bool and z["valid"].tolist() == [True, False, True]

    res = json.loads(paths["result"].read_text())
    assert res == {"energy": 0.25, "iterations": 7, "per_iter": [3.0, 1.0], "flag": True, "scalar": 2.5,
                   "path": "/x/y", "tuple": [1, 2], "nested": {"1": [0, 1, 2]}}

    pc = pytest.importorskip("open3d").io.read_point_cloud(str(paths["deformed"]))
    np.testing.assert_allclose(np.asarray(pc.points), kw["warped_points"].numpy(), atol=1e-6)
    assert not list((tmp_path / "out").glob(".*.tmp"))  # no temp files left behind


def test_write_tracking_outputs_without_colors(tmp_path):
    kw, _ = _outputs()
    kw["colors"] = None
    paths = write_tracking_outputs(tmp_path, **kw)
    assert b"property uchar red" not in paths["deformed"].read_bytes()[:300]


@pytest.mark.parametrize(
    "change, match",
    [
        ({"pixel_index": torch.tensor([0, 7, 7, 12])}, "pixel_index: expected distinct pixels, found 1 repeats"),
        ({"pixel_index": torch.tensor([0, 7, 20, 12])}, r"pixel_index: expected indices in \[0, 19\] \(H \* W = 4 \* 5\)"),
        ({"pixel_index": torch.tensor([0.0, 7, 19, 12])}, "pixel_index: expected integer flat pixel indices"),
        ({"pixel_index": torch.tensor([0, 7, 19])}, r"pixel_index: expected shape \(P\) with \{'P': 4\}, found \(3,\)"),
        ({"source_points": torch.zeros(5, 3)}, r"source_points: expected shape \(P, 3\) with \{'P': 4\}"),
        ({"warped_points": torch.full((4, 3), float("nan"))}, "warped_points: expected finite values"),
        ({"colors": torch.full((4, 3), 2.0)}, r"colors: expected RGB values in \[0, 1\]"),
        ({"image_size": (4,)}, r"image_size: expected \(H, W\) positive integers, found \(4,\)"),
        ({"intrinsics": torch.ones(2)}, "intrinsics: expected shape"),
        ({"translations": torch.zeros(2, 3)}, r"translations: expected shape \(N, 3\) with .*'N': 3"),
        ({"node_valid": torch.ones(3)}, "node_valid: expected a bool mask, found dtype torch.float32"),
        ({"result": {"energy": float("nan")}}, r"result\['energy'\]: expected a finite number \(JSON\), found nan"),
        ({"result": {"a": [1, object()]}}, r"result\['a'\]\[1\]: expected JSON-serialisable values"),
        ({"result": [1]}, "result: expected a dict, found list"),
    ],
)
def test_write_tracking_outputs_bad_input_writes_nothing(tmp_path, change, match):
    kw, _ = _outputs()
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        write_tracking_outputs(tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()
