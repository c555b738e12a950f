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
from serkit.speakers import ROBUST_ADAPTATION, adaptation_weights, one_sidedness, robust_mix, speaker_standardise


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

    old = tmp_path / "old"  # a folder of an earlier serkit: no speaker_adaptation field
    shutil.copytree(small_model_dir, old)
    del meta["speaker_adaptation"]
    (old / "model.json").write_text(json.dumps(meta))
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
    assert "adapt_rule robust" in capsys.readouterr().out

    meta["speaker_adaptation"] = {"rule": "robust", "low": 2}
    (robust_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="speaker_adaptation is invalid"):
        load_model(robust_dir)
