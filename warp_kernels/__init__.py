"""NVIDIA Warp kernels and @wp.func helpers (no torch import here). Bridged to torch in nrsfm_kit.kernels."""
