"""Kill-and-resume of `nrsfm-kit depth fit` (the EDM two-stage training, with --out): killed with SIGKILL in
stage 1, in the middle of a checkpoint write, and between the stages, then started again with the same command,
it ends with the same networks, depth metrics and segmentation as an uninterrupted run, bit for bit (CPU)."""

from __future__ import annotations

import pytest
from _harness import check_kill_point, uninterrupted

NAME = "depth-fit"
POINTS = ["saved@2", "write:checkpoint.pt@4", "stage@2"]  # stage 1 of the smoke preset follows a warm-up stage


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return uninterrupted(NAME, tmp_path_factory.mktemp(NAME))


@pytest.mark.parametrize("spec", POINTS)
def test_killed_and_resumed_depth_fit_is_the_run(spec, reference, tmp_path):
    check_kill_point(NAME, spec, tmp_path, reference)
