"""Benchmark of Neural Non-Rigid Tracking's networks (issue 13): Phi (PWC-DC) and Psi (weight network).

Rows, side by side in one run, batch 1, float32 unless the variant says otherwise:

- Phi = ``PWCDCNet(PWCNetConfig(width=w))``, ``forward(source_rgb, target_rgb)`` at 448x640, with the default
  torch cost volume and with the Warp kernel (``correlation=nrsfm_kit.kernels.correlation.correlation``);
- Psi = ``WeightNet(WeightNetConfig(feature_channels=Phi.feature_channels, width=w))``,
  ``forward(feature, source_rgb, source_xyz, target_rgb, target_xyz)`` with the level-2 feature of Phi's shape
  (B, C_f, H/4, W/4);
- inference (``eval()``, ``torch.no_grad``) and training forward + backward (``train()``; Phi: mean of every
  flow level and of the full-resolution flow; Psi: mean of the weights, with the feature requiring a gradient
  as it does when Psi is trained through Phi; no optimiser step);
- width 1.0 (the paper's networks: 9,374,274 and 315,633 parameters) and a teaching width 0.25;
- on CUDA as well when a GPU is present, plus channels_last and ``torch.autocast`` (bfloat16, float16; float16
  training without a GradScaler: only its time is of interest) rows at width 1, and the paper's figures
  (Phi 21.6 ms, Psi 5.5 ms, 27 ms per keyframe including the solver, on the paper's GPU) for comparison.

Median wall time over ``--reps`` repetitions after one warm-up (which also compiles the Warp kernel), median
process CPU time beside it, and the ratio of medians to the row's reference (same network, width, mode and
device; torch cost volume, float32, contiguous). Each row runs in its own spawned worker process (as
bench_solver) so that its peak memory is its own: on CPU the peak RSS of the worker above its RSS after the
imports (so parameters, inputs, activations, gradients and workspace; the peak is reset through
``/proc/self/clear_refs`` before the row), on CUDA ``torch.cuda.max_memory_allocated`` after a reset.
``--in-process`` (implied by ``--quick``) runs the rows in this process instead: faster, but memory that the
allocator kept from earlier rows is not counted again, so the CPU peaks are then lower bounds.

The row groups are the functions in ``ROW_FUNCTIONS``; each maps the run's :class:`Settings` to row specs
(plain dicts, measured by :func:`measure`). A new group (e.g. a whole tracking step) is one more function there
plus its builder in ``BUILDERS``.

Usage: ``python benchmarks/bench_tracking.py [--quick] [--reps N] [--json PATH] [--threads N] [--in-process]``.
``--quick``: 2 repetitions, width 0.25 only, 128x192, in-process (a smoke run for tests).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from nrsfm_kit.utils.bench import (
    available_cpus,
    machine_info,
    peak_rss_mib,
    reset_peak_rss,
    rss_mib,
    run_spawned,
    timings,
)
from nrsfm_kit.utils.bench import run_in_process as _run_in_process

PAPER_MS = {"phi": 21.6, "psi": 5.5, "keyframe": 27.0}  # Bozic et al. 2020, inference on the paper's GPU
NET_NAMES = {"phi": "Phi (PWC-DC)", "psi": "Psi (weight net)"}
VARIANTS = {"fp32": "float32", "channels_last": "float32, channels_last", "bf16": "autocast bfloat16",
            "fp16": "autocast float16"}


@dataclass
class Settings:
    """What one run measures (built from the command line by :func:`main`)."""

    devices: list[str]
    widths: list[float]
    height: int = 448
    width_px: int = 640
    reps: int = 5
    warp: bool = True  # also Phi with the Warp cost volume
    threads: int = 1
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- rows

def network_rows(s: Settings) -> list[dict]:
    """Phi (torch and Warp cost volume) and Psi, inference and training, float32, every device and width."""
    rows = []
    for device in s.devices:
        for w in s.widths:
            for mode in ("inference", "training"):
                rows.append(_spec(s, "phi", w, mode, device))
                if s.warp:
                    rows.append(_spec(s, "phi", w, mode, device, correlation="warp"))
                rows.append(_spec(s, "psi", w, mode, device))
    return rows


def cuda_variant_rows(s: Settings) -> list[dict]:
    """channels_last and autocast (bfloat16, float16) on CUDA only, at width 1 when it is run (else every width)."""
    if "cuda" not in s.devices:
        return []
    widths = [1.0] if 1.0 in s.widths else s.widths
    return [_spec(s, net, w, mode, "cuda", variant=v)
            for w in widths for net in ("phi", "psi") for mode in ("inference", "training")
            for v in ("channels_last", "bf16", "fp16")]


# The row groups of a run, in order. A new group is one more function (Settings -> list of specs).
ROW_FUNCTIONS: list[Callable[[Settings], list[dict]]] = [network_rows, cuda_variant_rows]


def _spec(s: Settings, net: str, w: float, mode: str, device: str, correlation: str = "torch",
          variant: str = "fp32") -> dict:
    return {"net": net, "width": float(w), "mode": mode, "device": device, "correlation": correlation,
            "variant": variant, "height": s.height, "width_px": s.width_px, "reps": s.reps, "threads": s.threads}


# ---------------------------------------------------------------------------------------------- builders

def _autocast(spec: dict):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(spec["variant"])
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=spec["device"], dtype=dtype)


def _layout(spec: dict, model: torch.nn.Module, inputs: list[torch.Tensor]):
    if spec["variant"] == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        inputs = [x.contiguous(memory_format=torch.channels_last) for x in inputs]
    return model, inputs


def build_phi(spec: dict) -> tuple[torch.nn.Module, list[torch.Tensor], Callable]:
    """PWCDCNet at ``spec['width']``, two random (1, 3, H, W) RGB images in [0, 1]; the training loss."""
    from nrsfm_kit.kernels.correlation import correlation
    from nrsfm_kit.models.pwcnet import PWCDCNet, PWCNetConfig

    dev, H, W = spec["device"], spec["height"], spec["width_px"]
    corr = correlation if spec["correlation"] == "warp" else None
    model = PWCDCNet(PWCNetConfig(width=spec["width"]), correlation=corr).to(dev)
    g = torch.Generator().manual_seed(0)
    inputs = [torch.rand(1, 3, H, W, generator=g).to(dev) for _ in range(2)]

    def loss(out: dict) -> torch.Tensor:
        return sum(f.float().mean() for f in out["flows"]) + out["flow"].float().mean()

    return (*_layout(spec, model, inputs), loss)


def phi_feature_channels(width: float) -> int:
    """Channels of PWCDCNet's level-2 feature at ``width`` (565 at width 1), read off a model on the meta device."""
    from nrsfm_kit.models.pwcnet import PWCDCNet, PWCNetConfig

    try:
        with torch.device("meta"):
            return int(PWCDCNet(PWCNetConfig(width=width)).feature_channels)
    except Exception:  # meta init unsupported: build it on CPU once
        return int(PWCDCNet(PWCNetConfig(width=width)).feature_channels)


def build_psi(spec: dict) -> tuple[torch.nn.Module, list[torch.Tensor], Callable]:
    """WeightNet on Phi's feature shape at the same width; random RGB in [0, 1], XYZ around 1.5 m depth."""
    from nrsfm_kit.models.weightnet import WeightNet, WeightNetConfig

    dev, H, W = spec["device"], spec["height"], spec["width_px"]
    cf = phi_feature_channels(spec["width"])
    model = WeightNet(WeightNetConfig(feature_channels=cf, width=spec["width"])).to(dev)
    g = torch.Generator().manual_seed(1)
    feature = torch.randn(1, cf, H // 4, W // 4, generator=g)
    offset = torch.tensor([0.0, 0.0, 1.5]).view(1, 3, 1, 1)
    xyz = lambda: 0.2 * torch.randn(1, 3, H, W, generator=g) + offset  # noqa: E731
    inputs = [feature, torch.rand(1, 3, H, W, generator=g), xyz(), torch.rand(1, 3, H, W, generator=g), xyz()]
    inputs = [x.to(dev) for x in inputs]
    if spec["mode"] == "training":
        inputs[0].requires_grad_(True)  # Psi trained through Phi: the gradient reaches the feature

    def loss(out: torch.Tensor) -> torch.Tensor:
        return out.float().mean()

    return (*_layout(spec, model, inputs), loss)


BUILDERS: dict[str, Callable[[dict], tuple[torch.nn.Module, list[torch.Tensor], Callable]]] = {
    "phi": build_phi, "psi": build_psi}


# ---------------------------------------------------------------------------------------------- measurement

def measure(spec: dict) -> dict:
    """Time one row spec (median over its reps after one warm-up) and its peak memory; returns the row."""
    torch.set_num_threads(int(spec["threads"]))
    torch.manual_seed(0)
    dev = spec["device"]
    cuda = dev == "cuda"
    import nrsfm_kit.kernels.correlation  # noqa: F401  (imports and Warp's runtime belong to the baseline)
    import nrsfm_kit.models.pwcnet  # noqa: F401
    import nrsfm_kit.models.weightnet  # noqa: F401
    from nrsfm_kit.warp_setup import init as warp_init

    warp_init()
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    base = rss_mib()
    reset = reset_peak_rss()
    model, inputs, loss_fn = BUILDERS[spec["net"]](spec)
    params = sum(p.numel() for p in model.parameters())
    training = spec["mode"] == "training"
    model.train(training)

    def once():
        if training:
            model.zero_grad(set_to_none=True)
            for x in inputs:
                x.grad = None
            with _autocast(spec):
                out = model(*inputs)
            loss_fn(out).backward()
        else:
            with torch.no_grad(), _autocast(spec):
                model(*inputs)

    t = timings(once, int(spec["reps"]), warmup=1, sync=torch.cuda.synchronize if cuda else None)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        # growth of the peak RSS over the RSS before the row (0 when pages freed after the reset bring the new
        # high-water mark below that base); without the reset it may include an earlier (import-time) peak
        peak = max(peak_rss_mib() - base, 0.0)
    row = dict(spec, params=params, median_ms=t["wall"] * 1e3, cpu_ms=t["cpu"] * 1e3,
               times_ms=[x * 1e3 for x in t["times"]], peak_mib=peak, peak_rss_mib=peak_rss_mib(),
               peak_kind="cuda max_memory_allocated" if cuda else "peak RSS above the post-import RSS",
               peak_reset=reset)
    return row


def run_isolated(spec: dict) -> dict:
    """:func:`measure` in a fresh spawned process (its own peak memory)."""
    return run_spawned(__file__, spec)


def run_in_process(spec: dict) -> dict:
    return _run_in_process(measure, spec)


# ---------------------------------------------------------------------------------------------- report

def _key(r: dict) -> tuple:
    return (r["net"], r["width"], r["mode"], r["device"], r["height"], r["width_px"])


def add_ratios(rows: list[dict]) -> None:
    """``ratio`` = median / median of the reference row (torch cost volume, float32, contiguous);
    ``x_paper`` = median / the paper's GPU figure for width-1 inference at 448x640."""
    ref = {_key(r): r["median_ms"] for r in rows
           if "median_ms" in r and r["correlation"] == "torch" and r["variant"] == "fp32"}
    for r in rows:
        if "median_ms" not in r:
            continue
        base = ref.get(_key(r))
        r["ratio"] = r["median_ms"] / base if base else None
        paper = r["width"] == 1.0 and r["mode"] == "inference" and (r["height"], r["width_px"]) == (448, 640)
        r["x_paper"] = r["median_ms"] / PAPER_MS[r["net"]] if paper else None


def _fmt(x, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


TABLE_HEAD = ("| network | width | params | mode | device | variant | cost volume | median ms | CPU ms | / reference "
              "| x paper | peak MiB | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def table_line(r: dict) -> str:
    """One markdown row (``load``: the 1-minute load average when the row finished; shared machines)."""
    head = (f"| {NET_NAMES[r['net']]} | {r['width']:g} | {r.get('params', 0):,} | {r['mode']} | {r['device']} "
            f"| {VARIANTS[r['variant']]} | {r['correlation'] if r['net'] == 'phi' else '-'} ")
    if "error" in r:
        return head + f"| failed: {r['error']} | | | | | |"
    return head + (f"| {r['median_ms']:.1f} | {r['cpu_ms']:.1f} | {_fmt(r.get('ratio'), '.2f')} "
                   f"| {_fmt(r.get('x_paper'), '.0f')} | {r['peak_mib']:.0f} | {_fmt(r.get('load'), '.1f')} |")


def totals(rows: list[dict]) -> list[dict]:
    """Phi + Psi inference (float32, torch cost volume) per device, width and size: the networks' part of a
    keyframe (the paper: 21.6 + 5.5 ms of its 27 ms)."""
    out = []
    ok = [r for r in rows if "median_ms" in r and r["mode"] == "inference" and r["variant"] == "fp32"
          and r["correlation"] == "torch"]
    for r in ok:
        if r["net"] != "phi":
            continue
        psi = [q for q in ok if q["net"] == "psi" and _key(q)[1:] == _key(r)[1:]]
        if psi:
            out.append({"device": r["device"], "width": r["width"], "height": r["height"], "width_px": r["width_px"],
                        "phi_ms": r["median_ms"], "psi_ms": psi[0]["median_ms"],
                        "networks_ms": r["median_ms"] + psi[0]["median_ms"]})
    return out


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 repetitions, width 0.25 at 128x192, in-process")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per row (median), after 1 warm-up")
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="write every row to this JSON file")
    ap.add_argument("--threads", type=int, default=available_cpus(),
                    help="torch (OpenMP) threads; default: the CPUs this process may run on")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto: cpu, and cuda as well when available")
    ap.add_argument("--no-warp", action="store_true", help="skip Phi with the Warp cost volume")
    ap.add_argument("--in-process", action="store_true", help="measure rows in this process (no workers)")
    args, _ = ap.parse_known_args(argv)
    if args.reps < 1 or args.threads < 1:
        raise ValueError(f"--reps, --threads: expected >= 1, found {args.reps}, {args.threads}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: expected a CUDA device, found none")
    devices = {"auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else []), "cpu": ["cpu"],
               "cuda": ["cuda"]}[args.device]
    s = Settings(devices=devices, widths=[0.25] if args.quick else [1.0, 0.25],
                 height=128 if args.quick else 448, width_px=192 if args.quick else 640,
                 reps=2 if args.quick else args.reps, warp=not args.no_warp, threads=args.threads)
    in_process = args.in_process or args.quick
    old_threads, old_env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(s.threads)  # inherited by the workers; torch.set_num_threads in each
    rows: list[dict] = []
    try:
        machine = machine_info(s.threads)
        date = datetime.date.today().isoformat()
        print(f"# bench_tracking ({', '.join(devices)}; {machine['cpu']}, {machine['cpus_available']} CPUs available, "
              f"{s.threads} torch threads; {machine['gpu'] or 'no GPU'}; torch {machine['torch']}, "
              f"Warp {machine['warp']}; load average {_fmt(machine['load_average'], '.2f')}; {date})\n")
        print(f"batch 1, {s.height}x{s.width_px}, median of {s.reps} after 1 warm-up, "
              f"{'in-process' if in_process else 'one spawned worker per row'}\n")
        run = run_in_process if in_process else run_isolated
        print(TABLE_HEAD)
        for group in ROW_FUNCTIONS:
            for spec in group(s):  # a group lists each reference row before the rows compared with it
                row = run(spec)
                row["load"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
                rows.append(row)
                add_ratios(rows)
                print(table_line(row), flush=True)
        tot = totals(rows)
        print(f"\nPaper (inference, its GPU): Phi {PAPER_MS['phi']} ms, Psi {PAPER_MS['psi']} ms, "
              f"{PAPER_MS['keyframe']:g} ms per keyframe (networks + solver)")
        for t in tot:
            print(f"Phi + Psi inference, {t['device']}, width {t['width']:g}, {t['height']}x{t['width_px']}: "
                  f"{t['networks_ms']:.1f} ms (paper's networks: {PAPER_MS['phi'] + PAPER_MS['psi']:.1f} ms)")
        if "cuda" not in devices:
            print("No CUDA device: the GPU rows (fp32, channels_last, autocast) were not run.")
        if args.json is not None:
            _write_json(args.json, {"benchmark": "bench_tracking", "date": date, "machine": machine,
                                    "command": " ".join(["benchmarks/bench_tracking.py"]
                                                        + (argv if argv is not None else sys.argv[1:])),
                                    "settings": asdict(s), "in_process": in_process, "rows": rows,
                                    "totals": tot, "paper_ms": PAPER_MS})
            print(f"\nrows written to {args.json}")
    finally:
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
