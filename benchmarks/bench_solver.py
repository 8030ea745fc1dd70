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


def _worker(impl: str, grid: int, stride: int, reps: int, device: str, queue) -> None:
    from nrsfm_kit.solver import EnergyTerms, SolverConfig, prepare_problem, solve_problem
    from nrsfm_kit.solver.reference import reference_solve

    torch.manual_seed(0)
    s, graph, d = _problem(grid, stride, device)
    kind, _, solver = impl.partition(":")
    # the paper's 2000 points per node cluster; a smaller grid (--quick: 40x40 = 1600 points) would leave no
    # valid node at all, so the threshold is capped at a quarter of the points there
    cfg = SolverConfig(max_iter=3, min_cluster_correspondences=min(2000, grid * grid // 4), linear_solver=solver or "dense",
                       backend="torch" if kind == "torch" else "warp")

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


def run(impl: str, grid: int, stride: int, reps: int, device: str) -> dict:
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
    p = ctx.Process(target=bench_solver._worker, args=(impl, grid, stride, reps, device, q))
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
    args, _ = ap.parse_known_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    machine = f"{platform.processor() or platform.machine()}, {mp.cpu_count()} cores" + (
        f", {torch.cuda.get_device_name()}" if device == "cuda" else ", no GPU")
    print(f"# bench_solver ({device}; {machine}; torch {torch.__version__})\n")

    grid, stride, reps = (40, 6, 1) if args.quick else (100, 6, 5)
    if not args.sweep_only:
        _main_table(grid, stride, reps, device)
    if not args.no_sweep:
        _sweep(args.quick, device)


def _main_table(grid: int, stride: int, reps: int, device: str) -> None:
    print(f"## Forward + backward, 3 iterations, float32 (grid {grid}x{grid} points, node stride {stride})\n")
    rows = [run("warp", grid, stride, reps, device), run("torch", grid, stride, max(1, reps // 2), device),
            run("autograd", grid, stride, max(1, reps // 2), device)]
    base = rows[0]["median_s"]
    print("| implementation | N nodes | P points | median s | x slower than Warp | peak MB |")
    print("|---|---|---|---|---|---|")
    names = {"warp": "Warp kernels + dense Cholesky (App. B.2 backward)",
             "torch": "torch analytic reference + dense Cholesky",
             "autograd": "torch autograd Jacobian, dense J^T J + torch.linalg.solve"}
    for r in rows:
        print(f"| {names[r['impl']]} | {r['N']} | {r['P']} | {r['median_s']:.3f} | {r['median_s'] / base:.1f} | "
              f"{r['peak_mb']:.0f} |")
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
