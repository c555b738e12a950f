"""Export trained models for deployment: ONNX graphs, optionally quantised to int8.

``export_onnx(model_dir, out)`` writes an artifact of family ``onnx`` (``model.json`` +
``model.onnx``) that :class:`serkit.Recognizer` loads like any other model and that runs on
onnxruntime alone (no torch). The neural ``soundnet`` and ``ssl`` families export: their whole path
from a padded waveform batch to probabilities is one network (for ``ssl``: input normalisation,
the transformers backbone with its padding masks, the layer mix and the head; checked on
wav2vec 2.0, HuBERT and WavLM at opset 17). Feature models (family ``features``, the default
model's) export as a documented chain, :func:`export_features`: their front ends stay numpy (or
openSMILE), the GE2E network and the scikit-learn classifier become ONNX graphs, and the folder
predicts without torch and scikit-learn.

The graph's inputs are ``waveform`` [shape=(batch, samples), float32 in [-1, 1] at the model's
rate] and ``lengths`` [shape=(batch,), int64, valid samples per row]; its output is
``probabilities`` [shape=(batch, n_labels)]. Both axes are dynamic. Models trained with speaker
normalisation are exported with their training-set statistics (what ``predict_proba`` does
without ``speakers``): per-speaker adaptation needs the torch model.

Requires ``pip install 'serkit[export]'`` (onnx, onnxruntime) besides torch.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..cache import plain_permissions
from ..errors import ConfigError, ModelError

__all__ = ["ONNX_FILE", "export_onnx", "export_features", "export_ge2e"]

ONNX_FILE = "model.onnx"
#: operators int8 static quantisation touches; pooling, masking and the length arithmetic stay float
_QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]
#: dynamic quantisation also takes LSTMs (onnxruntime's DynamicQuantizeLSTM; static QDQ has no LSTM):
#: the cnn-lstm's recurrent weights are most of its size
_DYNAMIC_OPS = _QUANTIZED_OPS + ["LSTM"]
#: static QDQ also takes the ReLU after a convolution: onnxruntime then drops it and quantises the convolution's
#: output on the ReLU's range [0, max] (uint8 zero point 0, so the clamp *is* the ReLU) instead of the
#: convolution's [-max, max], where half the 256 levels went to values the ReLU discards. This was where
#: SoundNet int8 lost most of its accuracy (SoundNet8 conv4, 535 held-out EmoDB clips, nothing else changed:
#: top-1 agreement with fp32 0.84 -> 0.93, mean |dp| 0.027 -> 0.011; docs/compression.md), and int8 gets
#: faster (fused QLinearConv + ReLU: 0.46 -> 0.35 ms for a 1-s window on one thread).
_STATIC_OPS = _QUANTIZED_OPS + ["Relu"]
#: default number of calibration clips: with 32 the ranges depend on which clips were drawn (three random
#: draws on each of three models: agreement with fp32 down to 0.85, max |dp| up to 0.46; with 200: >= 0.91, <= 0.18)
CALIBRATION_CLIPS = 200
#: clips per calibration pass: onnxruntime keeps every intermediate tensor of a pass in memory (200 EmoDB
#: clips through SoundNet conv5: 1.2 GB); passes of 16 merge into the same histograms (280 MB)
_CALIBRATION_STRIDE = 16
#: graph scope of a fixed log-mel front end (:class:`serkit.networks.logmel.LogMel`): kept float, since
#: power spectra span ~100 dB, which 8 bits cannot hold (and it has nothing learned to compress)
_FLOAT_SCOPES = ("/front/logmel/",)
#: exporter warnings that the agreement check below (and tests/test_export.py, tests/test_spectro.py, which
#: run other batch sizes and lengths) cover: the STFT's strided slice is not constant-folded; the LSTM
#: warns that variable-length batches *might* fail at other batch sizes (they do not: tested)
_KNOWN_EXPORT_WARNINGS = ("Constant folding - Only steps=1", "Exporting a model to ONNX with a batch_size other than 1")


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"ONNX export needs the '{module}' package; install it with pip install 'serkit[export]'"
        ) from None


def _export_module(net):
    """Wrap a fitted waveform network (a ``BlockwiseNet``) as ``(waveform [B, T], lengths [B]) -> probabilities [B, n_labels]``.

    The blocks run through the network's own traceable path (:meth:`BlockwiseNet.export_blocks`);
    a speaker-normalised head standardises with the training-set statistics.
    """
    import torch
    from torch import nn

    class Exported(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net
            head = net.head
            self.speaker_norm = bool(getattr(head, "speaker_norm", False))

        def forward(self, waveform, lengths):
            net = self.net
            h, lengths = net.export_blocks(waveform, lengths)
            p = net.pooled(h, lengths)
            if self.speaker_norm:
                p = (p - net.head.global_mean) / net.head.global_std
            return torch.softmax(net.from_pooled(p), dim=-1)

    return Exported(net).eval()


def _trace_to_onnx(module, args: tuple, path, *, inputs: list[str], output: str, dynamic: dict, opset: int) -> None:
    """``torch.onnx.export`` by tracing (not dynamo), constants folded, without the tracer warnings the
    callers' own agreement checks cover (:data:`_KNOWN_EXPORT_WARNINGS`, ``TracerWarning``)."""
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        for message in _KNOWN_EXPORT_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=[output],
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def export_onnx(
    model_dir,
    out,
    *,
    quantise: str | None = None,
    calibration: Sequence | None = None,
    calibration_clips: int | None = None,
    opset: int = 17,
    progress: bool = False,
) -> Path:
    """Export a trained ``soundnet`` model directory to an ONNX model directory.

    Parameters
    ----------
    model_dir
        A model folder written by ``serkit train`` (family ``soundnet``, ``soundnet-res`` or ``ssl``).
    out
        Folder to write: ``model.json`` (family ``onnx``) and ``model.onnx``; replaced if present.
    quantise : {None, "int8", "int8-dynamic"}
        ``"int8"``: static QDQ quantisation, per-channel int8 weights and uint8 activations
        (convolutions fused with their ReLU) whose ranges are calibrated (the 0.005th-99.995th
        percentile of each tensor's values) on ``calibration_clips`` clips; ``"int8-dynamic"``: int8 weights,
        activations quantised on the fly (no calibration data; slower than static on convolutions).
        A fixed log-mel front end stays float in both.
    calibration
        Audio files for ``"int8"`` (:func:`serkit.api.export` also takes folders and CSV manifests);
        default: clips of the corpora the model was trained on (``trained_on.corpora`` in its
        model.json), when they are present. Clips may have any lengths.
    calibration_clips
        How many clips calibrate (spread evenly over the list, each up to 5 s); default
        :data:`CALIBRATION_CLIPS` (200).
    opset
        ONNX opset, at least 17.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ConfigError
        Unsupported family, quantisation or opset; missing calibration audio; onnx missing.
    """
    from ..jsonio import json_default
    from ..models import load_model

    if quantise not in (None, "int8", "int8-dynamic"):
        raise ConfigError(f"unknown quantisation {quantise!r}; use int8 (static, calibrated) or int8-dynamic")
    if opset < 17:
        raise ConfigError(f"opset {opset} is too old; use 17 or newer")
    n_clips = CALIBRATION_CLIPS if calibration_clips is None else int(calibration_clips)
    if n_clips < 1:
        raise ConfigError(
            f"calibration_clips={calibration_clips} is too few: use at least 1 (default {CALIBRATION_CLIPS})"
        )
    _require("onnx")
    _require("onnxruntime")
    import torch

    model, meta = load_model(model_dir)
    family = meta["family"]
    if not model.exportable:
        raise ConfigError(
            f"model family {family!r} cannot be exported to ONNX; exportable families: soundnet, soundnet-res, "
            "cnn-lstm, transformer, ssl as one graph; features models (the default model's family) export as a "
            "chain with `serkit export MODEL --out DIR` (export_features)"
        )
    net = model.net_
    wrapper = _export_module(net)
    sr = int(model.sampling_rate)
    min_samples = int(getattr(net, "min_samples", 1))
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        plain_permissions(tmp, directory=True)  # mkdtemp's folder is owner-only
        fp32 = tmp / (ONNX_FILE if quantise is None else "model.fp32.onnx")
        # example batch: two clips of different lengths, so the masking path is traced
        n = max(min_samples, sr * 2)
        x = torch.zeros(2, n)
        x[0].uniform_(-0.3, 0.3)
        x[1, : n // 2].uniform_(-0.3, 0.3)
        lengths = torch.tensor([n, n // 2], dtype=torch.long)
        # the trace turns torch.as_tensor(lengths) on an already-traced tensor into a warning, not
        # a constant: the check below and tests/test_export.py run other batch sizes and lengths
        _trace_to_onnx(
            wrapper,
            (x, lengths),
            fp32,
            inputs=["waveform", "lengths"],
            output="probabilities",
            dynamic={"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}, "probabilities": {0: "batch"}},
            opset=opset,
        )
        with torch.no_grad():
            reference = wrapper(x, lengths).numpy()
        got = _run(fp32, x.numpy(), lengths.numpy())
        if not np.allclose(got, reference, atol=1e-4):
            raise ModelError(
                f"the exported graph disagrees with the torch model (max |diff| {np.abs(got - reference).max():.2e}); "
                "this is a bug: report it with the model's model.json"
            )
        quant_info = None
        if quantise == "int8":
            clips = _calibration_signals(meta, calibration, n_clips, sr, min_samples)
            _quantize_static(fp32, tmp / ONNX_FILE, clips)
            fp32.unlink()
            quant_info = {
                "method": "static QDQ, per-channel int8 weights, uint8 activations "
                "(0.005th-99.995th percentile), ReLU fused",
                "ops": _STATIC_OPS,
                "calibration_clips": len(clips),
            }
        elif quantise == "int8-dynamic":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(
                str(fp32),
                str(tmp / ONNX_FILE),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=_DYNAMIC_OPS,
                nodes_to_exclude=_float_nodes(fp32),
            )
            fp32.unlink()
            quant_info = {"method": "dynamic, per-channel int8 weights", "ops": _DYNAMIC_OPS}
        import time

        from .._version import __version__
        from ..artifact import FORMAT_VERSION

        out_meta = {
            "format_version": FORMAT_VERSION,
            "serkit_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "family": "onnx",
            "labels": list(meta["labels"]),
            "sampling_rate": sr,
            "config": {
                "file": ONNX_FILE,
                "sampling_rate": sr,
                "min_samples": min_samples,
                "opset": opset,
                "quantisation": quant_info,
                "speaker_normalisation": "training-set statistics" if wrapper.speaker_norm else None,
            },
            "source": {
                "model_dir": str(Path(model_dir).expanduser().resolve()),
                "family": family,
                "config": meta.get("config"),
                "recipe": meta.get("recipe"),
                "serkit_version": meta.get("serkit_version"),
                "created": meta.get("created"),
            },
            "recipe": meta.get("recipe") or {},
            "trained_on": meta.get("trained_on") or {},
            "metrics": meta.get("metrics") or {},
            "files": [ONNX_FILE],
            # the same network, so the same temperatures (applied by the Classifier contract on load)
            **({"calibration": meta["calibration"]} if meta.get("calibration") else {}),
        }
        (tmp / "model.json").write_text(json.dumps(out_meta, indent=2, default=json_default))
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _run(path, waveform: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"waveform": waveform.astype(np.float32), "lengths": lengths.astype(np.int64)})[0]


def _calibration_signals(meta: dict, calibration, n_clips: int, sr: int, min_samples: int) -> list[np.ndarray]:
    """Decoded calibration clips at ``sr`` (at most 5 s each, padded to ``min_samples``)."""
    from ..audio import read
    from ..errors import SerkitError

    if calibration:
        paths = [str(p) for p in calibration]
    else:
        paths = []
        for spec in (meta.get("trained_on") or {}).get("corpora") or []:
            try:
                from ..corpora import load_corpus

                paths.extend(u.path for u in load_corpus(spec))
            except SerkitError:
                continue
        if not paths:
            raise ConfigError(
                "int8 calibration needs a few training-like clips and the model's training corpora "
                f"({', '.join((meta.get('trained_on') or {}).get('corpora') or []) or 'none recorded'}) are not "
                "available here; pass --calibration PATH... (audio files, folders or a CSV manifest)"
            )
    if not paths:
        raise ConfigError(f"no audio files found in {' '.join(map(str, calibration))} for calibration")
    pick = np.unique(np.linspace(0, len(paths) - 1, min(n_clips, len(paths))).round().astype(int))
    clips = []
    for i in pick:
        try:
            x, _ = read(paths[i], sr, end=5.0)
        except SerkitError:
            continue
        if len(x) < min_samples:
            left = (min_samples - len(x)) // 2
            x = np.pad(x, (left, min_samples - len(x) - left))
        clips.append(x.astype(np.float32))
    if not clips:
        raise ConfigError("none of the calibration files could be read; pass other files with --calibration")
    return clips


def _float_nodes(path) -> list[str]:
    """Names of the graph's nodes that quantisation must leave in float (:data:`_FLOAT_SCOPES`)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node if any(scope in n.name for scope in _FLOAT_SCOPES)]


def _quantize_static(src: Path, dst: Path, clips: list[np.ndarray]) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    passes = _calibration_passes([len(x) for x in clips], _CALIBRATION_STRIDE)

    class Reader(CalibrationDataReader):
        """One clip per call, one pass of equal-length clips per ``set_range`` (onnxruntime calibrates in
        passes of ``_CALIBRATION_STRIDE`` indices and stacks the tensors of a pass, so they must share a shape)."""

        def __init__(self):
            self.items = iter(clips)

        def __len__(self):  # whole passes (onnxruntime wants a multiple of the stride); a pass may hold fewer clips
            return len(passes) * _CALIBRATION_STRIDE

        def set_range(self, start_index: int, end_index: int):
            self.items = iter([clips[i] for i in passes[start_index // _CALIBRATION_STRIDE]])

        def get_next(self):
            x = next(self.items, None)
            if x is None:
                return None
            return {"waveform": x[None, :], "lengths": np.array([len(x)], dtype=np.int64)}

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime logs "consider pre-processing" on the root logger
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its calibrator prints each pass's progress to stdout
            _quantize(quantize_static, src, dst, Reader(), QuantFormat, QuantType, CalibrationMethod)
    except ValueError as exc:  # onnxruntime's calibrator reports bad data as ValueError
        raise ModelError(
            f"int8 calibration failed in onnxruntime ({str(exc).splitlines()[0]}); try other clips with "
            "--calibration PATH..., or --quantise int8-dynamic (no calibration)"
        ) from None
    finally:
        root.setLevel(level)


def _calibration_passes(lengths: Sequence[int], stride: int) -> list[list[int]]:
    """Clip indices in calibration passes of at most ``stride`` clips of one length each.

    onnxruntime's histogram calibrator stacks a pass's tensors into one array, which fails
    ("inhomogeneous shape") when clips differ in length; clips are therefore grouped by length
    (in order of first appearance, each group in its own order). Clips of one length give the
    consecutive passes of ``stride`` clips onnxruntime would make itself.

    >>> _calibration_passes([3, 5, 3, 3, 5], 2)
    [[0, 2], [3], [1, 4]]
    """
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(int(n), []).append(i)
    return [idx[k : k + stride] for idx in groups.values() for k in range(0, len(idx), stride)]


def _quantize(quantize_static, src, dst, reader, QuantFormat, QuantType, CalibrationMethod) -> None:
    # Measured on EmoDB held-out speakers against the fp32 graph (benchmarks/compression.py, docs/compression.md):
    # per-channel 8-bit weights and uint8 activations; each activation range cuts 0.005 % of the tensor's
    # values off either end (percentile of the signed values: on the 535 clips of a 5/5 speaker split,
    # agreement 0.95 against 0.92 for onnxruntime's default |x| percentile and 0.92 for min/max, where one
    # outlier sample sets a layer's scale). Keeping the first convolution (the 8-bit waveform) or the head
    # in float, per-tensor weights, 99.9/99.999 % cuts or entropy calibration gained nothing beyond noise;
    # the first convolution in float doubled the latency.
    # Weights are *unsigned* (U8U8): on x86 CPUs without VNNI (AVX2 only) onnxruntime multiplies
    # uint8 x int8 with VPMADDUBSW, whose int16 sums saturate. On an AVX2-only AMD EPYC the quick
    # SoundNet's top-1 agreement with fp32 (385 held-out EmoDB clips) was 0.855 with int8 weights,
    # 0.881 with reduce_range (7-bit weights) and 0.914 with uint8 weights, as on a VNNI CPU (0.909).
    quantize_static(
        str(src),
        str(dst),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QUInt8,
        op_types_to_quantize=_STATIC_OPS,
        nodes_to_exclude=_float_nodes(src),
        calibrate_method=CalibrationMethod.Percentile,
        extra_options={
            "CalibPercentile": 99.99,
            "CalibTensorRangeSymmetric": False,
            "CalibStridedMinMax": _CALIBRATION_STRIDE,
        },  # (despite the name: any calibrator, in passes)
    )


# ------------------------------------------------------------------ feature models: a documented chain

#: feature sets whose front end runs in numpy (``librosa``, ``logmel``) or in openSMILE's own library,
#: so an exported feature model runs them as they are; ``ge2e`` is a network and goes into a graph
_PYTHON_FRONT_ENDS = ("librosa", "logmel", "compare", "egemaps")
#: the keys write_model sets itself; every other model.json section (calibration, adaptation,
#: enrolment, scores) travels with an export unchanged
_WRITTEN_KEYS = {"format_version", "serkit_version", "created", "family", "labels", "sampling_rate", "config", "files"}


def export_features(
    model_dir,
    out,
    *,
    opset: int = 17,
    check_signals: Sequence[np.ndarray] | None = None,
    keep_sklearn: bool = False,
) -> Path:
    """Export a ``features`` model (the default model's family) as a chain that needs neither torch
    nor scikit-learn: its numpy front ends (``librosa``, ``logmel``; openSMILE's own library for
    ``compare`` / ``egemaps``) → the GE2E network and its pooling as one ONNX graph per ``ge2e``
    feature set (``ge2e_K.onnx``: ``mels [batch, frames, 40]``, ``lengths [batch]`` → ``features [batch, d]``) → standardisation
    (numpy, :mod:`serkit.speakers`: single clips with the training statistics, or per speaker / per
    file when asked) → the classifier as ONNX (``classifier.onnx``: skl2onnx, float64, the scaler and
    the linear model). The folder stays a ``features`` model (``config.onnx`` lists the graphs), so
    ``serkit predict``, ``serve``, ``adapt``, ``info`` and the temperatures work on it unchanged.

    ``keep_sklearn`` also keeps the scikit-learn classifier (``estimators.skops``), so the folder can
    be exported again and loads where onnxruntime is missing (the shipped default model is written
    so; ``out`` may then be ``model_dir``).

    Before it is written, the chain's probabilities are compared with the Python model's on
    ``check_signals`` (default: eight seeded synthetic 1–3 s signals): more than 1e-4 apart is a bug
    and raises :class:`ModelError`.
    """
    from ..artifact import load_skops, model_file, replace_directory, write_model
    from ..models import load_model
    from ..models.features import FeatureClassifier, OnnxEstimator, _feature_spec

    _require("onnx")
    _require("onnxruntime")
    skl2onnx = _require("skl2onnx")
    model, meta = load_model(model_dir)
    if not isinstance(model, FeatureClassifier):  # pragma: no cover - export() routes by family
        raise ConfigError(f"export_features takes a features model, not {meta['family']!r}")
    skops = model_file(model_dir, "estimators.skops", required=False)
    if keep_sklearn and not skops.exists():
        raise ConfigError(f"'{model_dir}' has no scikit-learn classifier (estimators.skops) to keep")
    if any(isinstance(e, OnnxEstimator) for e in model.estimators_):
        if not skops.exists():
            raise ConfigError(f"'{model_dir}' is already an ONNX export; export its source model instead")
        model.estimators_ = load_skops(skops)  # the scikit-learn original, not an earlier export
        model.onnx_ = None
        del model._extractors_cache  # extractors that run torch again, for the reference
    if model.classifier == "stacking" or len(model.estimators_) != 1:
        raise ConfigError("a stacking feature model cannot be exported yet; use classifier: logreg or svm-linear")
    names = [_feature_spec(f)[0] for f in model.features]
    unsupported = [n for n in names if n not in _PYTHON_FRONT_ENDS + ("ge2e",)]
    if unsupported:
        raise ConfigError(
            f"feature set {unsupported[0]!r} has no exportable front end; a features model exports when its sets are "
            f"ge2e or {', '.join(_PYTHON_FRONT_ENDS)}"
        )
    signals = list(check_signals) if check_signals is not None else _check_signals(model.sampling_rate)
    expected = model.predict_proba(signals, adapt=False)
    est = model.estimators_[0]
    width = sum(b.shape[1] for b in model._blocks_from_signals(signals[:1])[0])  # every feature set of one view

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="serkit-export-") as work:
            work = Path(work)  # graphs are made here; save_weights copies them into the model folder
            networks = {}
            for k, (name, e) in enumerate(zip(names, model._extractors())):
                if name == "ge2e":
                    networks[str(k)] = f"ge2e_{k}.onnx"
                    export_ge2e(e, work / networks[str(k)], opset=opset)
            final = est[-1] if hasattr(est, "steps") else est
            onx = skl2onnx.to_onnx(
                est,
                np.zeros((1, width), dtype=np.float64),
                options={id(final): {"zipmap": False}},
                target_opset={"": opset, "ai.onnx.ml": 3},
            )
            (work / "classifier.onnx").write_bytes(onx.SerializeToString())
            classes = np.asarray(final.classes_, dtype=np.int64).tolist()
            output = "decision_function" if model._decision_calibrated() else "predict_proba"
            spec = {
                "classifier": {"file": "classifier.onnx", "classes": classes, "output": output},
                "networks": networks,
                "opset": opset,
            }
            model.estimators_ = [OnnxEstimator(work / "classifier.onnx", classes, output)]
            for k, file in networks.items():
                model._extractors()[int(k)].use_onnx(work / file)
            model.onnx_ = {**spec, "paths": {f: str(work / f) for f in ["classifier.onnx", *networks.values()]}}
            got = model.predict_proba(signals, adapt=False)
            diff = float(np.abs(got - expected).max())
            if diff > 1e-4:
                raise ModelError(
                    f"the exported chain disagrees with the Python model (max |dp| {diff:.2e}); this is a bug: "
                    "report it with the model's model.json"
                )
            extra = {k: v for k, v in meta.items() if k not in _WRITTEN_KEYS | {"recipe", "trained_on", "metrics"}}
            same = Path(model_dir).expanduser().resolve() == Path(out).expanduser().resolve()
            extra["export"] = {
                "format": "onnx chain",
                "source": "this folder, exported in place" if same else str(Path(model_dir).expanduser().resolve()),
                "source_created": meta.get("created"),
                "check": {"signals": len(signals), "max_abs_diff": diff},
            }
            if keep_sklearn:
                shutil.copyfile(skops, tmp / "estimators.skops")
                extra["export"]["kept"] = "estimators.skops"
            write_model(
                model,
                tmp,
                recipe=meta.get("recipe"),
                trained_on=meta.get("trained_on"),
                metrics=meta.get("metrics"),
                extra=extra,
            )
            if keep_sklearn:  # listed with the model's files
                written = json.loads((tmp / "model.json").read_text())
                written["files"].append("estimators.skops")
                (tmp / "model.json").write_text(json.dumps(written, indent=2))

    return replace_directory(Path(out).expanduser(), write)


def export_ge2e(extractor, path, *, opset: int = 17) -> Path:
    """The GE2E encoder of a ``ge2e`` feature set and its pooling as one ONNX graph:
    ``mels [batch, frames, 40]`` (:func:`serkit.features.ge2e.mel_frames`, zero-padded) and
    ``lengths [batch]`` (valid frames) → ``features [batch, d]``, the extractor's layers and statistics
    in its order. The LSTMs run forward only, so a clip's valid frames do not depend on the padding
    after them; statistics are masked and the embedding is taken at each clip's last valid frame, so
    every row equals its clip run alone (checked against the torch encoder at 1e-4)."""
    import torch
    from torch import nn

    from ..features.ge2e import _MODEL

    encoder = _MODEL.get()
    layers, pools = list(extractor._layers), list(extractor._pools)

    class Pooled(nn.Module):  # SpeakerEncoder.pooled with the extractor's layers and statistics fixed
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, mels, lengths):
            return self.encoder.pooled(mels, lengths, layers, pools)

    net = Pooled().eval()
    x = torch.rand(2, 120, 40) * 3
    lengths = torch.tensor([120, 70])
    _trace_to_onnx(  # the LSTM's shape checks warn; checked below
        net,
        (x, lengths),
        path,
        inputs=["mels", "lengths"],
        output="features",
        dynamic={"mels": {0: "batch", 1: "frames"}, "lengths": {0: "batch"}, "features": {0: "batch"}},
        opset=opset,
    )
    with torch.no_grad():
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for n in (37, 300):  # batches of three clips against each clip alone through the torch encoder
            m = torch.rand(3, n, 40) * 3
            lens = torch.tensor([n, n // 2, max(1, n // 5)])
            alone = np.concatenate([net(m[i : i + 1, : int(k)], lens[i : i + 1]).numpy() for i, k in enumerate(lens)])
            got = session.run(None, {"mels": m.numpy(), "lengths": lens.numpy().astype(np.int64)})[0]
            diff = float(np.abs(got - alone).max())
            if diff > 1e-4:
                raise ModelError(f"the exported GE2E graph disagrees with torch (max |diff| {diff:.2e}); this is a bug")
    return Path(path)


def _check_signals(sampling_rate: int, n: int = 8) -> list[np.ndarray]:
    """Seeded speech-like test signals (1–3 s): harmonic tones with a moving pitch, noise and pauses."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        t = np.arange(int(sampling_rate * (1.0 + 2.0 * i / max(1, n - 1)))) / sampling_rate
        f0 = 110 + 120 * rng.random() + 30 * np.sin(2 * np.pi * (0.5 + rng.random()) * t)
        phase = 2 * np.pi * np.cumsum(f0) / sampling_rate
        x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.0 * t) ** 2)
        x = 0.1 * x + 0.01 * rng.standard_normal(len(t))
        out.append(x.astype(np.float32))
    return out
