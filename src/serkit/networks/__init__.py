"""Torch network modules: SoundNet-8 (pretrained port), SoundNetRes (light variant), pooling heads.

Importing this package imports torch.
"""

from __future__ import annotations

from .heads import AttentionPool, ClassifierHead, MeanMaxPool, lengths_to_mask
from .soundnet import SoundNet8, min_samples
from .soundnet_res import SoundNetRes

__all__ = ["SoundNet8", "SoundNetRes", "min_samples", "ClassifierHead", "MeanMaxPool", "AttentionPool", "lengths_to_mask"]
