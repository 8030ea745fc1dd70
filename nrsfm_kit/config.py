"""Run-time configuration read from the environment, in one place.

- ``NRSFM_KIT_SMOKE=1`` (set by ``make test``): notebooks and demos shrink sizes and iterations.
- ``NRSFM_KIT_DATA``: folder with real data samples (DeepDeform, NRSfM .mat files).
- ``WARP_CACHE_PATH``: Warp kernel cache (see :mod:`nrsfm_kit.warp_setup`).
"""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def smoke() -> bool:
    """True when ``NRSFM_KIT_SMOKE`` asks for smoke-test sizes (``1``/``true``/``yes``/``on``)."""
    return os.environ.get("NRSFM_KIT_SMOKE", "").strip().lower() in _TRUE


def pick(teaching, smoke_value):
    """Return ``smoke_value`` under ``NRSFM_KIT_SMOKE=1``, else ``teaching``.

    Notebooks size their experiments with it, e.g. ``iters = pick(2000, 50)``.
    """
    return smoke_value if smoke() else teaching


def data_root(required: bool = False) -> Path | None:
    """Folder of real data samples from ``NRSFM_KIT_DATA``.

    Returns None when unset (unless ``required``). Raises FileNotFoundError when it is set but
    the folder does not exist, or when ``required`` and it is unset.
    """
    value = os.environ.get("NRSFM_KIT_DATA", "").strip()
    if not value:
        if required:
            raise FileNotFoundError(
                "NRSFM_KIT_DATA is not set: expected the path of a folder with real data samples"
            )
        return None
    root = Path(value).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"NRSFM_KIT_DATA={value!r}: expected an existing folder, found none")
    return root


def data_file(*parts: str) -> Path | None:
    """Path of a real data sample under ``NRSFM_KIT_DATA``, or None when the variable is unset.

    Raises FileNotFoundError naming the path when the variable is set but the file is missing.
    """
    root = data_root()
    if root is None:
        return None
    path = root.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"NRSFM_KIT_DATA is set but {path} does not exist")
    return path
