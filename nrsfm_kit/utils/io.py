"""Atomic file output: write to a temporary file in the same folder, then rename over the target.

A crash mid-write never leaves a truncated checkpoint or result file behind.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename); creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj):
    """``obj`` as strict JSON: non-finite floats -> None, dict keys -> str, tuples -> lists, recursively."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, obj, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically. Non-finite floats are refused (invalid JSON)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False) + "\n")


def atomic_save_torch(path: str | os.PathLike, obj) -> Path:
    """``torch.save`` atomically (a checkpoint is either the old one or the new one, never half)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def cached_torch(cache_dir: str | os.PathLike | None, prefix: str, key: dict, make):
    """``make()`` cached in ``<cache_dir>/<prefix>-<sha1 of key>.pt`` (written atomically); no cache when
    ``cache_dir`` is None. ``key`` (JSON-serialisable) must name every argument that changes the result."""
    import hashlib

    import torch

    if cache_dir is None:
        return make()
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{prefix}-{digest}.pt"
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=False)
    out = make()
    atomic_save_torch(path, out)
    return out
