"""Domain adaptation beyond post-hoc CORAL: Deep CORAL / MMD losses, AdaBN, train-time CORAL, the errors.

Known answers on hand examples and synthetic data; the networks are tiny (a few clips of synthetic
audio, one or two epochs), so every test runs in seconds.
"""

import json

import numpy as np
import pytest
import torch
from torch import nn

from serkit.adaptation import check_method, fit_with_target
from serkit.corpora import Utterance
from serkit.domain import mmd as numpy_mmd
from serkit.errors import ConfigError
from serkit.metrics import unweighted_accuracy
from serkit.models.features import FeatureClassifier
from serkit.networks.domain_losses import coral_loss, mmd_loss
from serkit.training.adabn import adapt_batchnorm

# -- the losses ---------------------------------------------------------------------------------------


def test_coral_loss_is_zero_for_identical_batches_and_matches_the_closed_form():
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(0))
    assert float(coral_loss(x, x.clone())) == pytest.approx(0.0, abs=1e-12)
    # C_s = [[2, 0], [0, 0]] and C_t = [[0, 0], [0, 2]] (unbiased, n = 2): ||C_s - C_t||^2 = 8, / (4 d^2) = 16
    s = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0], [0.0, -1.0]])
    assert float(coral_loss(s, t)) == pytest.approx(0.5)
    # a 3-D example against numpy's covariance: ||cov_s - cov_t||_F^2 / 36
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(7, 3)), 2.0 * rng.normal(size=(9, 3))
    want = np.sum((np.cov(a.T) - np.cov(b.T)) ** 2) / 36
    ta = torch.tensor(a, requires_grad=True)
    loss = coral_loss(ta, torch.tensor(b))
    assert float(loss.detach()) == pytest.approx(want, rel=1e-10)
    loss.backward()
    assert ta.grad is not None and float(ta.grad.abs().sum()) > 0


def test_mmd_loss_is_zero_for_identical_samples_grows_with_a_shift_and_matches_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 4))
    assert float(mmd_loss(torch.tensor(x), torch.tensor(x))) == pytest.approx(0.0, abs=1e-10)
    y = rng.normal(size=(40, 4))
    values = [float(mmd_loss(torch.tensor(x), torch.tensor(y + shift))) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert values[0] < values[1] < values[2] < values[3]
    assert values[3] > 5 * values[0]  # two samples of one distribution differ only by chance
    # the same biased multi-kernel estimator as serkit.domain.mmd (median-heuristic bandwidths)
    assert values[2] == pytest.approx(numpy_mmd(x, y + 1.0), rel=1e-6)


# -- AdaBN on a tiny network --------------------------------------------------------------------------


class _Tiny(nn.Module):
    """waveform → conv → batch norm → ReLU → mean over time → linear."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(1, 3, 5)
        self.bn = nn.BatchNorm1d(3)
        self.linear = nn.Linear(3, 2)

    def forward(self, x, lengths=None):
        return self.linear(torch.relu(self.bn(self.conv(x[:, None]))).mean(-1))


def test_adabn_sets_the_batch_norm_statistics_to_the_targets_and_changes_predictions():
    rng = np.random.default_rng(3)
    net = _Tiny().eval()
    source = rng.normal(size=(20, 200)).astype(np.float32)
    with torch.no_grad():  # the "training" statistics: those of the source
        h = net.conv(torch.from_numpy(source)[:, None])
        net.bn.running_mean.copy_(h.mean((0, 2)))
        net.bn.running_var.copy_(h.var((0, 2), unbiased=True))
    target = (4.0 * rng.normal(size=(24, 200)) + 2.0).astype(np.float32)  # another gain and offset
    with torch.no_grad():
        before = net(torch.from_numpy(target))
    assert adapt_batchnorm(net, list(target), batchnorms := [net.bn], batch_size=64) == 1
    with torch.no_grad():
        h = net.conv(torch.from_numpy(target)[:, None])
        after = net(torch.from_numpy(target))
    np.testing.assert_allclose(net.bn.running_mean.numpy(), h.mean((0, 2)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.bn.running_var.numpy(), h.var((0, 2), unbiased=True).numpy(), rtol=1e-4)
    assert not net.training and net.bn.momentum == 0.1 and batchnorms == [net.bn]
    assert float((after - before).abs().max()) > 0.1


# -- train-time CORAL on synthetic Gaussians ----------------------------------------------------------


def test_train_time_coral_lifts_target_accuracy_of_a_linear_classifier():
    rng = np.random.default_rng(4)
    d, n = 6, 150
    means = np.zeros((3, d))
    means[0, 0], means[1, 1], means[2, 2] = 3.0, 3.0, 3.0
    y = np.arange(n) % 3
    labels = [("angry", "happy", "sad")[k] for k in y]
    speakers = np.array([f"s{i % 3}" for i in range(n)])
    xs = means[y] + rng.normal(size=(n, d))
    # the target: other clips of the same classes, rotated by 0.5 rad in one plane, scaled unevenly and
    # moved (another channel). CORAL matches second-order statistics only: it undoes scale and
    # correlation, not an arbitrary rotation of the class structure (a rotation by 90 degrees is not undone)
    rot = np.eye(d)
    rot[:2, :2] = [[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]]
    yt = rng.integers(0, 3, size=120)
    xt = (means[yt] + rng.normal(size=(120, d))) @ (rot @ np.diag([3.0, 0.4, 2.0, 1.0, 1.0, 1.0])) + 1.0

    def model():
        return FeatureClassifier(["librosa"], classifier="logreg", normalisation="global", grid={"C": [1.0]})

    def ua(m):
        p = m._proba_from_views([[xt]], None)
        return unweighted_accuracy([("angry", "happy", "sad")[k] for k in yt], [m.labels_[i] for i in p.argmax(1)])

    plain = model().fit_features([xs], labels, speakers)
    adapted = model()._fit_views([[xs]], labels, speakers, target_views=[[xt]])
    assert ua(plain) < 0.7 and ua(adapted) > 0.9, (ua(plain), ua(adapted))  # measured: 0.668 -> 0.918
    # the stored statistics are the fitted (re-coloured) rows': the target's single-utterance mean
    rows_t = adapted._domain_rows([[xt]])[0]
    np.testing.assert_allclose(adapted.source_stats_[0].mean, rows_t.mean(0), atol=1e-8)
    assert adapted.domain_map_ is None  # nothing to map at prediction time


# -- the networks: a tiny cnn-lstm on synthetic audio ---------------------------------------------------

SR = 16000


def _clip(kind: str, rng, gain=1.0, tilt=0.0) -> np.ndarray:
    t = np.arange(int(0.6 * SR)) / SR
    if kind == "tone":
        x = 0.3 * np.sin(2 * np.pi * (300 + 40 * rng.normal()) * t)
    else:
        x = 0.2 * rng.normal(size=t.size)
    x = x + 0.02 * rng.normal(size=t.size) + tilt * np.sin(2 * np.pi * 3000 * t)
    return (gain * x).astype(np.float32)


def _write(folder, name, x):
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.wav"
    sf.write(str(path), x, SR)
    return str(path)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """24 labelled clips of 3 speakers (tone = 'happy', noise = 'sad') and 24 unlabelled target clips
    recorded louder with a 3 kHz hum; a manifest of the source."""
    root = tmp_path_factory.mktemp("da")
    rng = np.random.default_rng(5)
    source, rows = [], ["path,label,speaker"]
    for i in range(24):
        kind = "tone" if i % 2 else "noise"
        label = "happy" if kind == "tone" else "sad"
        path = _write(root / "source", f"s{i}", _clip(kind, rng))
        source.append(Utterance(f"s{i}", path, label, f"spk{i % 3}", "synthetic"))
        rows.append(f"{path},{label},spk{i % 3}")
    (root / "source.csv").write_text("\n".join(rows) + "\n")
    target = []
    for i in range(24):
        path = _write(root / "target", f"t{i}", _clip("tone" if i % 2 else "noise", rng, gain=3.0, tilt=0.3))
        target.append(Utterance(f"t{i}", path, "", "target", "target"))
    return {"root": root, "source": source, "target": target}


def _tiny_cnn_lstm(epochs=1, **train):
    from serkit.models import build_model

    return build_model(
        {
            "family": "cnn-lstm",
            "n_mels": 16,
            "channels": [4, 8],
            "lstm_hidden": 8,
            "spec_augment": False,
            "train": {
                "epochs": epochs,
                "val_fraction": 0.0,
                "min_epochs": 1,
                "batch_size": 8,
                "crop_seconds": 0.5,
                "normalisation": "speaker",
                **train,
            },
        }
    )


def test_deep_coral_and_mmd_train_with_target_batches(synthetic):
    for method in ("deep-coral", "mmd"):
        model, used = fit_with_target(_tiny_cnn_lstm(), synthetic["source"], synthetic["target"], method=method)
        assert used == method and model.training_["epochs_run"] == 1
        p = model.predict_proba_utterances(synthetic["target"], adapt=False, progress=False)
        assert p.shape == (24, 2) and np.all(np.isfinite(p))
    # the loss is in the gradient: a huge λ moves the weights elsewhere than λ = 0 does
    w = {}
    for lam in (0.0, 100.0):
        m, _ = fit_with_target(_tiny_cnn_lstm(domain_weight=lam), synthetic["source"], synthetic["target"])
        w[lam] = torch.cat([p.detach().flatten() for p in m.net_.parameters()])
    assert not torch.allclose(w[0.0], w[100.0])


@pytest.mark.slow  # ~25 s, most of it the ONNX export
def test_adabn_on_a_saved_network_records_itself_and_onnx_keeps_it(synthetic, tmp_path):
    pytest.importorskip("onnxruntime")
    from serkit.adaptation import adapt_model
    from serkit.artifact import save_model
    from serkit.audio import read
    from serkit.cli import main
    from serkit.models import load_model

    model = _tiny_cnn_lstm(epochs=2).fit(synthetic["source"], progress=False)
    src = save_model(model, tmp_path / "torch", trained_on={"corpora": ["manifest:x"], "n_utterances": 24})
    folder = synthetic["root"] / "target"
    few = tmp_path / "few"
    few.mkdir()
    for u in synthetic["target"][:5]:
        (few / u.path.split("/")[-1]).write_bytes(open(u.path, "rb").read())
    with pytest.raises(ConfigError, match="adabn needs at least 20 target clips.*the target has 5"):
        adapt_model(src, str(few), out=tmp_path / "no", method="adabn")
    out, info = adapt_model(src, str(folder), out=tmp_path / "adabn", method="adabn")
    meta = json.loads((out / "model.json").read_text())
    assert meta["adaptation"]["method"] == "adabn" and meta["adaptation"]["n_files"] == 24
    assert (
        len(meta["adaptation"]["content_hash"]) == 64 and info["backbone_batchnorms"] == 3
    )  # the log-mel input norm and two conv blocks

    adapted, _ = load_model(out)
    unadapted, _ = load_model(src)
    # the conv blocks' batch norms now hold the target's statistics
    bn = [m.net_.blocks[0].cnn[0].bn.running_mean for m in (adapted, unadapted)]
    assert not torch.allclose(*bn)
    signals = [read(u.path, SR)[0] for u in synthetic["target"]]
    p_adapted, p_plain = adapted.predict_proba(signals), unadapted.predict_proba(signals)
    assert np.abs(p_adapted - p_plain).max() > 1e-3

    assert main(["export", str(out), "--format", "onnx", "--out", str(tmp_path / "onnx"), "-q"]) == 0
    onnx_model, onnx_meta = load_model(tmp_path / "onnx")
    p_onnx = onnx_model.predict_proba(signals)
    np.testing.assert_allclose(p_onnx, p_adapted, atol=1e-4)
    assert np.abs(p_onnx - p_plain).max() > 1e-3

    assert main(["info", "--model", str(out)]) == 0


_TINY_RECIPE = (
    "name: tiny\nmodel:\n  family: cnn-lstm\n  n_mels: 16\n  channels: [4, 8]\n  lstm_hidden: 8\n"
    "  spec_augment: false\n  train: {epochs: 1, val_fraction: 0.0, min_epochs: 1, batch_size: 8, "
    "crop_seconds: 0.5, normalisation: speaker}\n"
)


def test_train_with_a_target_from_the_cli(synthetic, tmp_path, capsys):
    from serkit.cli import main

    root = synthetic["root"]
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(_TINY_RECIPE)
    corpus = f"manifest:{root / 'source.csv'}"
    args = ["train", "-q", "--corpus", corpus, "--recipe", str(recipe), "--out", str(tmp_path / "m")]
    assert main([*args, "--target", str(root / "target")]) == 0
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    ad = meta["adaptation"]
    assert ad["method"] == "deep-coral" and ad["when"] == "training" and ad["n_files"] == 24
    assert ad["domain_weight"] == 1.0
    capsys.readouterr()
    assert main(["info", "--model", str(tmp_path / "m")]) == 0
    assert "adapted:    deep-coral to" in capsys.readouterr().out

    # errors: an unknown method lists the valid ones, a method of another family names the ones that apply
    assert main([*args, "--target", str(root / "target"), "--adapt-method", "tca"]) == 2
    assert "valid methods: coral, deep-coral, mmd" in capsys.readouterr().err
    assert main([*args, "--target", str(root / "target"), "--adapt-method", "coral"]) == 2
    err = capsys.readouterr().err
    assert "does not apply to model family 'cnn-lstm'; methods that apply to it: deep-coral, mmd" in err
    assert main([*args, "--target", str(root / "target"), "--adapt-method", "adabn"]) == 2
    assert "adabn adapts a trained model: run serkit adapt" in capsys.readouterr().err
    assert main([*args, "--adapt-method", "mmd"]) == 2
    assert "needs --target" in capsys.readouterr().err


@pytest.mark.slow  # ~20 s: two tiny networks per fold
def test_evaluate_with_a_target_reports_the_domain_mode(synthetic, tmp_path, capsys):
    from serkit.cli import main

    root = synthetic["root"]
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(_TINY_RECIPE)
    corpus = f"manifest:{root / 'source.csv'}"
    # per fold a second model trained towards the target audio, reported as mode 'domain'
    report_dir = tmp_path / "r"
    ev = ["evaluate", "-q", "--corpus", corpus, "--recipe", str(recipe), "--protocol", "speaker-kfold:3"]
    assert main([*ev, "--adapt", "mmd", "--out", str(report_dir)]) == 2  # a test fold holds 8 clips
    assert "mmd needs at least 20 target clips" in capsys.readouterr().err
    assert main([*ev, "--target", str(root / "target"), "--adapt-method", "mmd", "--out", str(report_dir)]) == 0
    rep = json.loads((report_dir / "report.json").read_text())
    assert rep["extra"]["transductive"]["method"] == "mmd (fixed target)"
    assert rep["extra"]["transductive"]["when"] == "training" and rep["extra"]["target"]["n_files"] == 24
    assert {"speaker", "none", "domain"} == set(rep["adaptation"]) and rep["adaptation"]["speaker"]["headline"]
    assert main([*ev, "--adapt", "bogus"]) == 2
    assert "valid: coral, adabn, deep-coral, mmd, coral-train" in capsys.readouterr().err


def test_method_errors_name_what_applies():
    from serkit.models import build_model

    features = FeatureClassifier(["librosa"])
    with pytest.raises(
        ConfigError, match="deep-coral is a loss used while training.*adapted with: voices, coral, adabn"
    ):
        check_method(features, "deep-coral")
    with pytest.raises(ConfigError, match="does not apply to model family 'features'; methods that apply to it: coral"):
        check_method(features, "mmd", when="train")
    frozen = build_model({"family": "soundnet", "layer": "conv5", "pool": "meanmax", "strategy": "freeze"})
    assert frozen.domain_methods == ("adabn",)
    with pytest.raises(ConfigError, match="family 'soundnet'; no method applies to it while training"):
        check_method(frozen, "deep-coral", when="train")
    transformer = build_model({"family": "transformer", "d_model": 16, "heads": 2, "layers": 1, "ff_dim": 16})
    check_method(transformer, "adabn")  # its patch stem and head have batch norm
    check_method(transformer, "deep-coral", when="train")


def test_a_coral_adapted_feature_model_exports_as_a_chain_with_its_map(tmp_path):
    """A feature model's standardisation and CORAL map stay numpy in its export (the chain), so an
    adapted model's exported single-clip predictions equal the adapted model's."""
    from serkit.artifact import save_model
    from serkit.cli import main
    from serkit.domain import coral_map, domain_stats
    from serkit.features import get_extractor
    from serkit.models import load_model

    rng = np.random.default_rng(6)
    t = np.arange(16000) / 16000
    signals = [
        (
            0.2 * np.sin(2 * np.pi * (120 + 80 * (i % 2) + 5 * rng.random()) * t) + 0.02 * rng.standard_normal(16000)
        ).astype(np.float32)
        for i in range(40)
    ]
    x = get_extractor("logmel").functionals_batch(signals)
    labels = [("angry", "sad")[i % 2] for i in range(40)]
    model = FeatureClassifier(["logmel"], classifier="logreg", normalisation="global", grid={"C": [1.0]})
    model.fit_features([x], labels, np.array(["a"] * 40))
    model.set_domain(maps=[coral_map(model.source_stats_[0], domain_stats(model._domain_rows([[2 * x]])[0]))])
    src = save_model(model, tmp_path / "coral")
    assert main(["export", str(src), "--format", "onnx", "--out", str(tmp_path / "onnx"), "-q"]) == 0
    exported, meta = load_model(tmp_path / "onnx")
    assert meta["config"]["onnx"]["classifier"]["file"] == "classifier.onnx"
    before = load_model(src)[0].predict_proba(signals[:6], adapt=False)
    np.testing.assert_allclose(exported.predict_proba(signals[:6], adapt=False), before, atol=1e-6)
    assert exported.domain_map_ is not None


class _RowModel(FeatureClassifier):
    """Feature rows come from ``u.extra['x']`` instead of audio (for the evaluation loop)."""

    def _blocks_from_utterances(self, utterances, progress):
        return [[np.array([u.extra["x"] for u in utterances])]]

    def fit(self, utterances, *, progress=True):
        u = list(utterances)
        blocks = self._blocks_from_utterances(u, progress)[0]
        return self.fit_features(blocks, [v.label for v in u], np.array([v.speaker for v in u]))


def test_evaluate_loco_with_train_time_coral_reports_a_transductive_domain_mode():
    from functools import partial

    from serkit.adaptation import fold_trainer
    from serkit.evaluation import evaluate

    rng = np.random.default_rng(7)
    means = np.zeros((3, 6))
    means[0, 0], means[1, 1], means[2, 2] = 3.0, 3.0, 3.0
    offset = np.array([8.0, -4.0, -4.0, 1.0, 2.0, 3.0])
    data = []
    for c, (gain, shift) in enumerate([(1.0, 0.0), (1.0, 0.3), (3.0, offset)]):
        for i in range(60):
            x = gain * (means[i % 3] + rng.normal(size=6)) + shift
            label = ("angry", "happy", "sad")[i % 3]
            data.append(Utterance(f"{c}-{i}", f"/x/{c}-{i}.wav", label, f"c{c}/s{i % 3}", f"corpus{c}", extra={"x": x}))

    def factory():
        return _RowModel(["librosa"], classifier="logreg", normalisation="global", grid={"C": [1.0]})

    r = evaluate(factory, data, "loco", report_both=True, progress=False,
                 domain_fit=partial(fold_trainer, method="coral"), domain_method="coral-train")  # fmt: skip
    assert r.extra["transductive"]["method"] == "coral-train" and r.extra["transductive"]["when"] == "training"
    assert set(r.adaptation) == {"none", "domain"} and r.adaptation["none"]["headline"]
    shifted = next(f for f in r.folds if f["test_corpora"] == ["corpus2"])
    assert shifted["ua_by_mode"]["none"] < 0.6 < 0.9 < shifted["ua_by_mode"]["domain"]
