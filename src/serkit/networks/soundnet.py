"""SoundNet-8 (Aytar, Vondrick & Torralba, NIPS 2016): a fully convolutional 1-D network on raw audio.

Trained without labels to match image networks' outputs on the frames of 2 million videos, its
middle layers (conv4–conv5) give general sound representations that transfer to emotion
recognition. This is an exact port of the published 8-layer model (``sound8.npy``); it reproduces
the reference activations in ``../shared/reference/`` to float32 precision.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .heads import conv_out_length, lengths_to_mask, pool_out_length

__all__ = ["SoundNet8", "SAMPLING_RATE", "INPUT_SCALE", "LAYERS", "min_samples", "layer_channels", "block_widths"]

#: the rate SoundNet was trained at (Hz)
SAMPLING_RATE = 22050
#: SoundNet was trained on waveforms in [-256, 256]; inputs in [-1, 1] are multiplied by this
INPUT_SCALE = 256.0

#: block → (in, out, kernel, stride, padding, max-pool size or 0); MISSION.md §3
_BLOCKS: dict[str, tuple[int, int, int, int, int, int]] = {
    "conv1": (1, 16, 64, 2, 32, 8),
    "conv2": (16, 32, 32, 2, 16, 8),
    "conv3": (32, 64, 16, 2, 8, 0),
    "conv4": (64, 128, 8, 2, 4, 0),
    "conv5": (128, 256, 4, 2, 2, 4),
    "conv6": (256, 512, 4, 2, 2, 0),
    "conv7": (512, 1024, 4, 2, 2, 0),
}
#: the two heads on conv7: objects (ImageNet, 1000) and scenes (Places, 401); kernel 8, stride 2, no padding
_HEADS: dict[str, int] = {"conv8": 1000, "conv8_2": 401}
_HEAD_KERNEL, _HEAD_STRIDE = 8, 2
#: every layer ``until=`` accepts, in network order
LAYERS: tuple[str, ...] = (*_BLOCKS, *_HEADS)


def _check_layer(layer: str) -> str:
    if layer not in LAYERS:
        from ..errors import ConfigError

        raise ConfigError(f"unknown SoundNet layer {layer!r}; choose one of {', '.join(LAYERS)}")
    return layer


def layer_channels(layer: str) -> int:
    """Channels of a layer's output (e.g. 256 for ``"conv5"``)."""
    _check_layer(layer)
    return _HEADS[layer] if layer in _HEADS else _BLOCKS[layer][1]


def block_widths(channels=None) -> list[int]:
    """Output channels of conv1 … conv7: the published widths, or those of a pruned network.

    ``channels`` is ``None``, a mapping ``{"conv1": 12, ...}`` (unnamed blocks keep their width)
    or a sequence of widths from conv1 (the rest keep theirs).

    >>> block_widths({"conv2": 20})[:3]
    [16, 20, 64]
    """
    from ..errors import ModelError

    widths = [cfg[1] for cfg in _BLOCKS.values()]
    if channels is None:
        return widths
    if hasattr(channels, "items"):
        unknown = sorted(set(channels) - set(_BLOCKS))
        if unknown:
            raise ModelError(f"channel counts for unknown layers {unknown}; SoundNet8 has {', '.join(_BLOCKS)}")
        given = {list(_BLOCKS).index(k): v for k, v in channels.items()}
    else:
        if len(channels) > len(widths):
            raise ModelError(f"{len(channels)} channel counts for SoundNet8's {len(widths)} blocks")
        given = dict(enumerate(channels))
    for i, n in given.items():
        if isinstance(n, bool) or not isinstance(n, (int, float)) or int(n) != n or not 1 <= n <= widths[i]:
            raise ModelError(f"{list(_BLOCKS)[i]}: cannot keep {n!r} of {widths[i]} channels")
        widths[i] = int(n)
    return widths


def _frames(lengths, layer: str):
    """Valid output frames at ``layer`` for inputs of ``lengths`` samples (int, array or tensor)."""
    _check_layer(layer)
    n = lengths
    for name, (_, _, k, s, p, pool) in _BLOCKS.items():
        n = conv_out_length(n, k, s, p)
        if pool:
            n = pool_out_length(n, pool)
        if name == layer:
            return n
    return conv_out_length(n, _HEAD_KERNEL, _HEAD_STRIDE, 0)


def min_samples(layer: str = "conv7") -> int:
    """Shortest input (samples at 22 050 Hz) that gives at least one output frame at ``layer``.

    Walks the stack backwards: a max-pool of size q needs q input frames per output frame, a
    convolution (k, s, p) needs ``(n - 1) s + k - 2p`` inputs for n outputs (and at least one).

    >>> min_samples("conv1"), min_samples("conv2"), min_samples("conv5"), min_samples("conv8")
    (14, 222, 4574, 209374)
    """
    _check_layer(layer)
    stages: list[tuple[int, int, int, int]] = []  # (kernel, stride, padding, pool)
    for name, (_, _, k, s, p, pool) in _BLOCKS.items():
        stages.append((k, s, p, pool))
        if name == layer:
            break
    else:
        stages.append((_HEAD_KERNEL, _HEAD_STRIDE, 0, 0))
    n = 1
    for k, s, p, pool in reversed(stages):
        if pool:
            n = n * pool
        n = max((n - 1) * s + k - 2 * p, 1)
    return n


class _Block(nn.Module):
    """conv → batch norm → ReLU → optional max-pool."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, pool: int):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride, padding)
        self.bn = nn.BatchNorm1d(cout, eps=1e-5)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool1d(pool, pool) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return self.pool(self.relu(self.bn(self.conv(x))))
        return self._forward_inference(x)

    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        """The same function, faster, for eval mode without autograd (equal to float32 rounding).

        Batch norm is folded into the convolution, and max-pooling runs before the ReLU
        (``max(relu(a), relu(b)) == relu(max(a, b))``), so the large pre-pooling activations of
        conv1/conv2 are written once and read once instead of three times. conv1 (one input
        channel, stride 2) runs as a stride-1 convolution over the two polyphase components of the
        input, which oneDNN computes about twice as fast.
        """
        conv, bn = self.conv, self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        w = conv.weight * scale[:, None, None]
        b = (conv.bias - bn.running_mean) * scale + bn.bias
        (k,), (s,), (p,) = conv.kernel_size, conv.stride, conv.padding
        if conv.in_channels == 1 and s > 1 and k % s == 0:
            n_out = (x.shape[-1] + 2 * p - k) // s + 1
            extra = (-(x.shape[-1] + 2 * p)) % s
            xp = F.pad(x, (p, p + extra))
            phases = xp.view(x.shape[0], -1, s).transpose(1, 2)  # [B, s, T/s]: phase j holds x[s t + j]
            wp = w.view(w.shape[0], k // s, s).transpose(1, 2)  # [out, s, k/s]
            y = F.conv1d(phases, wp, b)[..., :n_out]
        else:
            y = F.conv1d(x, w, b, s, p)
        return torch.relu_(self.pool(y))


class SoundNet8(nn.Module):
    """The 8-layer SoundNet on raw 22 050 Hz audio.

    Parameters
    ----------
    pretrained : bool
        Load the published weights (fetched once into the serkit cache by
        :func:`serkit.pretrained.soundnet_weights_path`); False leaves a randomly initialised net.
    channels : mapping or sequence of int, optional
        Output channels of the blocks (a pruned network): ``{"conv1": 12, ...}`` (blocks not named
        keep their published width) or one width per block from conv1. ``None``: the published
        widths (16, 32, …, 1024). Only the published widths can load the published weights.

    Attributes
    ----------
    blocks : nn.ModuleList
        conv1 ... conv7, in order (each conv → BN → ReLU → [max-pool]); progressive unfreezing walks
        it from the top.
    block_names : tuple of str
        ``("conv1", ..., "conv7")``.
    conv8, conv8_2 : nn.Conv1d
        The object (1000) and scene (401) heads on conv7.

    Notes
    -----
    Frame hops: conv1 16 samples, conv2 256, conv3 512, conv4 1024, conv5 8192 (0.37 s at
    22 050 Hz), conv6 16384, conv7 32768; a 3 s clip gives 8 conv5 frames.
    Inputs shorter than :func:`min_samples` give no frame: pad them (the feature extractor pads
    symmetrically with zeros).
    """

    SAMPLING_RATE = SAMPLING_RATE
    INPUT_SCALE = INPUT_SCALE
    LAYERS = LAYERS

    def __init__(self, pretrained: bool = True, *, channels=None):
        super().__init__()
        self.block_names: tuple[str, ...] = tuple(_BLOCKS)
        widths = block_widths(channels)
        if pretrained and widths != [cfg[1] for cfg in _BLOCKS.values()]:
            from ..errors import ConfigError

            raise ConfigError(
                f"SoundNet8 with channels {dict(zip(self.block_names, widths))} (a pruned network) cannot load the "
                "published weights; build it with pretrained=False and load the pruned model's own weights"
            )
        blocks, cin = [], 1
        for cfg, cout in zip(_BLOCKS.values(), widths):
            blocks.append(_Block(cin, cout, *cfg[2:]))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.conv8 = nn.Conv1d(cin, _HEADS["conv8"], _HEAD_KERNEL, _HEAD_STRIDE, 0)
        self.conv8_2 = nn.Conv1d(cin, _HEADS["conv8_2"], _HEAD_KERNEL, _HEAD_STRIDE, 0)
        if pretrained:
            self.load_pretrained()

    # -- weights ---------------------------------------------------------------------------------
    def load_pretrained(self, path=None, *, download: bool = True, progress: bool = True) -> SoundNet8:
        """Load the published weights from a converted ``.safetensors`` file (default: the cache, fetched on first use)."""
        from ..errors import ModelError
        from ..pretrained import read_weights, soundnet_weights_path

        path = path or soundnet_weights_path(download=download, progress=progress)
        tensors = read_weights(path, "soundnet")
        state = {}
        for i, name in enumerate(self.block_names):
            for ours, theirs in (
                ("conv.weight", "weight"),
                ("conv.bias", "bias"),
                ("bn.weight", "gamma"),
                ("bn.bias", "beta"),
                ("bn.running_mean", "mean"),
                ("bn.running_var", "var"),
            ):
                state[f"blocks.{i}.{ours}"] = tensors.get(f"{name}.{theirs}")
        for head in _HEADS:
            state[f"{head}.weight"] = tensors.get(f"{head}.weight")
            state[f"{head}.bias"] = tensors.get(f"{head}.bias")
        missing = sorted(k for k, v in state.items() if v is None)
        if missing:
            raise ModelError(f"'{path}' lacks {missing[:4]}...; delete it and run `serkit download soundnet` again")
        own = self.state_dict()
        for k, v in state.items():
            if own[k].shape != v.shape:
                raise ModelError(
                    f"'{path}': {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}; delete the file"
                )
        # num_batches_tracked stays as initialised: only running statistics matter in eval mode.
        self.load_state_dict(state, strict=False)
        return self

    # -- lengths ---------------------------------------------------------------------------------
    @staticmethod
    def frame_lengths(lengths, until: str = "conv7"):
        """Valid output frames at layer ``until`` for inputs of ``lengths`` samples.

        Parameters
        ----------
        lengths : int, ndarray or Tensor [shape=(batch,)]
            Input lengths in samples (22 050 Hz).
        until : str
            ``"conv1"`` ... ``"conv7"``, ``"conv8"``, ``"conv8_2"``.

        >>> SoundNet8.frame_lengths(441000, "conv5"), SoundNet8.frame_lengths(441000, "conv8")
        (54, 4)
        """
        return _frames(lengths, until)

    # -- forward ---------------------------------------------------------------------------------
    def features(
        self,
        waveform: torch.Tensor,
        layers: Sequence[str] | str = ("conv5",),
        *,
        lengths: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Outputs of several layers in one pass (the network runs only as deep as needed).

        Parameters
        ----------
        waveform : Tensor [shape=(batch, samples) or (batch, 1, samples), float]
            Audio in [-1, 1] at 22 050 Hz (scaled by :data:`INPUT_SCALE` here).
        layers : sequence of str
            Layer names from :data:`LAYERS`.
        lengths : Tensor [shape=(batch,), int], optional
            Valid samples of each zero-padded clip. When given, every block's frames beyond the
            clip's valid length are zeroed before the next convolution reads them, so each clip's
            valid frames equal those computed for the clip alone (what the next convolution's own
            zero padding would give).

        Returns
        -------
        dict[str, Tensor [shape=(batch, channels, frames)]]
            Frames past ``frame_lengths(lengths, layer)`` are padding when ``lengths`` is given.
        """
        if isinstance(layers, str):
            layers = [layers]
        wanted = {_check_layer(name) for name in layers}
        if not wanted:
            return {}
        if waveform.dim() == 2:
            waveform = waveform[:, None, :]
        if waveform.dim() != 3 or waveform.shape[1] != 1:
            from ..errors import ModelError

            raise ModelError(f"SoundNet8 takes mono waveforms [batch, samples], got shape {tuple(waveform.shape)}")
        deepest = max(LAYERS.index(name) for name in wanted)
        need = min_samples(LAYERS[deepest])
        if waveform.shape[-1] < need:
            from ..errors import ModelError

            raise ModelError(
                f"a {waveform.shape[-1]}-sample waveform is too short for SoundNet layer {LAYERS[deepest]}: it needs "
                f"at least {need} samples ({need / SAMPLING_RATE:.3f} s at {SAMPLING_RATE} Hz); zero-pad the clip"
            )
        x = waveform * INPUT_SCALE
        out: dict[str, torch.Tensor] = {}
        for i, (name, block) in enumerate(zip(self.block_names, self.blocks)):
            if i > deepest:
                break
            x = block(x)
            if lengths is not None:
                valid = self.frame_lengths(torch.as_tensor(lengths, device=x.device), name)
                x = x * lengths_to_mask(valid, x.shape[-1])[:, None, :].to(x.dtype)
            if name in wanted:
                out[name] = x
        for name in _HEADS:
            if name in wanted:
                out[name] = getattr(self, name)(x)
        return {name: out[name] for name in layers}

    def forward(
        self, waveform: torch.Tensor, until: str = "conv7", *, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Output of layer ``until``: [batch, channels, frames] for waveforms [batch, samples] in [-1, 1] at 22 050 Hz.

        ``conv8`` / ``conv8_2`` are the heads' raw convolution outputs (logits before softmax).
        See :meth:`features` for ``lengths``.
        """
        return self.features(waveform, (until,), lengths=lengths)[until]

    def extra_repr(self) -> str:
        return f"sampling_rate={SAMPLING_RATE}, input_scale={INPUT_SCALE:g}"
