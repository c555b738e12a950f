"""A transformers speech backbone (wav2vec 2.0, HuBERT, WavLM) as blocks and a layer-mixing head.

Block 0 is the feature encoder (CNN, projection, positional convolution), block ``i`` is
transformer layer ``i``; the representation after block ``k`` stacks the hidden states the head
will mix, ``[batch, n_states * hidden, frames]`` (see :mod:`serkit.models.ssl`). The backbone
itself is passed in: this module never imports ``transformers``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .blocks import BlockwiseNet
from .heads import NormedHead, SpeakerNormMixin, conv_out_length, lengths_to_mask

__all__ = ["SSLNet", "LayerMixHead", "Front", "Layer", "SAMPLING_RATE"]

#: the rate every supported checkpoint takes (Hz)
SAMPLING_RATE = 16000


def _first(out):
    """transformers 4.x returns tuples from layers and projections, 5.x tensors (or tuples)."""
    return out[0] if isinstance(out, tuple) else out


class Front(nn.Module):
    """Block 0: waveform [B, S] → hidden state 0 [B, C, T] (CNN, projection, positional conv)."""

    def __init__(self, model, info):
        super().__init__()
        cfg = model.config
        self.do_normalize = bool(info["do_normalize"])
        self.conv_layers = model.feature_extractor.conv_layers
        self.projection = model.feature_projection
        self.pos_conv = model.encoder.pos_conv_embed
        # post-LN models (base) normalise before the first layer; pre-LN ("stable", large) after the last
        self.layer_norm = None if cfg.do_stable_layer_norm else model.encoder.layer_norm
        self.dropout = model.encoder.dropout
        self.kernels = [int(k) for k in cfg.conv_kernel]
        self.strides = [int(s) for s in cfg.conv_stride]

    def frame_lengths(self, n):
        for k, s in zip(self.kernels, self.strides):
            n = conv_out_length(n, k, s)
        return n

    def min_samples(self) -> int:
        r = 1
        for k, s in reversed(list(zip(self.kernels, self.strides))):
            r = (r - 1) * s + k
        return r

    def forward(self, x, lengths):
        mask = lengths_to_mask(lengths, x.shape[-1]).to(x.dtype)
        if self.do_normalize:  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm over the valid samples
            n = mask.sum(-1, keepdim=True).clamp(min=1)
            mean = (x * mask).sum(-1, keepdim=True) / n
            var = (((x - mean) * mask) ** 2).sum(-1, keepdim=True) / n
            x = (x - mean) / torch.sqrt(var + 1e-7) * mask
        h, n = x[:, None, :], lengths
        for layer in self.conv_layers:
            norm = getattr(layer, "layer_norm", None)
            if isinstance(norm, nn.GroupNorm):
                # group norm over time must not see the padding (a lone clip has none)
                h = layer.conv(h)
                n = conv_out_length(n, layer.conv.kernel_size[0], layer.conv.stride[0])
                h = layer.activation(_masked_group_norm(h, n, norm))
            else:
                h = layer(h)
                n = conv_out_length(n, layer.conv.kernel_size[0], layer.conv.stride[0])
        h = h.transpose(1, 2)  # [B, T, C]
        h = _first(self.projection(h))
        h = h * lengths_to_mask(n, h.shape[1])[:, :, None].to(h.dtype)  # padded frames are zero, as in transformers
        h = h + self.pos_conv(h)
        if self.layer_norm is not None:
            h = self.layer_norm(h)
        return self.dropout(h), n


def _masked_group_norm(h, n, norm):
    B, C, T = h.shape
    G = norm.num_groups
    m = lengths_to_mask(n, T)[:, None, None, :].to(h.dtype)  # [B, 1, 1, T]
    g = h.reshape(B, G, C // G, T)
    count = (m.sum(-1, keepdim=True) * (C // G)).clamp(min=1)
    mean = (g * m).sum((2, 3), keepdim=True) / count
    var = (((g - mean) * m) ** 2).sum((2, 3), keepdim=True) / count
    g = (g - mean) / torch.sqrt(var + norm.eps)
    h = g.reshape(B, C, T)
    if norm.affine:
        h = h * norm.weight[None, :, None] + norm.bias[None, :, None]
    return h


class Layer(nn.Module):
    """Block ``i``: transformer layer ``i`` on hidden state ``i - 1`` [B, T, C] with a padding mask."""

    def __init__(self, model, index: int):
        super().__init__()
        cfg = model.config
        self.layer = model.encoder.layers[index]
        self.index = index
        self.wavlm = cfg.model_type == "wavlm"
        # WavLM: the relative position bias lives in layer 0 and is shared by all layers
        # (kept out of the module tree so its parameters belong to block 1 only)
        self._bias_source = (model.encoder.layers[0].attention,) if self.wavlm else ()
        last = index == cfg.num_hidden_layers - 1
        self.final_norm = model.encoder.layer_norm if (cfg.do_stable_layer_norm and last) else None

    def forward(self, h, n):
        mask = lengths_to_mask(n, h.shape[1])
        if self.wavlm:
            bias = None
            if self.index > 0:
                attn = self._bias_source[0]
                T = h.shape[1]
                bias = attn.compute_bias(T, T)  # [heads, T, T]
                bias = bias.unsqueeze(0).expand(h.shape[0], -1, -1, -1).reshape(-1, T, T)
            out = self.layer(h, attention_mask=mask, position_bias=bias, index=self.index)
        else:
            # additive mask over keys, [B, 1, T, T] (transformers 4.x eager attention checks
            # that shape): a padded frame is never attended to
            T = h.shape[1]
            additive = torch.zeros(mask.shape, dtype=h.dtype, device=h.device)
            additive = additive.masked_fill(~mask, torch.finfo(h.dtype).min)[:, None, None, :].expand(-1, 1, T, T)
            out = self.layer(h, attention_mask=additive)
        h = _first(out)
        if self.final_norm is not None:
            h = self.final_norm(h)
        return h


class LayerMixHead(NormedHead):
    """Softmax-weighted sum of the stacked hidden states, then :class:`NormedHead` (pool → BN → dropout → linear).

    ``slots`` are the hidden-state indices stacked in the top representation (in order);
    ``use`` those of them that are mixed (the top state is always stacked, mixed only if asked).
    """

    def __init__(self, hidden: int, slots, use, n_classes: int, *, dropout: float, pool: str, speaker_norm: bool):
        super().__init__(hidden, n_classes, dropout=dropout, pool=pool, speaker_norm=speaker_norm)
        self.hidden = hidden
        self.n_slots = len(slots)
        self.use = [list(slots).index(s) for s in use]
        self.layer_ids = list(use)
        self.layer_logits = nn.Parameter(torch.zeros(len(use)))

    def layer_weights(self):
        return torch.softmax(self.layer_logits, dim=0)

    def mix(self, h):
        B, _, T = h.shape
        h = h.reshape(B, self.n_slots, self.hidden, T)[:, self.use]
        return torch.einsum("bsct,s->bct", h, self.layer_weights().to(h.dtype))

    def pooled(self, h, lengths):
        return super().pooled(self.mix(h), lengths)


class SSLNet(SpeakerNormMixin, BlockwiseNet):
    """A transformers speech backbone as blocks (feature encoder, layer 1 … layer L) and a layer-mixing head."""

    sampling_rate = SAMPLING_RATE

    def __init__(self, model, info, n_classes: int, *, layers, pool: str, dropout: float, speaker_norm: bool):
        super().__init__()
        cfg = model.config
        L = int(cfg.num_hidden_layers)
        self.hidden = int(cfg.hidden_size)
        # "all", or hidden-state indices in 0 … L (serkit.models.ssl resolves negative ones)
        self.use = list(range(L + 1)) if layers == "all" else sorted({int(i) for i in layers})
        if not self.use or not 0 <= self.use[0] <= self.use[-1] <= L:
            raise ConfigError(f"hidden states {layers!r} to mix must be 'all' or indices in 0 … {L}")
        front = Front(model, info)
        self.blocks = nn.ModuleList([front] + [Layer(model, i) for i in range(L)])
        self.block_names = ("features",) + tuple(f"layer{i + 1}" for i in range(L))
        self.min_samples = front.min_samples()
        self.head = LayerMixHead(
            self.hidden, self.slots(L + 1), self.use, n_classes, dropout=dropout, pool=pool, speaker_norm=speaker_norm
        )
        # the transformers model itself stays outside the module tree (its pieces are the blocks)
        self._model = (model,)

    @property
    def backbone_model(self):
        return self._model[0]

    def slots(self, level: int) -> list[int]:
        """Hidden-state indices stacked in the level-``level`` representation (level ≥ 1)."""
        return [s for s in self.use if s < level - 1] + [level - 1]

    def level_lengths(self, lengths, start: int, stop: int):
        return self.blocks[0].frame_lengths(lengths) if start == 0 and stop >= 1 else lengths

    def run_blocks(self, h, lengths, start: int, stop: int):
        C = self.hidden
        for level in range(start, stop):
            if level == 0:
                state, lengths = self.blocks[0](h, lengths)
                h = state.transpose(1, 2)
                continue
            current = h[:, -C:]
            keep = h if (level - 1) in self.use else h[:, :-C]
            new = self.blocks[level](current.transpose(1, 2), lengths).transpose(1, 2)
            h = torch.cat([keep, new], dim=1)
        return h, lengths
