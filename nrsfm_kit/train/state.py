"""Training state and checkpoints: the one mechanism by which an interrupted run resumes exactly.

A checkpoint of :func:`nrsfm_kit.train.fit` holds the model, the optimiser, the scheduler, the global RNGs, the
step, the logged history and a :class:`TrainState`: every other piece of state a run needs to continue as if
it had never stopped registers there by name, with ``state_dict()`` / ``load_state_dict()``:

- a ``torch.Generator`` (the mini-batch sampler of ``fit_learned``, the EDM pair sampler) through
  :class:`GeneratorState`, registered as the generator itself;
- PR-RRN's memory bank (:class:`nrsfm_kit.nrsfm.prrrn.MemoryBank`);
- anything of a new method (EMA weights, AMP scalers, counters: :class:`Value` for a plain value).

A method never saves state of its own; it registers it, and the loop saves and restores all of it. A resumed
run whose checkpoint lacks a registered name (or has one the run does not register) is refused, naming it.

Files: ``checkpoint.pt`` (the newest) and ``checkpoint.prev.pt`` (the one before), both written atomically.
Each file carries a SHA-256 of its payload, so a truncated or corrupted file is detected when it is read, and
:func:`nrsfm_kit.train.fit` falls back to the previous one.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
FORMAT = "nrsfm-kit/checkpoint/2"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: unreadable, corrupted, or written for another model / run."""


class GeneratorState:
    """``state_dict`` / ``load_state_dict`` of a ``torch.Generator`` (its full state: the draws continue)."""

    def __init__(self, generator: torch.Generator):
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator, found {type(generator).__name__}")
        self.generator = generator

    def state_dict(self) -> dict:
        return {"state": self.generator.get_state(), "device": str(self.generator.device)}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["state"])


class Value:
    """A plain value (a counter, a stage index, a flag) as a stateful object: ``v.value`` is saved and restored."""

    def __init__(self, value=None):
        self.value = value

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]


def _stateful(name: str, obj):
    if isinstance(obj, torch.Generator):
        return GeneratorState(obj)
    if callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None)):
        return obj
    raise TypeError(f"state[{name!r}]: expected a torch.Generator or an object with state_dict() and "
                    f"load_state_dict(), found {type(obj).__name__}")


class TrainState:
    """Named stateful objects saved in every checkpoint and restored on resume (see the module docstring)."""

    def __init__(self, items: dict | None = None):
        self._items: dict = {}
        for name, obj in (items or {}).items():
            self.register(name, obj)

    def register(self, name: str, obj):
        """Add ``obj`` under ``name`` (a unique string); returns ``obj``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name: expected a non-empty string, found {name!r}")
        if name in self._items:
            raise ValueError(f"name: expected a name not registered yet, found {name!r} already registered")
        self._items[name] = _stateful(name, obj)
        return obj

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)

    def state_dict(self) -> dict:
        return {name: obj.state_dict() for name, obj in self._items.items()}

    def check(self, state: dict, where: str = "checkpoint") -> None:
        """CheckpointError unless ``state`` has exactly the registered names."""
        found = set(state or {})
        missing, extra = sorted(set(self._items) - found), sorted(found - set(self._items))
        if missing or extra:
            parts = ([f"missing {missing}"] if missing else []) + ([f"not registered by this run {extra}"] if extra else [])
            raise CheckpointError(f"{where}: expected training state {self.names()}, found {sorted(found)} "
                                  f"({'; '.join(parts)}): written by another version of the method or another run")

    def load_state_dict(self, state: dict, where: str = "checkpoint") -> None:
        self.check(state, where)
        for name, obj in self._items.items():
            obj.load_state_dict(state[name])


def write_checkpoint(folder: str | Path, payload: dict, keep_previous: bool = True) -> Path:
    """Write ``payload`` to ``folder/checkpoint.pt`` atomically with its SHA-256; the file it replaces becomes
    ``checkpoint.prev.pt`` (``keep_previous``), so the last two checkpoints survive."""
    from nrsfm_kit.utils.io import atomic_save_torch

    folder = Path(folder)
    buf = io.BytesIO()
    torch.save(payload, buf)
    blob = buf.getvalue()
    wrapper = {"format": FORMAT, "sha256": hashlib.sha256(blob).hexdigest(), "payload": blob}
    return atomic_save_torch(folder / CHECKPOINT, wrapper, keep_previous=folder / PREVIOUS if keep_previous else None)


def read_checkpoint(path: str | Path) -> dict:
    """The payload of a checkpoint file, verified: CheckpointError naming the file when it cannot be read, is
    truncated, fails its SHA-256, or is not a checkpoint. Checkpoints of the earlier format (a plain dict with
    ``"model"``, no digest) are read as they are."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint: expected a file, found none at {path}")
    try:
        outer = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises RuntimeError / EOFError / pickle errors on cut or garbled files
        raise CheckpointError(f"checkpoint: expected a readable torch file, found {path} truncated or corrupted "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})") from None
    if isinstance(outer, dict) and outer.get("format") == FORMAT:
        blob = outer.get("payload")
        if not isinstance(blob, (bytes, bytearray)):
            raise CheckpointError(f"checkpoint: expected a payload in {path}, found {type(blob).__name__}")
        digest = hashlib.sha256(blob).hexdigest()
        if digest != outer.get("sha256"):
            raise CheckpointError(f"checkpoint: expected SHA-256 {str(outer.get('sha256'))[:12]}... of the payload of "
                                  f"{path}, found {digest[:12]}... (the file is corrupted)")
        try:
            payload = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)
        except Exception as e:
            raise CheckpointError(f"checkpoint: expected a readable payload in {path}, found {type(e).__name__}") from None
    else:
        payload = outer
    if not isinstance(payload, dict) or "model" not in payload or "step" not in payload:
        keys = sorted(payload)[:6] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"checkpoint: expected a training checkpoint with 'model' and 'step' in {path}, "
                              f"found {keys}")
    return payload


def check_model_state(model: torch.nn.Module, state: dict, where: str) -> None:
    """CheckpointError naming the first missing, unexpected or mis-shaped key of ``state`` for ``model``
    (checked before anything is loaded, so a failed check leaves the model untouched)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise CheckpointError(f"{where}: expected the model's key {missing[0]!r} ({len(missing)} missing), "
                              "found a checkpoint of another architecture")
    extra = [k for k in state if k not in own]
    if extra:
        raise CheckpointError(f"{where}: expected no key {extra[0]!r} ({len(extra)} unexpected), found a checkpoint "
                              "of another architecture")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{where}: expected {k!r} of shape {tuple(v.shape)}, found "
                                  f"{tuple(state[k].shape)} (a checkpoint of another architecture)")
