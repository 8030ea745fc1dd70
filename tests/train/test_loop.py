import json

import pytest
import torch

from nrsfm_kit.train import TrainConfig, fit


def _problem():
    torch.manual_seed(0)
    X = torch.randn(64, 3)
    y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)

    def step(m, i):
        noise = 0.01 * torch.randn(64)  # consumes the RNG: resume must restore it
        loss = ((m(X).squeeze(-1) - y - noise) ** 2).mean()
        return {"loss": loss, "lr": opt.param_groups[0]["lr"]}

    return model, opt, step


def test_fit_converges_and_writes_metrics(tmp_path):
    model, opt, step = _problem()
    res = fit(model, step, opt, TrainConfig(steps=300, log_every=50, progress=False), out_dir=tmp_path)
    assert res.step == 300 and res.last("loss") < 1e-3
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["step"] == 300 and len(metrics["history"]) == 6


def test_resume_is_bitwise_identical(tmp_path):
    model, opt, step = _problem()
    fit(model, step, opt, TrainConfig(steps=40, progress=False, checkpoint_every=10))
    straight = [p.detach().clone() for p in model.parameters()]

    model, opt, step = _problem()
    fit(model, step, opt, TrainConfig(steps=20, progress=False, checkpoint_every=10), out_dir=tmp_path)
    model, opt, step = _problem()  # a fresh process: new model, resumed from the checkpoint
    res = fit(model, step, opt, TrainConfig(steps=40, progress=False, checkpoint_every=10), out_dir=tmp_path)
    assert res.resumed_from == 20
    for a, b in zip(straight, model.parameters()):
        assert torch.equal(a, b.detach())


def test_non_finite_loss_raises():
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match="step 0"):
        fit(model, lambda m, i: {"loss": m.weight.sum() * float("nan")}, opt, TrainConfig(steps=3, progress=False))
    with pytest.raises(ValueError, match="key 'loss'"):
        fit(model, lambda m, i: {"l": m.weight.sum()}, opt, TrainConfig(steps=3, progress=False))


def test_config_validation():
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=-1)
    with pytest.raises(ValueError, match="grad_clip"):
        TrainConfig(grad_clip=0)


def test_stop_fn_ends_the_run_and_a_resumed_stopped_run_trains_no_further(tmp_path):
    model, opt, step = _problem()
    calls = []

    def stop(history):  # stop at the second log entry
        calls.append(history[-1]["step"])
        return len(history) >= 2

    res = fit(model, step, opt, TrainConfig(steps=100, log_every=10, progress=False), out_dir=tmp_path, stop_fn=stop)
    assert res.stopped and res.step == 20 and calls == [10, 20]
    assert json.loads((tmp_path / "metrics.json").read_text())["stopped"] is True
    params = [p.detach().clone() for p in model.parameters()]
    model, opt, step = _problem()
    res2 = fit(model, step, opt, TrainConfig(steps=100, log_every=10, progress=False), out_dir=tmp_path, stop_fn=stop)
    assert res2.stopped and res2.step == 20 and res2.resumed_from == 20
    for a, b in zip(params, model.parameters()):
        assert torch.equal(a, b.detach())
    # never stopping: the whole run, stop_fn consulted at every log entry before the last step
    model, opt, step = _problem()
    seen = []
    res3 = fit(model, step, opt, TrainConfig(steps=30, log_every=10, progress=False),
               stop_fn=lambda h: seen.append(h[-1]["step"]) or False)
    assert not res3.stopped and res3.step == 30 and seen == [10, 20]
