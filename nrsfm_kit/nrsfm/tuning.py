"""Choosing defaults that generalise: leave-one-sequence-out over a score table, and 3D-free restart selection.

A *score table* maps candidate settings to their score (e3D, lower is better) on each sequence:
``{"P0-default": {"pickup": 0.069, "yoga": 0.074, ...}, "P1-half-budget": {...}}``.

- :func:`leave_one_out`: for every sequence s, the candidate with the lowest mean score over the *other*
  sequences is the default "chosen without s", and its score on s is s's held-out score. The mean held-out
  score is what a user with a new sequence can expect; it is never lower than the oracle below.
- :func:`tuned_on_test`: the per-sequence best candidate, i.e. what a table reports when the settings are chosen
  on the sequences it is scored on (optimistic; the gap to the held-out scores is the overfitting).
- :func:`selection_study`: for the runs of one setting with several seeds, which run a 3D-free rule keeps
  (:func:`nrsfm_kit.nrsfm.learned.select_restart`) against the best run by e3D.
- :func:`selection_rule_loo`: the restart-selection *rule* (a 3D-free measure and a reprojection slack) chosen
  leave-one-sequence-out, scored on the held-out sequence: how ``LearnedFitConfig.selection`` was chosen.

``benchmarks/nrsfm_loo.py`` produces the runs (one JSON object per line, :func:`read_runs`) these functions read;
notebook 10 shows the tables.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from nrsfm_kit.nrsfm.learned import select_restart


def read_runs(path: str | Path) -> list[dict]:
    """The runs of a study: a JSON-lines file, one run (method, candidate, sequence, seed, e3d, ...) per line."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"path: expected a JSON-lines file of runs, found no file at {p}")
    runs = []
    for i, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError:
            raise ValueError(f"path: expected one JSON object per line, found invalid JSON on line {i} of {p}") from None
        missing = [k for k in ("method", "candidate", "sequence", "seed") if k not in r]
        if missing:
            raise ValueError(f"path: expected keys method, candidate, sequence, seed on line {i} of {p}, "
                             f"found it without {missing}")
        runs.append(r)
    return runs


def score_table(runs: list[dict], method: str, metric: str = "e3d", seed: int = 0,
                sequences: list[str] | None = None) -> dict[str, dict[str, float]]:
    """``{candidate: {sequence: metric}}`` of ``method``'s runs with ``seed`` (optionally only ``sequences``)."""
    table: dict[str, dict[str, float]] = {}
    for r in runs:
        if r["method"] == method and r["seed"] == seed and (sequences is None or r["sequence"] in sequences):
            if metric not in r:
                raise ValueError(f"runs: expected {metric!r} in every run, found a run of {method} on "
                                 f"{r['sequence']} without it")
            table.setdefault(r["candidate"], {})[r["sequence"]] = float(r[metric])
    return table


def _check_table(table: dict[str, dict[str, float]]) -> list[str]:
    if not isinstance(table, dict) or not table:
        raise ValueError("table: expected {candidate: {sequence: score}} with at least one candidate, found none")
    seqs = sorted(set().union(*[set(v) for v in table.values()]))
    for c, v in table.items():
        miss = [s for s in seqs if s not in v]
        if miss:
            raise ValueError(f"table: expected every candidate scored on every sequence, found {c!r} without {miss}")
        bad = [s for s in seqs if not math.isfinite(float(v[s]))]
        if bad:
            raise ValueError(f"table: expected finite scores, found {c!r} non-finite on {bad}")
    if len(seqs) < 2:
        raise ValueError(f"table: expected at least 2 sequences to leave one out, found {len(seqs)}")
    return seqs


def leave_one_out(table: dict[str, dict[str, float]], held_out: list[str] | None = None) -> dict[str, dict]:
    """Held-out score of each sequence (of ``held_out``, default all): ``{seq: {"chosen", "score", "all"}}``.

    The candidate chosen for s minimises the mean score over every sequence but s (ties: the first name in
    sorted order), so s never influences the default it is scored with.
    """
    seqs = _check_table(table)
    targets = seqs if held_out is None else list(held_out)
    unknown = [s for s in targets if s not in seqs]
    if unknown:
        raise ValueError(f"held_out: expected sequences of the table {seqs}, found {unknown}")
    out = {}
    for s in targets:
        others = [t for t in seqs if t != s]
        chosen = min(sorted(table), key=lambda c: statistics.mean(table[c][t] for t in others))
        out[s] = {"chosen": chosen, "score": float(table[chosen][s]), "all": {c: float(table[c][s]) for c in table}}
    return out


def tuned_on_test(table: dict[str, dict[str, float]]) -> dict[str, dict]:
    """The per-sequence best candidate and score (settings chosen on the test sequence itself)."""
    seqs = _check_table(table)
    return {s: {"chosen": (c := min(sorted(table), key=lambda k: table[k][s])), "score": float(table[c][s])}
            for s in seqs}


def selection_study(runs: list[dict], method: str, candidate: str, seeds=(0, 1, 2), slack: float = 0.1,
                    tolerance: float = 0.1) -> dict[str, dict]:
    """Per sequence: the e3D of every seed, the best, and the run each 3D-free rule keeps.

    Rules: ``reproj`` (lowest reprojection error) and ``reproj+measure`` (:func:`select_restart` with the runs'
    ``measure`` and ``slack``). ``*_ok`` says whether the kept run is within ``tolerance`` (10 %) of the best e3D.
    Sequences without a run for every seed are left out.
    """
    by_seq: dict[str, dict[int, dict]] = {}
    for r in runs:
        if r["method"] == method and r["candidate"] == candidate and r["seed"] in seeds:
            by_seq.setdefault(r["sequence"], {})[r["seed"]] = r
    out = {}
    for s, rs in sorted(by_seq.items()):
        if len(rs) < len(seeds):
            continue
        rows = [rs[k] for k in seeds]
        e = [float(r["e3d"]) for r in rows]
        best = min(e)
        k_rep = select_restart([r["reproj"] for r in rows])
        k_mix = select_restart([r["reproj"] for r in rows], [r.get("measure") for r in rows], slack)
        out[s] = {"e3d": e, "best": best, "reproj": e[k_rep], "reproj+measure": e[k_mix],
                  "reproj_ok": e[k_rep] <= (1 + tolerance) * best,
                  "reproj+measure_ok": e[k_mix] <= (1 + tolerance) * best}
    return out


def pick_run(runs: list[dict], measure: str, slack: float) -> int:
    """Index of the run the rule (``measure``, ``slack``) keeps among ``runs`` (dicts with ``reproj`` and, unless
    ``measure`` is "reproj", that key): :func:`~nrsfm_kit.nrsfm.learned.select_restart`."""
    reps = [r["reproj"] for r in runs]
    if measure == "reproj":
        return select_restart(reps)
    missing = [k for k, r in enumerate(runs) if r.get(measure) is None]
    if missing:
        raise ValueError(f"runs: expected a value of {measure!r} in every run, found none in run {missing[0]}")
    return select_restart(reps, [r[measure] for r in runs], slack)


def selection_rule_loo(groups: dict[tuple[str, str], list[dict]], rules: list[tuple[str, float]],
                       tolerance: float = 0.1) -> dict:
    """Leave-one-sequence-out choice of a restart-selection rule, scored on the held-out sequence.

    ``groups`` maps (method, sequence) to the restarts of one setting (dicts with ``e3d``, ``reproj`` and every
    rule's measure); ``rules`` are (measure key, slack) pairs (:func:`pick_run`). A case is *kept well* when the
    kept run's e3D is within ``tolerance`` of the best run's. For each sequence s the rule that keeps the most cases
    of the other sequences well (ties: the lower mean kept / best e3D ratio, then the earlier rule) is applied to
    s's cases. Returns ``folds`` (per sequence: the rule, and per method the kept, best and first run's e3D and
    ``ok``), ``ok`` / ``total`` over the held-out cases, ``chosen`` (how often each rule was chosen, "measure@slack")
    and the mean e3D of the kept, the best and the first (seed) runs.
    """
    if not groups or not rules:
        raise ValueError(f"groups, rules: expected at least one of each, found {len(groups)} and {len(rules)}")
    for key, runs in groups.items():
        if not runs:
            raise ValueError(f"groups[{key!r}]: expected at least one run, found none")

    def kept(runs, rule):
        r = runs[pick_run(runs, *rule)]
        best = min(x["e3d"] for x in runs)
        return r["e3d"], best, r["e3d"] <= (1 + float(tolerance)) * best

    def score(keys, rule):
        res = [kept(groups[k], rule) for k in keys]
        return sum(ok for _, _, ok in res), -sum(e / max(b, 1e-12) for e, b, _ in res) / max(len(res), 1)

    seqs = sorted({s for _, s in groups})
    folds, chosen, n_ok, total, e_kept, e_best, e_first = {}, {}, 0, 0, [], [], []
    for held in seqs:
        train = [k for k in groups if k[1] != held] or list(groups)
        rule = max(rules, key=lambda ru: (*score(train, ru), -rules.index(ru)))
        name = f"{rule[0]}@{rule[1]:g}"
        chosen[name] = chosen.get(name, 0) + 1
        cases = {}
        for (m, s), runs in sorted(groups.items()):
            if s != held:
                continue
            e, b, ok = kept(runs, rule)
            cases[m] = {"kept": e, "best": b, "first": runs[0]["e3d"], "ok": ok}
            n_ok, total = n_ok + ok, total + 1
            e_kept.append(e), e_best.append(b), e_first.append(runs[0]["e3d"])
        folds[held] = {"rule": name, "cases": cases}
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    return {"folds": folds, "ok": n_ok, "total": total, "chosen": chosen,
            "mean_kept": mean(e_kept), "mean_best": mean(e_best), "mean_first": mean(e_first)}
