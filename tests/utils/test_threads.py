"""nrsfm_kit.utils.threads: thread counts from the CPU affinity, overridable by environment variables."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from nrsfm_kit.utils.threads import ENV_VAR, available_cpus, configure_threads, thread_count


def test_available_cpus_is_the_affinity_mask():
    n = available_cpus()
    assert n >= 1
    if hasattr(os, "sched_getaffinity"):
        assert n == len(os.sched_getaffinity(0))


def test_order_of_precedence():
    assert thread_count(environ={}, cpus=8) == 8
    assert thread_count(workers=2, environ={}, cpus=8) == 4
    assert thread_count(workers=3, environ={}, cpus=2) == 1  # never 0
    assert thread_count(environ={"OMP_NUM_THREADS": "1"}, cpus=8) == 1  # make test's setting is respected
    assert thread_count(environ={"OMP_NUM_THREADS": "3,2"}, cpus=8) == 3  # nested levels: the first
    assert thread_count(environ={ENV_VAR: "5", "OMP_NUM_THREADS": "1"}, cpus=8) == 5  # ours wins
    assert thread_count(environ={ENV_VAR: "auto", "OMP_NUM_THREADS": "1"}, cpus=8) == 8
    assert thread_count(workers=2, environ={ENV_VAR: "3"}, cpus=8) == 3  # an explicit count is not divided


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_values_name_the_variable(value):
    with pytest.raises(ValueError, match=f"{ENV_VAR}: expected an integer >= 1 or 'auto', found '{value}'"):
        thread_count(environ={ENV_VAR: value}, cpus=4)
    with pytest.raises(ValueError, match="OMP_NUM_THREADS: expected an integer"):
        thread_count(environ={"OMP_NUM_THREADS": value}, cpus=4)
    with pytest.raises(ValueError, match="workers: expected an integer >= 1"):
        thread_count(workers=0, environ={}, cpus=4)


def test_configure_threads_sets_torch():
    before = torch.get_num_threads()
    try:
        assert configure_threads(environ={ENV_VAR: "1"}) == 1
        assert torch.get_num_threads() == 1
        assert configure_threads(environ={ENV_VAR: "2"}, apply=False) == 2
        assert torch.get_num_threads() == 1  # apply=False leaves torch alone
    finally:
        torch.set_num_threads(before)


def test_affinity_is_followed_in_a_fresh_process():
    """Pinned to one CPU with no override, the process gets one thread (torch alone would take every core)."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity on this platform")
    cpu = min(os.sched_getaffinity(0))
    code = (f"import os; os.sched_setaffinity(0, {{{cpu}}}); "
            "from nrsfm_kit.utils.threads import configure_threads; import torch; "
            "print(configure_threads(), torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", ENV_VAR)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]
