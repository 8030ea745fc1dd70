"""Intra-op thread counts from the CPUs this process may actually run on.

torch (OpenMP) defaults to one thread per *physical core of the machine*, whatever the process's CPU
affinity (``taskset``, cgroups / containers, a pytest-xdist worker pinned to a core) and whatever else runs
beside it. On a small shared machine that oversubscribes the CPUs and makes tiny networks slower than one
thread (issue 14 measured the smoke demo at 16.2 s with the default threads against 11.6 s with one).

:func:`configure_threads` picks the count once, at start-up, in this order:

1. ``NRSFM_KIT_THREADS`` (an integer >= 1, or ``"auto"``), the suite's own override;
2. ``OMP_NUM_THREADS`` when set (the user's OpenMP setting is respected, e.g. ``make test``'s 1);
3. otherwise the number of CPUs in :func:`os.sched_getaffinity` (``os.cpu_count()`` where the platform
   has no affinity call), divided by ``workers`` (e.g. the pytest-xdist worker count) and at least 1.

It then calls ``torch.set_num_threads`` and returns the count (torch is imported only when ``apply=True``).
Callers: the CLI's ``main`` (every ``nrsfm-kit`` command) and ``tests/conftest.py`` (per pytest-xdist worker).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["ENV_VAR", "available_cpus", "configure_threads", "thread_count"]

ENV_VAR = "NRSFM_KIT_THREADS"


def available_cpus() -> int:
    """Number of CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS / Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def _parse(name: str, value: str) -> int | None:
    """An explicit count from an environment value; None for ``auto`` / empty."""
    text = value.strip().lower()
    if text in ("", "auto"):
        return None
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"{name}: expected an integer >= 1 or 'auto', found {value!r}") from None
    if n < 1:
        raise ValueError(f"{name}: expected an integer >= 1 or 'auto', found {value!r}")
    return n


def thread_count(workers: int = 1, environ: Mapping[str, str] | None = None, cpus: int | None = None) -> int:
    """The intra-op thread count :func:`configure_threads` would set (no side effect).

    Args:
        workers: processes sharing the CPUs (e.g. pytest-xdist workers), >= 1; divides the automatic count.
        environ: environment to read (default ``os.environ``).
        cpus: CPUs available (default :func:`available_cpus`).
    """
    if int(workers) < 1:
        raise ValueError(f"workers: expected an integer >= 1, found {workers!r}")
    env = os.environ if environ is None else environ
    if ENV_VAR in env:  # "auto" means the affinity count, even when OMP_NUM_THREADS is set
        n = _parse(ENV_VAR, env[ENV_VAR])
        if n is not None:
            return n
    elif "OMP_NUM_THREADS" in env:  # may list nested levels ("4,2"): the first is the intra-op count
        n = _parse("OMP_NUM_THREADS", env["OMP_NUM_THREADS"].split(",")[0])
        if n is not None:
            return n
    n_cpus = available_cpus() if cpus is None else int(cpus)
    return max(1, n_cpus // int(workers))


def configure_threads(workers: int = 1, environ: Mapping[str, str] | None = None, *, apply: bool = True) -> int:
    """Set torch's intra-op threads from the available CPUs (see the module doc); returns the count.

    Call it once at start-up (a CLI's ``main``, a test session's conftest), before the first parallel op.
    With ``apply=False`` it only computes the count.
    """
    n = thread_count(workers, environ)
    if apply:
        import torch

        torch.set_num_threads(n)
    return n
