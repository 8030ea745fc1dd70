"""nrsfm-kit: a Jupyter-first teaching and research suite for non-rigid 3D reconstruction.

Subpackages (dependencies point down this list):
geometry -> graph -> solver -> nrsfm / edm / models -> metrics, data, train, viz, kernels.
"""

__version__ = "0.1.0"

from nrsfm_kit.config import data_root, smoke  # noqa: E402

__all__ = ["__version__", "data_root", "smoke"]
