"""Fault injection: crash a run at a named point, to prove that resume and atomic writes hold.

The suite's long-running code calls :func:`fault_point` at the places where an interruption matters:

- ``"step"``: the start of every optimiser step of :func:`nrsfm_kit.train.fit` (before the step runs);
- ``"saved"``: right after a checkpoint of :func:`~nrsfm_kit.train.fit` is on disk;
- ``"write:<file name>"``: in the middle of an atomic write of that file (half of its bytes in the temporary
  file, :func:`nrsfm_kit.utils.io.atomic_write_bytes`), e.g. ``"write:checkpoint.pt"``;
- ``"stage"``: after a stage of a multi-stage run (a restart of ``fit_learned``, a stage of the EDM two-stage
  training) has finished.

Nothing happens unless a fault is armed. A fault is armed by the environment, for a child process (what the
kill-and-resume harness does)::

    NRSFM_KIT_FAULT="saved@2"          # SIGKILL right after the second checkpoint
    NRSFM_KIT_FAULT="write:checkpoint.pt@1"
    NRSFM_KIT_FAULT_ACTION=kill        # (default) or "raise": raise InjectedFault instead

or in-process with :func:`inject` (a context manager; the action defaults to ``"raise"`` there). ``KIND@N``
fires at the N-th occurrence (1-based) of that point in the process. :func:`run_killed` runs a command with a
fault armed and returns how it ended.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter

ENV = "NRSFM_KIT_FAULT"
ENV_ACTION = "NRSFM_KIT_FAULT_ACTION"
ACTIONS = ("kill", "raise")


class InjectedFault(RuntimeError):
    """Raised at an armed fault point when the action is ``"raise"`` (a simulated crash)."""


_counts: Counter = Counter()
_armed: list[tuple[str, int, str]] = []  # in-process faults (kind, n, action), innermost last


def parse_fault(spec: str) -> tuple[str, int]:
    """``"KIND@N"`` -> (KIND, N); ValueError naming the spec otherwise."""
    kind, sep, n = str(spec).rpartition("@")
    if not sep or not kind or not n.isdigit() or int(n) < 1:
        raise ValueError(f"{ENV}: expected KIND@N with N >= 1 (e.g. 'saved@2', 'write:checkpoint.pt@1'), "
                         f"found {spec!r}")
    return kind, int(n)


def _env_fault() -> tuple[str, int, str] | None:
    spec = os.environ.get(ENV)
    if not spec:
        return None
    kind, n = parse_fault(spec)
    action = os.environ.get(ENV_ACTION, "kill")
    if action not in ACTIONS:
        raise ValueError(f"{ENV_ACTION}: expected one of {ACTIONS}, found {action!r}")
    return kind, n, action


def fault_point(kind: str) -> None:
    """Mark a fault point; crashes here when a fault armed for ``kind`` reaches its occurrence count."""
    armed = _armed[-1] if _armed else _env_fault()
    if armed is None:
        return
    _counts[kind] += 1
    want, n, action = armed
    if kind != want or _counts[kind] != n:
        return
    if action == "kill":
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"injected fault at {kind!r} (occurrence {n})")


def reset() -> None:
    """Forget the occurrence counts (a fresh process)."""
    _counts.clear()


@contextlib.contextmanager
def inject(spec: str, action: str = "raise"):
    """Arm ``spec`` (``"KIND@N"``) in this process for the ``with`` block; counts start from zero."""
    kind, n = parse_fault(spec)
    if action not in ACTIONS:
        raise ValueError(f"action: expected one of {ACTIONS}, found {action!r}")
    saved = Counter(_counts)
    _counts.clear()
    _armed.append((kind, n, action))
    try:
        yield
    finally:
        _armed.pop()
        _counts.clear()
        _counts.update(saved)


def run_killed(argv: list[str], spec: str | None, env: dict | None = None, timeout: float = 600.0,
               cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` in a child process with fault ``spec`` armed (SIGKILL; None = no fault).

    Returns the CompletedProcess; ``returncode == -9`` when the fault fired (the process was killed), the
    command's own exit status otherwise. The child gets ``OMP_NUM_THREADS=1`` unless ``env`` sets it
    (bit-identical runs on CPU).
    """
    child = dict(os.environ)
    child.pop(ENV, None)
    child.pop(ENV_ACTION, None)
    child.setdefault("OMP_NUM_THREADS", "1")
    child.update(env or {})
    if spec is not None:
        parse_fault(spec)
        child[ENV], child[ENV_ACTION] = spec, "kill"
    return subprocess.run(argv, env=child, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False)


# ----------------------------------------------------------------------------------------------------------
# the kill-and-resume harness (tests/reliability, benchmarks/reliability.py)

FINAL_FILES = ("checkpoint.pt", "tracker.pt", "matcher.pt")


def run_state(out_dir, json_path=None) -> dict:
    """What a finished run left, for comparing two runs: every final checkpoint / model file under ``out_dir``
    (relative path -> its tensors, step and history) and the JSON result (``out_dir`` and ``json_path`` written as
    ``<OUT>`` / ``<JSON>`` so that runs in two folders compare equal)."""
    import json
    from pathlib import Path

    import torch

    from nrsfm_kit.train.state import FORMAT, read_checkpoint

    out = Path(out_dir)
    files = {}
    for p in sorted(out.rglob("*.pt")):
        if p.name not in FINAL_FILES:
            continue
        raw = torch.load(p, map_location="cpu", weights_only=False)
        payload = read_checkpoint(p) if isinstance(raw, dict) and raw.get("format") == FORMAT else raw
        files[str(p.relative_to(out))] = payload
    result = None
    if json_path is not None and Path(json_path).is_file():
        text = Path(json_path).read_text().replace(str(out), "<OUT>").replace(str(json_path), "<JSON>")
        result = json.loads(text)
    leftovers = sorted(str(p.relative_to(out)) for p in out.rglob(".*.tmp"))
    return {"files": files, "result": result, "temporaries": leftovers}


def _same(a, b) -> bool:
    import numpy as np
    import torch

    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and \
            bool(np.array_equal(a, b))
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and \
            a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:  # NaN == NaN here
        return True
    return type(a) is type(b) and a == b


def state_differences(a: dict, b: dict) -> list[str]:
    """What differs between two :func:`run_state` (empty: the same run, bit for bit)."""
    diffs = []
    if a["result"] != b["result"] and not _same(a["result"], b["result"]):
        diffs.append("the JSON result differs")
    for name in sorted(set(a["files"]) | set(b["files"])):
        if name not in a["files"] or name not in b["files"]:
            diffs.append(f"{name}: in only one run")
            continue
        fa, fb = a["files"][name], b["files"][name]
        for key in sorted(set(fa) | set(fb)) if isinstance(fa, dict) and isinstance(fb, dict) else ["<file>"]:
            va, vb = (fa, fb) if key == "<file>" else (fa.get(key), fb.get(key))
            if key in ("config",):
                continue
            if not _same(va, vb):
                diffs.append(f"{name}: {key} differs")
    for run, st in (("first", a), ("second", b)):
        if st["temporaries"]:
            diffs.append(f"{run} run left temporary files {st['temporaries'][:3]}")
    return diffs


def kill_and_resume(make_argv, spec: str, folder, env: dict | None = None, timeout: float = 600.0) -> dict:
    """Run ``make_argv(out, json)`` with fault ``spec`` armed (SIGKILL), then the same command again unarmed.

    Returns {"spec", "killed" (the fault fired), "returncode" of the resumed run, "state" (:func:`run_state`),
    "stderr" of the resumed run (tail)}; ``folder`` gets ``out/`` and ``result.json``.
    """
    from pathlib import Path

    folder = Path(folder)
    out, js = folder / "out", folder / "result.json"
    first = run_killed(make_argv(out, js), spec, env=env, timeout=timeout)
    second = run_killed(make_argv(out, js), None, env=env, timeout=timeout)
    return {"spec": spec, "killed": first.returncode == -signal.SIGKILL, "first_returncode": first.returncode,
            "returncode": second.returncode, "state": run_state(out, js), "stderr": second.stderr[-2000:],
            "first_stderr": first.stderr[-2000:]}
