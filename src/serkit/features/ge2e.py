"""GE2E speaker-encoder embeddings: the frames of a pretrained speaker-verification LSTM, pooled.

The encoder (:mod:`serkit.networks.ge2e`, Resemblyzer's weights) was trained to tell speakers
apart, not emotions; its LSTM layers' frame sequences still carry how the voice is used. Pooled
(mean ‖ std over frames) and standardised per speaker, they are as good a feature set for emotion
as ComParE's 6 373 functionals and they err differently, which is what late fusion needs: on
EmoDB 5-fold speaker k-fold, lstm2+lstm3 mean+std with a linear SVM gives UA 0.851, and 0.878
with the model's speed views (see the ``ge2e-svm`` recipe). torch is imported only when a signal
is processed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import ProcessModel, SlowdownViews, _run_parallel, _split, register_extractor

__all__ = ["GE2EExtractor"]

_LAYER_DIMS = {"lstm1": 256, "lstm2": 256, "lstm3": 256, "embedding": 256}
_POOLS = ("mean", "std", "max")
#: clips per packed LSTM batch (sorted by length, so little is padded)
_BATCH = 16
#: shortest input (seconds at 16 kHz) the encoder is given: one 25 ms window and then some
_MIN_SECONDS = 0.05


def _build_model():
    from ..networks.ge2e import SpeakerEncoder

    return SpeakerEncoder(pretrained=True)


#: the pretrained encoder, built once per process
_MODEL = ProcessModel(_build_model)


@register_extractor("ge2e")
class GE2EExtractor(SlowdownViews):
    """Pooled hidden states of the pretrained GE2E speaker encoder (16 kHz).

    Parameters
    ----------
    layer : str or list of str
        ``lstm1``, ``lstm2``, ``lstm3`` (frame sequences, pooled) and/or ``embedding`` (the
        network's 256-value utterance embedding, used as it is); several are concatenated in the
        given order.
    pool : str or list of str
        Statistics over a layer's frames: ``mean``, ``std``, ``max`` (ignored for ``embedding``).
    slowdown : float or list of float
        Play the speech this many times slower (or faster, below 1) into the encoder: read at
        ``16000 * k`` Hz and presented as 16 kHz, so pitch, formants and tempo all move. Several
        values (``[0.85, 1, 1.2]``) concatenate one vector per value, like several views of the
        voice; signals are taken at ``16000 * max(slowdown)`` Hz (:attr:`sampling_rate`).

    Notes
    -----
    The vector has ``256 * len(pool)`` values per LSTM layer and 256 for ``embedding`` (1 024 for
    the default ``lstm2,lstm3`` with ``mean,std``). Clips run in packed batches of similar length
    on ``default_jobs()`` threads with one torch thread each.
    """

    VERSION = 2  # 2: packed batches, masked statistics
    parallel = False
    network_rate = 16000

    def __init__(self, layer="lstm2,lstm3", pool="mean,std", slowdown=1.0):
        self.layer = layer
        self.pool = pool
        self._layers = _split(layer, "layer", tuple(_LAYER_DIMS), family="ge2e")
        self._pools = _split(pool, "pool", _POOLS, family="ge2e")
        self._set_slowdown(slowdown)

    def config(self) -> dict:
        return self._with_slowdown(
            {"layer": list(self._layers), "pool": list(self._pools), "weights": "resemblyzer-0.1.4"}
        )

    def _view_names(self) -> list[str]:
        names = []
        for layer in self._layers:
            if layer == "embedding":
                names += [f"embedding_{c}" for c in range(256)]
            else:
                names += [f"{layer}_{stat}_{c}" for stat in self._pools for c in range(_LAYER_DIMS[layer])]
        return names

    @property
    def min_duration(self) -> float:  # type: ignore[override]
        """0.05 s at the smallest rate: one 25 ms window and then some; shorter clips are zero-padded."""
        return _MIN_SECONDS * self.network_rate / min(self._rates)

    def _view(self, signals: Sequence[np.ndarray]) -> np.ndarray:
        """Pooled encoder states of signals presented to the encoder as 16 kHz speech: clips are
        sorted by length and run in small batches of packed sequences (each clip's vector equals
        the one it gets alone, to float32 rounding), the batches on ``default_jobs()`` threads with
        one torch thread each."""
        import torch

        from ..networks.ge2e import mel_frames
        from ..networks.heads import MASKED_STATS, lengths_to_mask

        model = _MODEL.get()
        n_min = int(_MIN_SECONDS * self.network_rate)
        mels = []
        for s in signals:
            x = np.asarray(s, dtype=np.float32).reshape(-1)
            mels.append(mel_frames(np.pad(x, (0, max(0, n_min - len(x))))))
        out = np.zeros((len(mels), len(self._view_names())), dtype=np.float32)

        def run(idx: list[int]) -> np.ndarray:
            lengths = torch.tensor([len(mels[i]) for i in idx])
            x = torch.zeros(len(idx), int(lengths.max()), mels[idx[0]].shape[1])
            for row, i in enumerate(idx):
                x[row, : len(mels[i])] = torch.from_numpy(mels[i])
            with torch.inference_mode():
                acts = model.features(x, self._layers, lengths=lengths)
                mask = lengths_to_mask(lengths, x.shape[1])
                parts = []
                for layer in self._layers:
                    if layer == "embedding":
                        parts.append(acts[layer])
                    else:
                        a = acts[layer].transpose(1, 2)  # [batch, channels, frames], as the pooling helpers take
                        parts.extend(MASKED_STATS[s](a, mask) for s in self._pools)
                return torch.cat(parts, dim=1).numpy()

        order = sorted(range(len(mels)), key=lambda i: len(mels[i]))
        batches = [order[k : k + _BATCH] for k in range(0, len(order), _BATCH)]
        for idx, vals in zip(batches, _run_parallel(run, batches)):
            out[idx] = vals
        return out
