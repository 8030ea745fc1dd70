import json
import os

import numpy as np
import pytest
import torch

from nrsfm_kit.utils import (
    atomic_save_torch,
    atomic_write_bytes,
    atomic_write_json,
    check_finite,
    check_positive,
    check_shape,
    check_tensor,
)


def test_check_shape_named_dims_and_batch():
    dims = check_shape("a", torch.zeros(2, 5, 3), ("...", "N", 3))
    assert dims == {"N": 5}
    check_shape("b", torch.zeros(5, 4), ("N", None), dims)
    with pytest.raises(ValueError, match=r"c: expected shape \(N, 2\) with \{'N': 5\}, found \(4, 2\)"):
        check_shape("c", torch.zeros(4, 2), ("N", 2), dims)
    with pytest.raises(ValueError, match=r"d: expected shape \(3\), found \(3, 1\)"):
        check_shape("d", torch.zeros(3, 1), (3,))


def test_check_tensor_and_finite():
    with pytest.raises(ValueError, match="x: expected a torch.Tensor, found list"):
        check_tensor("x", [1.0])
    with pytest.raises(ValueError, match="x: expected a floating-point tensor, found dtype torch.int64"):
        check_tensor("x", torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="x: expected finite values, found 2 non-finite of 3"):
        check_tensor("x", torch.tensor([1.0, float("nan"), float("inf")]))
    with pytest.raises(ValueError, match="arr: expected finite values, found 1 non-finite of 2"):
        check_finite("arr", np.array([0.0, np.nan]))
    check_finite("ints", np.array([1, 2]))
    assert check_positive("sigma", 0.5) == 0.5
    for bad in [0, -1, float("nan"), "x"]:
        with pytest.raises(ValueError, match="sigma"):
            check_positive("sigma", bad)
    assert check_positive("lam", 0, strict=False) == 0


def test_atomic_writes(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_bytes(tmp_path / "sub" / "a.bin", b"abc")
    finally:
        os.umask(old)
    assert p.read_bytes() == b"abc"
    assert p.stat().st_mode & 0o777 == 0o644  # a normal file, not mkstemp's 0600
    atomic_write_json(tmp_path / "m.json", {"a": 1.5})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1.5}
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "m.json", {"a": float("nan")})
    # the failed write left the old file intact and no temp files behind
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1.5}
    assert sorted(os.listdir(tmp_path)) == ["m.json", "sub"]
    atomic_save_torch(tmp_path / "c.pt", {"w": torch.ones(2)})
    assert torch.equal(torch.load(tmp_path / "c.pt")["w"], torch.ones(2))
