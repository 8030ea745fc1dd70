"""GPU check: parity of every Warp kernel bridge with its torch reference, then the GPU rows of the benchmarks.

Made for a lent GPU (one run, under 8 minutes), and runnable on CPU::

    python benchmarks/gpu_check.py [--device cuda|cpu] [--quick] [--parity-only] [--out DIR]

1. **Parity** (values and gradients, float32 and float64, on ``--device``): every case of :data:`KERNELS`
   runs the bridged Warp function and its pure-torch reference on the same small inputs through
   :func:`nrsfm_kit.utils.testing.parity` / :func:`~nrsfm_kit.utils.testing.assert_parity` with the
   shared :data:`~nrsfm_kit.utils.testing.TOLERANCES`, and reports the largest absolute difference of the
   values and of the gradients and pass / fail. Non-differentiable bridges (TSDF integration, nearest nodes)
   are ``values_only`` cases in the dtypes they support (float32). The cases of ``warp_field``, ``edm_loss``
   and ``tsdf`` are defined here; those of ``gauss_newton`` come from
   ``nrsfm_kit.kernels.gauss_newton.PARITY_CASES`` (``{name:
   (make_inputs(device, dtype) -> args, grad_arg_indices)}``, ``name`` and ``name + "_torch"`` its pair),
   read at run time. A public bridge with a reference twin but no case is listed as not covered.
2. **Benchmarks** (skipped with ``--parity-only``): each ``benchmarks/bench_*.py`` runs as a subprocess
   in its quick mode (:data:`BENCHMARKS`; a script not listed there runs with ``--quick`` when it declares
   that flag), with a timeout, its markdown output captured. Scripts without a quick mode or without GPU
   rows are skipped, saying why. ``--device cpu`` hides CUDA from them (``CUDA_VISIBLE_DEVICES=``).
   ``--quick`` uses their smallest settings.
3. **Summary**: ``summary.json`` (device, versions, every case, every benchmark's output, wall times) and
   ``summary.md`` under ``--out`` (default ``$OUT`` when set, else ``build/gpu_check``), each written
   atomically (temp file + ``os.replace``). Exit code 1 when a parity case fails, else 0 (benchmark
   failures are reported, not fatal).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without the editable install
    sys.path.insert(0, str(ROOT))

from nrsfm_kit.utils.testing import TOLERANCES, assert_parity, parity  # noqa: E402

# the whole run stays under 8 minutes on one GPU: benchmarks get what the parity cases leave of this
TIME_BUDGET_S = 450.0
MIN_BENCH_S = 20.0  # a benchmark is not started with less time left than this


# ==================================================================================================
# parity cases
# ==================================================================================================


@dataclass(frozen=True)
class ParityCase:
    """One Warp bridge ``fn`` against its torch reference ``ref`` on ``make_inputs(device, dtype)``;
    gradients w.r.t. the arguments at ``grad_args``.

    ``values_only``: compare the outputs only (a state update with no gradient, e.g. TSDF integration; its
    ``grad_args`` must be empty). ``dtypes``: the dtypes of :data:`TOLERANCES` the case runs in (None: all; a
    float32-only kernel names ``(torch.float32,)``)."""

    kernel: str
    name: str
    fn: Callable
    ref: Callable
    make_inputs: Callable[[str, torch.dtype], list]
    grad_args: tuple[int, ...]
    values_only: bool = False
    dtypes: tuple[torch.dtype, ...] | None = None

    def __post_init__(self) -> None:
        if self.values_only and self.grad_args:
            raise ValueError(f"{self.kernel}.{self.name}: grad_args: expected () for a values-only case, found "
                             f"{self.grad_args}")


def _bridged(module, twins: Sequence[str] = ("_torch",)) -> list[str]:
    """Public functions of ``module`` (its ``__all__``) that have a reference twin ``name + suffix``."""
    names = getattr(module, "__all__", [])
    return [n for n in names if callable(getattr(module, n, None)) and any(hasattr(module, n + s) for s in twins)]


def _coverage_notes(kernel: str, module, cases: list[ParityCase], twins=("_torch",)) -> list[str]:
    covered = {c.name.split("[")[0] for c in cases}
    missing = [n for n in _bridged(module, twins) if n not in covered]
    return [f"{kernel}: no parity case for {', '.join(missing)} (not covered)"] if missing else []


def _warp_field_inputs(device: str, dtype: torch.dtype, image: bool = False, N=7, P=30, A=4, K=5) -> list:
    """points (P, 3) or (5, 6, 3), anchors, weights, nodes (N, 3), rotations, translations, edges (N, K)."""
    from nrsfm_kit.geometry import random_rotation

    g = torch.Generator().manual_seed(0)
    nodes = torch.randn(N, 3, generator=g, dtype=torch.float64)
    R = random_rotation(N, generator=g, dtype=torch.float64)
    t = 0.1 * torch.randn(N, 3, generator=g, dtype=torch.float64)
    pts = torch.randn(P, 3, generator=g, dtype=torch.float64)
    anchors = torch.randint(-1, N, (P, A), generator=g)  # -1: padding
    w = torch.rand(P, A, generator=g, dtype=torch.float64)
    edges = torch.randint(-1, N, (N, K), generator=g)
    if image:
        pts, anchors, w = pts.reshape(5, 6, 3), anchors.reshape(5, 6, A), w.reshape(5, 6, A)
    f = lambda x: x.to(device=device, dtype=dtype)  # noqa: E731
    return [f(pts), anchors.to(device), f(w), f(nodes), f(R), f(t), edges.to(device)]


def warp_field_cases() -> tuple[list[ParityCase], list[str]]:
    import nrsfm_kit.kernels.warp_field as m

    def points(device, dtype, image=False):
        return _warp_field_inputs(device, dtype, image)[:6]

    def arap(device, dtype):
        _, _, _, nodes, R, t, edges = _warp_field_inputs(device, dtype)
        return [nodes, edges, R, t]

    cases = [
        ParityCase("warp_field", "warp_points", m.warp_points, m.warp_points_torch, points, (0, 2, 3, 4, 5)),
        ParityCase("warp_field", "warp_point_image", m.warp_point_image, m.warp_point_image_torch,
                   partial(points, image=True), (0, 2, 3, 4, 5)),
        ParityCase("warp_field", "arap_residuals", m.arap_residuals, m.arap_residuals_torch, arap, (0, 2, 3)),
    ]
    return cases, _coverage_notes("warp_field", m, cases)


def _edm_inputs(device: str, dtype: torch.dtype, n=24, S=61) -> list:
    """xk (n, 3), xl (n, 3), i (S',), j (S',) with i != j, embeddings (n, 3)."""
    g = torch.Generator().manual_seed(0)
    xk = torch.randn(n, 3, generator=g, dtype=torch.float64)
    xl = xk + 0.3 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    emb = torch.rand(n, 3, generator=g, dtype=torch.float64)
    i, j = torch.randint(0, n, (S,), generator=g), torch.randint(0, n, (S,), generator=g)
    keep = i != j
    f = lambda x: x.to(device=device, dtype=dtype)  # noqa: E731
    return [f(xk), f(xl), i[keep].to(device), j[keep].to(device), f(emb)]


def edm_loss_cases() -> tuple[list[ParityCase], list[str]]:
    import nrsfm_kit.kernels.edm_loss as m

    variants = {  # name: (keyword arguments, with embeddings)
        "edm_pair_loss[rigid]": ({}, False),
        "edm_pair_loss[embeddings]": ({"tau": 0.0, "beta": 0.1}, True),
        "edm_pair_loss[tau-offset]": ({"tau": -0.4, "beta": 0.2}, True),
        "edm_pair_loss[median]": ({"tau": -0.2, "beta": 0.1, "normalization": "median"}, True),
        "edm_pair_loss[log]": ({"tau": -0.2, "beta": 0.1, "normalization": "log"}, True),
        "edm_pair_loss[log, trim]": ({"tau": -0.2, "beta": 0.1, "normalization": "log", "trim": 0.2}, True),
        "edm_pair_loss[mean, trim]": ({"normalization": "mean", "trim": 0.25}, False),
    }
    cases = []
    for name, (kw, emb) in variants.items():
        make = _edm_inputs if emb else (lambda device, dtype: _edm_inputs(device, dtype)[:4])
        cases.append(ParityCase("edm_loss", name, partial(m.edm_pair_loss, **kw),
                                partial(m.edm_pair_loss_reference, **kw), make, (0, 1, 4) if emb else (0, 1)))
    return cases, _coverage_notes("edm_loss", m, cases, twins=("_torch", "_reference"))


def gauss_newton_cases() -> tuple[list[ParityCase], list[str]]:
    """The pairs ``f`` / ``f + "_torch"`` of the module's ``__all__``, with its ``PARITY_CASES`` inputs."""
    import nrsfm_kit.kernels.gauss_newton as m

    table = getattr(m, "PARITY_CASES", None)
    bridged = _bridged(m)
    if table is None:
        return [], [f"gauss_newton: skipped, nrsfm_kit.kernels.gauss_newton has no PARITY_CASES "
                    f"({len(bridged)} bridged functions: {', '.join(bridged) or 'none'})"]
    cases, notes = [], []
    for key, spec in table.items():
        base = key.split("[")[0]
        fn, ref = getattr(m, base, None), getattr(m, base + "_torch", None)
        if not (callable(fn) and callable(ref)):
            notes.append(f"gauss_newton: PARITY_CASES[{key!r}] names no {base} / {base}_torch pair (skipped)")
            continue
        make, grad_args = spec[0], spec[1]
        cases.append(ParityCase("gauss_newton", key, fn, ref, make, tuple(grad_args)))
    return cases, notes + _coverage_notes("gauss_newton", m, cases)


def correlation_cases() -> tuple[list[ParityCase], list[str]]:
    """The PWC-Net cost volume: ``PARITY_CASES`` of :mod:`nrsfm_kit.kernels.correlation`, at d = 4 as well."""
    import nrsfm_kit.kernels.correlation as m

    make, grad_args = m.PARITY_CASES["correlation"]

    def pwc(device, dtype):  # the network's setting: d = 4 (81 channels)
        return [*make(device, dtype)[:2], 4]

    cases = [ParityCase("correlation", "correlation", m.correlation, m.correlation_torch, make, tuple(grad_args)),
             ParityCase("correlation", "correlation[d=4]", m.correlation, m.correlation_torch, pwc, tuple(grad_args))]
    return cases, _coverage_notes("correlation", m, cases)


def _tsdf_inputs(device: str, dtype: torch.dtype, graph: bool = False) -> list:
    """A small TSDF volume with a random earlier state, one frame and (``graph``) a node motion: the arguments of
    :func:`nrsfm_kit.kernels.tsdf.integrate` (``sdf, weight, color``, the frame, ..., ``motion``); the state is
    cloned by :func:`_tsdf_values` before each implementation updates it.

    Grid 12 x 14 x 16 voxels of 2 cm at 0.80-1.12 m in front of a 40 x 48 camera (f = 60 px), posed by a small
    rotation + translation; every voxel projects inside the image (also after the node motion), so the bounds
    never decide. The depth is a gently tilted plane around 0.96 m (valid everywhere) and the colours smooth ramps:
    a voxel whose projection lies within round-off of a pixel's .5 boundary may round to the neighbouring pixel in
    one implementation and not the other, and then reads a depth / colour that differs by at most 1e-5 m /
    2.1e-4, which moves F (in truncations of 6 cm) and C by less than the float32 tolerance (a textured image or a
    depth edge would make that a jump). The earlier state (random F, W in {0..3}, C) is what the running average
    blends into. 8 random nodes inside the volume, influence 10 cm (some voxels are not supported: not updated),
    small rotations."""
    from nrsfm_kit.geometry import so3_exp
    from nrsfm_kit.kernels.tsdf import GraphMotionInput, VolumeGrid

    g = torch.Generator().manual_seed(0)
    shape, vs = (12, 14, 16), 0.02
    origin = (-0.12, -0.14, 0.80)
    H, W = 40, 48
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    depth = 0.96 + 1e-5 * (u - W / 2) + 0.5e-5 * (v - H / 2)
    image = torch.stack([0.2 + 0.01 * u / W, 0.4 + 0.008 * v / H, 0.6 + 0.01 * (u + v) / (W + H)], -1)
    sdf = 2 * torch.rand(shape, generator=g, dtype=torch.float64) - 1
    weight = torch.randint(0, 4, shape, generator=g).double()
    color = torch.rand(*shape, 3, generator=g, dtype=torch.float64)
    intr = torch.tensor([60.0, 60.0, (W - 1) / 2, (H - 1) / 2], dtype=torch.float64)
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = so3_exp(torch.tensor([0.02, -0.03, 0.01], dtype=torch.float64))
    pose[:3, 3] = torch.tensor([0.005, -0.004, 0.01], dtype=torch.float64)
    f = lambda x: x.to(device=device, dtype=torch.float32).contiguous()  # noqa: E731  (float32-only kernel)
    motion = None
    if graph:
        lo = torch.tensor(origin, dtype=torch.float64)
        nodes = lo + torch.rand(8, 3, generator=g, dtype=torch.float64) * torch.tensor(shape) * vs
        R = so3_exp(0.05 * torch.randn(8, 3, generator=g, dtype=torch.float64))
        t = 0.01 * torch.randn(8, 3, generator=g, dtype=torch.float64)
        motion = GraphMotionInput(f(nodes), f(R), f(t), 0.05, 0.10)
    return [f(sdf), f(weight), f(color), f(depth), f(image), f(intr), f(pose), VolumeGrid(origin, vs), 0.06, 64.0,
            motion]


def _tsdf_values(integrate_fn: Callable, sdf, weight, color, *frame) -> tuple[torch.Tensor, ...]:
    """``integrate_fn`` on clones of the state: (updated sdf, weight, color, updated mask as float)."""
    s, w, c = sdf.clone(), weight.clone(), color.clone()
    upd = integrate_fn(s, w, c, *frame)
    return s, w, c, upd.to(s.dtype)


def _nearest_inputs(device: str, dtype: torch.dtype, P=200, N=30) -> list:
    """points (P, 3), nodes (N, 3) in a 0.5 m cube, radius 0.1 m (some points have no node within it)."""
    g = torch.Generator().manual_seed(0)
    pts = 0.5 * torch.rand(P, 3, generator=g, dtype=torch.float64)
    nodes = 0.5 * torch.rand(N, 3, generator=g, dtype=torch.float64)
    return [pts.to(device, torch.float32), nodes.to(device, torch.float32), 0.10]


def _nearest_values(fn: Callable, points, nodes, radius) -> tuple[torch.Tensor, torch.Tensor]:
    """(node ids as float (-1: none within radius), distances): the ids compared as values too."""
    ids, dist = fn(points, nodes, radius)
    return ids.to(dist.dtype), dist


def tsdf_cases() -> tuple[list[ParityCase], list[str]]:
    """TSDF integration (rigid and under a graph) and nearest nodes: values only (a non-differentiable state update
    and a discrete query), float32 only (the kernels' dtype). Integration compares the updated F, W, C and mask."""
    import nrsfm_kit.kernels.tsdf as m

    f32 = (torch.float32,)
    cases = [
        ParityCase("tsdf", "integrate[rigid]", partial(_tsdf_values, m.integrate),
                   partial(_tsdf_values, m.integrate_torch), _tsdf_inputs, (), values_only=True, dtypes=f32),
        ParityCase("tsdf", "integrate[graph]", partial(_tsdf_values, m.integrate),
                   partial(_tsdf_values, m.integrate_torch), partial(_tsdf_inputs, graph=True), (), values_only=True,
                   dtypes=f32),
        ParityCase("tsdf", "nearest_nodes", partial(_nearest_values, m.nearest_nodes),
                   partial(_nearest_values, m.nearest_nodes_torch), _nearest_inputs, (), values_only=True,
                   dtypes=f32),
    ]
    return cases, _coverage_notes("tsdf", m, cases)


# the kernel bridges checked: module -> () -> (cases, notes)
KERNELS: dict[str, Callable[[], tuple[list[ParityCase], list[str]]]] = {
    "warp_field": warp_field_cases,
    "edm_loss": edm_loss_cases,
    "gauss_newton": gauss_newton_cases,
    "correlation": correlation_cases,
    "tsdf": tsdf_cases,
}


def _max_abs_diff(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float | None:
    diffs = [float((x - y).abs().max()) for x, y in zip(a, b) if x.shape == y.shape and x.numel()]
    return max(diffs) if diffs else None


def run_case(case: ParityCase, device: str, dtype: torch.dtype, tol: float) -> dict:
    """Parity of one case in one dtype: max |diff| of values / gradients and pass / fail (with the reason)."""
    res = {"kernel": case.kernel, "case": case.name, "device": device, "dtype": str(dtype).replace("torch.", ""),
           "tol": tol, "value_max_abs_diff": None, "grad_max_abs_diff": None, "values_only": case.values_only}
    t0 = time.perf_counter()
    try:
        args = case.make_inputs(device, dtype)
        (y1, g1), (y2, g2) = parity(case.fn, case.ref, args, case.grad_args)
        res["value_max_abs_diff"], res["grad_max_abs_diff"] = _max_abs_diff(y1, y2), _max_abs_diff(g1, g2)
        assert_parity(case.fn, case.ref, args, case.grad_args, tol=tol)
        res.update(passed=True, message="")
    except AssertionError as exc:
        res.update(passed=False, message=str(exc))
    except Exception as exc:  # a case that cannot run is a failure, reported with its error
        res.update(passed=False, message=f"{type(exc).__name__}: {exc}")
    res["wall_s"] = round(time.perf_counter() - t0, 3)
    return res


def run_parity(device: str) -> dict:
    """Every case of :data:`KERNELS` in every dtype of ``TOLERANCES`` on ``device``."""
    results, notes = [], []
    for kernel, collect in KERNELS.items():
        try:
            cases, more = collect()
        except Exception as exc:  # the bridge module does not import: every case of it fails
            results.append({"kernel": kernel, "case": "(import)", "device": device, "dtype": "-", "tol": None,
                            "value_max_abs_diff": None, "grad_max_abs_diff": None, "passed": False,
                            "message": f"{type(exc).__name__}: {exc}", "wall_s": 0.0})
            continue
        notes += more
        for case in cases:
            for dtype, tol in TOLERANCES:
                if case.dtypes is None or dtype in case.dtypes:
                    results.append(run_case(case, device, dtype, tol))
    failed = sum(not r["passed"] for r in results)
    return {"cases": results, "passed": len(results) - failed, "failed": failed, "notes": notes}


# ==================================================================================================
# benchmarks
# ==================================================================================================


@dataclass(frozen=True)
class Bench:
    """How one ``benchmarks/bench_*.py`` runs here: ``args`` (None: skipped, ``note`` says why), the
    smaller ``quick_args`` of ``--quick`` (default ``args``) and a timeout."""

    args: tuple[str, ...] | None
    quick_args: tuple[str, ...] | None = None
    timeout_s: float = 180.0
    note: str = ""


BENCHMARKS: dict[str, Bench] = {
    "bench_solver": Bench(("--quick",), ("--quick", "--no-sweep"), 240.0,
                          "the solve on cuda when present (Warp vs torch references), --quick sizes"),
    "bench_edm": Bench(("--only", "loss", "--reps", "3"), ("--only", "loss", "--reps", "1"), 180.0,
                       "no --quick flag: its loss table (--only loss, cpu and cuda rows) is the quick GPU part; "
                       "the depth table trains for minutes on CPU and is left out"),
    "bench_fusion": Bench(("--only", "integration", "--only", "extraction", "--reps", "3"),
                          ("--quick", "--only", "integration", "--only", "extraction"), 300.0,
                          "TSDF integration and marching cubes, ours on cuda when present beside Open3D (CPU); the "
                          "pipeline rows (CPU only) are left out"),
    "bench_graph": Bench(None, note="skipped: no quick mode (build_graph and Q at 640x480, --reps only)"),
    "bench_data": Bench(None, note="skipped: no quick mode and no GPU rows (CPU data generators)"),
    "bench_nrsfm": Bench(None, note="skipped: no GPU rows (CPU methods)"),
    "bench_theseus": Bench(None, note="skipped: no GPU rows (CPU, side by side with Theseus)"),
}


def _bench_plan(script: Path) -> Bench:
    """The registry entry of ``script``; an unlisted script runs with ``--quick`` if it declares that flag."""
    if script.stem in BENCHMARKS:
        return BENCHMARKS[script.stem]
    if '"--quick"' in script.read_text():
        return Bench(("--quick",), note="not in gpu_check's registry: run with its --quick flag")
    return Bench(None, note="skipped: not in gpu_check's registry and no --quick flag")


def _tail(text: str, n: int = 3000) -> str:
    return text if len(text) <= n else "..." + text[-n:]


def run_benchmark(script: Path, plan: Bench, quick: bool, device: str, timeout_s: float) -> dict:
    """Run one benchmark script as a subprocess (own process group, killed whole on timeout)."""
    args = plan.quick_args if (quick and plan.quick_args is not None) else plan.args
    res = {"name": script.stem, "note": plan.note, "command": None, "status": "skipped", "returncode": None,
           "wall_s": 0.0, "timeout_s": None, "output": "", "stderr_tail": ""}
    if args is None:
        return res
    cmd = [sys.executable, str(script), *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU rows only, even on a machine with a GPU
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    res.update(command=" ".join([Path(sys.executable).name, str(shown), *args]), timeout_s=round(timeout_s, 1))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
        res["status"] = "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script and the workers it spawned
        out, err = proc.communicate()
        res["status"] = "timeout"
    res.update(returncode=proc.returncode, wall_s=round(time.perf_counter() - t0, 1), output=out,
               stderr_tail=_tail(err) if res["status"] != "ok" else "")
    return res


def run_benchmarks(quick: bool, device: str, deadline: float) -> list[dict]:
    results = []
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        plan = _bench_plan(script)
        left = deadline - time.perf_counter()
        if plan.args is not None and left < MIN_BENCH_S:
            note = (plan.note + "; " if plan.note else "") + "skipped: the time budget of the check is spent"
            plan = Bench(None, note=note)
        results.append(run_benchmark(script, plan, quick, device, min(plan.timeout_s, left)))
    return results


# ==================================================================================================
# summary
# ==================================================================================================


def _device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (CPU)"


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.2e}"


def summary_markdown(s: dict) -> str:
    p = s["parity"]
    lines = [f"# GPU check: {'PASS' if s['ok'] else 'FAIL'}", "",
             f"Device: {s['device']} ({s['device_type']}); torch {s['torch']}, warp {s['warp']}, "
             f"python {s['python']}; {s['date']}; wall {s['wall_s']:.0f} s "
             f"(parity {s['parity_wall_s']:.0f} s).", "",
             f"## Parity with the torch references: {p['passed']} passed, {p['failed']} failed", "",
             "Values and gradients (random cotangents) of each Warp bridge against its torch reference (values "
             "only for the non-differentiable ones, in the dtypes they support); "
             "pass when max |diff| <= tol x (1 + max |reference|).", "",
             "| kernel | case | dtype | values max abs diff | gradients max abs diff | tol | result | s |",
             "|---|---|---|---:|---:|---:|---|---:|"]
    for r in p["cases"]:
        verdict = "pass" if r["passed"] else f"**FAIL**: {r['message']}".replace("|", "\\|").replace("\n", " ")
        grad = "values only" if r.get("values_only") else _fmt(r["grad_max_abs_diff"])
        lines.append(f"| {r['kernel']} | {r['case']} | {r['dtype']} | {_fmt(r['value_max_abs_diff'])} | "
                     f"{grad} | {_fmt(r['tol'])} | {verdict} | {r['wall_s']:.2f} |")
    if p["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in p["notes"]]
    lines += ["", "## Benchmarks", ""]
    if s["benchmarks"] is None:
        lines.append("Skipped (--parity-only).")
    for b in s["benchmarks"] or []:
        head = f"### {b['name']}: {b['status']}"
        if b["command"]:
            head += f" (`{b['command']}`, {b['wall_s']:.0f} s, timeout {b['timeout_s']:.0f} s)"
        lines += [head, ""]
        if b["note"]:
            lines += [b["note"], ""]
        if b["output"]:
            lines += [b["output"].rstrip(), ""]
        if b["stderr_tail"]:
            lines += ["stderr (tail):", "", "```", b["stderr_tail"].rstrip(), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="benchmarks at their smallest settings")
    ap.add_argument("--parity-only", action="store_true", help="skip the benchmarks")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "build" / "gpu_check"),
                    help="output folder (default: $OUT when set, else build/gpu_check)")
    ap.add_argument("--budget-s", type=float, default=TIME_BUDGET_S, help="time budget of the whole run, s")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device here (use --device cpu)")

    import warp as wp

    from nrsfm_kit.warp_setup import init

    init()
    t0 = time.perf_counter()
    deadline = t0 + args.budget_s
    par = run_parity(args.device)
    t_par = time.perf_counter() - t0
    for r in par["cases"]:
        print(f"{'ok  ' if r['passed'] else 'FAIL'} {r['kernel']}.{r['case']} {r['dtype']}: values "
              f"{_fmt(r['value_max_abs_diff'])}, gradients {_fmt(r['grad_max_abs_diff'])} {r['message']}", flush=True)
    benches = None if args.parity_only else run_benchmarks(args.quick, args.device, deadline)
    summary = {
        "ok": par["failed"] == 0,
        "device": _device_name(args.device),
        "device_type": args.device,
        "torch": torch.__version__,
        "warp": wp.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "argv": list(sys.argv[1:] if argv is None else argv),
        "parity": par,
        "parity_wall_s": round(t_par, 2),
        "benchmarks": benches,
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    _write_atomic(args.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    _write_atomic(args.out / "summary.md", summary_markdown(summary))
    print(f"\n{par['passed']} parity cases passed, {par['failed']} failed; "
          + ("" if benches is None else f"benchmarks: {', '.join(b['name'] + ' ' + b['status'] for b in benches)}; ")
          + f"summary in {args.out}", flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
