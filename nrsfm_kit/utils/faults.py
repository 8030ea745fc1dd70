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
