"""Small shared helpers: argument checks and atomic file output."""

from nrsfm_kit.utils.checks import check_finite, check_positive, check_shape, check_tensor
from nrsfm_kit.utils.io import atomic_save_torch, atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = [
    "check_finite",
    "check_positive",
    "check_shape",
    "check_tensor",
    "atomic_save_torch",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
]
