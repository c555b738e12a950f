"""Tests of serkit.evaluation: metric known answers, protocol splits, evaluate() with fake models, reports."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from serkit.corpora.base import Utterance
from serkit.errors import ConfigError, ModelError
from serkit.evaluation import (
    Holdout,
    LeaveOneSpeakerOut,
    RandomSplit,
    Report,
    SpeakerKFold,
    evaluate,
    metrics,
    parse_protocol,
    validation_split,
)
from serkit.models.base import Classifier


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------
def utt(i, label, speaker, **extra):
    return Utterance(
        id=f"{i:03d}", path=f"/nonexistent/{i:03d}.wav", label=label, speaker=speaker, corpus="toy", extra=extra
    )


def toy(n_speakers=7, seed=0, labels=("angry", "happy", "neutral", "sad")):
    """Speakers with different numbers of utterances (3..9), every label present."""
    rng = np.random.default_rng(seed)
    out, i = [], 0
    for s in range(n_speakers):
        for k in range(3 + (s * 5) % 7):
            out.append(utt(i, labels[(k + s) % len(labels)], f"spk{s:02d}", guess=str(rng.choice(labels))))
            i += 1
    return out


class MajorityClassifier(Classifier):
    """Predicts the most frequent training label for everything."""

    def fit(self, utterances, *, progress=True):
        self.labels_ = sorted({u.label for u in utterances})
        self.majority_ = Counter(u.label for u in utterances).most_common(1)[0][0]
        return self

    def _predict_signals(self, signals, speakers):
        raise AssertionError("evaluation predicts utterances, never signals")

    def _predict_utterances(self, utterances, speakers, *, progress):
        p = np.zeros((len(utterances), len(self.labels_)))
        p[:, self.labels_.index(self.majority_)] = 1.0
        return p


class GuessClassifier(MajorityClassifier):
    """Predicts ``u.extra['guess']`` (one-hot); labels in *reverse* sorted order to test alignment by name.

    With ``adapting=True`` it declares ``normalisation = "speaker"``, and adapted predictions
    (``adapt=True``, the default for such a model) are ``u.extra['guess_adapted']`` instead.
    """

    def __init__(self, adapting=False):
        self.adapting = adapting

    @property
    def normalisation(self):
        return "speaker" if self.adapting else "global"

    def fit(self, utterances, *, progress=True):
        self.labels_ = sorted({u.label for u in utterances}, reverse=True)
        return self

    def _onehot(self, guesses):
        p = np.zeros((len(guesses), len(self.labels_)))
        for i, g in enumerate(guesses):
            p[i, self.labels_.index(g)] = 1.0
        return p

    def _predict_utterances(self, utterances, speakers, *, progress):
        PREDICTIONS.append(speakers is not None)
        key = "guess_adapted" if speakers is not None else "guess"
        return self._onehot([u.extra[key] for u in utterances])


#: per prediction pass of a GuessClassifier, whether it adapted (evaluate must predict once per mode)
PREDICTIONS: list[bool] = []


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------
def test_metrics_known_answer_three_classes():
    # confusion (rows true a,b,c): a→[2,1,0], b→[0,1,1], c→[0,0,1]
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    m = metrics(y_true, y_pred, ["a", "b", "c"])
    # recalls 2/3, 1/2, 1 → UA 13/18; accuracy 4/6; precisions 1, 1/2, 1/2; F1 4/5, 1/2, 2/3 → 59/90
    assert m["ua"] == pytest.approx(13 / 18, abs=1e-12)
    assert m["wa"] == pytest.approx(2 / 3, abs=1e-12)
    assert m["macro_f1"] == pytest.approx(59 / 90, abs=1e-12)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["confusion_normalised"][0] == pytest.approx([2 / 3, 1 / 3, 0])
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["per_class"]["c"]["precision"] == pytest.approx(0.5)
    assert m["n"] == 6


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_metrics_match_sklearn_and_ignore_absent_classes():
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    rng = np.random.default_rng(1)
    labels = ["w", "x", "y", "z"]
    y_true = rng.choice(labels[:3], 200).tolist()  # "z" never true...
    y_pred = rng.choice(labels, 200).tolist()  # ...but sometimes predicted
    m = metrics(y_true, y_pred, labels)
    assert m["ua"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=1e-12)
    assert m["wa"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-12)
    assert m["per_class"]["z"]["support"] == 0
    assert m["confusion_normalised"][3] == [0.0, 0.0, 0.0, 0.0]

    # a label in `labels` that is neither true nor predicted changes nothing
    m2 = metrics(["a", "b"], ["a", "a"], ["a", "b", "never"])
    assert (m2["ua"], m2["wa"]) == (0.5, 0.5)
    assert m2["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)


def test_metrics_reject_bad_input():
    with pytest.raises(ConfigError, match=r"not in labels"):
        metrics(["a", "q"], ["a", "a"], ["a", "b"])
    with pytest.raises(ConfigError, match="one prediction per utterance"):
        metrics(["a"], ["a", "a"], ["a"])
    with pytest.raises(ConfigError, match="empty"):
        metrics([], [], ["a"])


# ---------------------------------------------------------------------------------------------
# protocols
# ---------------------------------------------------------------------------------------------
def _check_partition(utterances, folds, *, disjoint_speakers=True):
    all_test = np.concatenate([f.test_idx for f in folds])
    assert sorted(all_test.tolist()) == list(range(len(utterances)))  # every utterance tested once
    for train_idx, test_idx, test_speakers in folds:
        assert set(train_idx.tolist()).isdisjoint(test_idx.tolist())
        assert len(train_idx) + len(test_idx) == len(utterances)
        train_spk = {utterances[i].speaker for i in train_idx}
        test_spk = {utterances[i].speaker for i in test_idx}
        assert sorted(test_spk) == test_speakers
        if disjoint_speakers:
            assert train_spk.isdisjoint(test_spk)


def test_loso_one_fold_per_speaker():
    data = toy(5)
    p = parse_protocol("loso")
    assert isinstance(p, LeaveOneSpeakerOut) and p.speaker_independent and p.name == "loso"
    folds = p.folds(data)
    assert [f.test_speakers for f in folds] == [[f"spk{s:02d}"] for s in range(5)]
    _check_partition(data, folds)


def test_loso_needs_two_speakers():
    with pytest.raises(ConfigError, match="at least 2 speakers.*random-split"):
        parse_protocol("loso").folds([utt(0, "a", "solo"), utt(1, "b", "solo")])


def test_loco_one_fold_per_corpus():
    data = [
        Utterance(f"{i}", f"/x/{i}.wav", "angry" if i % 2 else "sad", f"{c}/s{i % 3}", c)
        for i, c in enumerate(["tess", "emodb", "ravdess"] * 4)
    ]
    p = parse_protocol("loco")
    assert p.name == "loco" and p.speaker_independent
    folds = p.folds(data)
    assert [sorted({data[i].corpus for i in f.test_idx}) for f in folds] == [["emodb"], ["ravdess"], ["tess"]]
    assert [len(f.test_idx) for f in folds] == [4, 4, 4]
    for f in folds:
        assert not {data[i].corpus for i in f.train_idx} & {data[i].corpus for i in f.test_idx}
    _check_partition(data, folds)
    with pytest.raises(ConfigError, match="at least 2 corpora.*--corpus"):
        p.folds(data[:1])
    with pytest.raises(ConfigError, match="takes no argument"):
        parse_protocol("loco:3")


def test_speaker_kfold_disjoint_balanced_deterministic():
    data = toy(7)
    p = parse_protocol("speaker-kfold:3", seed=4)
    assert isinstance(p, SpeakerKFold) and p.speaker_independent
    folds = p.folds(data)
    assert len(folds) == 3
    _check_partition(data, folds)
    sizes = [len(f.test_idx) for f in folds]
    biggest_speaker = max(Counter(u.speaker for u in data).values())
    assert max(sizes) - min(sizes) <= biggest_speaker
    again = parse_protocol("speaker-kfold:3", seed=4).folds(data)
    assert [f.test_speakers for f in again] == [f.test_speakers for f in folds]
    with pytest.raises(ConfigError, match="needs at least 9 speakers, found 7.*speaker-kfold:7"):
        parse_protocol("speaker-kfold:9").folds(data)


def test_holdout():
    data = toy(4)
    p = parse_protocol("holdout: spk01, spk03")
    assert isinstance(p, Holdout) and p.name == "holdout:spk01,spk03"
    (fold,) = p.folds(data)
    assert fold.test_speakers == ["spk01", "spk03"]
    assert {data[i].speaker for i in fold.train_idx} == {"spk00", "spk02"}
    with pytest.raises(ConfigError, match=r"\['spk09'\] are not in the data; speakers found: spk00, spk01"):
        parse_protocol("holdout:spk01,spk09").folds(data)
    with pytest.raises(ConfigError, match="no speaker to train on"):
        parse_protocol("holdout:spk00,spk01,spk02,spk03").folds(data)


def test_random_split_is_speaker_dependent_and_stratified():
    data = toy(3)
    p = parse_protocol("random-split:3")
    assert isinstance(p, RandomSplit) and not p.speaker_independent and not hasattr(p, "speaker_dependent")
    folds = p.folds(data)
    _check_partition(data, folds, disjoint_speakers=False)
    for lab, total in Counter(u.label for u in data).items():
        per_fold = [sum(data[i].label == lab for i in f.test_idx) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1 and sum(per_fold) == total


def test_parse_protocol_errors():
    with pytest.raises(ConfigError, match="unknown evaluation protocol 'kfold:5'; valid: loso, loco, speaker-kfold:K"):
        parse_protocol("kfold:5")
    with pytest.raises(ConfigError, match="K must be an integer"):
        parse_protocol("speaker-kfold:five")
    with pytest.raises(ConfigError, match="at least 2"):
        parse_protocol("random-split:1")
    assert parse_protocol(parse_protocol("loso")) == parse_protocol("loso")


def test_validation_split_whole_training_speakers():
    data = toy(6)
    v = validation_split(data, fraction=0.2, seed=3)
    assert v.by_speaker and v.val_speakers
    val_spk = {data[i].speaker for i in v.val_idx}
    assert val_spk == set(v.val_speakers)
    assert val_spk.isdisjoint({data[i].speaker for i in v.train_idx})
    assert len(v.val_idx) + len(v.train_idx) == len(data)
    assert len(v.val_idx) >= 0.2 * len(data)

    two = [utt(0, "a", "p"), utt(1, "b", "p"), utt(2, "a", "q")]
    v2 = validation_split(two, fraction=0.9)
    assert len(v2.val_speakers) == 1 and len(v2.train_idx) > 0  # always leaves a speaker to train on


def test_validation_split_single_speaker_falls_back_to_stratified():
    data = [utt(i, "ab"[i % 2], "solo") for i in range(20)]
    v = validation_split(data, fraction=0.2, seed=0)
    assert not v.by_speaker
    assert Counter(data[i].label for i in v.val_idx) == {"a": 2, "b": 2}
    with pytest.raises(ConfigError, match="between 0 and 1"):
        validation_split(data, fraction=1.5)


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------
def test_evaluate_majority_known_answer():
    # s1: x x y | s2: x y | s3: x z. Each LOSO training set has majority "x", so every prediction is x.
    data = [
        utt(0, "x", "s1"),
        utt(1, "x", "s1"),
        utt(2, "y", "s1"),
        utt(3, "x", "s2"),
        utt(4, "y", "s2"),
        utt(5, "x", "s3"),
        utt(6, "z", "s3"),
    ]
    r = evaluate(MajorityClassifier, data, "loso", progress=False)
    assert r.labels == ["x", "y", "z"]
    assert r.wa == pytest.approx(4 / 7)
    assert r.ua == pytest.approx(1 / 3)
    assert r.macro_f1 == pytest.approx(8 / 33)  # F1(x) = 2·(4/7)·1 / (4/7 + 1) = 8/11; y, z: 0
    assert [f["test_speakers"] for f in r.folds] == [["s1"], ["s2"], ["s3"]]
    assert [(f["n_train"], f["n_test"]) for f in r.folds] == [(4, 3), (5, 2), (5, 2)]
    assert r.folds[0]["ua"] == pytest.approx(0.5) and r.folds[0]["wa"] == pytest.approx(2 / 3)
    # s3's training set (s1 + s2) has no "z": the fold says so and its p_z column is 0
    assert r.folds[2]["missing_train_labels"] == ["z"]
    assert (r.predictions.loc[r.predictions.fold == 2, "p_z"] == 0).all()
    assert list(r.predictions.columns) == [
        "id",
        "path",
        "start",
        "end",
        "speaker",
        "corpus",
        "fold",
        "true",
        "pred",
        "p_x",
        "p_y",
        "p_z",
    ]
    assert not r.speaker_dependent and r.protocol == "loso"


def test_evaluate_pools_predictions_and_aligns_columns_by_name():
    data = toy(6)
    r = evaluate(GuessClassifier, data, "speaker-kfold:3", progress=False, recipe={"name": "toy"})
    expected = metrics([u.label for u in data], [u.extra["guess"] for u in data], r.labels)
    # labels follow the first model's order (reverse sorted), and probabilities follow the labels
    assert r.labels == ["sad", "neutral", "happy", "angry"]
    by_id = r.predictions.set_index("id")
    for u in data:
        assert by_id.loc[u.id, "pred"] == u.extra["guess"]
        assert by_id.loc[u.id, f"p_{u.extra['guess']}"] == 1.0
    assert (r.ua, r.wa, r.macro_f1) == (expected["ua"], expected["wa"], expected["macro_f1"])
    assert r.metrics["confusion"] == expected["confusion"]
    assert r.n_utterances == len(data) and r.n_speakers == 6 and len(r.folds) == 3


def test_evaluate_report_both_adaptation_modes():
    rng = np.random.default_rng(5)
    data = [
        Utterance(
            u.id,
            u.path,
            u.label,
            u.speaker,
            u.corpus,
            extra={**u.extra, "guess_adapted": u.label if rng.random() < 0.8 else u.extra["guess"]},
        )
        for u in toy(4)
    ]
    PREDICTIONS.clear()
    r = evaluate(lambda: GuessClassifier(adapting=True), data, "loso", report_both=True, progress=False)
    assert PREDICTIONS == [True, False] * len(r.folds)  # each fold predicted once per mode, adapted first
    y = [u.label for u in data]
    none = metrics(y, [u.extra["guess"] for u in data], r.labels)
    spk = metrics(y, [u.extra["guess_adapted"] for u in data], r.labels)
    assert r.adaptation["none"]["ua"] == pytest.approx(none["ua"])
    assert r.adaptation["speaker"]["macro_f1"] == pytest.approx(spk["macro_f1"])
    assert r.adaptation["speaker"]["headline"] and not r.adaptation["none"]["headline"]
    assert r.ua == pytest.approx(spk["ua"])  # headline = the model's default mode
    assert "Per-speaker adaptation" in r.to_markdown()
    for f in r.folds:  # per fold, both modes' UA, and the corpora it tested
        test = [u for u in data if u.speaker in f["test_speakers"]]
        assert f["test_corpora"] == ["toy"]
        assert f["ua_by_mode"]["none"] == pytest.approx(
            metrics([u.label for u in test], [u.extra["guess"] for u in test], r.labels)["ua"]
        )

    # a model that does not adapt to speakers has one mode only, predicted once per fold, and a note saying why
    PREDICTIONS.clear()
    plain = evaluate(GuessClassifier, data, "loso", report_both=True, progress=False)
    assert PREDICTIONS == [False] * len(plain.folds)
    assert set(plain.adaptation) == {"none"} and plain.adaptation["none"]["headline"]
    assert "does not adapt" in plain.extra["notes"]["adaptation"] and plain.normalisation == "global"
    assert plain.ua == pytest.approx(none["ua"]) == plain.adaptation["none"]["ua"]
    assert all("ua_by_mode" not in f for f in plain.folds)

    # without report_both an adapting model is predicted once per fold, adapted (its headline mode)
    PREDICTIONS.clear()
    one = evaluate(lambda: GuessClassifier(adapting=True), data, "loso", progress=False)
    assert PREDICTIONS == [True] * len(one.folds) and one.adaptation is None
    assert one.ua == pytest.approx(spk["ua"]) and one.normalisation == "speaker"


def test_test_doubles_follow_the_classifier_contract():
    """The adapt rule lives in the base class: the same for every family, test doubles included."""
    data = toy(3)
    model = GuessClassifier(adapting=True).fit(data)
    assert model.adapts_to_speakers and not model.exportable and not model.prunable and not model.has_embedding
    with pytest.raises(ConfigError, match="adapt=True needs the speakers"):
        model.predict_proba([np.zeros(1600, np.float32)], adapt=True)
    with pytest.raises(ConfigError, match="one speaker id per signal"):
        model.predict_proba([np.zeros(1600, np.float32)], speakers=["a", "b"], adapt=True)
    with pytest.raises(ConfigError, match="adapt must be True, False or None"):
        model.predict_proba_utterances(data, adapt="yes")
    with pytest.raises(TypeError, match="abstract"):
        type("Half", (Classifier,), {"fit": lambda self, u, progress=True: self})()


def test_evaluate_rejects_misshapen_probabilities():
    class Bad(MajorityClassifier):
        def _predict_utterances(self, utterances, speakers, *, progress):
            return np.zeros((len(utterances), 1))

    with pytest.raises(ModelError, match=r"must return \[n_utterances, n_labels\]"):
        evaluate(Bad, toy(3), "loso", progress=False)


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
REQUIRED_KEYS = {
    "ua",
    "wa",
    "macro_f1",
    "labels",
    "confusion",
    "confusion_normalised",
    "per_class",
    "folds",
    "protocol",
    "speaker_dependent",
    "recipe",
    "normalisation",
    "n_utterances",
    "n_speakers",
    "seconds",
}


def test_report_save_and_load(tmp_path):
    data = toy(4)
    r = evaluate(GuessClassifier, data, "loso", progress=False, recipe="toy-recipe", normalisation="speaker")
    out = r.save(tmp_path / "eval")
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion.png",
        "predictions.csv",
        "reliability.png",
        "report.json",
        "report.md",
    ]
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    d = json.loads((out / "report.json").read_text())
    assert REQUIRED_KEYS <= set(d)
    assert d["speaker_dependent"] is False and d["recipe"] == "toy-recipe" and d["normalisation"] == "speaker"
    assert d["n_utterances"] == len(data) and d["n_speakers"] == 4 and len(d["folds"]) == 4

    back = Report.load(out)
    assert (back.ua, back.wa, back.labels, back.protocol) == (r.ua, r.wa, r.labels, r.protocol)
    assert back.predictions["id"].tolist() == r.predictions["id"].tolist()  # "000" stays a string
    assert back.to_dict() == d


def test_markdown_warns_when_speaker_dependent():
    data = toy(3)
    dep = evaluate(GuessClassifier, data, "random-split:3", progress=False)
    assert dep.speaker_dependent and dep.to_dict()["speaker_dependent"] is True
    md = dep.to_markdown()
    assert "**Warning: speaker-dependent evaluation (random-split:3)" in md
    for heading in ("## Per class", "## Confusion matrix", "## Folds"):
        assert heading in md
    indep = evaluate(GuessClassifier, data, "loso", progress=False)
    assert "Warning" not in indep.to_markdown()


# ---------------------------------------------------------------------------------------------
# confidence: calibration numbers in reports, temperature scaling per fold
# ---------------------------------------------------------------------------------------------
def test_report_calibration_of_one_hot_predictions():
    """One-hot predictions have confidence 1: ECE = 1 - accuracy, Brier = 2 (1 - accuracy), per mode."""
    data = [
        Utterance(u.id, u.path, u.label, u.speaker, u.corpus, extra={**u.extra, "guess_adapted": u.label})
        for u in toy(5)
    ]
    r = evaluate(lambda: GuessClassifier(adapting=True), data, "loso", report_both=True, progress=False)
    cal = r.calibration
    assert set(cal["modes"]) == {"none", "speaker"} and cal["calibrated"] is False
    acc = r.adaptation["none"]["wa"]
    assert cal["modes"]["none"]["ece"] == pytest.approx(1 - acc)
    assert cal["modes"]["none"]["brier"] == pytest.approx(2 * (1 - acc))
    assert cal["modes"]["speaker"]["ece"] == pytest.approx(0.0)  # always right with confidence 1
    cov = cal["modes"]["none"]["coverage"]
    assert [c["min_confidence"] for c in cov] == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert all(c["coverage"] == 1.0 and c["accuracy"] == pytest.approx(acc) for c in cov)
    md = r.to_markdown()
    assert "## Confidence" in md and "Coverage" in md and "single utterance" in md


class Overconfident(MajorityClassifier):
    """Labels are drawn from softmax(z); this model reports softmax(T z) with T = 2.5 (over-confident)."""

    T = 2.5

    def fit(self, utterances, *, progress=True):
        self.labels_ = ["a", "b", "c"]
        return self

    def _predict_utterances(self, utterances, speakers, *, progress):
        z = self.T * np.array([u.extra["z"] for u in utterances])
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


def _overconfident_data(n_speakers=6, per_speaker=250, seed=3):
    rng = np.random.default_rng(seed)
    out = []
    for s in range(n_speakers):
        for k in range(per_speaker):
            z = rng.normal(0, 1.2, 3)
            p = np.exp(z) / np.exp(z).sum()
            out.append(
                Utterance(
                    f"{s}-{k}", f"/x/{s}-{k}.wav", "abc"[rng.choice(3, p=p)], f"spk{s}", "toy", extra={"z": tuple(z)}
                )
            )
    return out


def test_evaluate_calibrate_fits_each_fold_on_its_training_speakers():
    from serkit.evaluation.run import fit_temperatures

    data = _overconfident_data()
    rec = fit_temperatures(Overconfident, data)
    assert rec["method"] == "temperature" and rec["fitted_on"]["protocol"] == "speaker-kfold:5"
    assert rec["temperature"]["none"] == pytest.approx(2.5, rel=0.15)
    assert rec["ece_after"]["none"] < rec["ece_before"]["none"]

    plain = evaluate(Overconfident, data, "speaker-kfold:3", progress=False)
    cal = evaluate(Overconfident, data, "speaker-kfold:3", progress=False, calibrate=True)
    assert cal.calibration["calibrated"] and cal.calibration["before"]["none"]["ece"] == pytest.approx(
        plain.calibration["modes"]["none"]["ece"]
    )
    assert cal.calibration["modes"]["none"]["ece"] < 0.5 * plain.calibration["modes"]["none"]["ece"]
    assert cal.calibration["modes"]["none"]["nll"] < plain.calibration["modes"]["none"]["nll"]
    assert all(f["temperature"]["none"] == pytest.approx(2.5, rel=0.2) for f in cal.folds)
    assert cal.ua == plain.ua  # temperature never changes a predicted label
    assert "temperature-scaled" in cal.to_markdown()


def test_calibration_over_corpora_reports_each_held_out_corpus():
    import dataclasses

    from serkit.calibration import apply_temperature, ece
    from serkit.evaluation.run import fit_temperatures

    # speakers 0-2 one corpus, 3-5 another
    data = [
        dataclasses.replace(u, corpus="first" if u.speaker in ("spk0", "spk1", "spk2") else "second")
        for u in _overconfident_data()
    ]
    rec = fit_temperatures(Overconfident, data)
    assert rec["fitted_on"]["protocol"] == "loco" and set(rec["by_corpus"]) == {"first", "second"}
    z = np.array([u.extra["z"] for u in data])
    probs = np.exp(2.5 * z) / np.exp(2.5 * z).sum(1, keepdims=True)  # what the model reports
    y = np.array(["abc".index(u.label) for u in data])
    for corpus, r in rec["by_corpus"].items():
        keep = np.array([u.corpus == corpus for u in data])
        assert r["n"] == 750
        ua = np.mean([np.mean(probs[keep & (y == c)].argmax(1) == c) for c in range(3)])
        assert r["ua"]["none"] == pytest.approx(ua)
        t = rec["temperature"]["none"]
        assert r["ece_after"]["none"] == pytest.approx(ece(apply_temperature(probs[keep], t), y[keep]))
    # the report's folds carry each mode's ECE on their own test clips
    rep = evaluate(Overconfident, data, "loco", progress=False, report_both=True)
    keep = np.array([u.corpus == "first" for u in data])
    fold = next(f for f in rep.folds if f["test_corpora"] == ["first"])
    assert fold["ece_by_mode"]["none"] == pytest.approx(ece(probs[keep], y[keep]), abs=1e-4)


class RobustOverconfident(Overconfident):
    """Adapts to speakers with the robust rule (thresholds 0 and 0.005: the six speakers' one-sidedness
    is 0.0007–0.0083, so they get weights from 0.86 to 0): single clips softmax(2.5 z), adapted ones
    softmax(1.5 z)."""

    def __init__(self):
        self.set_adapt_rule("robust", low=0.0, high=0.005)

    @property
    def normalisation(self):
        return "speaker"

    def _predict_utterances(self, utterances, speakers, *, progress):
        z = (self.T if speakers is None else 1.5) * np.array([u.extra["z"] for u in utterances])
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


def test_the_speaker_temperature_calibrates_what_the_robust_rule_returns():
    """fit_temperatures fits the speaker temperature on adapt=True outputs (the mix); the contract applies
    it to the mix, so the fitted record's ECE is the calibrated model's own (the stand-in needs no
    training, so its out-of-fold predictions are its predictions)."""
    from serkit.calibration import apply_temperature, ece, fit_temperature
    from serkit.evaluation.run import fit_temperatures
    from serkit.speakers import robust_mix

    data = _overconfident_data()
    rec = fit_temperatures(RobustOverconfident, data)
    y = np.array(["abc".index(u.label) for u in data])
    spk = [u.speaker for u in data]
    raw = RobustOverconfident().fit(data)
    single, adapted = (
        raw.predict_proba_utterances(data, adapt=False),
        raw._predict_utterances(data, spk, progress=False),
    )
    mixed = robust_mix(single, adapted, spk, low=0.0, high=0.005, min_utterances=1)
    assert np.abs(mixed - adapted).max() > 0.1 and np.abs(mixed - single).max() > 0.1  # a real mix
    assert rec["temperature"]["speaker"] == pytest.approx(fit_temperature(mixed, y), rel=1e-6)
    model = RobustOverconfident().fit(data).set_temperatures(rec["temperature"])
    calibrated = model.predict_proba_utterances(data, adapt=True)
    np.testing.assert_allclose(calibrated, apply_temperature(mixed, rec["temperature"]["speaker"]), atol=1e-12)
    assert ece(calibrated, y) == pytest.approx(rec["ece_after"]["speaker"], abs=1e-9)
    assert rec["ece_after"]["speaker"] < 0.5 * rec["ece_before"]["speaker"]


def test_temperatures_are_applied_by_the_contract_per_mode():
    data = _overconfident_data(n_speakers=2, per_speaker=5)
    model = Overconfident().fit(data)
    raw = model.predict_proba_utterances(data, adapt=False)
    model.set_temperatures({"none": 2.5, "speaker": 1.0})
    z = np.array([u.extra["z"] for u in data])
    expected = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict_proba_utterances(data, adapt=False), expected, atol=1e-9)
    assert model.temperatures == {"none": 2.5, "speaker": 1.0}
    model.set_temperatures(None)
    np.testing.assert_allclose(model.predict_proba_utterances(data, adapt=False), raw)
    with pytest.raises(ConfigError, match="positive"):
        model.set_temperatures({"none": -1})
    with pytest.raises(ConfigError, match="not one of"):
        model.set_temperatures({"loud": 2.0})


def test_calibration_needs_two_training_speakers():
    from serkit.evaluation.run import fit_temperatures

    with pytest.raises(ConfigError, match="at least 2 speakers"):
        fit_temperatures(Overconfident, _overconfident_data(n_speakers=1, per_speaker=5))
