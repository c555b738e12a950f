"""Training neural models: the trainer and its strategies, losses, and waveform augmentation.

Importing this package imports torch (``augment`` alone needs only numpy).
"""

from __future__ import annotations

from .augment import Augmenter
from .losses import CombinedLoss, class_weights, focal_loss, smoothed_cross_entropy
from .trainer import STRATEGIES, BlockwiseNet, TrainConfig, Trainer, TrainResult, choose_strategy, predict_logits

__all__ = [
    "Augmenter",
    "BlockwiseNet",
    "CombinedLoss",
    "STRATEGIES",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "choose_strategy",
    "class_weights",
    "focal_loss",
    "predict_logits",
    "smoothed_cross_entropy",
]
