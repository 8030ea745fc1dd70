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
