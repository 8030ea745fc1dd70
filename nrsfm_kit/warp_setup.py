"""Warp is configured once, here: quiet logging, a writable kernel cache, device selection.

The kernel cache goes to ``$WARP_CACHE_PATH`` when set, else Warp's default user cache.
Import :func:`init` (idempotent) before launching a kernel; the torch bridge does it for you.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading

import warp as wp

_lock = threading.Lock()
_initialized = False


def _cuda_driver_loadable() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1" if sys.platform.startswith("linux") else "nvcuda.dll")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _silenced_stderr():
    """Redirect file descriptor 2 (native code writes there directly) to /dev/null."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def init() -> None:
    """Initialise Warp once: quiet output, kernel cache from ``WARP_CACHE_PATH``."""
    global _initialized
    if _initialized:
        return
    with _lock:
        if _initialized:
            return
        wp.config.quiet = True
        wp.config.verbose = False
        if hasattr(wp, "LOG_WARNING"):  # warp >= 1.10: the greeting is an INFO log
            wp.config.log_level = wp.LOG_WARNING
        cache = os.environ.get("WARP_CACHE_PATH")
        if cache:
            os.makedirs(cache, exist_ok=True)
            wp.config.kernel_cache_dir = cache
        if _cuda_driver_loadable():
            wp.init()
        else:  # CPU-only machine: Warp's native code would print a CUDA-driver warning on stderr
            with _silenced_stderr():
                wp.init()
        _initialized = True


def default_device() -> str:
    """``"cuda"`` when Warp sees a CUDA device, else ``"cpu"``."""
    init()
    return "cuda" if wp.is_cuda_available() else "cpu"


def torch_device() -> str:
    """The torch device name matching :func:`default_device` (``"cuda"`` or ``"cpu"``)."""
    import torch

    return "cuda" if torch.cuda.is_available() and default_device() == "cuda" else "cpu"
