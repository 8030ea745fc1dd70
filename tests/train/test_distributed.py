"""Data-parallel training through the one loop (:mod:`nrsfm_kit.train.distributed`), 2 processes, gloo on CPU.

- helpers in one process: ``shard`` splits a global batch into equal contiguous parts and names the argument when
  it does not split; every collective is the identity on a world of one;
- a float64 MLP regression whose step draws a global batch of 8 from a generator and trains on its ``shard``: 2
  processes follow the 1-process run (loss history within 1e-6 relative, parameters within 1e-6); rank 0 alone
  writes checkpoints and holds the folder lock; the 2-process run resumed from its checkpoint (new model,
  optimiser, sampler; every rank gets rank 0's checkpoint) ends where the uninterrupted 2-process run ends, bit for
  bit; a global batch of 7 is refused, naming batch_size;
- PR-RRN (memory bank, contrastive and consistency terms made global) on 2 processes vs 1;
- ``nrsfm-kit nrsfm fit --method dnrsfm`` under ``torchrun --nproc_per_node 2`` vs one process: e3D within 1e-4
  relative (measured: 4e-6, float32 round-off after 6 Adam steps).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from _dist_worker import prrrn_run, train, worker

from nrsfm_kit.train import distributed as dd

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).with_name("torchrun")
DATA = "synthetic:lowrank,frames=40,points=12,rank=2"
E3D_RTOL = 1e-4  # 2 vs 1 process, float32 (measured 4e-6 after 6 steps)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(scenario: str, folder: Path, timeout: float = 120.0) -> list[dict]:
    """Run ``scenario`` on 2 processes; their results in rank order (a hung group fails after ``timeout`` s)."""
    ctx = mp.start_processes(worker, args=(2, free_port(), scenario, str(folder)), nprocs=2, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the 2-process {scenario} run did not end within {timeout} s")
    return [torch.load(folder / f"{scenario}_{r}.pt", weights_only=False) for r in range(2)]


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


# ---------------------------------------------------------------------------------------------------------------
# one process


def test_shard_splits_the_global_batch_into_equal_contiguous_parts():
    idx = torch.arange(8) * 10
    parts = [dd.shard(idx, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat(parts), idx) and all(len(p) == 4 for p in parts)
    assert dd.shard(8, rank=1, world_size=4) == slice(2, 4)
    assert dd.shard(idx) is idx  # one process: the batch itself
    with pytest.raises(ValueError, match=r"^batch_size: expected a multiple of the world size 2, found 7$"):
        dd.shard(7, world_size=2, rank=0)
    with pytest.raises(ValueError, match="frames: expected a multiple of the world size 3, found 8"):
        dd.shard(idx, "frames", world_size=3, rank=0)


def test_one_process_collectives_are_identities(monkeypatch):
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert not dd.init_from_env()  # no torchrun environment: nothing to join
    assert dd.world() == (0, 1) and dd.is_main()
    x = torch.randn(3)
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    dd.all_reduce_gradients([p])
    assert torch.equal(p.grad, torch.full((2,), 3.0))
    assert torch.equal(dd.all_gather_tensor(x), x) and torch.equal(dd.all_reduce_sum(x), x)
    assert dd.broadcast_object({"a": 1}) == {"a": 1} and dd.gather_objects(5) == [5] and dd.any_rank(True)
    assert dd.main_only(lambda a: a + 1, 1) == 2
    dd.barrier()
    bn = torch.nn.BatchNorm1d(3)
    bn.running_mean.fill_(2.0)
    dd.average_buffers(bn)  # one process: the buffers as they are
    assert torch.equal(bn.running_mean, torch.full((3,), 2.0))
    assert dd.joined(lambda a: a * 3, 2) == 6  # no torchrun environment: just the call
    assert dd.main_first(lambda a: a + 4, 1) == 5


def test_output_folder_checks_and_locks(tmp_path):
    with dd.output_folder(None) as none:
        assert none is None
    from nrsfm_kit.utils.io import _held

    with dd.output_folder(tmp_path / "run", "--out") as out:
        assert out == tmp_path / "run" and (out / ".nrsfm-kit.lock").is_file()
        assert str(out.resolve()) in _held  # held while the block runs (another process is refused)
    assert str((tmp_path / "run").resolve()) not in _held  # released
    (tmp_path / "a_file").touch()
    with pytest.raises(ValueError, match=r"^--out: expected a folder"):
        with dd.output_folder(tmp_path / "a_file", "--out"):
            pass


def test_init_from_env_names_a_missing_variable(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        dd.init_from_env()
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK: expected 0 <= RANK < WORLD_SIZE = 2, found 2"):
        dd.init_from_env()


# ---------------------------------------------------------------------------------------------------------------
# two processes


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist")
    return {"folder": folder, "runs": spawn("all", folder)}


def test_two_processes_follow_the_one_process_run(two):
    single = train(None, 20)
    for r in two["runs"]:
        assert r["world_size"] == 2
        got = r["full"]
        assert [e["step"] for e in got["history"]] == [e["step"] for e in single["history"]]
        for a, b in zip(got["history"], single["history"]):
            assert rel(a["loss"], b["loss"]) < 1e-6, (a, b)
            assert a["lr"] == b["lr"]
        for a, b in zip(got["params"], single["params"]):
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-9), float((a - b).abs().max())
    r0, r1 = two["runs"]
    assert r0["full"]["history"] == r1["full"]["history"]  # one history on every rank
    assert all(torch.equal(a, b) for a, b in zip(r0["full"]["params"], r1["full"]["params"]))


def test_rank_zero_alone_writes_checkpoints_and_holds_the_lock(two):
    r0, r1 = two["runs"]
    assert r0["writes"] == 4 and r1["writes"] == 0  # checkpoints at 5, 10, 15, 20
    assert r0["writes_all"] > 4 and r1["writes_all"] == 0  # (+ part/, its resume, PR-RRN's)
    full = two["folder"] / "full"
    assert json.loads((full / "metrics.json").read_text())["step"] == 20
    assert f"pid {r0['pid']}," in (full / ".nrsfm-kit.lock").read_text()


def test_resumed_two_process_run_is_the_uninterrupted_run(two):
    for r in two["runs"]:
        assert r["part"]["step"] == 10 and r["part"]["resumed_from"] is None
        got, want = r["resumed"], r["full"]
        assert got["resumed_from"] == 10 and got["step"] == 20
        assert got["history"] == want["history"]
        assert all(torch.equal(a, b) for a, b in zip(got["params"], want["params"]))


def test_global_batch_that_does_not_split_is_refused(two):
    for r in two["runs"]:
        assert r["error"].startswith("batch_size: expected a multiple of the world size 2, found 7")


def test_errors_and_warnings_reach_every_rank(two):
    r0, r1 = two["runs"]
    for r in (r0, r1):  # out_dir checked on rank 0 alone; its refusal is raised on every rank
        assert r["out_dir_error"].startswith("out_dir: expected a folder"), r["out_dir_error"]
    # state registered per rank that differs: rank 0 warns (only its copy is saved), once
    assert len(r0["diverged"]) == 1 and "state['per_rank']" in r0["diverged"][0] and r1["diverged"] == []


def test_prrrn_on_two_processes_follows_one_process(two):
    single = prrrn_run()
    r0, r1 = two["runs"]
    assert all(torch.equal(a, b) for a, b in zip(r0["prrrn"]["params"], r1["prrrn"]["params"]))
    assert rel(r0["prrrn"]["e3d"], single["e3d"]) < E3D_RTOL, (r0["prrrn"]["e3d"], single["e3d"])
    hist = r0["prrrn"]["history"]
    assert any("contrast" in e for e in hist) and any("consist" in e for e in hist)  # both terms ran


def test_nrsfm_fit_dnrsfm_under_torchrun_matches_one_process(tmp_path):
    from nrsfm_kit.cli import main

    args = ["nrsfm", "fit", "--method", "dnrsfm", "--data", DATA, "--epochs", "3", "--quiet"]
    assert main([*args, "--json", str(tmp_path / "one.json")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(TORCHRUN), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
                           str(free_port()), "-m", "nrsfm_kit.cli", *args, "--json", str(tmp_path / "two.json"),
                           "--out", str(tmp_path / "out")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two_ = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert one["steps"] == two_["steps"] == 6
    assert rel(two_["e3d"], one["e3d"]) < E3D_RTOL, (two_["e3d"], one["e3d"])
    assert (tmp_path / "out" / "checkpoint.pt").is_file()
