"""Kill-and-resume of `nrsfm-kit track train` (all stages) and `nrsfm-kit match train` (both stages): killed with
SIGKILL before the first checkpoint, right after one, in the middle of writing one and between two stages, then started again with the same command, they end
with the same tracker / matcher weights as an uninterrupted run, bit for bit (CPU)."""

from __future__ import annotations

import pytest
from _harness import check_kill_point, uninterrupted

POINTS = {"track-train": ["saved@3", "write:checkpoint.pt@3", "stage@1"],
          "match-train": ["step@2", "saved@1", "write:checkpoint.pt@2", "stage@1"]}
CASES = [(n, s) for n, specs in POINTS.items() for s in specs]


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    return {n: uninterrupted(n, tmp_path_factory.mktemp(n)) for n in POINTS}


@pytest.mark.parametrize(("name", "spec"), CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_killed_and_resumed_training_is_the_run(name, spec, references, tmp_path):
    check_kill_point(name, spec, tmp_path, references[name])
