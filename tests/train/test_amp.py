"""Mixed precision in the one training loop (``TrainConfig(amp=...)``): bf16 autocast on CPU (and CUDA), fp16 with
a checkpointed gradient scaler on CUDA only; ``amp=None`` is the float32 loop."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.data import synthetic_nrsfm
from nrsfm_kit.nrsfm import LearnedFitConfig, PRRRNConfig, fit_nrsfm
from nrsfm_kit.train import TrainConfig, fit
from nrsfm_kit.train.loop import AMP_SCALER
from nrsfm_kit.train.state import read_checkpoint


def _problem(device="cpu"):
    torch.manual_seed(0)
    X = torch.randn(64, 8, device=device)
    y = X @ torch.linspace(-1, 1, 8, device=device) + 0.3
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    seen = []

    def step(m, i):
        out = m(X).squeeze(-1)
        seen.append(out.dtype)  # what autocast made of the forward pass
        return {"loss": ((out.float() - y) ** 2).mean()}

    return model, opt, step, seen


def test_bad_amp_modes_are_refused():
    with pytest.raises(ValueError, match=r"amp: expected one of \(None, 'fp16', 'bf16'\), found 'fp8'"):
        TrainConfig(amp="fp8")
    model, opt, step, _ = _problem()
    with pytest.raises(ValueError, match="amp: 'fp16' needs a CUDA model .* found the model on 'cpu'"):
        fit(model, step, opt, TrainConfig(steps=2, progress=False, amp="fp16"))


def test_bf16_autocast_on_cpu_trains_keeps_float32_parameters_and_resumes_exactly(tmp_path):
    model, opt, step, seen = _problem()
    res = fit(model, step, opt, TrainConfig(steps=200, log_every=50, progress=False, amp="bf16"))
    assert set(seen) == {torch.bfloat16}  # the forward ran under autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert res.history[-1]["loss"] < 0.1 * res.history[0]["loss"]
    straight = [p.detach().clone() for p in model.parameters()]
    model, opt, step, _ = _problem()
    fit(model, step, opt, TrainConfig(steps=100, progress=False, checkpoint_every=50, amp="bf16"), out_dir=tmp_path)
    model, opt, step, _ = _problem()  # a fresh process resumes from the checkpoint
    again = fit(model, step, opt, TrainConfig(steps=200, progress=False, checkpoint_every=50, amp="bf16"),
                out_dir=tmp_path)
    assert again.resumed_from == 100
    assert all(torch.equal(a, b) for a, b in zip(straight, model.parameters()))


def test_amp_none_is_the_float32_loop():
    model, opt, step, seen = _problem()
    fit(model, step, opt, TrainConfig(steps=20, progress=False))
    a = [p.detach().clone() for p in model.parameters()]
    model, opt, step, seen2 = _problem()
    fit(model, step, opt, TrainConfig(steps=20, progress=False, amp=None))
    assert set(seen) == set(seen2) == {torch.float32}
    assert all(torch.equal(x, y) for x, y in zip(a, model.parameters()))


def test_learned_nrsfm_passes_amp_to_the_loop():
    seq = synthetic_nrsfm("skeleton", num_frames=24, seed=0)
    small = PRRRNConfig(channels=(16, 8, 4), recursions=2, rot_hidden=(16, 8), n_mem=32, batch_size=8)
    _, met = fit_nrsfm(seq, "prrrn", epochs=2, model_config=small,
                       config=LearnedFitConfig(progress=False, amp="bf16", eval_every_log=False))
    assert met["reproj"] == met["reproj"]  # finite, trained under bf16 autocast
    with pytest.raises(ValueError, match="amp: 'fp16' needs a CUDA model"):
        fit_nrsfm(seq, "prrrn", epochs=1, model_config=small, config=LearnedFitConfig(progress=False, amp="fp16"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 mixed precision needs CUDA")
def test_fp16_on_cuda_scales_gradients_and_checkpoints_the_scaler(tmp_path):
    model, opt, step, seen = _problem("cuda")
    res = fit(model, step, opt, TrainConfig(steps=200, log_every=50, progress=False, checkpoint_every=100,
                                            amp="fp16"), out_dir=tmp_path)
    assert set(seen) == {torch.float16} and all(p.dtype == torch.float32 for p in model.parameters())
    assert res.history[-1]["loss"] < 0.1 * res.history[0]["loss"]
    state = read_checkpoint(tmp_path / "checkpoint.pt")["state"]
    assert AMP_SCALER in state and state[AMP_SCALER]["scale"] > 0


# --- the depth, matcher and command-line options -----------------------------------------------------------------


def _tiny_pretrain(**kw):
    from nrsfm_kit.edm.loss import EDMLossConfig
    from nrsfm_kit.edm.pretrain import PretrainConfig

    return PretrainConfig(frames=3, height=32, width=48, steps=3, net_width=8, backend="torch", log_every=1,
                          progress=False, loss=EDMLossConfig(num_pairs=1000, beta=0.3, beta_scale="residual"), **kw)


def test_depth_and_matcher_configs_refuse_bad_amp_modes():
    from nrsfm_kit.edm.training import TwoStageConfig
    from nrsfm_kit.matching.training import matcher_preset, train_matcher

    with pytest.raises(ValueError, match=r"amp: expected one of \(None, 'fp16', 'bf16'\), found 'half'"):
        _tiny_pretrain(amp="half")
    with pytest.raises(ValueError, match=r"amp: expected one of \(None, 'fp16', 'bf16'\), found 'fp32'"):
        TwoStageConfig(amp="fp32")
    with pytest.raises(ValueError, match=r"amp: expected one of \(None, 'fp16', 'bf16'\), found True"):
        train_matcher(matcher_preset("smoke"), [], amp=True)


def test_bf16_depth_pretraining_and_test_time_training_on_cpu():
    import dataclasses

    from nrsfm_kit.edm.pretrain import pretrain_corpus
    from nrsfm_kit.edm.training import fit_sequence, preset_config, synthetic_video

    res = pretrain_corpus(1, _tiny_pretrain(amp="bf16"))
    assert len(res.history) == 3 and all(h["loss"] is not None and h["loss"] > 0 for h in res.history)
    assert all(p.dtype == torch.float32 for p in res.model.parameters())
    ref = pretrain_corpus(1, _tiny_pretrain())
    assert res.history[0]["loss"] == pytest.approx(ref.history[0]["loss"], rel=0.05)  # bf16 forward, same step 1
    assert res.history != ref.history  # (autocast did change the arithmetic)
    cfg, size = preset_config(True)
    video = synthetic_video(size["frames"], size["height"], size["width"])
    fit = fit_sequence(video, "embeddings", dataclasses.replace(cfg, amp="bf16"), backend="torch")
    assert fit.depth.dtype == torch.float32 and bool(torch.isfinite(fit.depth).all())
    assert all(h["loss"] is not None for h in fit.history)


def test_bf16_matcher_training_on_cpu():
    from nrsfm_kit.matching.data import synthetic_matching_pairs
    from nrsfm_kit.matching.training import matcher_preset, train_matcher

    p = matcher_preset("smoke")
    pairs = synthetic_matching_pairs("train", 1, p.height, p.width, seed=0, progress=False)
    m, res = train_matcher(p, pairs, steps=2, stages=("heatmap",), progress=False, amp="bf16")
    assert res["heatmap"].step == 2 and res["heatmap"].history[-1]["loss"] > 0
    assert all(q.dtype == torch.float32 for q in m.parameters())


def test_amp_flags_of_the_training_commands(tmp_path, capsys):
    from nrsfm_kit.cli import main

    data = "synthetic:lowrank,frames=20,points=8,rank=2"
    assert main(["nrsfm", "fit", "--method", "dnrsfm", "--data", data, "--epochs", "1", "--quiet", "--amp", "bf16",
                 "--json", str(tmp_path / "m.json")]) == 0
    assert main(["nrsfm", "fit", "--method", "tk", "--data", data, "--amp", "bf16"]) == 2
    assert "--amp: expected only with the learned methods" in capsys.readouterr().err
    if not torch.cuda.is_available():  # fp16 needs CUDA: refused, naming the flag
        code = main(["depth", "pretrain", "--corpus", "synthetic", "--videos", "1", "--smoke", "--steps", "1",
                     "--quiet", "--amp", "fp16", "--out", str(tmp_path / "pre")])
        assert code == 2 and "--amp: 'fp16' needs a CUDA model" in capsys.readouterr().err
    assert main(["depth", "pretrain", "--corpus", "synthetic", "--videos", "1", "--smoke", "--steps", "2",
                 "--quiet", "--amp", "bf16", "--out", str(tmp_path / "pre16")]) == 0
