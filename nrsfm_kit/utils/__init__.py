"""Small shared helpers: argument checks, atomic file output, lazy package namespaces.

Names load lazily (PEP 562, :mod:`nrsfm_kit.utils.lazy`): ``import nrsfm_kit.utils.lazy`` does not import torch.
"""

from nrsfm_kit.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "checks": ["check_finite", "check_positive", "check_shape", "check_tensor"],
    "io": ["atomic_save_torch", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "check_writable",
           "folder_lock", "FolderLockedError"],
})
