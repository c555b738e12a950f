"""Exported models (family ``onnx``): a graph from padded waveforms to probabilities, run by onnxruntime.

Written by :func:`serkit.deploy.export.export_onnx`; loading needs onnxruntime only (no torch). The
graph takes ``waveform`` [shape=(batch, samples), float32 at the model's rate] and ``lengths``
[shape=(batch,), int64] and returns ``probabilities`` [shape=(batch, n_labels)].
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..audio import pad_to
from ..errors import ConfigError, ModelError
from .base import Classifier, register_model

__all__ = ["OnnxClassifier"]


@register_model("onnx")
class OnnxClassifier(Classifier):
    """Predict with an exported ONNX graph.

    Parameters
    ----------
    threads
        onnxruntime intra-op threads (default ``$SERKIT_ONNX_THREADS``, else onnxruntime's own
        choice). A runtime option: never saved with the model.
    batch_seconds
        Padded audio per inference batch (seconds); clips are grouped by length to pad little.

    Attributes
    ----------
    labels_ : list of str
    config_ : dict
        The ``config`` section of ``model.json`` (file, min_samples, quantisation, …).
    session_ : onnxruntime.InferenceSession
    """

    def __init__(self, *, threads: int | None = None, batch_seconds: float = 60.0):
        self.threads = threads
        self.batch_seconds = batch_seconds

    def fit(self, utterances, *, progress: bool = True):
        raise ModelError(
            "ONNX models are exported, not trained: train a neural model (soundnet, cnn-lstm, transformer, ssl), then `serkit export` it"
        )

    @property
    def normalisation(self) -> str:  # type: ignore[override]
        """``"global"`` for an export of a speaker-normalised network (the graph standardises with the
        training set's statistics; it cannot adapt), else ``"none"``."""
        return "global" if getattr(self, "config_", {}).get("speaker_normalisation") else "none"

    def _predict_signals(self, signals: list[np.ndarray], speakers: list[str] | None) -> np.ndarray:
        """Signals shorter than the network's receptive field are zero-padded symmetrically; the graph
        does not adapt to speakers (:attr:`adapts_to_speakers` is false)."""
        signals = [np.asarray(s, dtype=np.float32) for s in signals]
        n_labels = len(self.labels_)
        if not signals:
            return np.zeros((0, n_labels), dtype=np.float32)
        need = int(self.config_.get("min_samples", 1))
        for i, s in enumerate(signals):
            if s.ndim != 1 or s.size == 0:
                raise ModelError(
                    f"signal {i} has shape {s.shape}; pass non-empty mono float32 arrays at {self.sampling_rate} Hz"
                )
        signals = [pad_to(s, need) for s in signals]
        lengths = np.array([len(s) for s in signals], dtype=np.int64)
        out = np.empty((len(signals), n_labels), dtype=np.float32)
        budget = max(int(self.batch_seconds * self.sampling_rate), int(lengths.max()))
        order = np.argsort(lengths, kind="stable")
        start = 0
        while start < len(order):
            stop = start + 1
            # grow the batch while (items × longest) stays within the padded-audio budget
            while stop < len(order) and (stop - start + 1) * lengths[order[stop]] <= budget:
                stop += 1
            idx = order[start:stop]
            x = np.zeros((len(idx), int(lengths[idx].max())), dtype=np.float32)
            for row, i in enumerate(idx):
                x[row, : lengths[i]] = signals[i]
            out[idx] = self.session_.run(None, {"waveform": x, "lengths": lengths[idx]})[0]
            start = stop
        return out

    # -- persistence ------------------------------------------------------------------------------
    def config(self) -> dict:
        self._check_fitted()
        return dict(self.config_)

    def save_weights(self, directory: Path) -> list[str]:
        self._check_fitted()
        name = self.config_.get("file", "model.onnx")
        (Path(directory) / name).write_bytes(self.model_bytes_)
        return [name]

    @classmethod
    def from_weights(cls, directory: Path, config: dict, labels: list[str]) -> OnnxClassifier:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError(
                "this model is an ONNX export; install onnxruntime (pip install 'serkit[export]')"
            ) from None
        from ..artifact import model_file

        path = model_file(directory, config.get("file", "model.onnx"))
        model = cls()
        threads = os.environ.get("SERKIT_ONNX_THREADS")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        model.model_bytes_ = path.read_bytes()
        model.folder_ = _check_external_data(model.model_bytes_, directory)
        try:
            model.session_ = _session(ort, model.model_bytes_, options, model.folder_)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph errors
            raise ModelError(f"cannot load '{path}' with onnxruntime ({exc}); export the model again") from None
        model.labels_ = list(labels)
        model.config_ = dict(config)
        model.sampling_rate = int(config.get("sampling_rate") or 0) or model.sampling_rate
        return model

    def set_threads(self, threads: int) -> OnnxClassifier:
        """Rebuild the session with ``threads`` intra-op threads (1 for lowest single-stream latency)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        self.session_ = _session(ort, self.model_bytes_, options, getattr(self, "folder_", None))
        self.threads = threads
        return self


def _session(ort, model_bytes: bytes, options, folder: Path | None):
    """An onnxruntime session whose external data (if any) resolves in the model folder, never the cwd."""
    if folder is not None:
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(folder))
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def _check_external_data(model_bytes: bytes, directory) -> Path:
    """Every external-data file the graph names must be inside the model folder; returns the folder.

    serkit's exporter writes self-contained graphs; a hand-made one may keep tensors in side files.
    With ``onnx`` installed each location is checked by :func:`serkit.artifact.model_file` (no absolute
    path, no ``..``, no link out); onnxruntime then reads them relative to the model folder (its own
    check refuses absolute and climbing paths when ``onnx`` is absent).
    """
    from ..artifact import model_file

    folder = Path(directory).expanduser().resolve()
    try:
        import onnx
        from onnx.external_data_helper import _get_all_tensors
    except ImportError:
        return folder
    try:
        proto = onnx.ModelProto()
        proto.ParseFromString(model_bytes)
    except Exception:  # onnxruntime reports the damaged graph with its own message next
        return folder
    for tensor in _get_all_tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            model_file(folder, location)
    return folder
