"""GE2E speaker-encoder embeddings: the frames of a pretrained speaker-verification LSTM, pooled.

The encoder (:mod:`serkit.networks.ge2e`, Resemblyzer's weights) was trained to tell speakers
apart, not emotions; its LSTM layers' frame sequences still carry how the voice is used. Pooled
(mean ‖ std over frames) and standardised per speaker, they are as good a feature set for emotion
as ComParE's 6 373 functionals and they err differently, which is what late fusion needs: on
EmoDB 5-fold speaker k-fold, lstm2+lstm3 mean+std with a linear SVM gives UA 0.851, and 0.878
with the model's speed views (see the ``ge2e-svm`` recipe). torch is imported only when a signal
is processed, and not at all when the extractor runs an exported graph (:meth:`GE2EExtractor.use_onnx`:
the network and its pooling as ONNX, run by onnxruntime; ``serkit export`` writes it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from ..melscale import mel_filterbank
from ..runtime import onnx_session
from .base import ProcessModel, SlowdownViews, _run_parallel, _split, register_extractor, thread_map
from .spectral import _frames, _spectrum

__all__ = ["GE2EExtractor", "mel_frames", "TARGET_DBFS"]

#: Resemblyzer normalises every waveform to this RMS level (dBFS) before the spectrogram
TARGET_DBFS = -30.0
_RATE, _N_MELS, _N_FFT, _HOP = 16000, 40, 400, 160

_LAYER_DIMS = {"lstm1": 256, "lstm2": 256, "lstm3": 256, "embedding": 256}
_POOLS = ("mean", "std", "max")
#: clips per zero-padded LSTM batch (sorted by length, so little is padded)
_BATCH = 16
#: shortest input (seconds at 16 kHz) the encoder is given: one 25 ms window and then some
_MIN_SECONDS = 0.05


def _build_model():
    from ..networks.ge2e import SpeakerEncoder

    return SpeakerEncoder(pretrained=True)


#: the pretrained encoder, built once per process
_MODEL = ProcessModel(_build_model)


def _padded(mels: list[np.ndarray], idx: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The mel frames of clips ``idx`` zero-padded into one batch [len(idx), longest, 40] (float32) and
    their lengths (int64): what the torch encoder and the exported graph both take."""
    lengths = np.array([len(mels[i]) for i in idx], dtype=np.int64)
    x = np.zeros((len(idx), int(lengths.max()), mels[idx[0]].shape[1]), dtype=np.float32)
    for row, i in enumerate(idx):
        x[row, : len(mels[i])] = mels[i]
    return x, lengths


def mel_frames(signal: np.ndarray, hop_length: int = _HOP) -> np.ndarray:
    """[shape=(n_frames, 40), float32] the encoder's input for a float32 mono signal at 16 kHz.

    The signal is scaled to an RMS of -30 dBFS (Resemblyzer's level; a silent signal stays as it
    is), then the 40-band mel power spectrogram with a 400-sample (25 ms) periodic Hann window and a
    160-sample (10 ms) hop, centred zero-padded frames — ``librosa.feature.melspectrogram``'s
    (Resemblyzer's front end), in numpy (:mod:`serkit.melscale`; equal to float32 rounding, tested).
    ``hop_length`` (samples) steps the window further: at 320 the encoder reads every second
    frame of the 160-sample hop and runs in half the time.
    """
    x = np.asarray(signal, dtype=np.float32).reshape(-1)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    if rms > 1e-8:
        x = x * np.float32(10 ** (TARGET_DBFS / 20) / rms)
    power = _spectrum(_frames(x, _N_FFT, int(hop_length)))
    return np.ascontiguousarray(power @ mel_filterbank(_RATE, _N_FFT, _N_MELS).T, dtype=np.float32)


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
    hop_length : int
        Samples (at 16 kHz) between the encoder's mel frames: 160 (10 ms, what the encoder was
        trained on, the default) up to 400 (one 25 ms window after the other). The encoder's cost is
        one LSTM step per frame, so 320 halves it (a 1-s window: 5.6 → 2.7 ms on one thread); the
        frames come twice as fast as in training, so the pooled states differ from the 10 ms ones
        and a model must be trained on the hop it runs with.
    slowdown : float or list of float
        Play the speech this many times slower (or faster, below 1) into the encoder: read at
        ``16000 * k`` Hz and presented as 16 kHz, so pitch, formants and tempo all move. Several
        values (``[0.85, 1, 1.2]``) concatenate one vector per value, like several views of the
        voice; signals are taken at ``16000 * max(slowdown)`` Hz (:attr:`sampling_rate`).

    Notes
    -----
    The vector has ``256 * len(pool)`` values per LSTM layer and 256 for ``embedding`` (1 024 for
    the default ``lstm2,lstm3`` with ``mean,std``). Clips run in zero-padded batches of similar length
    (:meth:`serkit.networks.ge2e.SpeakerEncoder.pooled`) on ``default_jobs()`` threads with one torch thread each.
    """

    VERSION = 2  # 2: batches of masked statistics (padded since 2026-12-02: the same values to float32 rounding)
    parallel = False
    network_rate = 16000

    def __init__(self, layer="lstm2,lstm3", pool="mean,std", slowdown=1.0, hop_length=_HOP):
        self.layer = layer
        self.pool = pool
        if (
            isinstance(hop_length, bool)
            or not isinstance(hop_length, (int, np.integer))
            or not _HOP <= hop_length <= _N_FFT
        ):
            raise ConfigError(
                f"ge2e hop_length must be a whole number of samples from {_HOP} to {_N_FFT} (10-25 ms at 16 kHz), got {hop_length!r}"
            )
        self.hop_length = int(hop_length)
        self._layers = _split(layer, "layer", tuple(_LAYER_DIMS), family="ge2e")
        self._pools = _split(pool, "pool", _POOLS, family="ge2e")
        self._set_slowdown(slowdown)

    def config(self) -> dict:
        # the 10 ms hop is left out of the config, so features cached before the option keep their key
        hop = {} if self.hop_length == _HOP else {"hop_length": self.hop_length}
        return self._with_slowdown(
            {"layer": list(self._layers), "pool": list(self._pools), "weights": "resemblyzer-0.1.4", **hop}
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

    def use_onnx(self, path) -> GE2EExtractor:
        """Run the encoder and its pooling from an exported graph (``mels [batch, frames, 40]``,
        ``lengths [batch]`` → ``features [batch, d]``, written by
        :func:`serkit.deploy.export.export_ge2e`) through onnxruntime instead of torch, in the same
        length-sorted batches. A runtime choice, not part of :meth:`config` (the values equal
        the torch network's to float32 rounding, so they share the feature cache)."""
        self._onnx = str(path)
        onnx_session(self._onnx)  # opened now: a damaged graph fails when the model loads
        return self

    def _view(self, signals: Sequence[np.ndarray]) -> np.ndarray:
        """Pooled encoder states of signals presented to the encoder as 16 kHz speech: clips are
        sorted by length and run in small zero-padded batches (each clip's vector equals
        the one it gets alone, to float32 rounding), the batches on ``default_jobs()`` threads with
        one torch thread each (or one-thread onnxruntime sessions, :meth:`use_onnx`)."""
        n_min = int(_MIN_SECONDS * self.network_rate)
        mels = []
        for s in signals:
            x = np.asarray(s, dtype=np.float32).reshape(-1)
            mels.append(mel_frames(np.pad(x, (0, max(0, n_min - len(x)))), self.hop_length))
        order = sorted(range(len(mels)), key=lambda i: len(mels[i]))
        batches = [order[k : k + _BATCH] for k in range(0, len(order), _BATCH)]
        out = np.zeros((len(mels), len(self._view_names())), dtype=np.float32)
        if getattr(self, "_onnx", None):
            session = onnx_session(self._onnx)

            def run_onnx(idx: list[int]) -> np.ndarray:
                x, lengths = _padded(mels, idx)
                return session.run(None, {"mels": x, "lengths": lengths})[0]

            for idx, vals in zip(batches, thread_map(run_onnx, batches)):
                out[idx] = vals
            return out
        return self._view_torch(mels, batches, out)

    def _view_torch(self, mels: list[np.ndarray], batches: list[list[int]], out: np.ndarray) -> np.ndarray:
        import torch

        model = _MODEL.get()

        def run(idx: list[int]) -> np.ndarray:
            x, lengths = (torch.from_numpy(a) for a in _padded(mels, idx))
            with torch.inference_mode():
                return model.pooled(x, lengths, self._layers, self._pools).numpy()

        for idx, vals in zip(batches, _run_parallel(run, batches)):
            out[idx] = vals
        return out
