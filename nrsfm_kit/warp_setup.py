"""Warp is configured once, here: quiet logging, a writable kernel cache, device selection.

The kernel cache goes to ``$WARP_CACHE_PATH`` when set, else Warp's default user cache.
Import :func:`init` (idempotent) before launching a kernel; the torch bridge does it for you.
"""

from __future__ import annotations

import os
import threading

import warp as wp

_lock = threading.Lock()
_initialized = False


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
