"""The fusion family: late fusion of member classifiers with weights learned on training speakers."""

from __future__ import annotations

import numpy as np
import pytest

from serkit.artifact import read_metadata, save_model
from serkit.errors import ConfigError
from serkit.evaluation import evaluate
from serkit.models import build_model, load_model
from serkit.models.fusion import FusionClassifier, _fit_weights
from serkit.speakers import centre_speakers

from .test_models import emodb_subset

EGEMAPS = {"family": "features", "features": ["egemaps"], "classifier": "svm-linear", "grid": {"C": [0.01]}}
LIBROSA = {
    "family": "features",
    "features": [{"name": "librosa", "n_formants": 0}],
    "classifier": "svm-linear",
    "grid": {"C": [0.001]},
    "name": "librosa",
}


def test_weighted_combiner_trusts_the_informative_member():
    """Known answer: member 0's log-probabilities carry the label, member 1's are noise."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    good = np.log(np.full((300, 3), 0.2))
    good[np.arange(300), y] = np.log(0.6)
    noise = np.log(rng.dirichlet(np.ones(3), 300))
    w = _fit_weights(np.stack([good, noise]), y)
    assert w[0] > 5 * max(w[1], 1e-3)
    assert w[1] < 0.1


def test_fusion_learns_on_training_speakers_and_round_trips(emodb_dir, tmp_path):
    """eGeMAPS SVM + librosa SVM on 3 EmoDB emotions of 4 speakers, leave-one-speaker-out."""
    utts = emodb_subset(emodb_dir)
    section = {"family": "fusion", "members": [EGEMAPS, LIBROSA], "combine": "weighted", "inner_folds": 3}
    report = evaluate(lambda: build_model(section), utts, "loso", report_both=True, progress=False)
    assert report.ua > 0.7  # chance is 0.33
    assert set(report.adaptation) == {"none", "speaker"}

    model = build_model(section).fit(utts[12:], progress=False)
    weights = model.combiners_["speaker"]["weights"]
    assert len(weights) == 2 and all(w >= 0 for w in weights) and sum(weights) > 0
    before = {a: model.predict_proba_utterances(utts[:12], adapt=a, progress=False) for a in (True, False)}
    for p in before.values():
        assert np.allclose(p.sum(axis=1), 1.0)
    save_model(model, tmp_path / "fusion", recipe={"name": "fusion-test"})
    meta = read_metadata(tmp_path / "fusion")
    assert meta["family"] == "fusion" and "member-1/model.json" in meta["files"]
    assert [m["name"] for m in meta["config"]["members"]] == ["features", "librosa"]
    loaded, _ = load_model(tmp_path / "fusion")
    for a, p in before.items():
        assert np.allclose(loaded.predict_proba_utterances(utts[:12], adapt=a, progress=False), p, atol=1e-9)
    # centre_speakers: adapted scores lose each speaker's mean; single clips are untouched
    model.centre_speakers = True
    save_model(model, tmp_path / "centred")
    loaded, _ = load_model(tmp_path / "centred")
    assert loaded.centre_speakers
    z = centre_speakers(np.log(before[True]), [u.speaker for u in utts[:12]])
    centred = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert not np.allclose(centred, before[True])
    assert np.allclose(loaded.predict_proba_utterances(utts[:12], adapt=True, progress=False), centred, atol=1e-9)
    assert np.allclose(
        loaded.predict_proba_utterances(utts[:12], adapt=False, progress=False), before[False], atol=1e-9
    )


def test_stacking_combiner_and_signals(emodb_dir):
    utts = emodb_subset(emodb_dir)
    model = FusionClassifier([EGEMAPS, LIBROSA], combine="stacking", inner_folds=2).fit(utts, progress=False)
    coef = np.asarray(model.combiners_["none"]["coef"])
    assert coef.shape == (3, 6)
    from serkit.audio import read

    signals = [read(u.path, model.sampling_rate)[0] for u in utts[:3]]
    p = model.predict_proba(signals)
    assert p.shape == (3, 3) and np.allclose(p.sum(axis=1), 1.0)


def test_fusion_options_are_checked_before_training():
    with pytest.raises(ConfigError, match="at least two members"):
        FusionClassifier([EGEMAPS])
    with pytest.raises(ConfigError, match="unknown fusion combine"):
        FusionClassifier([EGEMAPS, LIBROSA], combine="max")
    with pytest.raises(ConfigError, match="unknown recipe"):
        FusionClassifier(["compare-svm", "no-such-recipe"])
    with pytest.raises(ConfigError, match="unknown keys"):
        FusionClassifier([{"recipe": "compare-svm", "sett": {}}, EGEMAPS])
    with pytest.raises(ConfigError, match="unknown classifier"):
        FusionClassifier([EGEMAPS, dict(LIBROSA, classifier="boost")])
    with pytest.raises(ConfigError, match="true or false"):
        FusionClassifier([EGEMAPS, LIBROSA], centre_speakers="maybe")
    with pytest.raises(ConfigError, match="outside 0.5..2"):
        FusionClassifier([EGEMAPS, dict(LIBROSA, speeds=[1, 3])])
    m = FusionClassifier(["compare-svm", {"recipe": "egemaps-svm", "set": {"model.grid": {"C": [0.1]}}}])
    assert m.member_names == ["compare-svm", "egemaps-svm"]
    assert m._resolved[1][1]["grid"] == {"C": [0.1]}
