"""Torch network modules — every ``nn.Module`` of serkit lives here.

``blocks`` (the blockwise contract and the one batched runner), ``waveform`` (SoundNet8 cut after a
block, one-block encoders), ``ssl`` (a transformers backbone as blocks, layer-mixing head),
``pruning`` (channel surgery), and the building blocks: SoundNet-8 (pretrained port), SoundNetRes
(light variant), the log-mel front end, CNN-LSTM and transformer encoders, pooling heads.

Importing this package imports torch (never ``transformers``).
"""

from __future__ import annotations

from .blocks import BlockwiseNet, predict_logits, predict_pooled
from .cnn_lstm import CNNLSTM
from .heads import AttentionPool, ClassifierHead, MeanMaxPool, lengths_to_mask
from .logmel import LogMel, LogMelFrontEnd, SpecAugment
from .soundnet import SoundNet8, min_samples
from .soundnet_res import SoundNetRes
from .transformer import SpectroTransformer

__all__ = [
    "SoundNet8",
    "SoundNetRes",
    "CNNLSTM",
    "SpectroTransformer",
    "LogMel",
    "LogMelFrontEnd",
    "SpecAugment",
    "min_samples",
    "ClassifierHead",
    "MeanMaxPool",
    "AttentionPool",
    "lengths_to_mask",
    "BlockwiseNet",
    "predict_logits",
    "predict_pooled",
]
