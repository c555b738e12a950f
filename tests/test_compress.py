"""serkit.deploy.compress: pruning removes channels for real (known answer: zeroed channels prune exactly),
pruned models round-trip, QAT weights sit on the int8 grid and export close to torch, a distilled
student agrees with its teacher beyond chance, `serkit compress` errors are one-line messages."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from serkit.artifact import save_model
from serkit.cli import main
from serkit.deploy.compress import distil, prune, quantisation_aware
from serkit.errors import ConfigError
from serkit.models import load_model
from serkit.networks.pruning import channel_groups, count_parameters


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tests.quick_models import quick_soundnet

    return quick_soundnet(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def model(model_dir):
    return load_model(model_dir)[0]


@pytest.fixture(scope="module")
def train_utterances():
    """The quick model's training speakers (03, 08, 09): 150 clips, 7 emotions."""
    from serkit.corpora import load_corpus
    from tests.conftest import data_dir
    from tests.quick_models import SPEAKERS

    return [u for u in load_corpus(f"emodb:{data_dir('emodb')}") if u.speaker in SPEAKERS]


@pytest.fixture(scope="module")
def clips():
    """Held-out EmoDB clips (speakers 10-16), 22 050 Hz."""
    from serkit.audio import read
    from tests.conftest import data_dir

    files = sorted((data_dir("emodb") / "wav").glob("1[0-6]*.wav"))[::8][:24]
    return [read(f, 22050)[0] for f in files]


def test_zeroed_channels_prune_exactly(model, clips):
    """Known answer: channels whose folded filter and bias are 0 output exactly 0; removing them changes nothing."""
    import copy

    from serkit.networks.blocks import predict_logits

    m = copy.deepcopy(model)
    with torch.no_grad():
        for g in channel_groups(m.net_):
            idx = torch.arange(1, g.size, 4)  # a quarter of every layer
            g.conv.weight[idx] = 0
            g.conv.bias[idx] = 0
            g.bn().weight[idx] = 0
            g.bn().bias[idx] = 0
    pruned = prune(m, amount=0.25, finetune_epochs=0)
    assert pruned.compression_["channels_after"] == {"conv1": 12, "conv2": 24, "conv3": 48, "conv4": 96, "conv5": 192}
    # the importance ranking removed exactly the zeroed channels, so the function is unchanged
    before = predict_logits(m.net_, clips)
    after = predict_logits(pruned.net_, clips)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5 * np.abs(before).max())
    np.testing.assert_allclose(pruned.predict_proba(clips), m.predict_proba(clips), atol=1e-5)


def test_prune_halves_channels_parameters_and_file(model, model_dir, clips, tmp_path):
    pruned = prune(model, amount=0.5, finetune_epochs=0)
    widths = [16, 32, 64, 128, 256]
    half = [w // 2 for w in widths]
    assert pruned.compression_["channels_after"] == {f"conv{i + 1}": n for i, n in enumerate(half)}

    def conv_params(
        ws,
    ):  # SoundNet8 conv1-conv5 (weights + bias) + BN (2 per channel) + head (BN on 2C, linear 2C -> 7)
        kernels = [64, 32, 16, 8, 4]
        cin = [1, *ws[:-1]]
        total = sum(o * i * k + o + 2 * o for o, i, k in zip(ws, cin, kernels))
        return total + 2 * (2 * ws[-1]) + 2 * ws[-1] * 7 + 7

    assert count_parameters(model.net_) == conv_params(widths)
    assert count_parameters(pruned.net_) == conv_params(half)
    ratio = conv_params(half) / conv_params(widths)
    assert 0.25 < ratio < 0.27  # quadratic in width: a 50 % channel cut leaves about a quarter
    out = save_model(pruned, tmp_path / "pruned")
    size = (out / "model.safetensors").stat().st_size / (model_dir / "model.safetensors").stat().st_size
    assert abs(size - ratio) < 0.01, (size, ratio)  # the file shrinks with the parameters (+ BN statistics)
    meta = json.loads((out / "model.json").read_text())
    assert meta["config"]["channels"] == {f"conv{i + 1}": n for i, n in enumerate(half)}
    again = load_model(out)[0]
    np.testing.assert_allclose(again.predict_proba(clips), pruned.predict_proba(clips), atol=1e-6)


def test_prune_finetune_learns_and_threshold(model, train_utterances, clips):
    pruned = prune(model, train_utterances, amount=0.5, finetune_epochs=2, train={"val_fraction": 0.0})
    assert pruned.training_["epochs_run"] == 2
    # held-out speakers: above chance (1/7) after pruning half the channels and two epochs
    from serkit.corpora import load_corpus
    from tests.conftest import data_dir

    test = [u for u in load_corpus(f"emodb:{data_dir('emodb')}") if u.speaker in ("10", "11")]
    y = np.array([pruned.labels_.index(u.label) for u in test])
    pred = pruned.predict_proba_utterances(test).argmax(1)
    ua = np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)])
    assert ua > 0.25, ua  # chance is 1/7
    by_threshold = prune(model, threshold=0.5, finetune_epochs=0)
    assert 0 < by_threshold.compression_["parameters_after"] < by_threshold.compression_["parameters_before"]


def test_qat_weights_on_int8_grid_and_onnx_agrees(model, train_utterances, clips, tmp_path):
    pytest.importorskip("onnxruntime")
    from serkit.deploy.export import export_onnx
    from serkit.inference import Recognizer

    q = quantisation_aware(model, train_utterances[::2], epochs=1, train={"val_fraction": 0.0})
    w = q.net_.blocks[2].conv.weight.detach()
    steps = w / (w.abs().flatten(1).amax(1)[:, None, None] / 127)
    np.testing.assert_allclose(steps, steps.round(), atol=1e-3)  # every weight is k * max|w| / 127
    out = save_model(q, tmp_path / "qat")
    int8 = export_onnx(out, tmp_path / "qat-int8", quantise="int8", calibration=[u.path for u in train_utterances])
    p_torch = q.predict_proba(clips)
    p_int8 = Recognizer.load(int8).classifier.predict_proba(clips)
    # stated tolerance: mean |dp| <= 0.04 and top-1 agreement >= 0.8 (uint8 activations stay approximate)
    assert np.abs(p_int8 - p_torch).mean() <= 0.04
    assert np.mean(p_int8.argmax(1) == p_torch.argmax(1)) >= 0.8


def test_distilled_student_agrees_with_teacher_beyond_chance(model, train_utterances):
    student = distil(
        model,
        train_utterances[::4],
        epochs=3,
        alpha=1.0,
        temperature=2.0,
        student={"family": "soundnet-res", "pool": "meanmax", "train": {"val_fraction": 0.0}},
    )
    assert student.family == "soundnet-res" and student.labels_ == model.labels_
    info = student.compression_
    assert info["windows"] == len(train_utterances[::4])  # EmoDB clips are short: one whole-utterance window each
    from serkit.models.neural import read_cached

    us = train_utterances[::4]
    t = model.predict_proba([read_cached(u.path, 22050) for u in us]).argmax(1)
    s = student.predict_proba([read_cached(u.path, 16000) for u in us]).argmax(1)
    agree = np.mean(s == t)
    # chance: independent predictions with the same class frequencies agree sum_k f_t(k) f_s(k)
    chance = float(np.sum(np.bincount(t, minlength=7) * np.bincount(s, minlength=7))) / len(t) ** 2
    print(f"student/teacher agreement {agree:.3f}, chance {chance:.3f}")
    assert agree > chance + 0.1, (agree, chance)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--prune", "1.5"], "must be a fraction in"),
        (["--prune", "0.5", "--distil"], "choose one compression"),
        ([], "nothing to do"),
        (["--distil", "--qat"], "distil first"),
    ],
)
def test_cli_errors(model_dir, tmp_path, capsys, argv, message):
    code = main(["compress", str(model_dir), *argv, "--epochs", "0", "--out", str(tmp_path / "x"), "-q"])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_feature_model_cannot_prune(small_model_dir, tmp_path, capsys):
    assert (
        main(["compress", str(small_model_dir), "--prune", "0.5", "--epochs", "0", "--out", str(tmp_path / "x")]) == 2
    )
    assert "works on the soundnet and soundnet-res families" in capsys.readouterr().err


def test_cli_prune_writes_a_loadable_model(model_dir, clips, tmp_path):
    from serkit.inference import Recognizer

    out = tmp_path / "pruned"
    assert main(["compress", str(model_dir), "--prune", "0.3", "--epochs", "0", "--out", str(out), "-q"]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["compression"]["method"] == "prune" and meta["compression"]["amount"] == 0.3
    p = Recognizer.load(out).classifier.predict_proba(clips[:3])
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)


def test_prune_rejects_bad_arguments(model):
    with pytest.raises(ConfigError, match="exactly one of amount"):
        prune(model, amount=0.5, threshold=0.2)
    with pytest.raises(ConfigError, match="needs the training utterances"):
        prune(model, amount=0.5, finetune_epochs=1)


@pytest.mark.parametrize("backbone, amount", [("soundnet8", 0.5), ("soundnet-res", 0.3)])
def test_pruned_network_is_built_at_its_widths(backbone, amount):
    """A pruned model loads by construction: the network built from the recorded channel counts has
    exactly the pruned network's parameters and buffers (names and shapes), and loads its weights."""
    from serkit.models.neural import SoundNetClassifier

    options = {
        "backbone": backbone,
        "pretrained": False,
        "strategy": "full",
        "train": {"normalisation": "speaker", "epochs": 1},
    }
    if backbone == "soundnet8":
        options.update(layer="conv4", pool="attention")
    m = SoundNetClassifier(**options)
    torch.manual_seed(0)
    m.net_ = m._build_net(4, pretrained=False).eval()
    m.labels_, m.strategy_, m.training_ = ["a", "b", "c", "d"], "full", {}
    pruned = prune(m, amount=amount, finetune_epochs=0)
    assert m.prunable and pruned.net_.prunable
    built = pruned._build_net(4, pretrained=False)
    got = {k: tuple(v.shape) for k, v in built.state_dict().items()}
    want = {k: tuple(v.shape) for k, v in pruned.net_.state_dict().items()}
    assert got == want
    built.load_state_dict(pruned.net_.state_dict(), strict=True)
    x = torch.from_numpy(np.random.default_rng(0).uniform(-0.3, 0.3, (2, 24000)).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(built.eval()(x), pruned.net_(x))
    # every group lost channels, and the full-size network is bigger
    full = {k: v for k, v in m.net_.state_dict().items()}
    assert sum(v.numel() for v in pruned.net_.state_dict().values()) < sum(v.numel() for v in full.values())


def test_bad_channel_counts_are_model_errors():
    from serkit.errors import ModelError
    from serkit.models.neural import SoundNetClassifier

    with pytest.raises(ModelError, match="conv2: cannot keep 99 of 32 channels"):
        SoundNetClassifier(layer="conv4", pretrained=False, channels={"conv2": 99})._build_net(3, pretrained=False)
    with pytest.raises(ModelError, match="above the network's top block conv4"):
        SoundNetClassifier(layer="conv4", pretrained=False, channels={"conv6": 9})._build_net(3, pretrained=False)
    with pytest.raises(ModelError, match="unknown layers"):
        SoundNetClassifier(backbone="soundnet-res", channels={"block99.reduce": 3})._build_net(3, pretrained=False)


def test_networks_that_do_not_prune_say_so():
    from serkit.models.spectro import CNNLSTMClassifier
    from serkit.networks.pruning import channel_groups

    m = CNNLSTMClassifier()
    assert not m.prunable
    with pytest.raises(ConfigError, match="only the soundnet and soundnet-res families prune"):
        channel_groups(m._build_net(3, pretrained=False))
