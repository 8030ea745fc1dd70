"""Data-scaled budgets, convergence stopping and restart selection of the learned NRSfM methods (issue 17)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from nrsfm_kit.nrsfm import DeepNRSfMConfig, LearnedFitConfig, PRRRNConfig, fit_nrsfm
from nrsfm_kit.nrsfm.common import normalize_observations
from nrsfm_kit.nrsfm.learned import REF_FRAMES, budget_steps, converged, select_restart, sequence_reprojection
from nrsfm_kit.nrsfm.prrrn import PRRRN, consistency_error, contrastive_split, representation_stats
from nrsfm_kit.nrsfm.registry import get_method

SMALL_P = PRRRNConfig(channels=(16, 8, 4), recursions=2, rot_hidden=(16, 8), n_mem=64, batch_size=16, base_steps=60)
SMALL_D = DeepNRSfMConfig(num_atoms=16, num_atoms_bottleneck=4, num_dictionaries=3, batch_size=16, base_steps=60)


def test_budget_grows_with_sqrt_of_frames():
    assert budget_steps(2400, REF_FRAMES) == 2400
    assert budget_steps(2400, 4 * REF_FRAMES) == 4800  # 4x the frames: 2x the steps, half the epochs
    assert budget_steps(2400, 1100) == math.ceil(2400 * math.sqrt(1100 / 300))
    assert budget_steps(2400, 240) < budget_steps(2400, 1100)
    epochs = lambda F, bs=64: budget_steps(2400, F) / math.ceil(F / bs)  # noqa: E731
    assert epochs(1100) < epochs(240)  # a long sequence does not get the same number of epochs
    assert budget_steps(1, 1) == 1
    for bad, match in (((0, 10), "base_steps"), ((10, 0), "num_frames"), ((10, 10, 300, 1.5), "budget_power"),
                       ((10, 10, 300, -0.1), "budget_power")):
        with pytest.raises(ValueError, match=match):
            budget_steps(*bad)


def test_budget_power_sets_how_steps_grow_with_frames():
    """power 1: the same number of epochs at every F; 0: a fixed number of steps; the configs carry it."""
    assert budget_steps(2400, 4 * REF_FRAMES, power=1.0) == 4 * 2400
    assert budget_steps(2400, 4 * REF_FRAMES, power=0.0) == 2400
    assert budget_steps(2400, 1100, power=0.75) == math.ceil(2400 * (1100 / 300) ** 0.75)
    assert budget_steps(2400, 1100) == budget_steps(2400, 1100, power=0.5)
    method = get_method("prrrn")
    assert method.budget(1200, 31, replace(SMALL_P, budget_power=1.0)) == 4 * SMALL_P.base_steps
    assert method.budget(1200, 31, SMALL_P) == 2 * SMALL_P.base_steps  # default power 1/2
    assert get_method("dnrsfm").budget(1200, 31, replace(SMALL_D, budget_power=1.0)) == 4 * SMALL_D.base_steps
    with pytest.raises(ValueError, match="budget_power: expected a power in"):
        PRRRNConfig(budget_power=2.0)


def _hist(values, every=10):
    return [{"step": every * (i + 1), "rep_all": v} for i, v in enumerate(values)]


def test_converged_only_after_the_plateau_and_the_minimum_fraction():
    cfg = LearnedFitConfig(stop_tol=0.01, stop_window=0.2, stop_after=0.5)
    steps = 100
    falling = [1.0 / (i + 1) for i in range(8)]  # still improving fast
    assert not converged(_hist(falling), steps, cfg)
    flat = [1.0, 0.5, 0.3, 0.2, 0.2, 0.2, 0.2, 0.2]  # no gain in the last 20 steps
    assert converged(_hist(flat), steps, cfg)
    assert not converged(_hist(flat[:4]), steps, cfg)  # before stop_after: never
    assert not converged([], steps, cfg)
    assert not converged([{"step": 60, "loss": 1.0}], steps, cfg)  # no rep_all logged
    noisy = [1.0, 0.5, 0.3, 0.2, 0.21, 0.199, 0.2005, 0.2]  # 0.5 % gain < 1 %: converged
    assert converged(_hist(noisy), steps, cfg)


def test_select_restart_rules():
    reps, meas = [0.10, 0.105, 0.30], [0.9, 0.5, 0.1]
    assert select_restart(reps) == 0
    assert select_restart(reps, meas, slack=0.1) == 1  # within 10 % of the best reprojection: lower measure
    assert select_restart(reps, meas, slack=0.0) == 0
    assert select_restart(reps, meas, slack=5.0) == 2
    assert select_restart(reps, [None, 0.1, 0.2]) == 0  # a missing measure: reprojection only
    assert select_restart([float("nan"), 0.2]) == 1  # non-finite never wins
    assert select_restart([0.1, 0.1], [float("nan"), 0.3]) == 1
    with pytest.raises(ValueError, match="reprojections: expected at least one run"):
        select_restart([])
    with pytest.raises(ValueError, match="measures: expected 2 values"):
        select_restart([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="slack: expected >= 0"):
        select_restart([0.1], [0.1], slack=-1)


def test_fit_config_bad_values():
    for kw, match in ((dict(epochs=-1), "epochs"), (dict(restarts=0), "restarts"),
                      (dict(selection_slack=-0.1), "selection_slack"),
                      (dict(selection="best"), "selection: expected one of shape_rank, method, reprojection"),
                      (dict(selection_rank=0), "selection_rank: expected an integer >= 1"), (dict(stop_tol=-1), "stop_tol"),
                      (dict(stop_window=0), "stop_window"), (dict(stop_after=1.5), "stop_after")):
        with pytest.raises(ValueError, match=match):
            LearnedFitConfig(**kw)
    with pytest.raises(ValueError, match="base_steps"):
        PRRRNConfig(base_steps=0)


@pytest.mark.parametrize("method,mcfg", [("prrrn", SMALL_P), ("dnrsfm", SMALL_D)])
def test_data_scaled_budget_and_convergence_stop(make_lowrank, method, mcfg):
    seq = make_lowrank(F=40, P=10, seed=2)
    res, met = fit_nrsfm(seq, method, model_config=mcfg, config=LearnedFitConfig(progress=False, log_every=2))
    assert res.extra["budget"] == budget_steps(60, 40)
    assert met["steps"] <= res.extra["budget"] and met["stopped_early"] == (met["steps"] < res.extra["budget"])
    assert all("rep_all" in h for h in res.history)
    # a tolerance nothing reaches: the whole budget; an explicit epoch count: exactly that, no stop
    res2, met2 = fit_nrsfm(seq, method, model_config=mcfg,
                           config=LearnedFitConfig(progress=False, log_every=2, stop_tol=0.0, stop_after=1.0))
    assert met2["steps"] == res2.extra["budget"] and not met2["stopped_early"]
    _, met3 = fit_nrsfm(seq, method, epochs=2, model_config=mcfg, config=LearnedFitConfig(progress=False))
    assert met3["steps"] == 2 * math.ceil(40 / 16) and not met3["stopped_early"]
    # a generous tolerance stops at the first log entry past stop_after
    res4, met4 = fit_nrsfm(seq, method, model_config=mcfg,
                           config=LearnedFitConfig(progress=False, log_every=2, stop_tol=10.0, stop_after=0.2,
                                                   stop_window=0.1))
    assert met4["stopped_early"] and met4["steps"] < res4.extra["budget"]
    # PR-RRN: never before a quarter of the run after its consistency term starts (consist_warmup 0.5)
    assert met4["steps"] >= (0.75 if method == "prrrn" else 0.2) * res4.extra["budget"]


def test_stopped_run_resumes_as_stopped(make_lowrank, tmp_path):
    seq = make_lowrank(F=40, P=10, seed=2)
    cfg = LearnedFitConfig(progress=False, log_every=2, stop_tol=10.0, stop_after=0.2, stop_window=0.1)
    res, met = fit_nrsfm(seq, "prrrn", model_config=SMALL_P, config=cfg, out_dir=tmp_path)
    res2, met2 = fit_nrsfm(seq, "prrrn", model_config=SMALL_P, config=cfg, out_dir=tmp_path)
    assert met2["steps"] == met["steps"] and met2["stopped_early"]
    assert torch.equal(res.S, res2.S)


def test_selection_measures(make_lowrank):
    seq = make_lowrank(F=30, P=10, seed=1)
    Wn, _ = normalize_observations(seq.W, seq.visibility)
    torch.manual_seed(0)
    net = PRRRN(10, SMALL_P)
    e = consistency_error(net, Wn)
    assert math.isfinite(e) and e > 0 and e == consistency_error(net, Wn)  # deterministic
    assert consistency_error(net, Wn, chunk=7) == pytest.approx(e, rel=1e-5)  # chunking does not change it
    st = representation_stats(net, Wn)
    assert -1 <= st["h_mean_cos"] <= 1 and 1 <= st["h_eff_rank"] <= 8 + 1e-4
    split = contrastive_split(Wn, seq.visibility, SMALL_P)
    assert 0 <= split["pos_fraction"] <= 1 and 0 <= split["neg_fraction"] <= 1
    assert split["pos_fraction"] + split["neg_fraction"] <= 1
    rigid = make_lowrank(F=20, P=10, seed=1, rigid=True)  # rigid: every pair is a positive
    Wr, _ = normalize_observations(rigid.W, rigid.visibility)
    assert contrastive_split(Wr, rigid.visibility, SMALL_P)["pos_fraction"] == 1.0
    # the shapes the network predicts re-projected by their own cameras: rep_all of a perfect fit is 0
    S, R = seq.S - seq.S.mean(1, keepdim=True), torch.eye(3)[:2].expand(30, 2, 3)
    Wc = seq.W - seq.W.mean(1, keepdim=True)
    assert float(sequence_reprojection(Wc, S, R, seq.visibility)) < 1e-6


def test_quantile_thresholds_split_every_sequence_alike(make_lowrank):
    from nrsfm_kit.nrsfm.prrrn import resolve_thresholds

    for seed, defo in ((0, 0.05), (1, 0.6)):  # a nearly rigid and a strongly deforming sequence
        seq = make_lowrank(F=40, P=12, seed=seed, defo=defo)
        Wn, _ = normalize_observations(seq.W, seq.visibility)
        cfg = PRRRNConfig(threshold_on="quantile", tau=0.25, xi=0.5)
        tau, xi, on = resolve_thresholds(Wn, seq.visibility, cfg)
        assert on == "sqrt_msr" and 0 < tau <= xi
        split = contrastive_split(Wn, seq.visibility, cfg)
        assert split["pos_fraction"] == pytest.approx(0.25, abs=0.02)
        assert split["neg_fraction"] == pytest.approx(0.5, abs=0.02)
    assert resolve_thresholds(Wn, seq.visibility, PRRRNConfig()) == (0.02, 0.04, "sqrt_msr")
    with pytest.raises(ValueError, match="xi: expected a quantile in \\[0, 1\\]"):
        PRRRNConfig(threshold_on="quantile", tau=0.5, xi=2.0)
    with pytest.raises(ValueError, match="threshold_on: expected 'sqrt_msr', 'msr' or 'quantile'"):
        PRRRNConfig(threshold_on="median")
    # it trains (the thresholds enter the contrastive loss)
    _, met = fit_nrsfm(seq, "prrrn", epochs=2, model_config=replace_cfg(SMALL_P, threshold_on="quantile", tau=0.25,
                                                                          xi=0.5), config=LearnedFitConfig(progress=False))
    assert math.isfinite(met["e3d"])


def replace_cfg(cfg, **kw):
    from dataclasses import replace

    return replace(cfg, **kw)


def test_contrast_left_out_when_most_pairs_are_positives(make_lowrank):
    rigid = make_lowrank(F=24, P=10, seed=4, rigid=True)  # every pair a positive
    cfg = replace_cfg(SMALL_P, contrast_max_positive=0.7)  # the default
    assert PRRRNConfig().contrast_max_positive == 0.7
    res, _ = fit_nrsfm(rigid, "prrrn", epochs=2, model_config=cfg, config=LearnedFitConfig(progress=False, log_every=1))
    assert not any("contrast" in h for h in res.history)  # the term never ran
    res2, _ = fit_nrsfm(rigid, "prrrn", epochs=2, model_config=replace_cfg(SMALL_P, contrast_max_positive=None),
                        config=LearnedFitConfig(progress=False, log_every=1))
    assert any("contrast" in h for h in res2.history)
    with pytest.raises(ValueError, match="contrast_max_positive: expected None or a fraction"):
        PRRRNConfig(contrast_max_positive=1.5)


def test_contrast_left_out_on_sequences_longer_than_contrast_max_frames(make_lowrank):
    seq = make_lowrank(F=24, P=10, seed=4)
    base = replace_cfg(SMALL_P, contrast_max_positive=None)
    assert PRRRNConfig().contrast_max_frames == 1024  # the default: the memory bank's size
    cfg = LearnedFitConfig(progress=False, log_every=1)
    short, _ = fit_nrsfm(seq, "prrrn", epochs=2, model_config=replace_cfg(base, contrast_max_frames=24), config=cfg)
    assert any("contrast" in h for h in short.history)  # 24 frames is not more than 24: the term runs
    long, _ = fit_nrsfm(seq, "prrrn", epochs=2, model_config=replace_cfg(base, contrast_max_frames=23), config=cfg)
    assert not any("contrast" in h for h in long.history)
    for bad in (0, -5):
        with pytest.raises(ValueError, match="contrast_max_frames: expected None or a frame count >= 1"):
            PRRRNConfig(contrast_max_frames=bad)


def test_restart_measure_edge_cases(make_lowrank):
    from nrsfm_kit.nrsfm.common import NRSfMResult, shape_space_residual
    from nrsfm_kit.nrsfm.learned import restart_measure

    seq = make_lowrank(F=12, P=6, seed=2)
    S = seq.S.float()

    def res(S):
        return NRSfMResult(S=S, cameras=torch.zeros(S.shape[0], 2, 3), shapes=S, method="x",
                           extra={"selection_measure": 0.5})

    cfg = LearnedFitConfig()
    assert restart_measure(res(S), cfg) == pytest.approx(shape_space_residual(S, 3))
    assert restart_measure(res(S), LearnedFitConfig(selection="method")) == 0.5
    assert restart_measure(res(S), LearnedFitConfig(selection="reprojection")) is None
    assert restart_measure(res(S[:1]), cfg) is None  # one frame: reprojection only
    assert restart_measure(res(S[:3]), cfg) == pytest.approx(shape_space_residual(S[:3], 2))  # rank capped at F - 1
    bad = S.clone()
    bad[0, 0, 0] = float("nan")
    assert restart_measure(res(bad), cfg) == float("inf")  # never wins
    assert restart_measure(res(torch.zeros_like(S)), cfg) == float("inf")  # collapsed
