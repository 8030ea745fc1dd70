"""Unsupervised depth on videos never trained on or tuned on (issue 18): embeddings vs rigid, segmentation rules.

Every (split, video, init, seed, variant) test-time training run is one JSON line in ``OUT/runs.jsonl`` (appended
when it finishes; a re-run skips the runs already there, so an interrupted study resumes); each embeddings run also
writes its motion scores (distance to the border-median static embedding, :func:`nrsfm_kit.edm.segmentation.
motion_scores`) and the ground-truth moving mask to ``OUT/scores/<run>.npz``, so threshold rules are compared
afterwards without retraining. ``report`` writes ``OUT/report.md`` / ``OUT/report.json``.

Protocol (nothing is chosen on a reported video):

- videos: the first ``--videos`` of the corpus splits "tune" and "heldout" (:data:`nrsfm_kit.edm.pretrain.
  CORPUS_SPLITS`: other seeds, scenes, camera paths and movers than the teaching video and the pre-training corpus);
- training: the teaching preset (:func:`nrsfm_kit.edm.training.preset_config`), seeds 0, 1, 2 (network
  initialisation and pair sampling), from scratch ("scratch") or from a depth net pre-trained on ``--corpus``
  videos of the "pretrain" split ("corpus", :func:`nrsfm_kit.edm.pretrain.pretrain_corpus`, seed 0, its default
  scale anchor; the rows "corpus-noanchor" were run with a net pre-trained before the anchor existed);
- segmentation threshold rules (:data:`RULES`): each rule's one parameter is chosen on the "tune" videos (mean IoU
  over tune videos and seeds), then applied unchanged to the "heldout" videos; AUC (threshold-free) beside it.

Run::

    OMP_NUM_THREADS=1 python benchmarks/edm_heldout.py run [--videos 3] [--seeds 0 1 2] [--corpus 32]
    OMP_NUM_THREADS=1 python benchmarks/edm_heldout.py corpus-size [--sizes 1 4 16 64]   # AbsRel vs corpus size
    python benchmarks/edm_heldout.py report
    OMP_NUM_THREADS=1 python benchmarks/edm_heldout.py loss [--shard 0/2]   # loss variants on the tune videos
    python benchmarks/edm_heldout.py loss-report                           # ... and the one they choose
    OMP_NUM_THREADS=1 python benchmarks/edm_heldout.py run --loss log:0.2 --init scratch --out DIR

``loss`` trains the rigid variant (teaching preset, seed 0) on the first 6 "tune" videos with each EDM loss
variant of :data:`LOSS_GRID` (normalisation x trimmed fraction, :class:`nrsfm_kit.edm.loss.EDMLossConfig`) and
``loss-report`` picks the variant with the lowest mean all-pixel AbsRel over those videos; no held-out video is
used. ``run --loss NORM:TRIM`` then repeats the study with that variant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "results" / "edm_heldout"


def _pretrained(out: Path, n: int, steps: int) -> Path:
    from nrsfm_kit.edm.pretrain import PretrainConfig, pretrain_corpus

    d = out / f"pretrain_{n}_{steps}_anchor{PretrainConfig().scale_anchor:g}"
    ck = d / "pretrained_depth.pt"
    if not ck.exists():
        t0 = time.perf_counter()
        pretrain_corpus(n, PretrainConfig(steps=steps, progress=False), out_dir=d)
        print(f"pretrained on {n} videos, {steps} steps: {time.perf_counter() - t0:.0f} s", flush=True)
    return ck


def _done(path: Path) -> set:
    if not path.exists():
        return set()
    return {json.loads(line)["run"] for line in path.read_text().splitlines() if line.strip()}


LOSS_GRID = [(norm, trim) for norm in ("mean", "log") for trim in (0.0, 0.1, 0.2, 0.3, 0.4)]
LOSS_VIDEOS = 6


def _with_loss(cfg, loss: str | None):
    """``cfg`` with the EDM loss variant ``"NORM:TRIM"`` (None: unchanged)."""
    if loss is None:
        return cfg
    norm, trim = loss.split(":")
    return dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, normalization=norm, trim=float(trim)))


def loss_study(out: Path, shard: tuple[int, int], seeds: list[int]) -> None:
    """Rigid test-time training on the first LOSS_VIDEOS tune videos with every variant of LOSS_GRID."""
    from nrsfm_kit.edm.pretrain import corpus_specs, corpus_video
    from nrsfm_kit.edm.training import constant_baseline, fit_sequence, preset_config

    out.mkdir(parents=True, exist_ok=True)
    runs = out / "loss_runs.jsonl"
    done = _done(runs)
    cfg0, size = preset_config(False)
    jobs = [(spec, norm, trim, seed) for spec in corpus_specs(LOSS_VIDEOS, "tune") for norm, trim in LOSS_GRID
            for seed in seeds]
    for n, (spec, norm, trim, seed) in enumerate(jobs):
        name = f"tune-{spec['seed']}-{norm}-{trim:g}-s{seed}-rigid"
        if n % shard[1] != shard[0] or name in done:
            continue
        video = corpus_video(spec, size["frames"], size["height"], size["width"])
        cfg = dataclasses.replace(_with_loss(cfg0, f"{norm}:{trim}"), seed=int(seed), progress=False)
        t0 = time.perf_counter()
        res = fit_sequence(video, "rigid", cfg)
        const = constant_baseline(video)
        row = {"run": name, "video": spec["seed"], "scene": spec["scene"], "normalization": norm, "trim": trim,
               "seed": int(seed), "abs_rel": {r: float(res.metrics[r]["abs_rel"]) for r in res.metrics
                                              if "abs_rel" in res.metrics[r]},
               "constant": {r: float(const[r]["abs_rel"]) for r in const if "abs_rel" in const[r]},
               "seconds": time.perf_counter() - t0}
        with runs.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{name}: all {row['abs_rel']['all']:.3f} (constant {row['constant']['all']:.3f}) "
              f"static {row['abs_rel'].get('static', float('nan')):.3f} {row['seconds']:.0f} s", flush=True)


def loss_report(out: Path) -> dict:
    """Mean all-pixel AbsRel of each loss variant over the tune videos, and the chosen one (lowest mean)."""
    rows = [json.loads(line) for line in (out / "loss_runs.jsonl").read_text().splitlines() if line.strip()]
    lines = ["## EDM loss variants on the tune videos (rigid variant, teaching preset)", "",
             "AbsRel over all pixels (static pixels in brackets) per tune video; constant depth in the header.", ""]
    vids = sorted({r["video"] for r in rows})
    const = {r["video"]: r["constant"]["all"] for r in rows}
    lines += ["| normalisation | trim | " + " | ".join(f"{v} ({const[v]:.3f})" for v in vids)
              + " | mean | beats constant |", "|---|---:|" + "---:|" * (len(vids) + 2)]
    table = {}
    for norm, trim in LOSS_GRID:
        by_video = {v: [r["abs_rel"] for r in rows if r["normalization"] == norm and r["trim"] == trim
                        and r["video"] == v] for v in vids}
        if not all(by_video.values()):
            continue
        vals = [float(np.mean([a["all"] for a in by_video[v]])) for v in vids]  # (means over the seeds)
        static = [float(np.mean([a.get("static", float("nan")) for a in by_video[v]])) for v in vids]
        wins = sum(x < const[v] for x, v in zip(vals, vids, strict=True))
        table[f"{norm}:{trim:g}"] = {"mean": float(np.mean(vals)), "per_video": vals, "beats_constant": wins}
        lines.append(f"| {norm} | {trim:g} | " + " | ".join(f"{x:.3f} ({st:.3f})" for x, st in zip(vals, static,
                                                                                                    strict=True))
                     + f" | {np.mean(vals):.3f} | {wins}/{len(vids)} |")
    chosen = min(table, key=lambda k: table[k]["mean"])
    lines += ["", f"Chosen (lowest mean): **{chosen}**; constant depth mean {np.mean(list(const.values())):.3f}.", ""]
    summary = {"variants": table, "chosen": chosen, "constant_mean": float(np.mean(list(const.values())))}
    (out / "loss_report.md").write_text("\n".join(lines) + "\n")
    (out / "loss_report.json").write_text(json.dumps(summary, indent=1))
    print("\n".join(lines))
    return summary


def run(out: Path, videos: int, seeds: list[int], corpus: int, pre_steps: int, inits: list[str],
        loss: str | None = None, splits: tuple[str, ...] = ("tune", "heldout")) -> None:
    from nrsfm_kit.edm.pretrain import corpus_specs, corpus_video
    from nrsfm_kit.edm.segmentation import motion_scores
    from nrsfm_kit.edm.training import fit_sequence, preset_config

    out.mkdir(parents=True, exist_ok=True)
    (out / "scores").mkdir(exist_ok=True)
    runs = out / "runs.jsonl"
    done = _done(runs)
    cfg0, size = preset_config(False)
    cfg0 = _with_loss(cfg0, loss)
    ck = _pretrained(out, corpus, pre_steps) if "corpus" in inits else None
    for split in splits:
        for spec in corpus_specs(videos, split):
            video = corpus_video(spec, size["frames"], size["height"], size["width"])
            for init in inits:
                for seed in seeds:
                    for variant in ("rigid", "embeddings"):
                        name = f"{split}-{spec['seed']}-{init}-s{seed}-{variant}"
                        if name in done:
                            continue
                        cfg = dataclasses.replace(cfg0, seed=int(seed), progress=False,
                                                  init_from=None if init == "scratch" else str(ck))
                        t0 = time.perf_counter()
                        res = fit_sequence(video, variant, cfg)
                        row = {"run": name, "split": split, "video": spec["seed"], "scene": spec["scene"],
                               "objects": spec["objects"], "init": init, "seed": int(seed), "variant": variant,
                               "abs_rel": {r: float(res.metrics[r]["abs_rel"]) for r in res.metrics
                                           if "abs_rel" in res.metrics[r]},
                               "seconds": time.perf_counter() - t0,
                               "corpus": None if ck is None or init == "scratch" else [corpus, pre_steps],
                               "loss": loss}
                        if res.embeddings is not None:
                            s = motion_scores(res.embeddings, cfg.border).numpy().astype(np.float32)
                            gt = (video.segmentation[:-1] > 0).numpy()
                            np.savez_compressed(out / "scores" / f"{name}.npz", scores=s, gt=gt)
                            row["auc_fixed"] = float(res.segmentation.get("auc", float("nan")))
                            row["iou_fixed"] = float(res.segmentation.get("iou", float("nan")))
                        with runs.open("a") as f:
                            f.write(json.dumps(row) + "\n")
                        print(f"{name}: nonrigid {row['abs_rel'].get('nonrigid', float('nan')):.3f} "
                              f"all {row['abs_rel']['all']:.3f} {row['seconds']:.0f} s", flush=True)


def corpus_size(out: Path, sizes: list[int], steps: int, eval_videos: int) -> None:
    """Held-out AbsRel of one forward pass against the corpus size (the same steps for every size)."""
    from nrsfm_kit.edm.pretrain import evaluate_corpus, load_pretrained, untrained_depth_net

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in sizes:
        ck = _pretrained(out, n, steps)
        ev = evaluate_corpus(ck, eval_videos)
        rows.append({"videos": n, "steps": steps, "mean_abs_rel": ev["mean_abs_rel"],
                     "per_video": [v["abs_rel"] for v in ev["videos"]]})
        print(rows[-1], flush=True)
    base = evaluate_corpus(untrained_depth_net(load_pretrained(_pretrained(out, sizes[0], steps))), eval_videos,
                           frames=4, height=48, width=64)
    rows.append({"videos": 0, "steps": 0, "mean_abs_rel": base["mean_abs_rel"],
                 "per_video": [v["abs_rel"] for v in base["videos"]]})
    (out / "corpus_size.json").write_text(json.dumps(rows, indent=1))


# ---- threshold rules: each maps (scores of one video (T-1, H, W), parameter) -> threshold ----------------------

def _border(scores: np.ndarray, b: int = 3) -> np.ndarray:
    m = np.zeros(scores.shape[-2:], bool)
    m[:b], m[-b:], m[:, :b], m[:, -b:] = True, True, True, True
    return scores[..., m].ravel()


def _otsu(x: np.ndarray, bins: int = 128) -> float:
    h, edges = np.histogram(x, bins=bins)
    c = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(h)
    w1 = w0[-1] - w0
    m0 = np.cumsum(h * c) / np.maximum(w0, 1)
    m1 = (np.sum(h * c) - np.cumsum(h * c)) / np.maximum(w1, 1)
    return float(c[int(np.argmax(w0 * w1 * (m0 - m1) ** 2))])


RULES = {
    # a fixed distance t (the preset's 3.5 was chosen on the teaching video)
    "fixed distance": (lambda s, p: p, np.linspace(0.25, 6.0, 24)),
    # p times the 95th percentile of the border pixels' distances (the border is mostly static scene)
    "border q95 x p": (lambda s, p: p * float(np.quantile(_border(s), 0.95)), np.linspace(0.5, 6.0, 23)),
    # median + p MAD of all distances of the video (robust outlier rule)
    "median + p MAD": (lambda s, p: float(np.median(s) + p * np.median(np.abs(s - np.median(s)))),
                       np.linspace(1.0, 20.0, 20)),
    # Otsu's threshold of the video's distance histogram, times p
    "Otsu x p": (lambda s, p: p * _otsu(s.ravel()), np.linspace(0.5, 2.0, 16)),
}


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    u = np.logical_or(pred, gt).sum()
    return float(np.logical_and(pred, gt).sum() / u) if u else 1.0


def _auc(scores: np.ndarray, gt: np.ndarray) -> float:
    from nrsfm_kit.metrics.segmentation import roc_curve

    return float(roc_curve(torch.from_numpy(scores), torch.from_numpy(gt))["auc"])


def _ms(xs):
    xs = [x for x in xs if x == x]
    if not xs:
        return float("nan"), float("nan")
    return float(np.mean(xs)), float(np.std(xs))


def report(out: Path) -> dict:
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines() if line.strip()]
    lines = [f"# Held-out unsupervised depth (benchmarks/edm_heldout.py), {time.strftime('%Y-%m-%d')}", "",
             f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}", ""]
    summary: dict = {"depth": {}, "segmentation": {}}
    inits = sorted({r["init"] for r in rows})
    const = _constant_baselines(rows)
    for split in ("tune", "heldout"):
        lines += [f"## Depth, split {split}: AbsRel on the non-rigid pixels (mean ± std over seeds)", "",
                  "All pixels in brackets; constant depth: the baseline (a run worse than it on all pixels has hit "
                  "the degenerate minimum of the mean-normalised loss).", "",
                  "| video | scene | init | constant | rigid | embeddings | embeddings better (seeds) |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for init in inits:
            vids = sorted({r["video"] for r in rows if r["split"] == split and r["init"] == init})
            means = {"rigid": [], "embeddings": []}
            wins = total = 0
            for v in vids:
                cell = {}
                by_seed = {}
                for var in ("rigid", "embeddings"):
                    rs = [r for r in rows if r["split"] == split and r["init"] == init and r["video"] == v
                          and r["variant"] == var]
                    vals = [r["abs_rel"].get("nonrigid", float("nan")) for r in rs]
                    by_seed[var] = {r["seed"]: r["abs_rel"].get("nonrigid", float("nan")) for r in rs}
                    cell[var] = _ms(vals)
                    cell[var + "_all"] = _ms([r["abs_rel"]["all"] for r in rs])
                    means[var].append(cell[var][0])
                seeds = sorted(set(by_seed["rigid"]) & set(by_seed["embeddings"]))
                w = sum(by_seed["embeddings"][s] < by_seed["rigid"][s] for s in seeds)
                wins, total = wins + w, total + len(seeds)
                scene = next(r["scene"] for r in rows if r["video"] == v)
                c = const.get(v, {})
                lines.append(f"| {v} | {scene} | {init} | {c.get('nonrigid', float('nan')):.3f} "
                             f"({c.get('all', float('nan')):.3f}) | "
                             + " | ".join(f"{cell[k][0]:.3f} ± {cell[k][1]:.3f} ({cell[k + '_all'][0]:.3f})"
                                          for k in ("rigid", "embeddings"))
                             + f" | {w}/{len(seeds)} |")
            if vids:
                mr, me = float(np.nanmean(means["rigid"])), float(np.nanmean(means["embeddings"]))
                lines.append(f"| **mean** | | {init} | | **{mr:.3f}** | **{me:.3f}** | {wins}/{total} |")
                summary["depth"][f"{split}/{init}"] = {"rigid": mr, "embeddings": me, "wins": [wins, total]}
        lines.append("")
    # segmentation rules: parameter chosen on tune (mean IoU), applied on heldout
    emb = [r for r in rows if r["variant"] == "embeddings" and (out / "scores" / f"{r['run']}.npz").exists()]
    lines += ["## Motion segmentation: threshold rules chosen on the tune split, applied to the held-out split", "",
              "| init | rule | parameter (tune) | tune IoU | held-out IoU mean ± std | held-out per video | "
              "held-out AUC |", "|---|---|---:|---:|---:|---|---:|"]
    for init in inits:
        data = {sp: [(r, np.load(out / "scores" / f"{r['run']}.npz")) for r in emb
                     if r["split"] == sp and r["init"] == init] for sp in ("tune", "heldout")}
        if not data["tune"] or not data["heldout"]:
            continue
        auc_h = _ms([_auc(d["scores"], d["gt"]) for _, d in data["heldout"]])
        for rule, (fn, grid) in RULES.items():
            tune_iou = [np.mean([_iou(d["scores"] > fn(d["scores"], p), d["gt"]) for _, d in data["tune"]])
                        for p in grid]
            p = float(grid[int(np.argmax(tune_iou))])
            held = [(r, _iou(d["scores"] > fn(d["scores"], p), d["gt"])) for r, d in data["heldout"]]
            per_video = {}
            for r, iou in held:
                per_video.setdefault(r["video"], []).append(iou)
            m, s = _ms([iou for _, iou in held])
            pv = ", ".join(f"{np.mean(v):.2f}" for _, v in sorted(per_video.items()))
            lines.append(f"| {init} | {rule} | {p:.3g} | {max(tune_iou):.3f} | {m:.3f} ± {s:.3f} | {pv} | "
                         f"{auc_h[0]:.3f} ± {auc_h[1]:.3f} |")
            summary["segmentation"][f"{init}/{rule}"] = {"parameter": p, "tune_iou": float(max(tune_iou)),
                                                         "heldout_iou": [m, s], "heldout_auc": list(auc_h)}
        best = [_iou(d["scores"] > _best(d["scores"], d["gt"]), d["gt"]) for _, d in data["heldout"]]
        m, s = _ms(best)
        lines.append(f"| {init} | oracle (best threshold per run, an upper bound) | - | - | {m:.3f} ± {s:.3f} | | |")
    lines.append("")
    cs = out / "corpus_size.json"
    if cs.exists():
        lines += ["## Held-out AbsRel (one forward pass, all pixels) vs corpus size", "",
                  "| videos | steps | mean AbsRel | per video |", "|---:|---:|---:|---|"]
        for r in json.loads(cs.read_text()):
            lines.append(f"| {r['videos']} | {r['steps']} | {r['mean_abs_rel']:.3f} | "
                         + ", ".join(f"{x:.3f}" for x in r["per_video"]) + " |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps(summary, indent=1))
    print("\n".join(lines))
    return summary


def _constant_baselines(rows) -> dict:
    """{video seed: {"all", "nonrigid"}} AbsRel of a constant depth map (the videos re-rendered at the study size)."""
    from nrsfm_kit.edm.pretrain import corpus_video
    from nrsfm_kit.edm.training import constant_baseline, preset_config

    _, size = preset_config(False)
    out = {}
    for r in rows:
        if r["video"] in out:
            continue
        spec = {"seed": r["video"], "scene": r["scene"], "objects": r["objects"],
                "camera_motion": next(s["camera_motion"] for s in _specs(r["split"]) if s["seed"] == r["video"])}
        m = constant_baseline(corpus_video(spec, size["frames"], size["height"], size["width"]))
        out[r["video"]] = {k: float(m[k]["abs_rel"]) for k in ("all", "nonrigid") if k in m}
    return out


def _specs(split: str) -> list:
    from nrsfm_kit.edm.pretrain import corpus_specs

    return corpus_specs(16, split)


def _best(scores, gt, num: int = 101) -> float:
    th = np.linspace(scores.min(), scores.max(), num)
    return float(th[int(np.argmax([_iou(scores > t, gt) for t in th]))])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--videos", type=int, default=3)
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--corpus", type=int, default=32)
    r.add_argument("--pretrain-steps", type=int, default=400)
    r.add_argument("--init", choices=("scratch", "corpus"), action="append")
    r.add_argument("--out", type=Path, default=OUT)
    r.add_argument("--loss", default=None, help="EDM loss variant NORM:TRIM (default: the preset's)")
    r.add_argument("--split", choices=("tune", "heldout"), action="append",
                   help="only these splits (default both; two processes can run one each)")
    ls = sub.add_parser("loss")
    ls.add_argument("--shard", default="0/1", help="I/N: run every N-th job from the I-th (parallel processes)")
    ls.add_argument("--seeds", type=int, nargs="+", default=[0])
    ls.add_argument("--out", type=Path, default=OUT)
    lr = sub.add_parser("loss-report")
    lr.add_argument("--out", type=Path, default=OUT)
    c = sub.add_parser("corpus-size")
    c.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    c.add_argument("--pretrain-steps", type=int, default=400)
    c.add_argument("--eval-videos", type=int, default=8)
    c.add_argument("--out", type=Path, default=OUT)
    p = sub.add_parser("report")
    p.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.cmd == "run":
        run(a.out, a.videos, a.seeds, a.corpus, a.pretrain_steps, a.init or ["scratch", "corpus"], a.loss,
            tuple(a.split or ("tune", "heldout")))
    elif a.cmd == "loss":
        i, n = (int(x) for x in a.shard.split("/"))
        loss_study(a.out, (i, n), a.seeds)
    elif a.cmd == "loss-report":
        loss_report(a.out)
    elif a.cmd == "corpus-size":
        corpus_size(a.out, a.sizes, a.pretrain_steps, a.eval_videos)
    else:
        report(a.out)


if __name__ == "__main__":
    main()
