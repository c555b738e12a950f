"""SoundNetRes: the lighter, modern SoundNet variant sketched in the SoundNet transfer article.

16 kHz waveform → strided front convolution (kernel 25, stride 8) → 9 residual blocks of
1×1 → depthwise-separable → 1×1 convolutions in three stages at 8×, 16× and 32× downsampling →
multi-scale pooling (each stage's output max-pooled to the 32× frame rate and concatenated).
About 0.36 M parameters and 0.74 G multiply-adds per 3 s clip with the default widths, so it
trains from scratch on a CPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .heads import conv_out_length, lengths_to_mask, masked_max, masked_mean

__all__ = ["SoundNetRes", "ResBlock"]


def _bn_relu(c: int) -> list[nn.Module]:
    return [nn.BatchNorm1d(c), nn.ReLU(inplace=True)]


class ResBlock(nn.Module):
    """Bottleneck residual block: 1×1 reduce → depthwise-separable conv → 1×1 expand, plus a shortcut.

    The depthwise-separable part is a depthwise convolution (kernel k, stride s) and a pointwise one.

    The reduce, pointwise and expand convolutions are followed by batch norm (and ReLU, except the
    expand, whose ReLU comes after the residual add). The shortcut is the identity, or a strided
    1×1 convolution + BN where the width or frame rate changes. The middle width is ``cout //
    expansion``: at up to 2000 frames/s most of the cost is in the 1×1 convolutions, and a 2×
    bottleneck halves it (0.58 against 1.2 G multiply-adds per 3 s at widths 64/128/192).

    Parameters
    ----------
    cin, cout : int
        Input and output channels.
    kernel_size : int
        Depthwise kernel (odd; padded to keep the frame rate at stride 1).
    stride : int
        1, or 2 to halve the frame rate.
    expansion : int
        Ratio of the output width to the bottleneck width.
    reduce, pointwise : int, optional
        Widths of the reduce and pointwise convolutions' outputs (a pruned block); default
        ``cout // expansion``.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int = 9,
        stride: int = 1,
        expansion: int = 2,
        *,
        reduce: int | None = None,
        pointwise: int | None = None,
    ):
        super().__init__()
        self.stride = stride
        self.kernel_size = kernel_size
        mid = max(1, cout // expansion)
        r = mid if reduce is None else int(reduce)
        q = mid if pointwise is None else int(pointwise)
        self.reduce = nn.Sequential(nn.Conv1d(cin, r, 1, bias=False), *_bn_relu(r))
        self.depthwise = nn.Conv1d(r, r, kernel_size, stride, kernel_size // 2, groups=r, bias=False)
        self.pointwise = nn.Sequential(nn.Conv1d(r, q, 1, bias=False), *_bn_relu(q))
        self.expand = nn.Sequential(nn.Conv1d(q, cout, 1, bias=False), nn.BatchNorm1d(cout))
        if cin == cout and stride == 1:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv1d(cin, cout, 1, stride, bias=False), nn.BatchNorm1d(cout))
        self.relu = nn.ReLU(inplace=True)

    def out_length(self, lengths):
        """Output frames for ``lengths`` input frames (``ceil(L / stride)``)."""
        return conv_out_length(lengths, self.kernel_size, self.stride, self.kernel_size // 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, cin, T] → [B, cout, T / stride]; ``mask`` [B, T] zeroes padding before the depthwise conv reads it."""
        h = self.reduce(x)
        if mask is not None:
            h = h * mask[:, None, :].to(h.dtype)
        h = self.expand(self.pointwise(self.depthwise(h)))
        return self.relu(h + self.shortcut(x))


class SoundNetRes(nn.Module):
    """A small residual 1-D CNN on raw 16 kHz audio with multi-scale outputs.

    Parameters
    ----------
    widths : (int, int, int)
        Channels of the three stages (8×, 16×, 32× downsampling: 2000, 1000 and 500 frames/s).
    blocks_per_stage : int
        Residual blocks per stage (3 → 9 blocks); the first block of stages 2 and 3 has stride 2.
    kernel_size : int
        Depthwise kernel of the residual blocks.
    expansion : int
        Output width / bottleneck width of each residual block.
    channels : mapping, optional
        Bottleneck widths of a pruned network, ``{"block1.reduce": 20, "block1.pointwise": 24, ...}``
        (blocks not named keep ``width // expansion``).

    Attributes
    ----------
    front : nn.Sequential
        Conv1d(1, widths[0], 25, stride 8, padding 12) → BN → ReLU.
    blocks : nn.ModuleList
        The residual blocks, in order (progressive unfreezing walks it from the top).
    block_names : tuple of str
        ``("block1", ..., "block9")``.
    out_channels : int
        Channels of :meth:`forward`'s output, ``sum(widths)`` (448 by default).
    embed_dim : int
        Length of :meth:`embed`'s vectors, ``2 * out_channels``.

    Notes
    -----
    Inputs are waveforms in [-1, 1]; the front batch norm absorbs their scale. Any length of at
    least one sample gives at least one output frame.
    """

    SAMPLING_RATE = 16000
    FRONT_KERNEL, FRONT_STRIDE, FRONT_PADDING = 25, 8, 12

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 256),
        blocks_per_stage: int = 3,
        kernel_size: int = 9,
        expansion: int = 2,
        *,
        channels: Mapping[str, int] | None = None,
    ):
        super().__init__()
        if len(widths) != 3 or blocks_per_stage < 1:
            from ..errors import ConfigError

            raise ConfigError(
                f"SoundNetRes needs 3 stage widths and >= 1 block per stage, got {widths!r}, {blocks_per_stage}"
            )
        self.widths = tuple(int(w) for w in widths)
        self.front = nn.Sequential(
            nn.Conv1d(1, self.widths[0], self.FRONT_KERNEL, self.FRONT_STRIDE, self.FRONT_PADDING, bias=False),
            *_bn_relu(self.widths[0]),
        )
        blocks = []
        cin = self.widths[0]
        self.taps: list[int] = []  # index of the last block of each stage
        n_blocks = 3 * blocks_per_stage
        pruned = self._bottlenecks(
            channels, n_blocks, [w // expansion for w in self.widths for _ in range(blocks_per_stage)]
        )
        for s, w in enumerate(self.widths):
            for j in range(blocks_per_stage):
                r, q = pruned[len(blocks)]
                blocks.append(
                    ResBlock(
                        cin,
                        w,
                        kernel_size,
                        stride=2 if (j == 0 and s > 0) else 1,
                        expansion=expansion,
                        reduce=r,
                        pointwise=q,
                    )
                )
                cin = w
            self.taps.append(len(blocks) - 1)
        self.blocks = nn.ModuleList(blocks)
        self.block_names = tuple(f"block{i + 1}" for i in range(len(blocks)))
        # Bring the 8x and 16x taps to the 32x frame rate. Max (not mean) pooling keeps a clip's
        # result independent of the zero padding around it in a batch: block outputs are >= 0.
        self.scale_pools = nn.ModuleList(
            [nn.MaxPool1d(4, 4, ceil_mode=True), nn.MaxPool1d(2, 2, ceil_mode=True), nn.Identity()]
        )
        self.out_channels = sum(self.widths)
        self.embed_dim = 2 * self.out_channels
        self._init_weights()

    @staticmethod
    def _bottlenecks(channels, n_blocks: int, full: list[int]) -> list[tuple[int | None, int | None]]:
        """``(reduce, pointwise)`` width of every block from ``channels`` (None: the full width)."""
        out: list[list[int | None]] = [[None, None] for _ in range(n_blocks)]
        if not channels:
            return [tuple(x) for x in out]  # type: ignore[misc]
        from ..errors import ModelError

        names = {
            f"block{j + 1}.{part}": (j, k) for j in range(n_blocks) for k, part in enumerate(("reduce", "pointwise"))
        }
        unknown = sorted(set(channels) - set(names))
        if unknown:
            raise ModelError(f"channel counts for unknown layers {unknown}; this network has {', '.join(names)}")
        for name, n in channels.items():
            j, k = names[name]
            if isinstance(n, bool) or not isinstance(n, (int, float)) or int(n) != n or not 1 <= n <= max(1, full[j]):
                raise ModelError(f"{name}: cannot keep {n!r} of {max(1, full[j])} channels")
            out[j][k] = int(n)
        return [tuple(x) for x in out]  # type: ignore[misc]

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        # Zero the last BN of each residual branch: every block starts as (nearly) the identity,
        # which trains faster and more stably from scratch (Goyal et al., 2017).
        for b in self.blocks:
            nn.init.zeros_(b.expand[1].weight)

    # -- lengths ---------------------------------------------------------------------------------
    def frame_lengths(self, lengths, until: str = "out"):
        """Valid frames at ``until`` for inputs of ``lengths`` samples (int, array or tensor).

        ``until`` is ``"front"``, ``"block1"`` ... ``"block9"`` or ``"out"`` (the 32× output of
        :meth:`forward`).

        >>> SoundNetRes().frame_lengths(48000), SoundNetRes().frame_lengths(48000, "block4")
        (1500, 3000)
        """
        names = ("front", *self.block_names, "out")
        if until not in names:
            from ..errors import ConfigError

            raise ConfigError(f"unknown SoundNetRes layer {until!r}; choose one of {', '.join(names)}")
        n = conv_out_length(lengths, self.FRONT_KERNEL, self.FRONT_STRIDE, self.FRONT_PADDING)
        if until == "front":
            return n
        for name, block in zip(self.block_names, self.blocks):
            n = block.out_length(n)
            if name == until:
                return n
        return n  # "out": the last stage's rate; the pooled taps have the same count (ceil mode)

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, waveform: torch.Tensor, *, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Multi-scale frame features.

        Parameters
        ----------
        waveform : Tensor [shape=(batch, samples) or (batch, 1, samples), float]
            Audio in [-1, 1] at 16 kHz.
        lengths : Tensor [shape=(batch,), int], optional
            Valid samples of each zero-padded clip; padding is zeroed after every block so each
            clip's valid frames do not depend on the batch (in eval mode).

        Returns
        -------
        Tensor [shape=(batch, out_channels, frames)]
            ``frames = ceil(samples / 32)`` (500 frames/s); channels are the 8×, 16× and 32× stage
            outputs, max-pooled to 32× and concatenated.
        """
        if waveform.dim() == 2:
            waveform = waveform[:, None, :]
        if waveform.dim() != 3 or waveform.shape[1] != 1 or waveform.shape[-1] < 1:
            from ..errors import ModelError

            raise ModelError(f"SoundNetRes takes mono waveforms [batch, samples], got shape {tuple(waveform.shape)}")
        x = self.front(waveform)
        n = mask = None
        if lengths is not None:
            n = self.frame_lengths(torch.as_tensor(lengths, device=x.device), "front")
            mask = lengths_to_mask(n, x.shape[-1])
            x = x * mask[:, None, :].to(x.dtype)
        taps = []
        for i, block in enumerate(self.blocks):
            x = block(x, mask)
            if n is not None:
                n = block.out_length(n)
                mask = lengths_to_mask(n, x.shape[-1])
                x = x * mask[:, None, :].to(x.dtype)
            if i in self.taps:
                taps.append(x)
        frames = taps[-1].shape[-1]
        return torch.cat([pool(t)[..., :frames] for pool, t in zip(self.scale_pools, taps)], dim=1)

    def embed(self, waveform: torch.Tensor, *, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """One vector per clip: masked mean ‖ max of :meth:`forward` over frames, [batch, embed_dim]."""
        x = self.forward(waveform, lengths=lengths)
        mask = None
        if lengths is not None:
            mask = lengths_to_mask(self.frame_lengths(torch.as_tensor(lengths, device=x.device)), x.shape[-1])
        return torch.cat([masked_mean(x, mask), masked_max(x, mask)], dim=1)

    def extra_repr(self) -> str:
        return f"sampling_rate={self.SAMPLING_RATE}, out_channels={self.out_channels}"
