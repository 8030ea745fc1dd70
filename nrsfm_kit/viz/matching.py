"""Plotly figures for DeepDeform's matcher: 6-channel patch pairs, the predicted heatmaps, non-rigid sampling
weights as an image, the matching table as bars, matches drawn across an image pair and flows side by side."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nrsfm_kit.viz.data import _rgb8, flow_to_rgb
from nrsfm_kit.viz.plot3d import _np

__all__ = ["patch_pairs_figure", "heatmaps_figure", "weights_image", "matching_table_figure", "matches_figure",
           "flow_comparison_figure", "METRIC_TITLES"]

#: axis titles of the matching metrics (:func:`nrsfm_kit.matching.evaluate.matching_table`), arrows: better
METRIC_TITLES = {"mean_2d_px": "mean 2D error (px) ↓", "mean_3d_m": "mean 3D error (m) ↓",
                 "acc_2d": "2D accuracy, ≤ 10 px ↑", "acc_3d": "3D accuracy, ≤ 5 cm ↑",
                 "flow_acc_20px": "flow accuracy, ≤ 20 px ↑", "coverage": "accepted matches ↑"}
_GROUPS = {"accepted, correct": "seagreen", "accepted, wrong": "darkorange", "accepted": "seagreen",
           "rejected": "crimson"}


def _patches(name: str, x) -> np.ndarray:
    a = _np(x)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[1] != 6 or a.shape[2] != a.shape[3]:
        raise ValueError(f"{name}: expected 6-channel patches (K, 6, S, S) or (6, S, S), found {tuple(a.shape)}")
    return a


def _marker(x, y, symbol: str, color: str, name: str, show: bool) -> go.Scatter:
    return go.Scatter(x=[x], y=[y], mode="markers", name=name, legendgroup=name, showlegend=show,
                      marker={"symbol": symbol, "size": 11, "color": color, "line": {"width": 2, "color": color}})


def patch_pairs_figure(source, target, target_px=None, visible=None, titles: Sequence[str] = (),
                       max_rows: int = 4, title: str = "", row_height: int = 190) -> go.Figure:
    """Patch pairs as rows of four panels: source RGB, source Z, target RGB, target Z (metres; blank where the
    depth is invalid, i.e. Z = 0).

    Args:
        source, target: (K, 6, S, S) (or one (6, S, S)) patches, RGB in [0, 1] then camera-frame XYZ in metres
            (:func:`nrsfm_kit.matching.data.extract_patches`).
        target_px: (K, 2) true match in target-patch pixels (x, y), drawn as a circle on the target panels where
            ``visible`` (default: where finite). The source centre (S - 1) / 2 is drawn as a cross.
        visible: (K,) bool.
        titles: one label per row, prefixed to the row's first panel title.
        max_rows: draw at most this many pairs.
    """
    s, t = _patches("source", source), _patches("target", target)
    if t.shape != s.shape:
        raise ValueError(f"target: expected shape {tuple(s.shape)} like source, found {tuple(t.shape)}")
    K, S = s.shape[0], s.shape[-1]
    tp = None
    if target_px is not None:
        tp = _np(target_px)
        if tp.shape != (K, 2):
            raise ValueError(f"target_px: expected shape ({K}, 2), one per patch pair, found {tuple(tp.shape)}")
    vis = np.isfinite(tp).all(-1) if tp is not None else np.zeros(K, bool)
    if visible is not None:
        v = _np(visible).astype(bool).reshape(-1)
        if v.shape != (K,):
            raise ValueError(f"visible: expected shape ({K},), found {tuple(v.shape)}")
        vis = vis & v
    n = min(K, int(max_rows))
    if n < 1:
        raise ValueError(f"max_rows: expected >= 1 with at least one patch pair, found max_rows={max_rows}, K={K}")
    cols = ["source RGB", "source Z (m)", "target RGB", "target Z (m)"]
    names = []
    for k in range(n):
        lab = titles[k] if k < len(titles) else ""
        names += [f"{lab}: {cols[0]}" if lab else cols[0], *cols[1:]]
    fig = make_subplots(n, 4, subplot_titles=names, horizontal_spacing=0.02, vertical_spacing=0.3 / max(n, 1))
    c = (S - 1) / 2.0
    shown: set = set()
    for k in range(n):
        for col, p in ((1, s[k]), (3, t[k])):
            fig.add_trace(go.Image(z=_rgb8(p[:3])), k + 1, col)
            z = np.where(p[5] > 0, p[5], np.nan)
            fig.add_trace(go.Heatmap(z=z, colorscale="Viridis", showscale=False), k + 1, col + 1)
        for col in (1, 2):
            fig.add_trace(_marker(c, c, "x-thin", "red", "source point", "source point" not in shown), k + 1, col)
            shown.add("source point")
        if tp is not None and vis[k]:
            for col in (3, 4):
                fig.add_trace(_marker(float(tp[k, 0]), float(tp[k, 1]), "circle-open", "red", "true match",
                                      "true match" not in shown), k + 1, col)
                shown.add("true match")
    for k in range(n):
        for col in range(1, 5):
            idx = 4 * k + col
            fig.update_xaxes(visible=False, range=[-0.5, S - 0.5], row=k + 1, col=col)
            fig.update_yaxes(visible=False, range=[S - 0.5, -0.5], scaleanchor="x" if idx == 1 else f"x{idx}",
                             row=k + 1, col=col)
    fig.update_layout(title=title, height=row_height * n + 80, margin={"l": 10, "r": 10, "t": 70, "b": 10})
    return fig


def heatmaps_figure(out, index: int = 0, target_px=None, title: str = "", height: int = 300) -> go.Figure:
    """The matcher's maps for one patch pair: H_sg = sigmoid(logits), H_sm = softmax(logits), H = H_sg * H_sm and
    the depth D (metres), with the argmax of H (the predicted match, a cross) and the true match (a circle).

    Args:
        out: a :class:`nrsfm_kit.models.matcher.MatcherOutput` of B pairs.
        index: which pair, 0 <= index < B.
        target_px: (2,) true match (x, y) in target-patch pixels, or None.
    """
    maps = [("H_sg = sigmoid(l)", out.heatmap_sigmoid), ("H_sm = softmax(l)", out.heatmap_softmax),
            ("H = H_sg · H_sm", out.heatmap), ("D (m)", out.depth)]
    B = int(out.heatmap.shape[0])
    if isinstance(index, bool) or int(index) != index or not 0 <= int(index) < B:
        raise ValueError(f"index: expected an integer in [0, {B - 1}], found {index!r}")
    i = int(index)
    h = _np(out.heatmap[i])
    S = h.shape[-1]
    y, x = divmod(int(np.argmax(h)), S)
    vis = float(_np(out.visibility[i]))
    fig = make_subplots(1, 4, subplot_titles=[m[0] for m in maps], horizontal_spacing=0.03)
    for col, (_, m) in enumerate(maps, start=1):
        fig.add_trace(go.Heatmap(z=_np(m[i]), colorscale="Viridis", showscale=False), 1, col)
        fig.add_trace(_marker(x, y, "x-thin", "red", "argmax of H", col == 1), 1, col)
        if target_px is not None:
            g = _np(target_px).reshape(-1)
            if g.shape != (2,):
                raise ValueError(f"target_px: expected shape (2,), found {tuple(g.shape)}")
            if np.isfinite(g).all():
                fig.add_trace(_marker(float(g[0]), float(g[1]), "circle-open", "white", "true match", col == 1), 1, col)
        fig.update_xaxes(visible=False, range=[-0.5, S - 0.5], row=1, col=col)
        fig.update_yaxes(visible=False, range=[S - 0.5, -0.5], scaleanchor="x" if col == 1 else f"x{col}", row=1,
                         col=col)
    d = float(_np(out.depth[i])[y, x])
    head = f"{title}: " if title else ""
    fig.update_layout(title=f"{head}visibility V = {vis:.2f}, depth at the argmax {d:.3f} m, max H = {h.max():.3f}",
                      height=height, margin={"l": 10, "r": 10, "t": 70, "b": 10})
    return fig


def weights_image(pixels, values, shape: tuple[int, int]) -> np.ndarray:
    """Scatter per-pixel values into an image: pixels (N, 2) integer (x, y), values (N,) -> (H, W) float64, NaN
    at pixels without a value (e.g. the non-rigid sampling weights of :class:`~nrsfm_kit.matching.data.PreparedPair`)."""
    px = _np(pixels)
    v = _np(values).reshape(-1)
    if px.ndim != 2 or px.shape[1] != 2 or v.shape != (px.shape[0],):
        raise ValueError(f"pixels, values: expected shapes (N, 2) and (N,), found {tuple(px.shape)} and "
                         f"{tuple(_np(values).shape)}")
    H, W = (int(s) for s in shape)
    ij = np.rint(px).astype(np.int64)
    bad = (ij[:, 0] < 0) | (ij[:, 0] >= W) | (ij[:, 1] < 0) | (ij[:, 1] >= H)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"pixels: expected (x, y) inside the {W} x {H} image, found {px[k].tolist()} (index {k})")
    img = np.full((H, W), np.nan)
    img[ij[:, 1], ij[:, 0]] = v
    return img


def matching_table_figure(table: Mapping[str, Mapping], metrics: Sequence[str] = ("mean_2d_px", "mean_3d_m",
                                                                                    "acc_2d", "acc_3d"),
                          methods: Sequence[str] | None = None, labels: Mapping[str, str] | None = None,
                          highlight: str = "learned", title: str = "matching on held-out pairs",
                          height: int = 380) -> go.Figure:
    """One bar panel per metric, one bar per method (``highlight`` in its own colour).

    Args:
        table: {method: {metric: value}} as returned by :func:`nrsfm_kit.matching.evaluate.matching_table`
            (its ``"settings"`` entry is ignored); NaN values are left out.
        methods: bar order (default: the table's methods in order).
        labels: {method: axis label} (default: the method key).
    """
    rows = [m for m in (methods if methods is not None else table) if m != "settings"]
    if not rows:
        raise ValueError("table: expected at least one method row, found none")
    missing = [m for m in rows if m not in table]
    if missing:
        raise ValueError(f"methods: expected rows of the table ({[k for k in table if k != 'settings']}), found "
                         f"{missing}")
    for key in metrics:
        if any(key not in table[m] for m in rows):
            raise ValueError(f"metrics: {key!r} is missing from a row of the table")
    lab = lambda m: labels.get(m, m) if labels else m  # noqa: E731
    fig = make_subplots(1, len(metrics), subplot_titles=[METRIC_TITLES.get(k, k) for k in metrics],
                        horizontal_spacing=0.06)
    for col, key in enumerate(metrics, start=1):
        vals = [float(table[m][key]) for m in rows]
        keep = [i for i, v in enumerate(vals) if math.isfinite(v)]
        fig.add_trace(go.Bar(x=[lab(rows[i]) for i in keep], y=[vals[i] for i in keep], showlegend=False,
                             marker_color=["crimson" if rows[i] == highlight else "steelblue" for i in keep],
                             text=[f"{vals[i]:.3g}" for i in keep], textposition="outside"), 1, col)
        if key.startswith("acc") or key in ("coverage", "flow_acc_20px"):
            fig.update_yaxes(range=[0, 1.1], row=1, col=col)
    fig.update_layout(title=title, height=height, margin={"l": 40, "r": 10, "t": 80, "b": 10})
    return fig


def matches_figure(source_color, target_color, source_px, target_px, accepted=None, correct=None, gt_px=None,
                   gap: int = 8, title: str = "", height: int = 360) -> go.Figure:
    """Source and target images side by side with a line per match, coloured by group: accepted (and, with
    ``correct``, accepted-correct vs accepted-wrong) and rejected (dotted).

    Args:
        source_color, target_color: (3, H, W) / (H, W, 3) RGB in [0, 1], the same size.
        source_px, target_px: (K, 2) pixels (x, y) in their own image; non-finite target rows are not drawn.
        accepted: (K,) bool (default: all accepted).
        correct: (K,) bool, e.g. 2D error <= 10 px; splits the accepted matches in two groups.
        gt_px: (K, 2) true target pixels, drawn as small crosses on the target image.
        gap: white columns between the images, pixels.
    """
    src, tgt = _rgb8(source_color), _rgb8(target_color)
    if src.ndim != 3 or src.shape != tgt.shape:
        raise ValueError(f"target_color: expected an RGB image of the source's shape {tuple(src.shape)}, found "
                         f"{tuple(tgt.shape)}")
    H, W = src.shape[:2]
    sp, tp = _np(source_px).reshape(-1, 2), _np(target_px).reshape(-1, 2)
    K = sp.shape[0]
    if tp.shape != (K, 2):
        raise ValueError(f"target_px: expected shape ({K}, 2) like source_px, found {tuple(tp.shape)}")

    def flags(name, x, default):
        if x is None:
            return np.full(K, default)
        a = _np(x).astype(bool).reshape(-1)
        if a.shape != (K,):
            raise ValueError(f"{name}: expected shape ({K},), found {tuple(a.shape)}")
        return a

    acc, cor = flags("accepted", accepted, True), flags("correct", correct, True)
    off = W + int(gap)
    canvas = np.full((H, off + W, 3), 255, np.uint8)
    canvas[:, :W], canvas[:, off:] = src, tgt
    fig = go.Figure(go.Image(z=canvas))
    groups = {"rejected": ~acc}
    if correct is None:
        groups["accepted"] = acc
    else:
        groups.update({"accepted, correct": acc & cor, "accepted, wrong": acc & ~cor})
    fin = np.isfinite(tp).all(-1)
    for name, sel in groups.items():
        sel = sel & fin
        n = int(sel.sum())
        xs = np.stack([sp[sel, 0], tp[sel, 0] + off, np.full(n, np.nan)], 1).ravel()
        ys = np.stack([sp[sel, 1], tp[sel, 1], np.full(n, np.nan)], 1).ravel()
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"{name} ({n})", connectgaps=False,
                                 line={"color": _GROUPS[name], "width": 1.2, "dash": "dot" if name == "rejected" else None},
                                 marker={"size": 4}))
    if gt_px is not None:
        g = _np(gt_px).reshape(-1, 2)
        if g.shape != (K, 2):
            raise ValueError(f"gt_px: expected shape ({K}, 2) like source_px, found {tuple(g.shape)}")
        ok = np.isfinite(g).all(-1)
        fig.add_trace(go.Scatter(x=g[ok, 0] + off, y=g[ok, 1], mode="markers", name="true match",
                                 marker={"symbol": "x-thin", "size": 7, "color": "royalblue",
                                         "line": {"width": 1.5, "color": "royalblue"}}))
    fig.update_xaxes(visible=False, range=[-0.5, off + W - 0.5])
    fig.update_yaxes(visible=False, range=[H - 0.5, -0.5], scaleanchor="x")
    fig.update_layout(title=title, height=height, margin={"l": 0, "r": 0, "t": 50, "b": 0},
                      legend={"orientation": "h", "y": -0.02})
    return fig


def flow_comparison_figure(reference, predicted, valid, names: Sequence[str] = ("reference", "predicted"),
                           max_error: float = 10.0, title: str = "", height: int = 300) -> go.Figure:
    """Two optical flows (H, W, 2) pixels, colour-coded on the same scale (hue = direction, saturation =
    magnitude), and their end-point error ||predicted - reference|| over ``valid`` (H, W) bool, clipped at
    ``max_error`` pixels (blank outside ``valid`` or where either flow is non-finite)."""
    ref, pred = _np(reference), _np(predicted)
    if ref.ndim != 3 or ref.shape[-1] != 2 or pred.shape != ref.shape:
        raise ValueError(f"predicted: expected two flows of shape (H, W, 2), found {tuple(ref.shape)} and "
                         f"{tuple(pred.shape)}")
    v = _np(valid).astype(bool)
    if v.shape != ref.shape[:2]:
        raise ValueError(f"valid: expected shape {ref.shape[:2]}, found {tuple(v.shape)}")
    if not max_error > 0:
        raise ValueError(f"max_error: expected pixels > 0, found {max_error!r}")
    ok = v & np.isfinite(ref).all(-1) & np.isfinite(pred).all(-1)
    mags = np.linalg.norm(np.where(ok[..., None], ref, 0.0), axis=-1)
    scale = max(float(mags.max(initial=0.0)), 1e-6)
    err = np.where(ok, np.linalg.norm(np.nan_to_num(pred - ref), axis=-1), np.nan)
    fig = make_subplots(1, 3, subplot_titles=[*names, f"end-point error (px, clipped at {max_error:g})"],
                        horizontal_spacing=0.03)
    for col, f in ((1, ref), (2, pred)):
        fig.add_trace(go.Image(z=flow_to_rgb(np.nan_to_num(f), ok, max_norm=scale)), 1, col)
    fig.add_trace(go.Heatmap(z=np.minimum(err, max_error), zmin=0, zmax=max_error, colorscale="Inferno",
                             colorbar={"title": "px", "len": 0.8}), 1, 3)
    fig.update_yaxes(autorange="reversed", row=1, col=3)
    for col in (1, 2, 3):
        fig.update_xaxes(visible=False, row=1, col=col)
        fig.update_yaxes(visible=False, scaleanchor="x" if col == 1 else f"x{col}", row=1, col=col)
    fig.update_layout(title=title, height=height, margin={"l": 0, "r": 0, "t": 60, "b": 0})
    return fig
