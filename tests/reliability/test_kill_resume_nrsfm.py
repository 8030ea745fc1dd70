"""Kill-and-resume of `nrsfm-kit nrsfm fit` (both learned methods, with and without restarts): a run killed with
SIGKILL before its first checkpoint, right after one, in the middle of writing one, or between two restarts,
then started again with the same command, ends with the same parameters and metrics as an uninterrupted run,
bit for bit (CPU, one thread)."""

from __future__ import annotations

import pytest
from _harness import check_kill_point, uninterrupted

POINTS = {
    "nrsfm-dnrsfm": ["step@4", "saved@1", "write:checkpoint.pt@2"],
    "nrsfm-prrrn": ["step@4", "saved@1", "write:checkpoint.pt@2"],
    "nrsfm-prrrn-restarts": ["saved@2", "stage@1", "write:checkpoint.pt@3"],
}
CASES = [(n, s) for n, specs in POINTS.items() for s in specs]


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    return {n: uninterrupted(n, tmp_path_factory.mktemp(n)) for n in POINTS}


@pytest.mark.parametrize(("name", "spec"), CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_killed_and_resumed_run_is_the_run(name, spec, references, tmp_path):
    check_kill_point(name, spec, tmp_path, references[name])
