"""The one training loop of the suite (progress bar, seeds, atomic checkpoints, resume, JSON metrics)."""

from nrsfm_kit.train.loop import TrainConfig, TrainResult, fit, seed_everything

__all__ = ["TrainConfig", "TrainResult", "fit", "seed_everything"]
