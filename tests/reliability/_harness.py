"""Shared pieces of the kill-and-resume tests: the CLI commands (tiny sizes) and the check of one kill point."""

from __future__ import annotations

import sys

from nrsfm_kit.utils.faults import kill_and_resume, run_killed, run_state, state_differences


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "nrsfm_kit.cli", *map(str, args)]


NRSFM_DATA = "synthetic:lowrank,frames=40,points=12,rank=2"

COMMANDS = {
    "nrsfm-dnrsfm": lambda out, js: cli("nrsfm", "fit", "--method", "dnrsfm", "--data", NRSFM_DATA, "--epochs", 20,
                                        "--checkpoint-every", 8, "--out", out, "--json", js, "--quiet"),
    "nrsfm-prrrn": lambda out, js: cli("nrsfm", "fit", "--method", "prrrn", "--data", NRSFM_DATA, "--epochs", 12,
                                       "--checkpoint-every", 8, "--out", out, "--json", js, "--quiet"),
    "nrsfm-prrrn-restarts": lambda out, js: cli("nrsfm", "fit", "--method", "prrrn", "--data", NRSFM_DATA,
                                                "--epochs", 12, "--restarts", 2, "--checkpoint-every", 8,
                                                "--out", out, "--json", js, "--quiet"),
    "depth-fit": lambda out, js: cli("depth", "fit", "--sequence", "synthetic", "--smoke", "--variant", "embeddings",
                                     "--steps", 6, "--checkpoint-every", 2, "--out", out, "--json", js, "--quiet"),
    "track-train": lambda out, js: cli("track", "train", "--stage", "all", "--preset", "smoke", "--steps", 4,
                                       "--checkpoint-every", 2, "--out", out),
    "match-train": lambda out, js: cli("match", "train", "--preset", "smoke", "--steps", 4, "--checkpoint-every", 2,
                                       "--out", out),
}


def uninterrupted(name: str, folder) -> dict:
    out, js = folder / "out", folder / "result.json"
    done = run_killed(COMMANDS[name](out, js), None)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_state(out, js)


def check_kill_point(name: str, spec: str, folder, reference: dict) -> dict:
    """Kill ``name`` at ``spec``, resume, and require the uninterrupted run's final files, bit for bit."""
    r = kill_and_resume(COMMANDS[name], spec, folder)
    assert r["killed"], f"{name}: the fault {spec} never fired (exit {r['first_returncode']}): {r['first_stderr']}"
    assert r["returncode"] == 0, r["stderr"]
    assert r["state"]["files"], f"{name}: the resumed run left no checkpoint"
    diffs = state_differences(reference, r["state"])
    assert not diffs, f"{name} killed at {spec}, resumed: {diffs}"
    return r
