"""The one training loop of the suite (progress bar, seeds, atomic checkpoints, resume, JSON metrics).

Data-parallel training on several processes (torchrun): :mod:`nrsfm_kit.train.distributed`.

Names load lazily (PEP 562).
"""

from nrsfm_kit.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "loop": ["TrainConfig", "TrainResult", "fit", "seed_everything", "seeded"],
    "state": ["CheckpointError", "GeneratorState", "TrainState", "Value", "read_checkpoint", "write_checkpoint"],
})
