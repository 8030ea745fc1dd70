"""Benchmark of the differentiable Gauss-Newton solver (issue 5).

1. Forward + backward of one solve (N ~ 300 nodes, 10k correspondences, 3 iterations, float32), side by
   side: the Warp path (analytic Jacobians + atomics assembly in Warp kernels, dense Cholesky with the
   App. B.2 backward), the pure-torch analytic reference (same maths in torch ops) and the
   straightforward torch reference (Jacobian by autograd, ``torch.func.jacrev`` vmapped over points and
   edges, dense ``torch.linalg.solve``, autograd through everything).
2. Matrix-free PCG vs dense Cholesky as the graph grows (Warp path): where the crossover lies.

Each measurement runs in its own worker process (spawned) so that its peak memory (RSS, or
``torch.cuda.max_memory_allocated`` on a GPU) is its own. Median over repetitions; ratio of medians.
Usage: ``python benchmarks/bench_solver.py [--quick]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform

import torch

from nrsfm_kit.utils.bench import median_time, peak_rss_mib


def _problem(grid: int, stride: int, device: str, dtype=torch.float32):
    from nrsfm_kit.solver.synthetic import make_synthetic_tracking

    s = make_synthetic_tracking(batch=1, grid=grid, node_stride=stride, size=0.5, image_size=(480, 640),
                                focal=500.0, amplitude=0.03, seed=0, dtype=torch.float64)
    cast = lambda x: x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device)  # noqa: E731
    graph = s.graph.to(device=device, dtype=dtype)
    return s, graph, {k: cast(getattr(s, k)) for k in ("source_points", "anchors", "anchor_weights",
                                                        "correspondences", "weights", "target_depth", "intrinsics")}


def _worker(impl: str, grid: int, stride: int, reps: int, device: str, queue, tree: str | None = None) -> None:
    if tree:  # the same benchmark on another checkout of the suite (e.g. the code before a change)
        import sys

        sys.path.insert(0, tree)
        for name in [m for m in sys.modules if m.split(".")[0] in ("nrsfm_kit", "warp_kernels")]:
            del sys.modules[name]
    from nrsfm_kit.solver import EnergyTerms, SolverConfig, prepare_problem, solve_problem
    from nrsfm_kit.solver.reference import reference_solve

    torch.manual_seed(0)
    s, graph, d = _problem(grid, stride, device)
    kind, _, solver = impl.partition(":")
    if kind == "linalg":
        queue.put(_linalg_only(graph.num_nodes, reps, device))
        return
    # the paper's 2000 points per node cluster; a smaller grid (--quick: 40x40 = 1600 points) would leave no
    # valid node at all, so the threshold is capped at a quarter of the points there
    extra = {}
    if kind in ("blocks", "segmented", "atomic"):
        extra["assembly"] = kind
    cfg = SolverConfig(max_iter=3, min_cluster_correspondences=min(2000, grid * grid // 4),
                       linear_solver=solver or "dense", backend="torch" if kind == "torch" else "warp", **extra)

    def once():
        corr = d["correspondences"].clone().requires_grad_()
        w = d["weights"].clone().requires_grad_()
        prob = prepare_problem(graph, d["source_points"], corr, w, d["target_depth"], d["intrinsics"],
                               terms=EnergyTerms(), anchors=d["anchors"], anchor_weights=d["anchor_weights"],
                               min_cluster_correspondences=cfg.min_cluster_correspondences)
        T = reference_solve(prob, cfg) if kind == "autograd" else solve_problem(prob, cfg)[0]
        loss = (T.translations ** 2).sum() + T.rotations.diagonal(dim1=-2, dim2=-1).sum()
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        return float(loss.detach())

    once()  # warm-up: Warp kernel load, allocator
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = median_time(once, reps, warmup=0)
    peak_mb = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_rss_mib()
    queue.put({"impl": impl, "N": graph.num_nodes, "P": int(d["source_points"].shape[0]), "median_s": t,
               "reps": reps, "peak_mb": peak_mb})


def _linalg_only(N: int, reps: int, device: str, iters: int = 3) -> dict:
    """The dense linear algebra one forward+backward solve performs: per iteration one Cholesky factorisation
    and one triangular-pair solve forward, one triangular-pair solve backward (App. B.2), float32."""
    n = 6 * N
    g = torch.Generator().manual_seed(0)
    M = torch.randn(n, n, generator=g)
    A = (M @ M.T / n + torch.eye(n)).unsqueeze(0).to(device)
    c = torch.randn(1, n, 1, generator=g).to(device)

    def once():
        for _ in range(iters):
            L = torch.linalg.cholesky_ex(A)[0]
            x = torch.cholesky_solve(c, L)
            torch.cholesky_solve(x, L)
        if device == "cuda":
            torch.cuda.synchronize()

    once()
    t = median_time(once, reps, warmup=0)
    return {"impl": "linalg", "N": N, "P": "-", "median_s": t, "reps": reps, "peak_mb": peak_rss_mib()}


def run(impl: str, grid: int, stride: int, reps: int, device: str, tree: str | None = None) -> dict:
    import sys
    from pathlib import Path

    # import this file as a module so the spawned worker can unpickle its target even when the script
    # runs as __main__ of benchmarks/run_all.py (runpy)
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import bench_solver

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=bench_solver._worker, args=(impl, grid, stride, reps, device, q, tree))
    p.start()
    p.join()
    if p.exitcode != 0:
        return {"impl": impl, "N": "-", "P": "-", "median_s": float("nan"), "reps": reps, "peak_mb": float("nan"),
                "error": f"worker exit code {p.exitcode}"}
    return q.get()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one repetition (smoke run)")
    ap.add_argument("--no-sweep", action="store_true", help="skip the PCG vs dense sweep")
    ap.add_argument("--sweep-only", action="store_true", help="only the PCG vs dense sweep")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per measurement (median)")
    ap.add_argument("--baseline", default=None, metavar="TREE",
                    help="also time another checkout of the suite (e.g. `git worktree add /tmp/base <commit>`)")
    args, _ = ap.parse_known_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    machine = f"{platform.processor() or platform.machine()}, {mp.cpu_count()} cores" + (
        f", {torch.cuda.get_device_name()}" if device == "cuda" else ", no GPU")
    print(f"# bench_solver ({device}; {machine}; torch {torch.__version__})\n")

    grid, stride, reps = (40, 6, 1) if args.quick else (100, 6, args.reps)
    if not args.sweep_only:
        _main_table(grid, stride, reps, device, args.baseline)
    if not args.no_sweep:
        _sweep(args.quick, device)


def _main_table(grid: int, stride: int, reps: int, device: str, baseline: str | None = None) -> None:
    print(f"## Forward + backward, 3 iterations, float32 (grid {grid}x{grid} points, node stride {stride})\n")
    half = max(1, reps // 2)
    rows = [run("warp", grid, stride, reps, device), run("blocks", grid, stride, reps, device),
            run("segmented", grid, stride, reps, device), run("atomic", grid, stride, reps, device),
            run("torch", grid, stride, half, device), run("autograd", grid, stride, half, device),
            run("linalg", grid, stride, reps, device)]
    names = {"warp": "Warp Jacobians, default assembly (auto: blocks on CPU, segmented on CUDA)",
             "blocks": "Warp Jacobians, torch block assembly (6x6 products + CSR reduction)",
             "segmented": "Warp Jacobians, Warp segmented assembly (no atomics)",
             "atomic": "Warp Jacobians, Warp scalar-atomic assembly",
             "torch": "torch analytic reference (scalar index_add assembly)",
             "autograd": "torch autograd Jacobian, dense J^T J + torch.linalg.solve",
             "linalg": "dense linear algebra alone: 3 Cholesky + 6 triangular-pair solves",
             "base-warp": "before (baseline tree): Warp kernels + atomics",
             "base-torch": "before (baseline tree): torch analytic reference"}
    if baseline:
        rows += [dict(run("warp", grid, stride, reps, device, baseline), impl="base-warp"),
                 dict(run("torch", grid, stride, half, device, baseline), impl="base-torch")]
    base = rows[0]["median_s"]
    lin = rows[6]["median_s"]
    print("| implementation | N nodes | P points | median s | / default | / linear algebra | peak MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {names[r['impl']]} | {r['N']} | {r['P']} | {r['median_s']:.3f} | {r['median_s'] / base:.2f} | "
              f"{r['median_s'] / lin:.2f} | {r['peak_mb']:.0f} |")
    torch_row = rows[4]["median_s"]
    print(f"\nTargets: default / linear algebra = {base / lin:.2f} (target <= 3); torch analytic / default = "
          f"{torch_row / base:.1f} (target >= 5)")
    if device == "cuda":
        print(f"\nTime per keyframe (Warp path, forward+backward): {base * 1e3:.1f} ms (paper: 27 ms)")


def _sweep(quick: bool, device: str) -> None:
    print("\n## PCG vs dense Cholesky as N grows (Warp path, forward + backward, 3 iterations)\n")
    sweep = [(40, 10), (60, 6)] if quick else [(100, 10), (100, 6), (100, 4), (100, 3), (90, 2)]
    print("| N nodes | P points | dense s | PCG s | PCG / dense | dense peak MB | PCG peak MB |")
    print("|---|---|---|---|---|---|---|")
    for g, st in sweep:
        r_reps = 1 if (quick or st <= 3) else 3
        d = run("warp:dense", g, st, r_reps, device)
        p = run("warp:pcg", g, st, r_reps, device)
        print(f"| {d['N']} | {d['P']} | {d['median_s']:.3f} | {p['median_s']:.3f} | "
              f"{p['median_s'] / d['median_s']:.2f} | {d['peak_mb']:.0f} | {p['peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
