"""Deep NRSfM: block-ISTA layers, shapes, gradients, coherence, training accuracy on synthetic data."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.metrics import e3d
from nrsfm_kit.nrsfm import (
    DeepNRSfM,
    DeepNRSfMConfig,
    LearnedFitConfig,
    fit_nrsfm,
    mutual_coherence,
    tomasi_kanade,
)
from nrsfm_kit.nrsfm.deep_nrsfm import block_ista_layer, reprojection_loss

SMALL = DeepNRSfMConfig(num_atoms=32, num_atoms_bottleneck=6, num_dictionaries=3, learning_rate=3e-3, batch_size=64)


def test_default_sizes_follow_reference_code():
    sizes = DeepNRSfMConfig().sizes()
    assert len(sizes) == 12 and sizes[0] == 125 and sizes[-1] == 10
    assert all(a >= b for a, b in zip(sizes, sizes[1:]))


def test_block_ista_layer_is_relu_of_dt_x_minus_threshold():
    x = torch.randn(2, 3, 2, 5, dtype=torch.float64)
    D = torch.randn(5, 4, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    out = block_ista_layer(x, D, b)
    ref = torch.relu(torch.einsum("kc,bhwk->bhwc", D, x) - b)
    assert torch.allclose(out, ref)
    assert torch.autograd.gradcheck(block_ista_layer, (x.requires_grad_(), D.requires_grad_(), b.requires_grad_()))


def test_forward_shapes_and_orthonormal_cameras():
    net = DeepNRSfM(9, SMALL)
    S, M, psi = net(torch.randn(4, 9, 2))
    assert S.shape == (4, 9, 3) and M.shape == (4, 3, 2) and psi.shape == (4, 6)
    assert torch.allclose(M.transpose(-1, -2) @ M, torch.eye(2).expand(4, 2, 2), atol=1e-5)
    assert net.final_dictionary().shape == (27, 6)


def test_gradcheck_network_float64():
    torch.manual_seed(0)
    net = DeepNRSfM(5, DeepNRSfMConfig(num_atoms=6, num_atoms_bottleneck=3, num_dictionaries=2)).double()
    W = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)

    def loss(W):
        S, M, _ = net(W)
        return reprojection_loss(W, S, M)

    assert torch.autograd.gradcheck(loss, (W,))


def test_mutual_coherence_known_values():
    assert float(mutual_coherence(torch.eye(4))) == pytest.approx(0.0)
    D = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    assert float(mutual_coherence(D)) == pytest.approx(2**-0.5, rel=1e-6)
    with pytest.raises(ValueError, match="D: expected at least 2 columns"):
        mutual_coherence(torch.ones(3, 1))


def test_reprojection_loss_masks_missing_points():
    W = torch.randn(2, 6, 2)
    S = torch.cat([W, torch.zeros(2, 6, 1)], -1)
    M = torch.eye(3)[:, :2].expand(2, 3, 2)
    assert float(reprojection_loss(W, S, M)) < 1e-7
    W2 = W.clone()
    W2[:, 0] += 10.0
    vis = torch.ones(2, 6, dtype=torch.bool)
    vis[:, 0] = False
    assert float(reprojection_loss(W2, S, M, vis)) < 1e-7


def test_training_reaches_accuracy_on_low_rank_data(make_lowrank):
    seq = make_lowrank(F=128, P=12, K=2, defo=0.3, seed=1)
    res, metrics = fit_nrsfm(seq, "dnrsfm", epochs=200, model_config=SMALL,
                             config=LearnedFitConfig(progress=False, log_every=100))
    tk = float(e3d(tomasi_kanade(seq.W).S, seq.S))
    assert metrics["e3d"] < 0.1, metrics
    assert metrics["e3d"] < 0.5 * tk
    assert "coherence" in metrics and 0 <= metrics["coherence"] <= 1
    assert res.history and "e3d" in res.history[-1] and "coherence" in res.history[-1]


def test_training_checkpoints_and_resumes(make_lowrank, tmp_path):
    seq = make_lowrank(F=32, P=8, seed=2)
    cfg = LearnedFitConfig(progress=False, log_every=1, checkpoint_every=2)
    res1, _ = fit_nrsfm(seq, "dnrsfm", epochs=1, model_config=SMALL, config=cfg, out_dir=tmp_path)
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "metrics.json").exists()
    res2, _ = fit_nrsfm(seq, "dnrsfm", epochs=2, model_config=SMALL, config=cfg, out_dir=tmp_path)
    assert res2.extra["train"].resumed_from == 1


def test_bad_inputs():
    with pytest.raises(ValueError, match="num_points: expected >= 4"):
        DeepNRSfM(3)
    with pytest.raises(ValueError, match=r"W: expected shape \(B, 9, 2\)"):
        DeepNRSfM(9, SMALL)(torch.randn(2, 8, 2))
    with pytest.raises(ValueError, match="DeepNRSfMConfig: expected"):
        DeepNRSfMConfig(num_dictionaries=0).sizes()
