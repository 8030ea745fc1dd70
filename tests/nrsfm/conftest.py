"""Fixtures of the NRSfM tests: small synthetic sequences with exact ground truth, one torch thread."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.data.types import NRSfMSequence
from nrsfm_kit.geometry import random_rotation


def lowrank_sequence(F: int = 60, P: int = 15, K: int = 2, defo: float = 0.3, seed: int = 0,
                     missing: float = 0.0, rigid: bool = False) -> NRSfMSequence:
    """S_f = (S_bar + sum_k z_fk V_k) R_f^T with random rotations R_f; W = S[..., :2]."""
    g = torch.Generator().manual_seed(seed)
    Sbar = torch.randn(P, 3, generator=g, dtype=torch.float64)
    V = torch.randn(K, P, 3, generator=g, dtype=torch.float64) * (0.0 if rigid else defo)
    z = torch.randn(F, K, generator=g, dtype=torch.float64)
    Sw = Sbar + torch.einsum("fk,kpd->fpd", z, V)
    R = random_rotation(F, generator=g, dtype=torch.float64)
    S = Sw @ R.transpose(-1, -2)
    vis = torch.rand(F, P, generator=g) >= missing
    vis[:, :4] = True  # every frame keeps >= 4 points
    W = torch.where(vis[..., None], S[..., :2], torch.zeros(()))
    return NRSfMSequence(W=W.float(), visibility=vis, S=S.float(), cameras=R[:, :2].float(), name="lowrank")


@pytest.fixture
def make_lowrank():
    return lowrank_sequence


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks train faster on one thread (and do not fight the other test processes)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
