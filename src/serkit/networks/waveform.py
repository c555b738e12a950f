"""Waveform networks in the blockwise contract: SoundNet8 cut after a block, and one-block encoders
(SoundNetRes, CNN-LSTM, transformer), each with a pooling :class:`~serkit.networks.heads.NormedHead`.

These are the networks of the ``soundnet``, ``soundnet-res``, ``cnn-lstm`` and ``transformer``
families (:mod:`serkit.models.neural`, :mod:`serkit.models.spectro`).
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError, ModelError
from .blocks import BlockwiseNet
from .heads import NormedHead, SpeakerNormMixin, conv_out_length, lengths_to_mask, pool_out_length
from .pruning import soundnet8_groups, soundnet_res_groups
from .soundnet import INPUT_SCALE, SAMPLING_RATE, SoundNet8, block_widths, min_samples
from .soundnet_res import SoundNetRes

__all__ = ["SoundNet8Blocks", "EncoderBlocks", "SoundNetResBlocks"]


def _block_lengths(block, n):
    """Frames out of one SoundNet8 block (conv → BN → ReLU → max-pool) for ``n`` frames in."""
    conv = block.conv
    n = conv_out_length(n, conv.kernel_size[0], conv.stride[0], conv.padding[0])
    if isinstance(block.pool, nn.MaxPool1d):
        k = block.pool.kernel_size
        n = pool_out_length(n, k if isinstance(k, int) else k[0])
    return n


class SoundNet8Blocks(SpeakerNormMixin, BlockwiseNet):
    """SoundNet8's conv1 … ``layer`` blocks (pretrained) and a pooling head; 22 050 Hz input in [-1, 1].

    ``channels``: the blocks' widths of a pruned network (``{"conv1": 12, ...}``, see
    :class:`serkit.networks.soundnet.SoundNet8`), so a pruned model is built at its own size.
    """

    sampling_rate = SAMPLING_RATE
    prunable = True

    def __init__(
        self,
        n_classes: int,
        *,
        layer: str = "conv7",
        pool: str = "meanmax",
        dropout: float = 0.3,
        pretrained: bool = True,
        speaker_norm: bool = False,
        sampling_rate: int = SAMPLING_RATE,
        channels=None,
    ):
        super().__init__()
        # the rate audio is read at; above 22 050 Hz the speech reaches the network slowed down
        self.sampling_rate = int(sampling_rate)
        names = SoundNet8.LAYERS[:7]
        if layer not in names:
            raise ConfigError(
                f"soundnet8 layer {layer!r} is not a convolutional block; choose one of "
                f"{', '.join(names)} (conv5 ... conv7 transfer best)"
            )
        cut = names.index(layer) + 1
        if channels and set(channels) - set(names[:cut]):
            raise ModelError(
                f"channel counts for layers {sorted(set(channels) - set(names[:cut]))}, above the network's top block {layer}"
            )
        backbone = SoundNet8(pretrained=pretrained, channels=channels)
        self.block_names = backbone.block_names[:cut]
        self.blocks = nn.ModuleList(list(backbone.blocks[:cut]))  # conv8 heads are dropped
        width = block_widths(channels)[cut - 1]
        self.head = NormedHead(width, n_classes, dropout=dropout, pool=pool, speaker_norm=speaker_norm)
        self.min_samples = int(min_samples(layer))

    def level_lengths(self, lengths, start: int, stop: int):
        for i in range(start, stop):
            lengths = _block_lengths(self.blocks[i], lengths)
        return lengths

    def run_blocks(self, h, lengths, start: int, stop: int):
        if start == 0:
            h = h[:, None, :] * INPUT_SCALE  # SoundNet was trained on [-256, 256]
        for i in range(start, stop):
            h = self.blocks[i](h)
            lengths = _block_lengths(self.blocks[i], lengths)
            # zero the padding so the next convolution sees what a lone clip would
            h = h * lengths_to_mask(lengths, h.shape[-1])[:, None, :].to(h.dtype)
        return h, lengths

    def export_blocks(self, waveform, lengths):
        """The plain conv → BN → ReLU → pool modules: the fused inference path derives sizes from
        Python integers, which a trace would freeze (onnxruntime folds the batch norms itself)."""
        h = waveform[:, None, :] * INPUT_SCALE
        for i, block in enumerate(self.blocks):
            h = block.pool(block.relu(block.bn(block.conv(h))))
            lengths = self.level_lengths(lengths, i, i + 1)
            h = h * lengths_to_mask(lengths, h.shape[-1])[:, None, :].to(h.dtype)
        return h, lengths

    def channel_groups(self):
        return soundnet8_groups(self)


class EncoderBlocks(SpeakerNormMixin, BlockwiseNet):
    """One waveform encoder as a single block and a pooling head (SoundNetRes, CNN-LSTM, transformer).

    ``encoder(waveform [B, N], lengths=[B]) -> [B, C, T]`` with ``encoder.frame_lengths`` (samples →
    frames), ``encoder.out_channels`` (C) and optionally ``encoder.min_samples``. One block: these
    encoders are trained from scratch as a whole (their internals do not split into a chain).
    """

    def __init__(
        self,
        encoder,
        n_classes: int,
        *,
        name: str,
        sampling_rate: int,
        pool: str = "meanmax",
        dropout: float = 0.3,
        speaker_norm: bool = False,
    ):
        super().__init__()
        self.block_names = (name,)
        self.blocks = nn.ModuleList([encoder])
        self.head = NormedHead(encoder.out_channels, n_classes, dropout=dropout, pool=pool, speaker_norm=speaker_norm)
        self.sampling_rate = int(sampling_rate)
        self.min_samples = int(getattr(encoder, "min_samples", 1))

    @property
    def backbone(self):
        return self.blocks[0]

    def level_lengths(self, lengths, start: int, stop: int):
        return self.backbone.frame_lengths(lengths) if start == 0 and stop == 1 else lengths

    def run_blocks(self, h, lengths, start: int, stop: int):
        if start == 0 and stop == 1:
            return self.backbone(h, lengths=lengths), self.backbone.frame_lengths(lengths)
        return h, lengths


class SoundNetResBlocks(EncoderBlocks):
    """SoundNetRes as one block (its multi-scale taps do not split into a chain) and a pooling head; 16 kHz.

    ``channels``: the bottleneck widths of a pruned network (``{"block1.reduce": 20, ...}``).
    """

    sampling_rate = SoundNetRes.SAMPLING_RATE
    prunable = True

    def __init__(
        self, n_classes: int, *, pool: str = "meanmax", dropout: float = 0.3, speaker_norm: bool = False, channels=None
    ):
        super().__init__(
            SoundNetRes(channels=channels),
            n_classes,
            name="soundnet-res",
            sampling_rate=SoundNetRes.SAMPLING_RATE,
            pool=pool,
            dropout=dropout,
            speaker_norm=speaker_norm,
        )

    def channel_groups(self):
        return soundnet_res_groups(self.backbone)
