"""NRSfM defaults chosen leave-one-sequence-out, model selection without 3D, failure diagnostics, CMU scale.

The study behind the learned methods' defaults (issue 17). Every (method, candidate setting, sequence, seed) run is
one JSON line in ``OUT/runs.jsonl`` (appended as it finishes; a re-run skips the runs already there, so an
interrupted study resumes). ``report`` then reads all lines and writes ``OUT/report.md`` and ``OUT/report.json``:

- **leave-one-out**: for each sequence s, the candidate with the lowest mean e3D over all *other* sequences
  (real and synthetic) is "the default chosen without s"; its e3D on s is s's held-out score. The table of held-out
  scores (and which candidate each fold chose) is what benchmarks/RESULTS.md and notebook 10 show.
- **model selection without 3D**: for the default candidate, seeds 0, 1, 2 on every sequence; the run each rule
  (lowest reprojection; reprojection + the method's measure, :func:`nrsfm_kit.nrsfm.learned.select_restart`) picks
  vs the best of the three by e3D (the target: within 10 %).
- **diagnostics** per run: depth flips per frame (:func:`nrsfm_kit.metrics.nrsfm.depth_flips`), PR-RRN's h collapse
  and the contrastive split (:func:`nrsfm_kit.nrsfm.prrrn.representation_stats`, ``contrastive_split``).

Run (each part is independent; two parts can run side by side on two cores)::

    NRSFM_KIT_DATA=... OMP_NUM_THREADS=1 python benchmarks/nrsfm_loo.py run --part classic --part dnrsfm
    NRSFM_KIT_DATA=... OMP_NUM_THREADS=1 python benchmarks/nrsfm_loo.py run --part prrrn
    NRSFM_KIT_DATA=... OMP_NUM_THREADS=1 python benchmarks/nrsfm_loo.py run --part seeds
    OMP_NUM_THREADS=1 python benchmarks/nrsfm_loo.py run --part cmu          # 10k frames, ~20 min
    python benchmarks/nrsfm_loo.py report

``--quick`` shrinks everything (short budgets, two synthetic sequences) to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from nrsfm_kit.config import data_root
from nrsfm_kit.data import load_nrsfm_mat, synthetic_nrsfm
from nrsfm_kit.data.types import NRSfMSequence
from nrsfm_kit.metrics.nrsfm import depth_flips
from nrsfm_kit.nrsfm import DeepNRSfMConfig, LearnedFitConfig, PRRRNConfig, fit_nrsfm
from nrsfm_kit.nrsfm.common import normalize_observations, validate_sequence
from nrsfm_kit.nrsfm.prrrn import contrastive_split, representation_stats
from nrsfm_kit.nrsfm.tuning import leave_one_out, read_runs, score_table, selection_study

REAL = ("pickup", "yoga", "stretch", "face", "walking")
# synthetic families (exact 3D): frame counts 100 - 1000, skeleton / low-rank / category, random / smooth cameras
SYNTHETIC = {
    "syn-skeleton-walking-random-256": dict(kind="skeleton", num_frames=256, motion="walking", camera="random", seed=1),
    "syn-skeleton-waving-smooth-1000": dict(kind="skeleton", num_frames=1000, motion="waving", camera="smooth", seed=2),
    "syn-skeleton-bending-smooth-100": dict(kind="skeleton", num_frames=100, motion="bending", camera="smooth", seed=5),
    "syn-lowrank-smooth-240x91": dict(kind="lowrank", num_frames=240, num_points=91, rank=2, camera="smooth", seed=3),
    "syn-category-random-300": dict(kind="category", num_frames=300, camera="random", seed=4),
}
# long sequences (added 2026-12-07 after PR-RRN underfit at 2000 frames): one motion, and the CMU-like mixture of
# three motions (cmu_scale_sequence) at 2000 frames; the 10k-frame case stays the held-out scale check
LONG = {
    "syn-skeleton-walking-random-2000": dict(kind="skeleton", num_frames=2000, motion="walking", camera="random",
                                             seed=7),
    "cmu-scale-2000": None,  # cmu_scale_sequence(2000)
}
CMU_FRAMES = 10_000  # PR-RRN Table 1 / Deep NRSfM Table 3 scale

# candidate defaults of each learned method: the current default and one change at a time of what was chosen on
# the real sequences before this study (budget, PR-RRN's threshold variable)
CANDIDATES = {
    "prrrn": {
        "P0-default": PRRRNConfig(base_steps=2400, threshold_on="sqrt_msr", contrast_max_positive=None,
                                  contrast_max_frames=None),
        "P1-half-budget": PRRRNConfig(base_steps=1200, contrast_max_positive=None, contrast_max_frames=None),
        "P2-msr-thresholds": PRRRNConfig(threshold_on="msr", contrast_max_positive=None, contrast_max_frames=None),
        # added after the first runs showed h collapsing where >75 % of the pairs are positives (face, smooth skeleton)
        "P3-quantile-thresholds": PRRRNConfig(threshold_on="quantile", tau=0.25, xi=0.5, contrast_max_positive=None,
                                              contrast_max_frames=None),
        # added after the diagnosis runs: no contrastive term where > 70 % of the pairs are positives
        "P4-contrast-off-above-70pct": PRRRNConfig(contrast_max_positive=0.7, contrast_max_frames=None),
        # added after 2000-frame runs underfit (reprojection 0.045 vs 0.009 with 4x the steps): P4 with the same
        # number of epochs at every F (steps = 2400 F / 300) instead of sqrt(F)
        "P5-linear-budget": PRRRNConfig(contrast_max_positive=0.7, budget_power=1.0, contrast_max_frames=None),
        # added after the 2000-frame ablation (no contrastive term: reprojection 0.026 vs 0.057-0.073 at any weight,
        # bank size or budget): P4 without the term on sequences longer than the memory bank (F > N_mem = 1024)
        "P6-contrast-off-beyond-bank": PRRRNConfig(contrast_max_positive=0.7, contrast_max_frames=1024),
    },
    "dnrsfm": {  # D0 was the default before this study (the reference code's lr 1e-3); D2 won every fold
        "D0-lr1e-3": DeepNRSfMConfig(learning_rate=1e-3),
        "D1-lr1e-3-double-budget": DeepNRSfMConfig(learning_rate=1e-3, base_steps=4800),
        "D2-lr3e-3": DeepNRSfMConfig(learning_rate=3e-3),
    },
}
# the seeds / CMU runs; the package default is now P6 (= P4 up to 1024 frames; P4 = P0 where <= 70 % positives)
DEFAULT = {"prrrn": "P0-default", "dnrsfm": "D2-lr3e-3"}
# diagnosis only (not candidates of the leave-one-out choice): PR-RRN without each pairwise term
DIAG = {"prrrn": {"X-no-consist": PRRRNConfig(use_consist=False, contrast_max_positive=None,
                                               contrast_max_frames=None),
                  "X-no-contrast": PRRRNConfig(use_contrast=False)}}
SEEDS = (0, 1, 2)
# the settings of the selection study (sel-*: the defaults when it ran) and of the 10k-frame checks (P6, now default)
SEL_CANDIDATE = {"prrrn": "P4-contrast-off-above-70pct", "dnrsfm": "D2-lr3e-3"}
SCALE_CANDIDATE = {"prrrn": "P6-contrast-off-beyond-bank", "dnrsfm": "D2-lr3e-3"}


def load(name: str, quick: bool = False) -> NRSfMSequence:
    if name in REAL:
        return load_nrsfm_mat(data_root() / "nrsfm" / f"{name}.mat")
    if name == "cmu-scale":
        return cmu_scale_sequence(2000 if quick else CMU_FRAMES)
    if name == "cmu-scale-2000":
        return cmu_scale_sequence(300 if quick else 2000)
    spec = dict(SYNTHETIC.get(name) or LONG[name])
    if quick:
        spec["num_frames"] = min(spec["num_frames"], 120)
    seq = synthetic_nrsfm(**spec)
    seq.name = name
    return seq


def cmu_scale_sequence(frames: int, seed: int = 7) -> NRSfMSequence:
    """A CMU-MoCap-scale synthetic skeleton set: three motions (walking, waving, bending), random cameras, ``frames``
    frames in all (as the papers' CMU protocol: many subjects and actions seen from random orthographic views)."""
    parts = []
    n = frames // 3
    for k, motion in enumerate(("walking", "waving", "bending")):
        parts.append(synthetic_nrsfm("skeleton", num_frames=n if k < 2 else frames - 2 * n, motion=motion,
                                     camera="random", seed=seed + k))
    cat = lambda key: torch.cat([getattr(p, key) for p in parts])  # noqa: E731
    return NRSfMSequence(W=cat("W"), visibility=cat("visibility"), S=cat("S"), cameras=cat("cameras"),
                         name=f"cmu-scale-{frames}", bones=parts[0].bones, S_world=cat("S_world"))


def _key(r: dict) -> tuple:
    return (r["method"], r["candidate"], r["sequence"], r["seed"])


def _runs(out: Path) -> list[dict]:
    return read_runs(out / "runs.jsonl") if (out / "runs.jsonl").exists() else []


def one_run(seq: NRSfMSequence, method: str, candidate: str, seed: int, quick: bool,
            keep: Path | None = None) -> dict:
    mcfg = None
    if method in CANDIDATES:
        mcfg = {**CANDIDATES[method], **DIAG.get(method, {})}[candidate]
        if quick:
            mcfg = replace(mcfg, base_steps=max(20, mcfg.base_steps // 40))
    cfg = LearnedFitConfig(seed=seed, progress=False, log_every=50 if not quick else 5)
    t0 = time.perf_counter()
    res, met = fit_nrsfm(seq, method, model_config=mcfg, config=cfg if method in CANDIDATES else None)
    wall = time.perf_counter() - t0
    row = {"method": method, "candidate": candidate, "sequence": seq.name, "seed": seed,
           "frames": seq.num_frames, "points": int(seq.W.shape[1]), "time_s": wall,
           **{k: met[k] for k in ("e3d", "e3d_seq", "reproj", "steps", "stopped_early", "coherence") if k in met}}
    fl = depth_flips(res.S.float(), seq.S.float())
    row.update(flip_fraction=fl["flip_fraction"], e3d_frame_rotation=fl["e3d_frame_rotation"])
    if "selection_measure" in res.extra:
        row["measure"] = res.extra["selection_measure"]
    if keep is not None:  # the predictions, for 3D-free measures computed after the runs (not committed)
        keep.mkdir(parents=True, exist_ok=True)
        torch.save({"S": res.S.float(), "shapes": None if res.shapes is None else res.shapes.float(),
                    "cameras": None if res.cameras is None else res.cameras.float()},
                   keep / f"{method}_{candidate}_{seq.name}_{seed}.pt")
    if method == "prrrn":
        W, vis = validate_sequence(seq)
        Wn, _ = normalize_observations(W.float(), vis)
        row.update(representation_stats(res.extra["model"], Wn))
        row.update(contrastive_split(Wn, vis, mcfg))
    return row


def jobs(part: str, quick: bool, diag_seqs: list[str] | None = None) -> list[tuple[str, str, str, int]]:
    seqs = list(SYNTHETIC)[:2] if quick else [*REAL, *SYNTHETIC]
    if part.startswith("long"):  # --part long (both) or long:NAME: every candidate and baseline on the long ones
        names = list(LONG)[:1] if quick else [part.split(":", 1)[1]] if ":" in part else list(LONG)
        return [(m, m, s, 0) for s in names for m in ("tk", "em-ppca")] + [
            (m, c, s, 0) for s in names for m in ("prrrn", "dnrsfm") for c in CANDIDATES[m]]
    if part == "diag":
        return [("prrrn", c, s, 0) for s in (diag_seqs or seqs) for c in DIAG["prrrn"]]
    if part == "classic":
        return [(m, m, s, 0) for s in seqs for m in ("tk", "em-ppca")]
    if part in ("p3", "p4", "p5"):
        name = {"p3": "P3-quantile-thresholds", "p4": "P4-contrast-off-above-70pct", "p5": "P5-linear-budget"}[part]
        return [("prrrn", name, s, 0) for s in (diag_seqs or seqs)]
    if part == "p6":  # P6 differs from P4 only on sequences of more than 1024 frames: seeds 0-2 of the long ones
        return [("prrrn", "P6-contrast-off-beyond-bank", s, k) for s in (diag_seqs or LONG) for k in SEEDS]
    if part in ("prrrn", "dnrsfm"):
        return [(part, c, s, 0) for c in CANDIDATES[part] for s in seqs]
    if part == "seeds45":  # the budget question of P4 vs P5: their seeds 1 and 2 on every sequence (or --diag-seq)
        return [("prrrn", c, s, k) for s in (diag_seqs or [*seqs, *LONG]) for c in ("P4-contrast-off-above-70pct",
                                                                                   "P5-linear-budget") for k in SEEDS[1:]]
    if part.startswith("sel-cmu:"):  # the selection rule's held-out check at 10k frames (P6 / D2, predictions kept)
        m = part.split(":", 1)[1]
        return [(m, SCALE_CANDIDATE[m], "cmu-scale", k) for k in SEEDS]
    if part.startswith("sel-"):  # 3D-free selection study: seeds 0-2 of the default, the predictions kept (OUT/shapes)
        m = part[4:]
        return [(m, SEL_CANDIDATE[m], s, k) for s in (diag_seqs or [*seqs, *LONG]) for k in SEEDS]
    if part == "seeds":
        return [(m, DEFAULT[m], s, k) for m in ("dnrsfm", "prrrn") for k in SEEDS[1:] for s in seqs]
    if part == "cmu-p6":  # the held-out check of P6 at the papers' scale (10k frames, ~5 min on one core)
        return [("prrrn", SCALE_CANDIDATE["prrrn"], "cmu-scale", 0)]
    if part.startswith("cmu-seeds:"):  # seeds 1, 2 at 10k frames of P6 (prrrn) or D2 (dnrsfm)
        m = part.split(":", 1)[1]
        return [(m, SCALE_CANDIDATE[m], "cmu-scale", k) for k in SEEDS[1:]]
    if part == "cmu":
        return [(m, DEFAULT.get(m, m), "cmu-scale", 0) for m in ("tk", "em-ppca", "dnrsfm", "prrrn")]
    raise ValueError(f"--part: expected classic, prrrn, dnrsfm, p3, p4, p5, p6, seeds, seeds45, sel-prrrn, "
                     f"sel-dnrsfm, sel-cmu:prrrn|dnrsfm, cmu, cmu-p6, cmu-seeds:prrrn|dnrsfm, long[:NAME] or diag, "
                     f"found {part!r}")


def run(parts: list[str], out: Path, quick: bool, diag_seqs: list[str] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    done = {_key(r) for r in _runs(out)}
    cache: dict[str, NRSfMSequence] = {}
    for part in parts:
        for method, cand, sname, seed in jobs(part, quick, diag_seqs):
            seq = cache.get(sname) or cache.setdefault(sname, load(sname, quick))
            if (method, cand, seq.name, seed) in done:
                continue
            row = one_run(seq, method, cand, seed, quick, keep=out / "shapes" if part.startswith("sel-") else None)
            with open(out / "runs.jsonl", "a") as fh:  # one line per finished run: an interrupted study resumes
                fh.write(json.dumps(row) + "\n")
            print(f"{method:8s} {cand:20s} {seq.name:34s} seed {seed}: e3d {row['e3d']:.4f} "
                  f"({row.get('steps', '-')} steps, {row['time_s']:.0f} s)", flush=True)


def _loo(runs: list[dict], method: str) -> dict:
    table = {c: v for c, v in score_table(runs, method).items() if c in CANDIDATES[method]}
    if not table:
        return {}
    common = set.intersection(*[set(v) for v in table.values()])  # a study still running: the sequences all have
    return leave_one_out({c: {s: v[s] for s in common} for c, v in table.items()}) if len(common) >= 2 else {}


def report(out: Path) -> str:
    runs = _runs(out)
    seqs_all = [*REAL, *SYNTHETIC, *LONG]
    present = [s for s in seqs_all if any(r["sequence"] == s for r in runs)]
    e = {(r["method"], r["candidate"], r["sequence"], r["seed"]): r for r in runs}
    loo = {m: _loo(runs, m) for m in ("dnrsfm", "prrrn")}
    lines = [f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"{time.strftime('%Y-%m-%d')}; runs from {out / 'runs.jsonl'} ({len(runs)} runs).", "",
             "| sequence | F x P | tk | em-ppca | dnrsfm (held-out) | prrrn (held-out) | chosen without it |",
             "|---|---|---|---|---|---|---|"]
    cols: dict[str, list[float]] = {k: [] for k in ("tk", "em-ppca", "dnrsfm", "prrrn")}
    for s in present:
        row = [e.get((m, m, s, 0), {}).get("e3d") for m in ("tk", "em-ppca")]
        row += [loo[m].get(s, {}).get("score") for m in ("dnrsfm", "prrrn")]
        fp = next(r for r in runs if r["sequence"] == s)
        chosen = ", ".join(loo[m][s]["chosen"] for m in ("dnrsfm", "prrrn") if s in loo[m])
        for k, v in zip(cols, row):
            if v is not None and s in REAL:
                cols[k].append(v)
        lines.append(f"| {s} | {fp['frames']} x {fp['points']} | " + " | ".join(
            "-" if v is None else f"{v:.4f}" for v in row) + f" | {chosen} |")
    lines.append("| **mean, real** | | " + " | ".join(f"**{statistics.mean(v):.4f}**" if v else "-"
                                                     for v in cols.values()) + " | |")
    res = {"loo": loo, "selection": {m: selection_study(runs, m, DEFAULT[m], SEEDS) for m in ("dnrsfm", "prrrn")}}
    lines += ["", "Selection among seeds 0, 1, 2 of the default (e3D; best = lowest e3D of the three):", "",
              "| method | sequence | seeds 0 / 1 / 2 | best | lowest reprojection | reprojection + measure |",
              "|---|---|---|---|---|---|"]
    for m, st in res["selection"].items():
        for s, v in st.items():
            lines.append(f"| {m} | {s} | " + " / ".join(f"{x:.4f}" for x in v["e3d"]) + f" | {v['best']:.4f} | "
                         f"{v['reproj']:.4f}{'' if v['reproj_ok'] else ' (!)'} | "
                         f"{v['reproj+measure']:.4f}{'' if v['reproj+measure_ok'] else ' (!)'} |")
    lines += ["", "Diagnostics of the default runs (seed 0): depth-flip fraction, e3D with per-frame rotation only, "
              "PR-RRN's h (mean cosine, effective rank) and contrastive split:", "",
              "| method | sequence | e3d | flips | e3d rot-only | e3d seq | steps | h mean cos | h eff rank | pos / neg |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for m in ("tk", "em-ppca", "dnrsfm", "prrrn"):
        for s in [*present, "cmu-scale-10000"]:
            r = e.get((m, DEFAULT.get(m, m), s, 0))
            if r is None:
                continue
            pn = f"{r['pos_fraction']:.2f} / {r['neg_fraction']:.2f}" if "pos_fraction" in r else "-"
            hc = f"{r['h_mean_cos']:.2f}" if "h_mean_cos" in r else "-"
            he = f"{r['h_eff_rank']:.1f}" if "h_eff_rank" in r else "-"
            lines.append(f"| {m} | {s} | {r['e3d']:.4f} | {r['flip_fraction']:.2f} | {r['e3d_frame_rotation']:.4f} | "
                         f"{r['e3d_seq']:.4f} | {r.get('steps', '-')} | {hc} | {he} | {pn} |")
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    (out / "report.json").write_text(json.dumps(res, indent=1))
    # what the runs mean, for readers of runs.jsonl that do not import this script (notebooks 09 and 10)
    (out / "study.json").write_text(json.dumps({
        "real": list(REAL), "synthetic": list(SYNTHETIC), "long": list(LONG), "seeds": list(SEEDS), "default": DEFAULT,
        "candidates": {m: list(c) for m, c in CANDIDATES.items()}, "diagnosis": {m: list(c) for m, c in DIAG.items()},
    }, indent=1))
    return text


SEL_MEASURES = ("reproj", "measure", "rank1", "rank2", "rank3", "rank5", "consensus")
SEL_SLACKS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 1e9)


def _selection_groups(folders: list[Path]) -> dict[tuple[str, str], list[dict]]:
    """(method, sequence) -> the runs of seeds 0-2 with their 3D-free measures (from the kept predictions)."""
    from nrsfm_kit.metrics.nrsfm import e3d
    from nrsfm_kit.nrsfm.common import shape_space_residual

    groups: dict[tuple[str, str], list[dict]] = {}
    for folder in folders:
        for r in _runs(folder):
            if r["seed"] not in SEEDS:
                continue
            d = torch.load(folder / "shapes" / f"{r['method']}_{r['candidate']}_{r['sequence']}_{r['seed']}.pt")
            r = {**r, "_S": d["S"].double()}
            for k in (1, 2, 3, 5):
                r[f"rank{k}"] = shape_space_residual(r["_S"], k)
            groups.setdefault((r["method"], r["sequence"]), []).append(r)
    groups = {k: sorted(v, key=lambda r: r["seed"]) for k, v in groups.items() if len(v) == len(SEEDS)}
    for runs in groups.values():
        for r in runs:
            r["consensus"] = statistics.mean(float(e3d(r["_S"], o["_S"])) for o in runs if o is not r)
    return groups


def selection_report(folders: list[Path], out: Path, check: list[Path] = ()) -> str:
    """The restart-selection rule chosen leave-one-sequence-out from the ``sel-*`` parts' runs and kept shapes.

    Measures per run (no 3D): ``reproj``; ``measure`` (the method's own: Deep NRSfM's dictionary coherence,
    PR-RRN's consistency error); ``rankK`` = :func:`nrsfm_kit.nrsfm.common.shape_space_residual` with K directions;
    ``consensus`` = the mean e3D of the run's shapes against the other restarts' shapes (agreement between runs).
    Rules = measure x reprojection slack; :func:`nrsfm_kit.nrsfm.tuning.selection_rule_loo` pooled over both methods
    and per method. Writes OUT/report.md and OUT/report.json.
    """
    from nrsfm_kit.nrsfm.tuning import pick_run, selection_rule_loo

    groups = _selection_groups(folders)
    rules = [(m, sl) for m in SEL_MEASURES for sl in (SEL_SLACKS if m != "reproj" else (0.0,))]
    study = {"pooled": selection_rule_loo(groups, rules)}
    for m in ("dnrsfm", "prrrn"):
        study[m] = selection_rule_loo({k: v for k, v in groups.items() if k[0] == m}, rules)
    fixed = {}
    for rule in (("reproj", 0.0), ("measure", 0.1), ("rank3", 1.0), ("rank1", 1.0), ("consensus", 1.0)):
        for m in ("dnrsfm", "prrrn"):
            gs = [v for k, v in groups.items() if k[0] == m]
            kept = [g[pick_run(g, *rule)]["e3d"] for g in gs]
            ok = sum(e <= 1.1 * min(x["e3d"] for x in g) for e, g in zip(kept, gs))
            fixed[f"{m} {rule[0]}@{rule[1]:g}"] = {"ok": ok, "total": len(gs), "mean": statistics.mean(kept)}
    lines = ["# Restart selection without 3D: the rule chosen leave-one-sequence-out", "",
             f"{len(groups)} cases (method x sequence), seeds {list(SEEDS)}; a case is kept well when the kept run's "
             "e3D is within 10 % of the best of the three.", "",
             "| chosen on | held-out cases kept well | mean e3D kept | best | first seed | rules chosen |",
             "|---|---|---|---|---|---|"]
    for name, st in study.items():
        lines.append(f"| {name} | {st['ok']} / {st['total']} | {st['mean_kept']:.4f} | {st['mean_best']:.4f} | "
                     f"{st['mean_first']:.4f} | {', '.join(f'{k} x{v}' for k, v in st['chosen'].items())} |")
    lines += ["", "Fixed rules on all cases (in-sample):", "", "| rule | kept well | mean e3D kept |", "|---|---|---|"]
    lines += [f"| {k} | {v['ok']} / {v['total']} | {v['mean']:.4f} |" for k, v in fixed.items()]
    lines += ["", "Per case (pooled folds):", "", "| sequence | rule | method | seeds 0/1/2 e3D | reproj | rank3 | kept | ok |",
              "|---|---|---|---|---|---|---|---|"]
    for seq, fold in study["pooled"]["folds"].items():
        for m, c in fold["cases"].items():
            g = groups[(m, seq)]
            col = {k: " / ".join(f"{r[k]:{f}}" for r in g) for k, f in (("e3d", ".4f"), ("reproj", ".4f"),
                                                                         ("rank3", ".3f"))}
            lines.append(f"| {seq} | {fold['rule']} | {m} | {col['e3d']} | {col['reproj']} | {col['rank3']} | "
                         f"{c['kept']:.4f} | {'yes' if c['ok'] else 'no'} |")
    held = _selection_groups(list(check))  # never used to choose: the 10k-frame runs (sel-cmu parts)
    if held:
        lines += ["", "Held-out check, not in the study (CMU scale, 10 000 frames; seeds 0 / 1 / 2):", "",
                  "| method | sequence | e3D | reproj | rank3 | kept: rank3@1 (default) | reproj@0 | measure@0.1 |",
                  "|---|---|---|---|---|---|---|---|"]
        for (m, seq), g in sorted(held.items()):
            col = {k: " / ".join(f"{r[k]:.4f}" for r in g) for k in ("e3d", "reproj", "rank3")}
            kept = [g[pick_run(g, *rule)]["e3d"] for rule in (("rank3", 1.0), ("reproj", 0.0), ("measure", 0.1))]
            lines.append(f"| {m} | {seq} | {col['e3d']} | {col['reproj']} | {col['rank3']} | "
                         + " | ".join(f"{e:.4f}" for e in kept) + " |")
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    runs_out = {f"{m}|{s}": [{k: v for k, v in r.items() if k != "_S"} for r in g] for (m, s), g in groups.items()}
    (out / "report.json").write_text(json.dumps({"study": study, "fixed": fixed, "runs": runs_out}, indent=1))
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=("run", "report", "selection"))
    ap.add_argument("--part", action="append", default=[])
    ap.add_argument("--out", default="benchmarks/results/nrsfm_loo")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--diag-seq", action="append", default=None, help="sequences of --part diag (default: all)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    if a.command == "selection":  # after: run --part sel-prrrn --out DIR_P; run --part sel-dnrsfm --out DIR_D
        base = Path("benchmarks/results")
        print(selection_report([base / "nrsfm_sel_prrrn", base / "nrsfm_sel_dnrsfm"], base / "nrsfm_sel",
                               check=[p for p in (base / "nrsfm_sel_cmu", base / "nrsfm_sel_cmu_p") if p.is_dir()]))
        return
    if a.command == "run":
        run(a.part or ["classic", "dnrsfm", "prrrn", "seeds"], out, a.quick, a.diag_seq)
    print(report(out))


if __name__ == "__main__":
    main()
