"""Training neural models: the trainer and its strategies, losses, and waveform augmentation.

Importing this package imports torch (``augment`` alone needs only numpy).
"""

from __future__ import annotations

from .augment import Augmenter
from .losses import CombinedLoss, class_weights, focal_loss, smoothed_cross_entropy
from .split import speaker_split
from .trainer import STRATEGIES, TrainConfig, Trainer, TrainResult, choose_strategy

__all__ = [
    "Augmenter",
    "CombinedLoss",
    "STRATEGIES",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "choose_strategy",
    "class_weights",
    "focal_loss",
    "smoothed_cross_entropy",
    "speaker_split",
]
