"""`serkit export`: ONNX graphs of SoundNet models agree with torch; int8 is smaller and close; Recognizer loads them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from serkit.audio import resample  # noqa: E402
from serkit.cli import main  # noqa: E402
from serkit.errors import ConfigError  # noqa: E402
from serkit.inference import DEFAULT_MODEL_DIR, Recognizer  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tests.quick_models import quick_soundnet

    return quick_soundnet(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def clips():
    """Held-out EmoDB clips (speakers the quick model did not train on), at 22 050 Hz."""
    from serkit.audio import read
    from tests.conftest import data_dir

    files = sorted((data_dir("emodb") / "wav").glob("1[0-6]*.wav"))[::6][:40]
    return files, [read(f, 22050)[0] for f in files]


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    assert main(["export", str(model_dir), "--format", "onnx", "--out", str(root / "fp32"), "-q"]) == 0
    assert main(["export", str(model_dir), "--quantise", "int8", "--out", str(root / "int8"), "-q"]) == 0
    return root


def test_onnx_fp32_matches_torch(model_dir, exported, clips):
    torch_rec, onnx_rec = Recognizer.load(model_dir), Recognizer.load(exported / "fp32")
    meta = json.loads((exported / "fp32" / "model.json").read_text())
    assert meta["family"] == "onnx" and meta["labels"] == torch_rec.labels and meta["sampling_rate"] == 22050
    assert meta["source"]["family"] == "soundnet"
    # batches of mixed lengths (padding + masking), a clip shorter than the receptive field, one alone
    signals = clips[1] + [np.random.default_rng(0).uniform(-0.1, 0.1, 300).astype(np.float32)]
    p_torch = torch_rec.classifier.predict_proba(signals)
    p_onnx = onnx_rec.classifier.predict_proba(signals)
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-5)  # float32 rounding only
    np.testing.assert_allclose(onnx_rec.classifier.predict_proba(signals[:1]), p_torch[:1], atol=1e-5)


def test_int8_is_smaller_and_close(model_dir, exported, clips):
    fp32 = (exported / "fp32" / "model.onnx").stat().st_size
    int8 = (exported / "int8" / "model.onnx").stat().st_size
    assert fp32 / int8 >= 3.0, (fp32, int8)
    meta = json.loads((exported / "int8" / "model.json").read_text())
    assert meta["config"]["quantisation"]["calibration_clips"] >= 16
    p_torch = Recognizer.load(model_dir).classifier.predict_proba(clips[1])
    p_int8 = Recognizer.load(exported / "int8").classifier.predict_proba(clips[1])
    # loose bounds against torch on 40 clips (the quick model's probabilities are flat, so near-ties
    # flip); test_int8_agrees_with_fp32_on_held_out_speakers checks the quantiser itself, tightly
    assert np.abs(p_int8 - p_torch).mean() < 0.05
    assert (p_int8.argmax(1) == p_torch.argmax(1)).mean() >= 0.7


@pytest.fixture(scope="module")
def held_out():
    """Every EmoDB clip of the 7 speakers the quick model did not train on (385 clips, 22 050 Hz)."""
    from serkit.audio import read
    from serkit.corpora import load_corpus
    from tests.conftest import data_dir
    from tests.quick_models import SPEAKERS

    utterances = load_corpus(f"emodb:{data_dir('emodb')}")
    return (
        [u.path for u in utterances if u.speaker in SPEAKERS],
        [read(u.path, 22050)[0] for u in utterances if u.speaker not in SPEAKERS],
    )


def test_int8_agrees_with_fp32_on_held_out_speakers(model_dir, held_out, tmp_path):
    """The default int8 export against its own fp32 graph, calibrated on training speakers only.

    Measured on this model (SoundNet8 conv5, 385 clips): top-1 agreement 0.909, mean |dp| 0.0098,
    max |dp| 0.104, and every changed label had an fp32 top-2 margin below 0.1 (near-ties) on a
    CPU with VNNI; 0.914, 0.0102, 0.109 on an AVX2-only CPU with the uint8 weights the export now
    writes (int8 weights saturated there: 0.855, 0.018, a 0.165-margin label changed). The
    previous default (ReLU outside the quantised convolution, |x| percentile, 32 clips) gave 0.865,
    0.0169 and 0.141 and fails the first two bounds; a 1-s window ran in 0.37 ms against 1.17 ms.
    """
    from serkit.deploy.export import export_onnx

    calibration, signals = held_out
    fp32 = export_onnx(model_dir, tmp_path / "fp32")
    int8 = export_onnx(model_dir, tmp_path / "int8", quantise="int8", calibration=calibration)
    assert (fp32 / "model.onnx").stat().st_size / (int8 / "model.onnx").stat().st_size >= 3.0
    p32 = Recognizer.load(fp32).classifier.predict_proba(signals)
    p8 = Recognizer.load(int8).classifier.predict_proba(signals)
    dp = np.abs(p8 - p32)
    agree = p8.argmax(1) == p32.argmax(1)
    top2 = np.sort(p32, axis=1)[:, -2:]
    assert agree.mean() >= 0.88, agree.mean()
    assert dp.mean() < 0.014, dp.mean()
    assert dp.max() < 0.2, dp.max()
    assert agree[top2[:, 1] - top2[:, 0] > 0.15].all()  # only near-ties may change label


def test_calibration_clips_must_be_positive(model_dir, tmp_path):
    from serkit.deploy.export import export_onnx

    with pytest.raises(ConfigError, match="calibration_clips=0 is too few"):
        export_onnx(model_dir, tmp_path / "out", quantise="int8", calibration_clips=0)


def test_predict_with_the_exported_dir(exported, clips, tmp_path, capsys):
    rec = Recognizer.load(exported / "int8")
    row = rec.predict_file(clips[0][0]).iloc[0]
    assert row["error"] == "" and row["label"] in rec.labels
    out = tmp_path / "p.jsonl"
    assert main(["predict", "-q", "--model", str(exported / "fp32"), *map(str, clips[0][:3]), "--out", str(out)]) == 0
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(rows) == 3 and all(r["error"] == "" for r in rows)


def test_feature_models_export_as_a_chain_not_one_graph(small_model_dir, tmp_path, capsys, clips):
    """export_onnx (one graph) refuses a features model and names the chain; `serkit export` writes the
    chain: an eGeMAPS + decision-calibrated linear SVM model exports with skl2onnx, needs no
    scikit-learn file, and predicts real clips as the source model does."""
    from serkit.deploy.export import export_onnx
    from serkit.models import load_model

    with pytest.raises(ConfigError, match="export as a chain"):
        export_onnx(small_model_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert main(["export", str(small_model_dir), "--out", str(tmp_path / "chain"), "-q"]) == 0
    assert not (tmp_path / "chain" / "estimators.skops").exists()
    assert (tmp_path / "chain" / "classifier.onnx").exists()
    source, _ = load_model(small_model_dir)
    exported, meta = load_model(tmp_path / "chain")
    assert meta["config"]["onnx"]["classifier"]["output"] == "decision_function"
    assert type(exported.estimators_[0]).__name__ == "OnnxEstimator"
    signals = [resample(x, 22050, 16000) for x in clips[1][:8]]
    np.testing.assert_allclose(exported.predict_proba(signals), source.predict_proba(signals), atol=1e-6)
    with pytest.raises(ConfigError, match="quantisation"):
        from serkit.api import export

        export(small_model_dir, tmp_path / "q", quantise="int8")


def test_a_features_model_with_soundnet_features_says_what_exports(tmp_path):
    """The feature-set check runs before anything is exported: a soundnet feature set is named."""
    from serkit.deploy.export import export_features

    d = tmp_path / "m"
    shutil.copytree(DEFAULT_MODEL_DIR, d)
    meta = json.loads((d / "model.json").read_text())
    meta["config"]["features"][0] = {"name": "soundnet", "layer": "conv4"}
    del meta["config"]["onnx"]  # the scikit-learn classifier is there too
    (d / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="'soundnet' has no exportable front end"):
        export_features(d, tmp_path / "out")


def test_int8_without_calibration_audio_says_what_to_pass(model_dir, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(model_dir, d)
    meta = json.loads((d / "model.json").read_text())
    meta["trained_on"] = {"corpora": [f"emodb:{tmp_path / 'gone'}"]}
    (d / "model.json").write_text(json.dumps(meta))
    from serkit.deploy.export import export_onnx

    with pytest.raises(ConfigError, match="--calibration"):
        export_onnx(d, tmp_path / "out", quantise="int8")


def test_int8_calibrates_on_clips_of_mixed_lengths(tmp_path):
    """Issue 13 item 6: onnxruntime's calibrator stacks the tensors of a pass, so clips of different
    lengths (RAVDESS: 3-5 s) ended in "inhomogeneous shape"; they are now calibrated in passes of one length."""
    from serkit.artifact import save_model
    from serkit.audio import read
    from serkit.corpora import load_corpus
    from serkit.deploy.export import _calibration_passes
    from serkit.models.neural import SoundNetClassifier
    from tests.conftest import data_dir

    spec = f"ravdess:{data_dir('ravdess-sample')}"
    utterances = load_corpus(spec)[:20]
    model = SoundNetClassifier(backbone="soundnet-res", train={"epochs": 1, "val_fraction": 0.0, "min_epochs": 1})
    model.fit(utterances, progress=False)
    src = save_model(model, tmp_path / "m", trained_on={"corpora": [spec], "n_utterances": len(utterances)})
    signals = [read(u.path, 16000, end=5.0)[0] for u in utterances]
    lengths = [len(x) for x in signals]
    assert len(set(lengths)) > 5  # the fault needs clips of different lengths
    passes = _calibration_passes(lengths, 16)
    assert sorted(i for p in passes for i in p) == list(range(len(signals)))
    assert all(len({lengths[i] for i in p}) == 1 and len(p) <= 16 for p in passes)
    # through the CLI, calibrated on the model's own training corpus (recorded in model.json)
    out = tmp_path / "int8"
    assert main(["export", str(src), "--quantise", "int8", "--calibration-clips", "20", "--out", str(out), "-q"]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["config"]["quantisation"]["calibration_clips"] == 20
    fp32 = main(["export", str(src), "--out", str(tmp_path / "fp32"), "-q"])
    assert fp32 == 0
    p32 = Recognizer.load(tmp_path / "fp32").classifier.predict_proba(signals)
    p8 = Recognizer.load(out).classifier.predict_proba(signals)
    assert np.abs(p8 - p32).mean() < 0.05, np.abs(p8 - p32).mean()


def test_calibration_passes_keep_onnxruntime_passes_for_equal_lengths():
    from serkit.deploy.export import _calibration_passes

    assert _calibration_passes([100] * 35, 16) == [list(range(16)), list(range(16, 32)), [32, 33, 34]]
    assert _calibration_passes([3, 5, 3, 3, 5], 2) == [[0, 2], [3], [1, 4]]


def test_export_verb_expands_calibration_folders(tmp_path):
    """api.export (what the CLI runs) turns folders and manifests into files before deploy sees them."""
    from serkit import api

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no audio files found in the --calibration paths"):
        api.export(tmp_path / "model", tmp_path / "out", quantise="int8", calibration=[empty])
    with pytest.raises(ConfigError, match="unknown export format 'tflite'"):
        api.export(tmp_path / "model", tmp_path / "out", format="tflite")


def test_export_keeps_the_temperature(model_dir, clips, tmp_path):
    """A calibrated model's ONNX export applies the same temperature (the Classifier contract, on load)."""
    from serkit.deploy.export import export_onnx

    d = tmp_path / "calibrated"
    shutil.copytree(model_dir, d)
    meta = json.loads((d / "model.json").read_text())
    meta["calibration"] = {"method": "temperature", "temperature": {"none": 2.0, "speaker": 2.0}}
    (d / "model.json").write_text(json.dumps(meta))
    out = export_onnx(d, tmp_path / "onnx")
    assert json.loads((out / "model.json").read_text())["calibration"]["temperature"]["none"] == 2.0
    torch_rec, onnx_rec = Recognizer.load(d), Recognizer.load(out)
    assert onnx_rec.classifier.temperatures == {"none": 2.0, "speaker": 2.0}
    signals = clips[1][:4]
    np.testing.assert_allclose(
        onnx_rec.classifier.predict_proba(signals), torch_rec.classifier.predict_proba(signals), atol=1e-5
    )
