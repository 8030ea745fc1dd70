"""Benchmark of DeepDeform (Bozic et al., CVPR 2020): the Siamese matcher, the tracker and the dense alignment.

Rows, side by side in one run, float32:

- **matcher**: ``SiameseMatcher(MatcherConfig.paper())`` (224x224 patches, width 1, BatchNorm) and
  ``SiameseMatcher(MatcherConfig.teaching())`` (64x64, width 0.25, GroupNorm) on random (B, 6, S, S) source and
  target patches: inference (``eval()``, ``torch.no_grad``) at batch 1 and 32, and a training forward + backward
  of the teaching net at batch 32 (``train()``; loss = ``matcher_loss(...)["loss"]``, stage ``heatmap_depth``, on
  random labels; no optimiser step). ``ratio``: the row's median over the same net's batch-1 inference median on
  the same device; ``per_pair_ms`` = median / batch.
- **tracker**: ``track_deepdeform(pair, graph, matcher=SiameseMatcher(...).eval(), source_mask=mask)`` per frame
  pair at the paper's 480x640 on ``synthetic_rgbd_pair(480, 640, seed=0, time_gap=0.6, t_source=1.0)`` with
  ``graph = build_graph(depth, mask, intrinsics)`` (built once, not timed), with the paper's matcher, with the
  teaching matcher and without a matcher (E_data + E_reg only). The matchers are UNTRAINED (random weights): the
  time of a forward does not depend on the weights, but the number of accepted matches, hence the size of the
  learned term, does (see ``accepted``). The time is split into node matching (``node_matches``, timed by a
  wrapper around ``nrsfm_kit.matching.tracker.node_matches`` installed for the row only) and alignment (the
  rest: learned terms + 10 GN steps). ``ratio``: over the tracker without a matcher (same device and size);
  ``x_paper``: over the 2299 ms per frame quoted for the whole DeepDeform tracker (on its authors' GPU).
- **dense**: ``dense_alignment(pair, sm.source_px, sm.target_px, pair.source_mask)`` (App. D, with its default
  graph construction inside the timed call) with ``sm = simulate_sparse_matches(pair, 30, seed=0)`` at 240x320
  and 480x640. ``ratio``: over the smallest size on the same device.

CUDA rows (every row again with the networks and tensors on the GPU) when ``torch.cuda.is_available()``.

Median wall time over ``--reps`` repetitions after one warm-up (which also loads / compiles the Warp kernels),
median process CPU time beside it. On CPU, rows whose single call takes tens of seconds (the paper matcher at
batch 32 and the tracker with the paper matcher) use ``--heavy-reps`` repetitions instead. The synthetic pairs
and graphs are made once in this process and handed to the workers in a temporary ``.pt`` file (removed at the
end). Each row runs in its own spawned worker process (as bench_tracking) so that its peak memory is its own: on
CPU the peak RSS of the worker above its RSS after the imports (so the loaded pair, the model, activations,
gradients and workspace; the peak is reset through ``/proc/self/clear_refs`` before the row), on CUDA
``torch.cuda.max_memory_allocated`` after a reset (torch's allocator only: Warp's own allocations are not in it).
``--in-process`` (implied by ``--quick``) runs the rows in this process instead: faster, but memory the
allocator kept from earlier rows is not counted again, so the CPU peaks are then lower bounds.

The row groups are the functions in ``ROW_FUNCTIONS`` (Settings -> row specs, plain dicts); each spec's
``group`` names its builder in ``BUILDERS`` (spec, data -> the timed call and its extra fields).

Usage: ``python benchmarks/bench_matching.py [--quick] [--reps N] [--heavy-reps N] [--json PATH] [--threads N]
[--device auto|cpu|cuda] [--in-process]``. ``--quick``: 2 repetitions, teaching matcher only at batch 1 and 8,
tracker (teaching matcher and none) and dense rows at 120x160, in-process (a smoke run for tests).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from nrsfm_kit.utils.bench import (
    available_cpus,
    device_sync,
    machine_info,
    measure_row,
    run_spawned,
)
from nrsfm_kit.utils.bench import run_in_process as _run_in_process
from nrsfm_kit.utils.io import atomic_write_json

# Whole DeepDeform tracker per frame, on the authors' GPU, as quoted in the brief of this benchmark; the same
# figure appears in Neural Non-Rigid Tracking (Bozic et al., NeurIPS 2020) whose "85x faster correspondence
# prediction" is 2299 / 27 ms, so it may cover DeepDeform's correspondence prediction rather than its solver too:
# the report prints it beside both the whole tracker and its node-matching part.
PAPER_TRACKER_MS = 2299.0
NET_NAMES = {"paper": "paper (224, w 1)", "teaching": "teaching (64, w 0.25)", "none": "none"}
PAIR_KW = {"seed": 0, "time_gap": 0.6, "t_source": 1.0}  # synthetic_rgbd_pair(H, W, **PAIR_KW)
NUM_SPARSE = 30  # simulate_sparse_matches(pair, 30, seed=0): DeepDeform annotates 20-50 matches per pair


@dataclass
class Settings:
    """What one run measures (built from the command line by :func:`main`)."""

    devices: list[str]
    nets: list[str] = field(default_factory=lambda: ["paper", "teaching"])
    batches: list[int] = field(default_factory=lambda: [1, 32])
    train_nets: list[str] = field(default_factory=lambda: ["teaching"])
    train_batch: int = 32
    tracker_matchers: list[str] = field(default_factory=lambda: ["none", "teaching", "paper"])
    tracker_size: tuple[int, int] = (480, 640)
    dense_sizes: list[tuple[int, int]] = field(default_factory=lambda: [(240, 320), (480, 640)])
    reps: int = 5
    heavy_reps: int = 3  # CPU rows of tens of seconds a call (paper matcher at batch >= 8, tracker with it)
    threads: int = 1
    data_dir: str = ""  # folder of the pair files (pair_HxW.pt), set by main

    def data_path(self, size: tuple[int, int]) -> str:
        return str(Path(self.data_dir) / f"pair_{size[0]}x{size[1]}.pt")

    def sizes(self) -> list[tuple[int, int]]:
        """Image sizes whose synthetic pair the rows need (tracker size first)."""
        out = [tuple(self.tracker_size)] if self.tracker_matchers else []
        return out + [tuple(sz) for sz in self.dense_sizes if tuple(sz) not in out]


# ---------------------------------------------------------------------------------------------- rows

def _base(s: Settings, group: str, device: str, **kw) -> dict:
    return {"group": group, "device": device, "reps": s.reps, "threads": s.threads, **kw}


def _heavy(s: Settings, spec: dict) -> dict:
    if spec["device"] == "cpu":
        spec["reps"] = min(s.reps, s.heavy_reps)
    return spec


def matcher_rows(s: Settings) -> list[dict]:
    """Each net's inference at every batch (batch 1 first: the reference), then the training rows."""
    rows = []
    for device in s.devices:
        for net in s.nets:
            for b in sorted(s.batches):
                spec = _base(s, "matcher", device, net=net, mode="inference", batch=int(b))
                rows.append(_heavy(s, spec) if net == "paper" and b >= 8 else spec)
        for net in s.train_nets:
            spec = _base(s, "matcher", device, net=net, mode="training", batch=int(s.train_batch))
            rows.append(_heavy(s, spec) if net == "paper" else spec)
    return rows


def tracker_rows(s: Settings) -> list[dict]:
    """The whole tracker per frame pair at ``s.tracker_size`` (without a matcher first: the reference)."""
    H, W = s.tracker_size
    order = sorted(s.tracker_matchers, key=lambda m: m != "none")
    rows = []
    for device in s.devices:
        for m in order:
            spec = _base(s, "tracker", device, net=m, mode="inference", batch=1, height=H, width_px=W,
                         data_path=s.data_path((H, W)))
            rows.append(_heavy(s, spec) if m == "paper" else spec)
    return rows


def dense_rows(s: Settings) -> list[dict]:
    """App. D dense alignment per pair at every ``s.dense_sizes`` (smallest first: the reference)."""
    return [_base(s, "dense", device, net="none", mode="inference", batch=1, height=H, width_px=W,
                  data_path=s.data_path((H, W)), num_matches=NUM_SPARSE)
            for device in s.devices for H, W in sorted(tuple(sz) for sz in s.dense_sizes)]


# The row groups of a run, in order. A new group is one more function (Settings -> list of specs) + a builder.
ROW_FUNCTIONS: list[Callable[[Settings], list[dict]]] = [matcher_rows, tracker_rows, dense_rows]


# ---------------------------------------------------------------------------------------------- data

def make_pair_file(path: str | Path, height: int, width: int) -> dict:
    """Generate ``synthetic_rgbd_pair(height, width, **PAIR_KW)`` and its graph (``build_graph`` on the source
    depth and mask) and save their tensors (plain dicts, loadable with ``weights_only=True``) to ``path``.
    Returns a summary (graph nodes, masked pixels)."""
    from nrsfm_kit.data.rgbd import synthetic_rgbd_pair
    from nrsfm_kit.data.types import RGBDPair
    from nrsfm_kit.graph import build_graph

    pair = synthetic_rgbd_pair(height, width, **PAIR_KW)
    graph = build_graph(pair.source_depth, pair.source_mask, pair.intrinsics)
    base = {f.name: getattr(pair, f.name) for f in fields(RGBDPair)}  # the RGBDPair part, no scene object
    g = {f.name: getattr(graph, f.name) for f in fields(graph)}
    torch.save({"pair": base, "graph": g}, path)
    return {"height": height, "width_px": width, "nodes": graph.num_nodes,
            "mask_pixels": int(pair.source_mask.sum()) if pair.source_mask is not None else None}


def _to(x, device: str):
    return x.to(device) if isinstance(x, torch.Tensor) else x


_DATA_CACHE: dict[str, dict] = {}


def load_pair(path: str, device: str):
    """(RGBDPair, DeformationGraph) of a file written by :func:`make_pair_file`, on ``device``."""
    from nrsfm_kit.data.types import RGBDPair
    from nrsfm_kit.graph.types import DeformationGraph

    d = _DATA_CACHE.get(path)
    if d is None:
        d = torch.load(path, map_location="cpu", weights_only=True)
        _DATA_CACHE[path] = d  # in-process runs read each file once (a worker reads it once anyway)
    pair = RGBDPair(**{k: _to(v, device) for k, v in d["pair"].items()})
    return pair, DeformationGraph(**d["graph"]).to(device)


# ---------------------------------------------------------------------------------------------- builders
# builder(spec) -> (once: the timed call, extra: timings dict -> extra row fields)

def _matcher(net: str, device: str):
    from nrsfm_kit.models.matcher import MatcherConfig, SiameseMatcher

    cfg = {"paper": MatcherConfig.paper, "teaching": MatcherConfig.teaching}[net]()
    return SiameseMatcher(cfg).to(device)


def build_matcher(spec: dict) -> tuple[Callable[[], object], Callable[[dict], dict]]:
    """``spec['net']`` matcher on random (B, 6, S, S) patches (RGB in [0, 1], XYZ around 1.5 m); inference, or
    training forward + backward of ``matcher_loss`` on random labels."""
    from nrsfm_kit.matching.losses import matcher_loss

    dev, B = spec["device"], int(spec["batch"])
    model = _matcher(spec["net"], dev)
    S = model.config.patch_size
    g = torch.Generator().manual_seed(0)

    def patch() -> torch.Tensor:
        rgb = torch.rand(B, 3, S, S, generator=g)
        xyz = 0.2 * torch.randn(B, 3, S, S, generator=g) + torch.tensor([0.0, 0.0, 1.5]).view(1, 3, 1, 1)
        return torch.cat([rgb, xyz], 1).to(dev)

    src, tgt = patch(), patch()
    training = spec["mode"] == "training"
    model.train(training)
    if training:
        target_px = (torch.rand(B, 2, generator=g) * (S - 1)).to(dev)
        target_depth = (1.5 + 0.1 * torch.randn(B, generator=g)).to(dev)
        visible = (torch.rand(B, generator=g) < 0.8).to(dev)

        def once():
            model.zero_grad(set_to_none=True)
            out = model(src, tgt)
            matcher_loss(out, target_px, target_depth, visible)["loss"].backward()
    else:
        def once():
            with torch.no_grad():
                model(src, tgt)

    params = sum(p.numel() for p in model.parameters())
    return once, lambda t: {"params": params, "height": S, "width_px": S}


@contextlib.contextmanager
def _timed_node_matches(record: list[float], sync: Callable[[], None] | None):
    """Replace ``nrsfm_kit.matching.tracker.node_matches`` (the module global ``track_deepdeform`` calls) by a
    wrapper appending its wall seconds to ``record``; restored on exit."""
    from nrsfm_kit.matching import tracker

    original = tracker.node_matches

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = original(*args, **kwargs)
        if sync is not None:
            sync()
        record.append(time.perf_counter() - t0)
        return out

    tracker.node_matches = timed
    try:
        yield
    finally:
        tracker.node_matches = original


def build_tracker(spec: dict) -> tuple[Callable[[], object], Callable[[dict], dict]]:
    """``track_deepdeform`` on the pair file with the (untrained, eval) ``spec['net']`` matcher or none."""
    from nrsfm_kit.matching.tracker import track_deepdeform

    dev = spec["device"]
    pair, graph = load_pair(spec["data_path"], dev)
    matcher = None if spec["net"] == "none" else _matcher(spec["net"], dev).eval()
    record: list[float] = []
    state: dict = {}

    def once():
        state.clear()  # the previous result is not kept alive during the next call
        with _timed_node_matches(record, device_sync(dev)):
            state["res"] = track_deepdeform(pair, graph, matcher=matcher, source_mask=pair.source_mask)

    def extra(t: dict) -> dict:
        res = state["res"]
        row = {"nodes": graph.num_nodes, "params": sum(p.numel() for p in matcher.parameters()) if matcher else 0,
               "accepted": int(res.node_ids.numel()), "gn_steps": len(res.alignment.history),
               "matched_nodes": int(res.matches.accepted.numel()) if res.matches is not None else 0}
        if matcher is not None:
            if len(record) < len(t["times"]):
                raise RuntimeError(f"node_matches: expected one timed call per repetition, found {len(record)} "
                                   f"for {len(t['times'])} (track_deepdeform no longer calls it?)")
            match = record[-len(t["times"]):]  # the timed reps (after the warm-up)
            row["match_ms"] = statistics.median(match) * 1e3
            row["align_ms"] = statistics.median([w - m for w, m in zip(t["times"], match)]) * 1e3
        else:
            row["match_ms"], row["align_ms"] = 0.0, t["wall"] * 1e3
        return row

    return once, extra


def build_dense(spec: dict) -> tuple[Callable[[], object], Callable[[dict], dict]]:
    """``dense_alignment`` of the pair file with ``simulate_sparse_matches(pair, 30, seed=0)`` (graph built inside)."""
    from nrsfm_kit.matching.alignment import dense_alignment, simulate_sparse_matches

    pair, _ = load_pair(spec["data_path"], spec["device"])
    sm = simulate_sparse_matches(pair, int(spec["num_matches"]), seed=0)
    state: dict = {}

    def once():
        state.clear()
        state["res"] = dense_alignment(pair, sm.source_px, sm.target_px, pair.source_mask)

    def extra(t: dict) -> dict:
        res = state["res"]
        nodes = res.graph.num_nodes if res.graph is not None else None
        return {"nodes": nodes, "params": 0, "gn_steps": len(res.history), "notes": list(res.notes)}

    return once, extra


BUILDERS: dict[str, Callable[[dict], tuple[Callable[[], object], Callable[[dict], dict]]]] = {
    "matcher": build_matcher, "tracker": build_tracker, "dense": build_dense}


# ---------------------------------------------------------------------------------------------- measurement

def measure(spec: dict) -> dict:
    """Time one row spec (median over its reps after one warm-up) and its peak memory; returns the row."""
    import nrsfm_kit.data.types  # noqa: F401  (imports and Warp's runtime belong to the baseline)
    import nrsfm_kit.graph.types  # noqa: F401
    import nrsfm_kit.matching.alignment  # noqa: F401
    import nrsfm_kit.matching.losses  # noqa: F401
    import nrsfm_kit.matching.tracker  # noqa: F401
    import nrsfm_kit.models.matcher  # noqa: F401
    from nrsfm_kit.warp_setup import init as warp_init

    warp_init()
    row = measure_row(spec, BUILDERS[spec["group"]])
    row["per_pair_ms"] = row["median_ms"] / int(spec["batch"])
    return row


def run_isolated(spec: dict) -> dict:
    """:func:`measure` in a fresh spawned process (its own peak memory)."""
    return run_spawned(__file__, spec)


def run_in_process(spec: dict) -> dict:
    return _run_in_process(measure, spec)


# ---------------------------------------------------------------------------------------------- report

def _ref_key(r: dict) -> tuple:
    """The key of the row ``r`` is compared with."""
    if r["group"] == "matcher":
        return ("matcher", r["net"], r["device"], "inference", 1)
    if r["group"] == "tracker":
        return ("tracker", "none", r["device"], r["height"], r["width_px"])
    return ("dense", r["device"])


def _own_key(r: dict) -> tuple | None:
    """The key under which ``r`` is a reference (None: it is not one)."""
    if r["group"] == "matcher" and r["mode"] == "inference" and r["batch"] == 1:
        return ("matcher", r["net"], r["device"], "inference", 1)
    if r["group"] == "tracker" and r["net"] == "none":
        return ("tracker", "none", r["device"], r["height"], r["width_px"])
    return ("dense", r["device"]) if r["group"] == "dense" else None


def add_ratios(rows: list[dict]) -> None:
    """``ratio`` = median / the reference row's median (matcher: the same net's batch-1 inference; tracker: the
    tracker without a matcher; dense: the first (smallest) size), on the same device; ``x_paper`` = median /
    2299 ms for trackers with the paper matcher at 480x640."""
    ref: dict = {}
    for r in rows:
        k = _own_key(r)
        if "median_ms" in r and k is not None and k not in ref:
            ref[k] = r["median_ms"]
    for r in rows:
        if "median_ms" not in r:
            continue
        base = ref.get(_ref_key(r))
        r["ratio"] = r["median_ms"] / base if base else None
        paper = (r["group"] == "tracker" and r["net"] == "paper" and (r["height"], r["width_px"]) == (480, 640))
        r["x_paper"] = r["median_ms"] / PAPER_TRACKER_MS if paper else None


def _fmt(x, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


TABLE_HEAD = ("| method | device | size | batch | median ms | CPU ms | per-pair ms | ratio | x paper | peak MiB "
              "| reps | notes |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def _method(r: dict) -> str:
    if r["group"] == "matcher":
        return f"matcher {NET_NAMES[r['net']]}, {r['mode']}"
    if r["group"] == "tracker":
        return ("tracker, E_data + E_reg (no matcher)" if r["net"] == "none"
                else f"tracker + matcher {NET_NAMES[r['net']]} (untrained)")
    return f"dense alignment (App. D), {r.get('num_matches', NUM_SPARSE)} sparse matches"


def _size(r: dict) -> str:
    if r["group"] == "matcher":
        s = 224 if r["net"] == "paper" else 64
        return f"{r.get('height', s)}x{r.get('width_px', s)} patch"
    return f"{r['height']}x{r['width_px']}"


def _notes(r: dict) -> str:
    if r["group"] == "matcher":
        return f"{r.get('params', 0):,} params"
    if r["group"] == "tracker":
        n = f"{r.get('nodes')} nodes"
        if r["net"] != "none":
            n = (f"matching {_fmt(r.get('match_ms'), '.0f')} + alignment {_fmt(r.get('align_ms'), '.0f')} ms; "
                 f"{n}, {r.get('accepted')} matches accepted")
        return n
    return f"{r.get('nodes')} nodes, {r.get('gn_steps')} GN steps" + ("; " + "; ".join(r["notes"])
                                                                       if r.get("notes") else "")


def table_line(r: dict) -> str:
    """One markdown row."""
    head = f"| {_method(r)} | {r['device']} | {_size(r)} | {r['batch']} "
    if "error" in r:
        return head + f"| failed: {r['error']} | | | | | | | |"
    return head + (f"| {r['median_ms']:.1f} | {r['cpu_ms']:.1f} | {r['per_pair_ms']:.2f} | {_fmt(r.get('ratio'), '.2f')} "
                   f"| {_fmt(r.get('x_paper'), '.2f')} | {r['peak_mib']:.0f} | {r['reps']} | {_notes(r)} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="2 repetitions, teaching matcher at batch 1 and 8, tracker / dense at 120x160, in-process")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per row (median), after 1 warm-up")
    ap.add_argument("--heavy-reps", type=int, default=3,
                    help="repetitions of the CPU rows with the paper matcher at batch 32 and in the tracker")
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="write every row to this JSON file")
    ap.add_argument("--threads", type=int, default=available_cpus(),
                    help="torch (OpenMP) threads; default: the CPUs this process may run on")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto: cpu, and cuda as well when available")
    ap.add_argument("--in-process", action="store_true", help="measure rows in this process (no workers)")
    args, _ = ap.parse_known_args(argv)
    if args.reps < 1 or args.heavy_reps < 1 or args.threads < 1:
        raise ValueError(f"--reps, --heavy-reps, --threads: expected >= 1, found {args.reps}, {args.heavy_reps}, "
                         f"{args.threads}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: expected a CUDA device, found none")
    devices = {"auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else []), "cpu": ["cpu"],
               "cuda": ["cuda"]}[args.device]
    if args.quick:
        s = Settings(devices=devices, nets=["teaching"], batches=[1, 8], train_batch=8,
                     tracker_matchers=["none", "teaching"], tracker_size=(120, 160), dense_sizes=[(120, 160)],
                     reps=2, heavy_reps=2, threads=args.threads)
    else:
        s = Settings(devices=devices, reps=args.reps, heavy_reps=args.heavy_reps, threads=args.threads)
    in_process = args.in_process or args.quick
    old_threads, old_env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(s.threads)  # inherited by the workers; torch.set_num_threads in each
    torch.set_num_threads(s.threads)
    rows: list[dict] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench_matching_") as tmp:
            s.data_dir = tmp
            machine = machine_info(s.threads)
            date = datetime.date.today().isoformat()
            print(f"# bench_matching ({', '.join(devices)}; {machine['cpu']}, {machine['cpus_available']} CPUs "
                  f"available, {s.threads} torch threads; {machine['gpu'] or 'no GPU'}; torch {machine['torch']}, "
                  f"Warp {machine['warp']}; load average {_fmt(machine['load_average'], '.2f')}; {date})\n")
            pairs = []
            for H, W in s.sizes():
                t0 = time.perf_counter()
                info = make_pair_file(s.data_path((H, W)), H, W)
                info["seconds"] = time.perf_counter() - t0
                pairs.append(info)
                print(f"pair {H}x{W}: synthetic_rgbd_pair(seed=0, time_gap=0.6, t_source=1.0), graph of "
                      f"{info['nodes']} nodes on {info['mask_pixels']} mask pixels ({info['seconds']:.1f} s, not timed)")
            print(f"\nfloat32, median of {s.reps} after 1 warm-up (CPU rows with the paper matcher at batch 32 or "
                  f"in the tracker: {min(s.reps, s.heavy_reps)}), "
                  f"{'in-process' if in_process else 'one spawned worker per row'}; untrained matchers\n")
            run = run_in_process if in_process else run_isolated
            print(TABLE_HEAD)
            for group in ROW_FUNCTIONS:
                for spec in group(s):  # a group lists each reference row before the rows compared with it
                    row = run(spec)
                    row["load"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
                    rows.append(row)
                    add_ratios(rows)
                    print(table_line(row), flush=True)
            _DATA_CACHE.clear()
        s.data_dir = ""
        print(f"\nPaper: {PAPER_TRACKER_MS:g} ms per frame for the whole DeepDeform tracker (its authors' GPU).")
        for r in rows:
            if r["group"] == "tracker" and r["net"] == "paper" and "median_ms" in r:
                print(f"Here ({r['device']}, {r['height']}x{r['width_px']}, untrained paper matcher): "
                      f"{r['median_ms']:.0f} ms per frame = {r['median_ms'] / PAPER_TRACKER_MS:.2f} x the paper, "
                      f"of which node matching {r['match_ms']:.0f} ms ({r['match_ms'] / PAPER_TRACKER_MS:.2f} x).")
        if "cuda" not in devices:
            print("No CUDA device: the GPU rows were not run.")
        if args.json is not None:
            atomic_write_json(args.json, {
                "benchmark": "bench_matching", "date": date, "machine": machine,
                "command": " ".join(["benchmarks/bench_matching.py"] + (argv if argv is not None else sys.argv[1:])),
                "settings": asdict(s), "in_process": in_process, "pairs": pairs, "rows": rows,
                "paper_tracker_ms": PAPER_TRACKER_MS, "pair_kwargs": PAIR_KW})
            print(f"\nrows written to {args.json}")
    finally:
        _DATA_CACHE.clear()
        torch.set_num_threads(old_threads)
        if old_env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old_env
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    rc = main()
    if rc:  # a clean exit raises nothing, so benchmarks/run_all.py (runpy) goes on to the next script
        sys.exit(rc)
