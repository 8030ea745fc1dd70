"""Training state, checkpoint verification and the output-folder lock of :mod:`nrsfm_kit.train`.

- every registered piece of state (a generator, a memory bank, a counter) continues where it was on resume;
- a cut, bit-flipped, foreign or wrong-architecture checkpoint is detected before anything is loaded, with a
  message naming the file and what is wrong, and the run falls back to the previous good checkpoint (with a
  warning) or stops when there is none;
- a second process cannot use a locked output folder; the lock is re-entrant in one process and released when
  the holder dies.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from nrsfm_kit.train import TrainConfig, fit
from nrsfm_kit.train.state import (
    CHECKPOINT,
    PREVIOUS,
    CheckpointError,
    GeneratorState,
    TrainState,
    Value,
    check_model_state,
    read_checkpoint,
    write_checkpoint,
)
from nrsfm_kit.utils.io import FolderLockedError, folder_lock


class Bank:
    """A memory bank of past features (like PR-RRN's): state that changes every step."""

    def __init__(self):
        self.items = torch.zeros(0, 2)

    def push(self, x):
        self.items = torch.cat([self.items, x])[-5:]

    def state_dict(self):
        return {"items": self.items.clone()}

    def load_state_dict(self, s):
        self.items = s["items"].clone()


def _run(out, steps, kill_at=None, resume=True):
    """A run whose loss depends on a private generator, a memory bank and a counter."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(3)
    bank, count = Bank(), Value(0)
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))

    def step_fn(m, step):
        if kill_at is not None and step == kill_at:
            raise KeyboardInterrupt
        idx = torch.randint(64, (8,), generator=gen)
        bank.push(data[idx[:1]])
        count.value += 1
        loss = (m(data[idx]) - 1).pow(2).mean() + 0.1 * m(bank.items).pow(2).mean()
        return {"loss": loss}

    cfg = TrainConfig(steps=steps, checkpoint_every=3, log_every=3, progress=False)
    res = fit(model, step_fn, opt, cfg, out_dir=out, resume=resume,
              state={"sampler": gen, "bank": bank, "count": count})
    return model, res, bank, count


def test_registered_state_continues_on_resume(tmp_path):
    ref, _, ref_bank, ref_count = _run(tmp_path / "a", 12)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", 12, kill_at=7)
    got, res, bank, count = _run(tmp_path / "b", 12)
    assert res.resumed_from == 6
    assert torch.equal(ref.weight, got.weight) and torch.equal(ref.bias, got.bias)
    assert torch.equal(ref_bank.items, bank.items)
    assert count.value == ref_count.value == 12  # restored at 6, then steps 6..11 of the resumed process


def test_unregistered_generator_would_replay(tmp_path):
    """The mechanism matters: without the generator in the state, the resumed run draws other batches."""
    gen = torch.Generator().manual_seed(3)
    a = torch.randint(64, (8,), generator=gen)
    st = TrainState({"g": gen})
    saved = st.state_dict()
    b = torch.randint(64, (8,), generator=gen)
    st.load_state_dict(saved)
    assert torch.equal(torch.randint(64, (8,), generator=gen), b)
    assert not torch.equal(a, b)


def test_train_state_refuses_bad_registrations():
    st = TrainState()
    st.register("g", torch.Generator())
    with pytest.raises(ValueError, match="name: expected a name not registered yet, found 'g'"):
        st.register("g", torch.Generator())
    with pytest.raises(ValueError, match="name: expected a non-empty string"):
        st.register("", Value())
    with pytest.raises(TypeError, match=r"state\['x'\]: expected a torch.Generator or an object with state_dict"):
        st.register("x", 3)
    with pytest.raises(TypeError, match="generator: expected a torch.Generator, found int"):
        GeneratorState(3)
    assert st.names() == ["g"] and "g" in st and len(st) == 1


def test_train_state_refuses_missing_or_extra_names():
    st = TrainState({"g": torch.Generator(), "bank": Bank()})
    with pytest.raises(CheckpointError, match=r"missing \['bank'\]"):
        st.load_state_dict({"g": GeneratorState(torch.Generator()).state_dict()}, "ckpt.pt")
    with pytest.raises(CheckpointError, match=r"not registered by this run \['other'\]"):
        st.check({"g": {}, "bank": {}, "other": {}}, "ckpt.pt")


# ------------------------------------------------------------------------------------------------------------------
# damaged and foreign checkpoints


def _two_checkpoints(out):
    _run(out, 6)  # checkpoints at steps 3 (prev) and 6 (current)
    assert read_checkpoint(out / CHECKPOINT)["step"] == 6 and read_checkpoint(out / PREVIOUS)["step"] == 3


def _flip_byte(path, where=0.6):
    data = bytearray(path.read_bytes())
    i = int(len(data) * where)
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["cut", "flip", "empty", "garbage"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(damage, tmp_path):
    out = tmp_path / "run"
    _two_checkpoints(out)
    p = out / CHECKPOINT
    if damage == "cut":
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif damage == "flip":
        _flip_byte(p)
    elif damage == "empty":
        p.write_bytes(b"")
    else:
        p.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match=r"checkpoint: expected .*checkpoint\.pt"):
        read_checkpoint(p)
    with pytest.warns(RuntimeWarning, match=r"skipped an unusable checkpoint .*resuming from .*checkpoint\.prev\.pt "
                                           r"\(step 3\)"):
        _, res, _, _ = _run(out, 9)
    assert res.resumed_from == 3 and res.step == 9 and len(res.resume_notes) == 1
    ref, _, _, _ = _run(tmp_path / "ref", 9)
    got = torch.load(out / CHECKPOINT, weights_only=False)  # a fresh, valid checkpoint was written at the end
    assert read_checkpoint(out / CHECKPOINT)["step"] == 9 and got["format"]
    assert torch.equal(read_checkpoint(out / CHECKPOINT)["model"]["weight"], ref.weight.detach())


def test_a_flipped_payload_byte_fails_the_digest(tmp_path):
    write_checkpoint(tmp_path, {"model": {"w": torch.arange(1000.0)}, "step": 1})
    raw = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    blob = bytearray(raw["payload"])
    blob[len(blob) // 2] ^= 1
    raw["payload"] = bytes(blob)
    torch.save(raw, tmp_path / CHECKPOINT)  # a well-formed file whose payload changed: only the digest sees it
    with pytest.raises(CheckpointError, match=r"expected SHA-256 .* found .*the file is corrupted"):
        read_checkpoint(tmp_path / CHECKPOINT)


def test_both_checkpoints_damaged_stops_with_every_reason(tmp_path):
    out = tmp_path / "run"
    _two_checkpoints(out)
    (out / CHECKPOINT).write_bytes(b"")
    _flip_byte(out / PREVIOUS, 0.5)
    with pytest.raises(CheckpointError, match=r"found none usable: .*checkpoint\.pt.*\|.*checkpoint\.prev\.pt"):
        _run(out, 9)
    _, res, _, _ = _run(out, 9, resume=False)  # starting afresh is the way out
    assert res.resumed_from is None and res.step == 9


def test_a_checkpoint_of_another_architecture_is_refused_before_loading(tmp_path):
    out = tmp_path / "run"
    _two_checkpoints(out)
    model = torch.nn.Linear(3, 1)
    before = model.weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    with pytest.raises(CheckpointError, match=r"expected 'weight' of shape \(1, 3\), found \(1, 2\)"):
        fit(model, lambda m, s: {"loss": m(torch.ones(1, 3)).sum()}, opt, TrainConfig(steps=9, progress=False),
            out_dir=out, state={"sampler": torch.Generator(), "bank": Bank(), "count": Value(0)})
    assert torch.equal(model.weight, before)
    seq = torch.nn.Sequential(torch.nn.Linear(2, 1))
    with pytest.raises(CheckpointError, match=r"expected the model's key '0.weight' \(2 missing\)"):
        check_model_state(seq, read_checkpoint(out / CHECKPOINT)["model"], "ckpt")


def test_a_checkpoint_of_another_method_is_refused(tmp_path):
    """Same architecture, other training state (another method reusing the folder): refused, naming both."""
    out = tmp_path / "run"
    _two_checkpoints(out)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    with pytest.raises(CheckpointError, match=r"expected training state \['epoch'\], found \['bank', 'count', "
                                              r"'sampler'\]"):
        fit(model, lambda m, s: {"loss": m(torch.ones(1, 2)).sum()}, opt, TrainConfig(steps=9, progress=False),
            out_dir=out, state={"epoch": Value(0)})


def test_a_file_that_is_not_a_training_checkpoint_is_named(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=r"expected a training checkpoint with 'model' and 'step' in .*x\.pt, "
                                              r"found \['weights'\]"):
        read_checkpoint(tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=r"expected a file, found none at .*missing\.pt"):
        read_checkpoint(tmp_path / "missing.pt")


def test_a_fresh_run_drops_an_older_runs_previous_checkpoint(tmp_path):
    out = tmp_path / "run"
    _two_checkpoints(out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(out, 2, resume=False)  # 2 steps, no checkpoint before the end
    assert read_checkpoint(out / CHECKPOINT)["step"] == 2
    assert not (out / PREVIOUS).exists()  # the older run's step-3 checkpoint is no fallback for this run


# ------------------------------------------------------------------------------------------------------------------
# the output-folder lock

HOLD = textwrap.dedent("""
    import sys, time
    from nrsfm_kit.utils.io import folder_lock
    with folder_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_a_second_process_is_refused_and_the_lock_dies_with_its_holder(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderLockedError, match=rf"out_dir: expected a folder no other run is using, found "
                                                    rf"{out} locked by pid {holder.pid}"):
            with folder_lock(out):
                pass
        model = torch.nn.Linear(2, 1)
        with pytest.raises(FolderLockedError):
            fit(model, lambda m, s: {"loss": m(torch.ones(1, 2)).sum()}, torch.optim.SGD(model.parameters(), 0.1),
                TrainConfig(steps=1, progress=False), out_dir=out)
        assert not (out / CHECKPOINT).exists()
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(out):  # SIGKILL released it: no stale lock
        pass


def test_the_lock_is_reentrant_in_one_process(tmp_path):
    with folder_lock(tmp_path), folder_lock(tmp_path / "." ), folder_lock(tmp_path):
        pass
    probe = subprocess.run([sys.executable, "-c", "import sys; from nrsfm_kit.utils.io import folder_lock\n"
                            "with folder_lock(sys.argv[1]): print('ok')", str(tmp_path)],
                           capture_output=True, text=True, check=False)
    assert probe.stdout.strip() == "ok", probe.stderr  # released after the outermost exit
