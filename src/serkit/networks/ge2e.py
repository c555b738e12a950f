"""The GE2E speaker encoder (Wan, Wang, Papir & Lopez Moreno, ICASSP 2018) with Resemblyzer's weights.

A speaker-verification network: 40-band mel *power* spectrogram of 16 kHz speech (25 ms windows,
10 ms hop) → three LSTM layers of 256 units → linear 256 → ReLU → L2 normalisation. Resemblyzer
trained it on thousands of speakers to tell voices apart; its hidden states also describe how a
voice is used — pitch, effort, tempo — which is why they transfer to emotion (per-speaker
standardisation then removes who is speaking). Weights: ``serkit download ge2e``
(:func:`serkit.pretrained.ge2e_weights_path`).

The three LSTM layers are separate modules so that every layer's frame sequence can be read; run
together they equal Resemblyzer's 3-layer ``nn.LSTM`` (a test checks it).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SpeakerEncoder", "LAYERS", "SAMPLING_RATE", "N_MELS"]

SAMPLING_RATE = 16000
N_MELS = 40
#: outputs :meth:`SpeakerEncoder.features` can return: each LSTM layer's frames, and the utterance embedding
LAYERS = ("lstm1", "lstm2", "lstm3", "embedding")


class SpeakerEncoder(nn.Module):
    """GE2E speaker encoder; ``pretrained=True`` loads Resemblyzer's published weights (fetched once).

    Examples
    --------
    >>> enc = SpeakerEncoder(pretrained=False)
    >>> out = enc.features(torch.zeros(1, 50, 40), ["lstm2", "embedding"])
    >>> tuple(out["lstm2"].shape), tuple(out["embedding"].shape)
    ((1, 50, 256), (1, 256))
    """

    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.lstms = nn.ModuleList(nn.LSTM(N_MELS if i == 0 else 256, 256, 1, batch_first=True) for i in range(3))
        self.linear = nn.Linear(256, 256)
        if pretrained:
            self.load_pretrained()
        self.eval()

    def load_pretrained(self, path=None, *, download: bool = True, progress: bool = True) -> SpeakerEncoder:
        """Load the converted ``.safetensors`` weights (default: the cache, fetched on first use)."""
        from ..errors import ModelError
        from ..pretrained import GE2E_SHAPES, ge2e_weights_path, read_weights

        path = path or ge2e_weights_path(download=download, progress=progress)
        tensors = read_weights(path, "ge2e")
        missing = sorted(set(GE2E_SHAPES) - set(tensors))
        if missing:
            raise ModelError(f"'{path}' lacks {missing[:4]}; delete it and run `serkit download ge2e` again")
        state = {
            f"lstms.{i}.{kind}_l0": tensors[f"lstm.{kind}_l{i}"]
            for i in range(3)
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        }
        state.update({"linear.weight": tensors["linear.weight"], "linear.bias": tensors["linear.bias"]})
        self.load_state_dict(state)
        return self

    def features(
        self, mels: torch.Tensor, layers=("lstm3",), *, lengths: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Outputs for one batch of mel sequences ``[batch, frames, 40]``.

        Returns ``{layer: [batch, frames, 256]}`` for ``lstm1``…``lstm3`` and ``[batch, 256]`` for
        ``embedding`` (Resemblyzer's: ReLU(linear(last state of lstm3)), L2-normalised, here over
        the whole sequence rather than averaged over 1.6 s partial windows). With ``lengths``
        (valid frames of each zero-padded sequence) each sequence's frames, and its embedding (taken
        at its last valid frame), equal those of the sequence alone: the LSTMs run forward only, so
        the padding after a sequence never reaches its valid frames (plain padded tensors, no packed
        sequences, so the same code traces to ONNX); frames past a sequence's length are zero.
        """
        from ..errors import ConfigError

        if isinstance(layers, str):
            layers = [layers]
        bad = [name for name in layers if name not in LAYERS]
        if bad:
            raise ConfigError(f"unknown GE2E layer {bad[0]!r}; choose from {', '.join(LAYERS)}")
        deepest = 3 if "embedding" in layers else max(LAYERS.index(name) + 1 for name in layers)
        out: dict[str, torch.Tensor] = {}
        h = mels
        for i in range(deepest):
            h, _ = self.lstms[i](h)
            out[LAYERS[i]] = h
        if "embedding" in layers:
            last = h[:, -1] if lengths is None else h[torch.arange(h.shape[0]), lengths - 1]
            e = torch.relu(self.linear(last))
            out["embedding"] = e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)
        if lengths is not None:
            valid = (torch.arange(mels.shape[1])[None, :] < lengths[:, None]).to(mels.dtype)[:, :, None]
            out.update({name: out[name] * valid for name in layers if name != "embedding"})
        return {name: out[name] for name in layers}

    def pooled(self, mels: torch.Tensor, lengths: torch.Tensor, layers, pools) -> torch.Tensor:
        """``[batch, d]``: for each of ``layers`` in order, the ``pools`` statistics (``mean``, ``std``,
        ``max``; :data:`serkit.networks.heads.MASKED_STATS`) of its valid frames, or the embedding —
        what the ``ge2e`` feature set computes, and the graph :func:`serkit.deploy.export.export_ge2e`
        writes (one implementation for both)."""
        from .heads import MASKED_STATS, lengths_to_mask

        acts = self.features(mels, layers, lengths=lengths)
        mask = lengths_to_mask(lengths, mels.shape[1])
        parts = []
        for layer in layers:
            if layer == "embedding":
                parts.append(acts[layer])
            else:  # [batch, channels, frames], as the pooling helpers take
                parts.extend(MASKED_STATS[s](acts[layer].transpose(1, 2), mask) for s in pools)
        return torch.cat(parts, dim=1)
