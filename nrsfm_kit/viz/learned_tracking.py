"""Plotly figures for the learned tracker (Neural Non-Rigid Tracking): training curves per stage, the Table 1
ablation as grouped bars, and the learned weights against the 3D error of the correspondences."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nrsfm_kit.viz.plot3d import _np

__all__ = ["stage_curves_figure", "ablation_figure", "weight_vs_error_figure"]

#: loss entries of :func:`nrsfm_kit.tracking.training.train_stage` histories, in plotting order
LOSS_KEYS = ("loss", "l_corr", "l_graph", "l_warp", "l_bce", "l_epe")
_COLORS = {"loss": "black", "l_corr": "royalblue", "l_graph": "seagreen", "l_warp": "crimson", "l_bce": "darkorange",
           "l_epe": "purple"}


def stage_curves_figure(histories: Mapping[str, Sequence[Mapping]], keys: Sequence[str] = LOSS_KEYS,
                        title: str = "training curves per stage", log: bool = True, height: int = 360) -> go.Figure:
    """One panel per stage: the logged losses (``keys`` present in its history) against the step.

    Args:
        histories: {stage name: history}, a history being a list of dicts with "step" and scalar losses (the
            ``TrainResult.history`` of a stage; missing or None values are skipped).
        keys: which entries to draw (a key absent from every entry of a stage is left out of its panel).
        log: logarithmic y axes.
    """
    if not histories:
        raise ValueError("histories: expected at least one stage, found none")
    names = list(histories)
    fig = make_subplots(1, len(names), subplot_titles=names, horizontal_spacing=0.04)
    shown: set = set()
    for col, name in enumerate(names, start=1):
        hist = list(histories[name])
        for key in keys:
            pts = [(h["step"], h[key]) for h in hist if h.get(key) is not None]
            if not pts:
                continue
            x, y = zip(*pts)
            fig.add_trace(go.Scatter(x=list(x), y=list(y), mode="lines+markers", name=key, legendgroup=key,
                                     showlegend=key not in shown, line={"color": _COLORS.get(key)}), 1, col)
            shown.add(key)
        fig.update_xaxes(title_text="step", row=1, col=col)
        if log:
            fig.update_yaxes(type="log", row=1, col=col)
    fig.update_layout(title=title, height=height)
    return fig


def _mean_std(v) -> tuple[float, float | None]:
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ValueError(f"metric: expected a number or [mean, std], found {v!r}")
        return float(v[0]), (None if v[1] is None else float(v[1]))
    return float(v), None


def ablation_figure(tables: Mapping[str, Mapping[str, Mapping]], rows: Sequence[str] | None = None,
                    labels: Mapping[str, str] | None = None,
                    metrics: Sequence[str] = ("epe_3d_mm", "graph_error_3d_mm"),
                    title: str = "Table 1 ablation (lower is better)", height: int = 420) -> go.Figure:
    """Grouped bars of the ablation rows, one panel per metric, one bar colour per table.

    Args:
        tables: {table name: {row: {metric: value or [mean, std], ...}}}, e.g. the ``summary`` of
            :func:`nrsfm_kit.tracking.evaluate.ablation` (with standard deviations as error bars) and the rows
            measured in a notebook (plain numbers).
        rows: row order (default: the rows of the tables in first-seen order); a row missing from a table is
            left out of that table's bars.
        labels: {row: axis label} (default: a row's own "label" entry, else its key).
    """
    if not tables:
        raise ValueError("tables: expected at least one table, found none")
    if rows is None:
        rows = list(dict.fromkeys(r for t in tables.values() for r in t))
    def label(r):
        if labels and r in labels:
            return labels[r]
        for t in tables.values():
            if r in t and "label" in t[r]:
                return str(t[r]["label"])
        return r
    fig = make_subplots(1, len(metrics), subplot_titles=list(metrics), horizontal_spacing=0.08)
    for name, table in tables.items():
        for col, metric in enumerate(metrics, start=1):
            have = [r for r in rows if r in table and table[r].get(metric) is not None
                    and not (isinstance(table[r][metric], (list, tuple)) and table[r][metric][:1] == [None])]
            vals = [_mean_std(table[r][metric]) for r in have]
            err = [s for _, s in vals]
            fig.add_trace(go.Bar(x=[label(r) for r in have], y=[m for m, _ in vals], name=name, legendgroup=name,
                                 showlegend=col == 1, offsetgroup=name,
                                 error_y=None if all(e is None for e in err) else
                                 {"type": "data", "array": [0.0 if e is None else e for e in err]}), 1, col)
            fig.update_yaxes(title_text="mm", row=1, col=col)
    fig.update_layout(title=title, barmode="group", height=height)
    return fig


def weight_vs_error_figure(weights: Mapping[str, object], errors, edges: Sequence[float],
                           title: str = "learned weight against the 3D error of the correspondence",
                           height: int = 360) -> go.Figure:
    """Mean weight (and pixel count) per bin of the correspondence error.

    Args:
        weights: {name: (N,) weights in [0, 1]}, all for the same N correspondences.
        errors: (N,) 3D error of each correspondence, e.g. millimetres; non-finite entries are ignored.
        edges: increasing bin edges in the unit of ``errors``; the last bin is open (>= edges[-1]), errors below
            edges[0] count in the first bin.
    """
    e = _np(errors).reshape(-1).astype(np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not np.all(np.diff(edges) > 0):
        raise ValueError(f"edges: expected at least 2 increasing bin edges, found {edges.tolist()}")
    ok = np.isfinite(e)
    idx = np.clip(np.searchsorted(edges, e, side="right") - 1, 0, len(edges) - 1)
    names = [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:])] + [f">= {edges[-1]:g}"]
    counts = np.array([int((ok & (idx == k)).sum()) for k in range(len(edges))])
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=names, y=counts, name="correspondences", marker_color="lightgray", opacity=0.6),
                  secondary_y=True)
    for name, w in weights.items():
        w = _np(w).reshape(-1).astype(np.float64)
        if w.shape != e.shape:
            raise ValueError(f"weights[{name!r}]: expected shape {e.shape} like errors, found {w.shape}")
        mean = [float(w[ok & (idx == k)].mean()) if counts[k] else None for k in range(len(edges))]
        fig.add_trace(go.Scatter(x=names, y=mean, mode="lines+markers", name=name), secondary_y=False)
    fig.update_yaxes(title_text="mean weight", range=[0, 1.05], secondary_y=False)
    fig.update_yaxes(title_text="count", type="log", secondary_y=True)
    fig.update_xaxes(title_text="3D error of the correspondence")
    fig.update_layout(title=title, height=height)
    return fig
