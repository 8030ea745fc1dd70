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


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, keep_previous: str | os.PathLike | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename); creates parent folders.

    A crash at any point leaves either the old file or the new one under ``path``, never a part of one (the
    temporary file ``.<name>.<random>.tmp`` is removed on an exception; after a SIGKILL it stays, under another
    name). ``keep_previous``: rename the old ``path`` (if any) to this name just before the new file takes its
    place, so the last two versions survive (checkpoints).
    """
    from nrsfm_kit.utils.faults import fault_point

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            fault_point(f"write:{path.name}")  # a crash in the middle of the write (fault injection)
            f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporary files an interrupted :func:`atomic_write_bytes` left in ``folder`` (``.<name>.*.tmp``)."""
    folder = Path(folder)
    return sorted(p for p in folder.glob(".*.tmp") if p.is_file()) if folder.is_dir() else []


def probe_writable(folder: str | os.PathLike, what: str = "out_dir", min_free_bytes: int = 4 << 20,
                   target: str | os.PathLike | None = None) -> Path:
    """ValueError naming ``what`` and the path unless the existing folder ``folder`` takes a new file: writes,
    syncs and removes a small probe file (nothing else changes), then checks the free space.

    ``target``: the path the caller will write (a file or a folder under ``folder``), named in the message.
    """
    import errno
    import shutil

    folder = Path(folder)
    shown = Path(target) if target is not None else folder
    where = f"{shown}" if target is None else f"{shown} (in {folder})"
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise ValueError(f"{what}: expected a writable location, found {where} not writable "
                         f"({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        raise ValueError(f"{what}: expected a writable location, found {where} "
                         f"{'full' if full else 'not writable'} ({e.strerror or e})") from None
    finally:
        if os.path.exists(probe):
            os.unlink(probe)
    free = shutil.disk_usage(folder).free
    if free < int(min_free_bytes):
        raise ValueError(f"{what}: expected at least {int(min_free_bytes) / 2**20:.1f} MiB free at {where}, "
                         f"found {free / 2**20:.2f} MiB (the file system is full)")
    return folder


def check_writable(folder: str | os.PathLike, what: str = "out_dir", min_free_bytes: int = 4 << 20) -> Path:
    """Fail early, naming the path, when ``folder`` cannot hold a run's output.

    Creates ``folder`` (and parents), then :func:`probe_writable`. ValueError with the path and the reason: a
    file in the way, no permission, a read-only or full file system, less than ``min_free_bytes`` free.
    Returns the folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what}: expected a folder, found a file at {folder}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{what}: expected a folder that can be created, found {folder} cannot be "
                         f"({e.strerror or e})") from None
    return probe_writable(folder, what, min_free_bytes)


class FolderLockedError(RuntimeError):
    """Another run holds the output folder (:func:`folder_lock`)."""


LOCK_FILE = ".nrsfm-kit.lock"
_held: dict[str, list] = {}  # resolved folder -> [open lock file, depth]: re-entrant within one process


class folder_lock:  # noqa: N801 (used as a context manager, like open)
    """Exclusive lock of an output folder while a run writes to it (``with folder_lock(out): ...``).

    A second run on the same folder, in another process, is refused with :class:`FolderLockedError` naming
    the folder and the run that holds it (pid, command, start time). The lock is an ``flock`` on
    ``<folder>/.nrsfm-kit.lock``: the operating system releases it when the holder exits, killed or not, so a
    crashed run never leaves a stale lock. Re-entrant within one process (nested entry points that lock the
    same folder). Where ``fcntl`` does not exist (Windows) it does nothing.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "out_dir"):
        self.folder, self.what = Path(folder), what
        self.key = None

    def __enter__(self) -> folder_lock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover (Windows)
            return self
        import sys
        import time

        self.folder.mkdir(parents=True, exist_ok=True)
        key = str(self.folder.resolve())
        if key in _held:
            _held[key][1] += 1
            self.key = key
            return self
        f = open(self.folder / LOCK_FILE, "a+")  # noqa: SIM115 (held open while locked)
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise FolderLockedError(f"{self.what}: expected a folder no other run is using, found {self.folder} "
                                    f"locked by {holder}; wait for that run to end or use another folder") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)[:200]}\n")
        f.flush()
        _held[key] = [f, 1]
        self.key = key
        return self

    def __exit__(self, *exc) -> None:
        if self.key is None:
            return
        entry = _held[self.key]
        entry[1] -= 1
        if entry[1] == 0:
            del _held[self.key]
            entry[0].close()  # closing the file releases the flock (the file stays: unlinking it would race)
        self.key = None


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


def atomic_save_torch(path: str | os.PathLike, obj, keep_previous: str | os.PathLike | None = None) -> Path:
    """``torch.save`` atomically (a checkpoint is either the old one or the new one, never half)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue(), keep_previous=keep_previous)


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
