"""The robust adaptation rule (``adapt_rule: robust``): a speaker whose clips all show one emotion is
not standardised into a spread of emotions; a balanced one is adapted as before; old model folders
adapt fully, as they always did. Known answers on a toy classifier and on a saved feature model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from serkit.errors import ConfigError, ModelError
from serkit.models import load_model
from serkit.models.base import Classifier
from serkit.speakers import (
    MIX_VARIANCE_FLOOR,
    ROBUST_ADAPTATION,
    adaptation_weights,
    class_stats,
    one_sidedness,
    robust_mix,
    speaker_standardise,
    speaker_stats,
)


class _Toy(Classifier):
    """Two classes from a signal's mean: ``p(up) = sigmoid(4 z)``, ``z`` the mean standardised per
    speaker (min 3 clips) or with the training statistics (mean 0, std 1)."""

    normalisation = "speaker"

    def __init__(self):
        self.labels_ = ["down", "up"]

    def fit(self, utterances, *, progress=True):
        return self

    def _predict_signals(self, signals, speakers):
        x = np.array([[float(np.mean(s))] for s in signals])
        z = speaker_standardise(x, speakers, np.zeros(1), np.ones(1), min_utterances=3)[:, 0]
        up = 1.0 / (1.0 + np.exp(-4.0 * z))
        return np.stack([1.0 - up, up], axis=1)


def _signals(means):
    return [np.full(160, m, np.float32) for m in means]


def test_one_sidedness_and_weights_known_answers():
    p = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.9, 0.1], [0.9, 0.1]])
    spk = ["a", "a", "b", "b", "c", "c", "d"]
    # a: every clip on one class → 1; b: one clip each way → 0; c: mean (0.9, 0.1) → 1 − H/ln 2;
    # d: one clip, under min_utterances → 0
    c = 1 + (0.9 * np.log(0.9) + 0.1 * np.log(0.1)) / np.log(2)
    np.testing.assert_allclose(one_sidedness(p, spk, min_utterances=2), [1, 1, 0, 0, c, c, 0], atol=1e-9)
    # low 0.25, high 0.75: a not adapted, b and d adapted, c (0.531) partly
    w = adaptation_weights(p, spk, low=0.25, high=0.75, min_utterances=2)
    np.testing.assert_allclose(w, [0, 0, 1, 1, (0.75 - c) / 0.5, (0.75 - c) / 0.5, 1], atol=1e-9)
    adapted = np.array([[0.2, 0.8]] * 7)
    mixed = robust_mix(p, adapted, spk, low=0.25, high=0.75, min_utterances=2)
    np.testing.assert_allclose(mixed[0], p[0], atol=1e-9)
    np.testing.assert_allclose(mixed[2], adapted[2])
    np.testing.assert_allclose(mixed[4], w[4] * adapted[4] + (1 - w[4]) * p[4])
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0)
    with pytest.raises(ConfigError, match="low < high"):
        adaptation_weights(p, spk, low=0.7, high=0.5)


def test_speaker_statistics_given_an_emotion_mix_known_answers():
    # training speakers, standardised: class 0 at -0.8, class 1 at +0.8, within-class variance 0.36
    # (a speaker with half of each has mean 0 and variance 0.36 + 0.64 = 1, as standardised rows do)
    stats = (np.array([[-0.8], [0.8]]), np.array([[0.36], [0.36]]))
    x = np.array([[9.0], [10.0], [11.0], [3.0], [5.0]])
    spk = ["a", "a", "a", "b", "b"]
    gm, gs = np.zeros(1), np.ones(1)
    # "a" predicted all class 1: its rows keep class 1's mean and spread, 0.8 and 0.6
    mix = np.array([[0.0, 1.0]] * 3 + [[0.5, 0.5]] * 2)
    z = speaker_standardise(x, spk, gm, gs, min_utterances=2, emotion_mix=mix, class_stats=stats)[:, 0]
    np.testing.assert_allclose([z[:3].mean(), z[:3].std()], [0.8, 0.6], atol=1e-12)
    sd = np.sqrt(2 / 3) / 0.6  # its own std (0.816) over the mix's (0.6)
    np.testing.assert_allclose(z[:3], (x[:3, 0] - (10 - 0.8 * sd)) / sd, atol=1e-12)
    # "b", an even mix, is standardised as without one: (3, 5) -> (-1, 1)
    np.testing.assert_allclose(z[3:], [-1.0, 1.0], atol=1e-12)
    # the speaker's mix is the mean of its rows' (0.25 / 0.75 here: mean 0.4, variance 1 - 0.16)
    mix2 = np.array([[0.0, 1.0], [0.5, 0.5], [0.25, 0.75]] + [[0.5, 0.5]] * 2)
    mean, std = speaker_stats(x, spk, gm, gs, min_utterances=2, emotion_mix=mix2, class_stats=stats)
    np.testing.assert_allclose(std[0], np.sqrt(2 / 3) / np.sqrt(0.84), atol=1e-12)
    np.testing.assert_allclose(mean[0], 10 - 0.4 * std[0], atol=1e-12)
    # a mix whose classes do not differ in a dimension cannot shrink its variance below the floor
    flat = (np.zeros((2, 1)), np.zeros((2, 1)))
    _, std = speaker_stats(x, spk, gm, gs, min_utterances=2, emotion_mix=mix, class_stats=flat)
    np.testing.assert_allclose(std[0], np.sqrt(2 / 3) / np.sqrt(MIX_VARIANCE_FLOOR), atol=1e-12)
    # rows of a speaker under min_utterances keep the training statistics
    mean, std = speaker_stats(x, spk, gm, gs, min_utterances=3, emotion_mix=mix, class_stats=stats)
    assert mean[3:].tolist() == [[0.0], [0.0]] and std[3:].tolist() == [[1.0], [1.0]]
    with pytest.raises(ConfigError, match="needs the training set's class statistics"):
        speaker_stats(x, spk, gm, gs, min_utterances=2, emotion_mix=mix)
    with pytest.raises(ConfigError, match="over 3 classes for class statistics of 2"):
        speaker_stats(x, spk, gm, gs, min_utterances=2, emotion_mix=np.ones((5, 3)) / 3, class_stats=stats)
    m, v = class_stats(np.array([[-1.0, 0.0], [-3.0, 2.0], [2.0, 1.0]]), [0, 0, 1], 3)
    assert m.tolist() == [[-2.0, 1.0], [2.0, 1.0], [0.0, 0.0]] and v.tolist() == [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]


def test_a_one_sided_speaker_keeps_its_single_utterance_prediction():
    # every clip of "angry" is clearly "up" from one clip; standardising by the speaker's own clips
    # turns half of them into "down"
    model, signals = _Toy(), _signals([1.0, 1.2, 1.4, 1.6, 1.8, 2.0])
    speakers = ["angry"] * 6
    single = model.predict_proba(signals, adapt=False)
    full = model.predict_proba(signals, speakers=speakers, adapt=True)
    assert (single.argmax(1) == 1).all() and (full.argmax(1) == 0).sum() == 3
    assert model.adapt_rule == "full"  # the default: as before
    robust = model.set_adapt_rule("robust").predict_proba(signals, speakers=speakers, adapt=True)
    np.testing.assert_allclose(robust, single, atol=1e-9)


def test_the_weights_come_from_uncalibrated_probabilities_and_the_mix_is_calibrated():
    # a temperature of 20 flattens the single clips to top p ≈ 0.55 (one-sidedness ≈ 0.01), but the
    # test reads the model's own probabilities: still one-sided, still single-utterance; the mix is
    # then scaled by the speaker temperature (2.0), the one fitted on adapt=True outputs
    from serkit.calibration import apply_temperature

    model, signals = _Toy().set_temperatures({"none": 20.0, "speaker": 2.0}), _signals([1.0, 1.5, 2.0])
    robust = model.set_adapt_rule("robust").predict_proba(signals, speakers=["a"] * 3, adapt=True)
    assert model.predict_proba(signals, adapt=False).max() < 0.6
    raw = _Toy().predict_proba(signals, adapt=False)
    assert raw.min(axis=1).max() < 0.05  # clearly one-sided before the temperature
    np.testing.assert_allclose(robust, apply_temperature(raw, 2.0), atol=1e-9)


def test_a_balanced_speaker_is_adapted_fully():
    # clips near the boundary from one clip (top p 0.5–0.6); adapted, they spread over both classes
    model, signals = _Toy().set_adapt_rule("robust"), _signals([-0.1, -0.05, 0.0, 0.05, 0.1])
    speakers = ["calm"] * 5
    single = model.predict_proba(signals, adapt=False)
    assert one_sidedness(single, speakers, min_utterances=1)[0] <= ROBUST_ADAPTATION["low"]
    full = _Toy().predict_proba(signals, speakers=speakers, adapt=True)
    np.testing.assert_allclose(model.predict_proba(signals, speakers=speakers, adapt=True), full, atol=1e-12)


def test_set_adapt_rule_checks_its_values():
    model = _Toy()
    assert model.set_adapt_rule("robust", low=0.4, high=0.9).adapt_rule_settings == {
        "rule": "robust",
        "low": 0.4,
        "high": 0.9,
    }
    with pytest.raises(ConfigError, match="unknown adapt_rule 'partial'; use one of full, robust"):
        model.set_adapt_rule("partial")
    with pytest.raises(ConfigError, match="low < high"):
        model.set_adapt_rule("robust", low=0.6, high=0.5)
    with pytest.raises(ConfigError, match="high must be a number in"):
        model.set_adapt_rule("robust", high="x")
    with pytest.raises(ConfigError, match="takes no thresholds"):
        model.set_adapt_rule("full", low=0.5)


def test_build_model_reads_adapt_rule_from_the_recipe():
    from serkit.models import build_model

    model = build_model({"family": "features", "features": ["librosa"], "adapt_rule": "robust"})
    assert model.adapt_rule_settings == {"rule": "robust", **ROBUST_ADAPTATION}
    model = build_model({"family": "features", "features": ["librosa"], "adapt_rule": {"rule": "robust", "low": 0.3}})
    assert model.adapt_rule_settings["low"] == 0.3
    assert build_model({"family": "features", "features": ["librosa"]}).adapt_rule == "full"


def test_model_folders_old_and_new(small_model_dir, small_manifest, tmp_path, capsys):
    from serkit.corpora import load_corpus

    clips = load_corpus(f"manifest:{small_manifest}")
    meta = json.loads((small_model_dir / "model.json").read_text())
    assert meta["speaker_adaptation"] == {"rule": "full"}  # a new model records its rule

    old = tmp_path / "old"  # a folder of an earlier serkit: no speaker_adaptation field, no class statistics
    shutil.copytree(small_model_dir, old)
    del meta["speaker_adaptation"]
    (old / "model.json").write_text(json.dumps(meta))
    with np.load(old / "normalisation.npz") as z:
        assert "class_mean_0" in z.files
        kept = {k: z[k] for k in z.files if not k.startswith("class_")}
    np.savez(old / "normalisation.npz", **kept)
    model, _ = load_model(old)
    assert model.adapt_rule == "full"
    full = model.predict_proba_utterances(clips, adapt=True, progress=False)
    single = model.predict_proba_utterances(clips, adapt=False, progress=False)
    assert np.abs(full - single).max() > 0.05  # adapting changes this model's predictions

    robust_dir = tmp_path / "robust"
    shutil.copytree(old, robust_dir)
    meta["speaker_adaptation"] = {"rule": "robust", "low": 0.0, "high": 1.0}  # weight 1 − one-sidedness
    (robust_dir / "model.json").write_text(json.dumps(meta))
    model, _ = load_model(robust_dir)
    robust = model.predict_proba_utterances(clips, adapt=True, progress=False)
    speakers = [str(u.speaker) for u in clips]
    np.testing.assert_allclose(
        robust, robust_mix(single, full, speakers, low=0.0, high=1.0, min_utterances=1), atol=1e-9
    )
    np.testing.assert_allclose(model.predict_proba_utterances(clips, adapt=False, progress=False), single)
    from serkit.cli import main

    assert main(["info", "--model", str(robust_dir)]) == 0
    shown = capsys.readouterr().out
    assert "adapt_rule robust" in shown and "emotion mix" not in shown
    new = tmp_path / "new"  # the same with the class statistics a model now keeps
    shutil.copytree(small_model_dir, new)
    shutil.copyfile(robust_dir / "model.json", new / "model.json")
    assert main(["info", "--model", str(new)]) == 0
    assert "adapted given the emotion mix its single clips predict" in capsys.readouterr().out

    meta["speaker_adaptation"] = {"rule": "robust", "low": 2}
    (robust_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="speaker_adaptation is invalid"):
        load_model(robust_dir)


def test_a_feature_model_adapts_a_one_emotion_speaker_given_its_emotion_mix(small_model_dir, small_manifest, emodb_dir):
    """The robust rule's adapted part on real clips (egemaps-svm trained on EmoDB speakers 03, 10, 11,
    angry/sad/neutral): speaker 08, unseen, angry in all 12 clips, standardised by those clips loses
    the anger (full: 4 angry); standardised given the emotion mix its single clips predict, it keeps
    it (12); all 31 of its angry, sad and neutral clips as one speaker are 27 right given the mix
    (full 25, single 29)."""
    from serkit.audio import read
    from serkit.corpora import load_corpus

    model, _ = load_model(small_model_dir)
    # the class statistics are those of the speaker-standardised training rows, through the folder
    clips = load_corpus(f"manifest:{small_manifest}")
    z = model._normalise(model._blocks_from_utterances(clips, False)[0][0], 0, [str(u.speaker) for u in clips])
    means, variances = class_stats(z, [model.labels.index(str(u.label)) for u in clips], 3)
    np.testing.assert_allclose(model.class_stats_[0][0], means, atol=1e-5)
    np.testing.assert_allclose(model.class_stats_[0][1], variances, atol=1e-5)

    def counts(letters):
        files = sorted(f for c in letters for f in (emodb_dir / "wav").glob(f"08???{c}?.wav"))
        signals, who = [read(f, 16000)[0] for f in files], ["08"] * len(files)
        truth = [{"W": "angry", "T": "sad", "N": "neutral"}[f.name[5]] for f in files]
        got = {
            "single": model.predict(signals, adapt=False),
            "full": model.set_adapt_rule("full").predict(signals, speakers=who),
            # weight 1 below one-sidedness 0.99: the adapted part alone
            "given mix": model.set_adapt_rule("robust", low=0.99, high=1.0).predict(signals, speakers=who),
        }
        return {k: sum(a == b for a, b in zip(v, truth)) for k, v in got.items()}, len(truth)

    assert counts("W") == ({"single": 11, "full": 4, "given mix": 12}, 12)
    assert counts("WTN") == ({"single": 29, "full": 25, "given mix": 27}, 31)
