"""Data-parallel training of the depth pre-training, the DeepDeform matcher and the learned tracker: 2 processes
(gloo on CPU) against one process with the same global batch.

- depth pre-training on the synthetic corpus (2 view pairs per step, one per process; each sample draws its pixel
  pairs from its own seed): loss history and parameters as one process, to float32 round-off; a step of 3 view
  pairs is refused naming pairs_per_step; rank 0 alone writes the checkpoints and pretrained_depth.pt;
- the matcher's heatmap stage (batch 8, GroupNorm; L_H and L_D rescaled to the global batch's visible samples):
  as one process, to float32 round-off;
- the tracker's flow stage (global batch 2, one pair per process): L_corr is a mean over each shard's valid pixels,
  so the two runs agree only as closely as the shards' valid-pixel counts do (measured below);
- ``nrsfm-kit depth pretrain`` under ``torchrun --nproc_per_node 2`` (rank 0 writes the report) against one process.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from _dist_worker import matcher_run, pretrain_run, tracker_run
from test_distributed import ROOT, TORCHRUN, free_port, rel, spawn

F32_RTOL = 1e-4  # float32 round-off of the shards' sums, amplified by a few Adam steps


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist_methods")
    single = {"pretrain": pretrain_run(), "matcher": matcher_run(folder / "cache"),
              "tracker": tracker_run(folder / "cache")}  # (builds the pairs' cache the workers read)
    return {"folder": folder, "single": single, "two": spawn("methods", folder, timeout=300.0)}


def _same_run(got: dict, want: dict, rtol: float, atol: float = 1e-6) -> None:
    assert [e["step"] for e in got["history"]] == [e["step"] for e in want["history"]]
    for a, b in zip(got["history"], want["history"]):
        assert rel(a["loss"], b["loss"]) < rtol, (a, b)
    for a, b in zip(got["params"], want["params"]):
        assert torch.allclose(a, b, rtol=rtol, atol=atol), float((a - b).abs().max())


@pytest.mark.parametrize("method", ["pretrain", "matcher"])
def test_two_processes_follow_one_process(runs, method):
    r0, r1 = runs["two"]
    # parameters: Adam turns the shards' float32 round-off in near-zero gradient components into steps of up to lr
    # (1e-3) each; measured 0 / 6.8e-8 with 1 torch thread, 7.8e-5 with 2 (multithreaded convolutions)
    _same_run(r0[method], runs["single"][method], F32_RTOL, atol=1e-3)
    assert r0[method]["history"] == r1[method]["history"]  # one history on every rank
    assert all(torch.equal(a, b) for a, b in zip(r0[method]["params"], r1[method]["params"]))


def test_tracker_on_two_processes_is_close_to_one_process(runs):
    r0, r1 = runs["two"]
    got, want = r0["tracker"], runs["single"]["tracker"]
    assert all(torch.equal(a, b) for a, b in zip(got["params"], r1["tracker"]["params"]))  # replicas identical
    # exact only when both halves have as many valid flow pixels (measured here: 6e-8 relative, they do; in
    # general the gradient is the mean of the halves' means)
    for a, b in zip(got["history"], want["history"]):
        assert rel(a["loss"], b["loss"]) < 1e-3, (a, b)


def test_replicas_hold_one_set_of_batchnorm_statistics(runs):
    r0, r1 = runs["two"]
    assert r0["pretrain"]["buffers"]  # the depth net's ResNet-18 has BatchNorm
    assert all(torch.equal(a, b) for a, b in zip(r0["pretrain"]["buffers"], r1["pretrain"]["buffers"]))
    # (not the one-process values: there each of a step's 2 samples updates them in turn, momentum 0.1; here each
    # rank updates them once per step and the ranks' values are averaged, measured max difference 0.16 after 4 steps)
    assert r0["diverged"] == [] and r1["diverged"] == []  # nothing differs across ranks at a checkpoint


def test_rank_zero_alone_writes(runs):
    r0, r1 = runs["two"]
    assert r0["writes"] > 0 and r1["writes"] == 0
    assert r0["pretrain"]["checkpoint"] == r1["pretrain"]["checkpoint"]
    assert Path(r0["pretrain"]["checkpoint"]).is_file()
    assert (runs["folder"] / "matcher" / "heatmap" / "checkpoint.pt").is_file()
    assert (runs["folder"] / "tracker" / "checkpoint.pt").is_file()


def test_view_pairs_that_do_not_split_are_refused(runs):
    for r in runs["two"]:
        assert r["pretrain_odd"].startswith("pairs_per_step: expected a multiple of the world size 2, found 3")


def test_depth_pretrain_cli_under_torchrun_matches_one_process(tmp_path):
    from nrsfm_kit.cli import main

    args = ["depth", "pretrain", "--corpus", "synthetic", "--videos", "2", "--smoke", "--steps", "3", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(TORCHRUN), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
                           str(free_port()), "-m", "nrsfm_kit.cli", *args, "--out", str(tmp_path / "two")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (json.loads((tmp_path / n / "report.json").read_text()) for n in ("one", "two"))
    assert one["processes"] == 1 and two["processes"] == 2
    assert rel(two["final_loss"], one["final_loss"]) < F32_RTOL, (two["final_loss"], one["final_loss"])
    assert done.stdout.count('"corpus": "synthetic"') == 1  # rank 0 alone reports
    # 3 view pairs do not split over 2 processes: refused before any work, naming the flag
    bad = subprocess.run([str(TORCHRUN), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
                          str(free_port()), "-m", "nrsfm_kit.cli", *args, "--view-pairs", "3",
                          "--out", str(tmp_path / "bad")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=240)
    assert bad.returncode != 0
    assert "--view-pairs: expected a multiple of the world size 2, found 3" in bad.stderr


def _torchrun(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(TORCHRUN), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
                           str(free_port()), "-m", "nrsfm_kit.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_match_and_track_train_under_torchrun(tmp_path):
    import torch as _torch

    from nrsfm_kit.matching.training import load_matcher
    from nrsfm_kit.tracking.training import load_tracker

    done = _torchrun(["match", "train", "--preset", "smoke", "--steps", "2", "--out", str(tmp_path / "match")])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1  # rank 0 alone writes and reports
    assert all(_torch.isfinite(p).all() for p in load_matcher(tmp_path / "match" / "matcher.pt").parameters())
    done = _torchrun(["track", "train", "--preset", "smoke", "--stage", "flow", "--steps", "2",
                      "--out", str(tmp_path / "track")])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1
    load_tracker(tmp_path / "track" / "tracker.pt")
