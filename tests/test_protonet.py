"""Prototypical networks: the episodic sampler, learning on known clusters, persistence, the embedding,
and one real speaker-independent run on EmoDB."""

from __future__ import annotations

import numpy as np
import pytest

from serkit.artifact import save_model
from serkit.errors import ConfigError, ModelError
from serkit.models import build_model, load_model
from serkit.models.protonet import EpisodeSampler, ProtoNetClassifier

FEATS = [{"name": "librosa", "n_formants": 0}]  # named for config(); synthetic rows stand in for its output


def clusters(n_per=15, n_spk=4, shift=6.0, offset_sd=0.0, dim=6, seed=0):
    """Three well-separated classes in ``dim`` dimensions; each speaker may add its own offset."""
    rng = np.random.default_rng(seed)
    x, y, s = [], [], []
    for k in range(n_spk):
        offset = rng.normal(0, offset_sd, size=dim)
        for c in range(3):
            x.append(rng.normal(np.eye(3, dim)[c] * shift + offset, 1.0, size=(n_per, dim)))
            y += [f"c{c}"] * n_per
            s += [f"s{k}"] * n_per
    return np.concatenate(x), np.array(y), np.array(s)


# -- the episodic sampler ---------------------------------------------------------------------------


def test_support_and_query_of_a_class_come_from_different_speakers():
    # class 0: speakers a, b, c; class 1: speakers a, d; class 2: only speaker e (clip-disjoint fallback)
    speakers = ["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["a"] * 5 + ["d"] * 5 + ["e"] * 6
    targets = [0] * 12 + [1] * 10 + [2] * 6
    sampler = EpisodeSampler(targets, speakers, shots=3, queries=2)
    assert sampler.speaker_disjoint == [2]
    spk, rng = np.array(speakers), np.random.default_rng(0)
    seen_support = {0: set(), 1: set()}
    for _ in range(200):
        support, query = sampler.sample(rng)
        assert support.shape == (3, 3) and query.shape == (3, 2)
        for c in range(3):
            assert set(np.asarray(targets)[support[c]]) == {c} and set(np.asarray(targets)[query[c]]) == {c}
        for c in (0, 1):
            assert not set(spk[support[c]]) & set(spk[query[c]])
            seen_support[c] |= set(spk[support[c]])
        assert not set(support[2]) & set(query[2])  # one speaker: never the same clip on both sides
    assert seen_support == {0: {"a", "b", "c"}, 1: {"a", "d"}}  # every speaker gets to be support


def test_a_class_in_several_corpora_splits_by_corpus():
    # class 0 in corpora X (speakers a, b) and Y (speaker c): support and query never share a corpus
    speakers = ["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["a"] * 4 + ["b"] * 4
    corpora = ["X"] * 8 + ["Y"] * 4 + ["X"] * 8
    targets = [0] * 12 + [1] * 8
    sampler = EpisodeSampler(targets, speakers, corpora, shots=2, queries=2)
    corp, spk, rng = np.array(corpora), np.array(speakers), np.random.default_rng(1)
    for _ in range(100):
        support, query = sampler.sample(rng)
        assert not set(corp[support[0]]) & set(corp[query[0]])
        assert not set(spk[support[1]]) & set(spk[query[1]])  # class 1 is in one corpus: by speaker


def test_bad_episode_settings_are_clear():
    with pytest.raises(ConfigError, match="at least 2 per class"):
        EpisodeSampler([0, 0, 1], ["a", "b", "a"])
    with pytest.raises(ConfigError, match="shots >= 1"):
        EpisodeSampler([0, 0, 1, 1], ["a", "b", "a", "b"], shots=0)
    with pytest.raises(ConfigError, match="normalisation"):
        ProtoNetClassifier(FEATS, normalisation="per-clip")
    with pytest.raises(ConfigError, match="dropout"):
        ProtoNetClassifier(FEATS, dropout=1.0)
    with pytest.raises(ConfigError, match="'auto' or a number > 0"):
        ProtoNetClassifier(FEATS, temperature="hot")
    with pytest.raises(ConfigError, match="train_views must be 'speaker' or 'both'"):
        ProtoNetClassifier(FEATS, train_views="all")


# -- learning, persistence, embedding ----------------------------------------------------------------


def _fit(x, y, s, **kw):
    options = {"hidden": 32, "dim": 8, "dropout": 0.2, "episodes": 150, "shots": 3, "queries": 3, "lr": 1e-3}
    options.update({"weight_decay": 1e-4, "temperature": 1.0, "seed": 0, **kw})
    return ProtoNetClassifier(FEATS, **options).fit_features([x], y, s)


def test_well_separated_clusters_are_classified_perfectly_on_a_held_out_speaker():
    x, y, s = clusters(offset_sd=4.0)
    train, test = s != "s3", s == "s3"
    model = _fit(x[train], y[train], s[train])
    labels = np.array(model.labels_)
    adapted = model._proba_from_blocks([x[test]], list(s[test]))
    assert np.allclose(adapted.sum(axis=1), 1.0)
    assert np.array_equal(labels[adapted.argmax(1)], y[test])  # per-speaker standardisation removes the offset
    both = _fit(x[train], y[train], s[train], train_views="both")  # single-utterance rows as extra examples
    assert np.array_equal(labels[both._proba_from_blocks([x[test]], list(s[test])).argmax(1)], y[test])
    x0, y0, s0 = clusters(offset_sd=0.0, seed=1)  # no speaker offsets: single clips are enough
    plain = _fit(x0[s0 != "s3"], y0[s0 != "s3"], s0[s0 != "s3"], normalisation="global")
    single = plain._proba_from_blocks([x0[s0 == "s3"]], None)
    assert np.array_equal(np.array(plain.labels_)[single.argmax(1)], y0[s0 == "s3"])
    # the prototypes are the mean embeddings of the training clips, class by class
    emb = model._embed_rows(model._rows([x[train]], s[train]))
    assert np.allclose(model.prototypes_["speaker"][0], emb[y[train] == "c0"].mean(0))


def test_training_is_deterministic_and_the_round_trip_gives_identical_probabilities(tmp_path, monkeypatch):
    # a fixed torch thread count: otherwise each fit takes the cores the load leaves it
    # (serkit.runtime.default_threads), and 1 and 2 threads round the sums differently
    monkeypatch.setenv("SERKIT_THREADS", "1")
    x, y, s = clusters(offset_sd=2.0, seed=3)
    a, b = (_fit(x, y, s, episodes=60, temperature="auto") for _ in range(2))
    assert a.temperature_ == b.temperature_ and a.temperature_["speaker"] != 1.0
    assert np.array_equal(a._proba_from_blocks([x], list(s)), b._proba_from_blocks([x], list(s)))
    save_model(a, tmp_path / "m", recipe={"name": "protonet"})
    assert {"head.safetensors", "protonet.npz", "model.json"} <= {p.name for p in (tmp_path / "m").iterdir()}
    loaded, _ = load_model(tmp_path / "m")
    assert isinstance(loaded, ProtoNetClassifier) and loaded.labels_ == a.labels_
    for speakers in (list(s), None):
        assert np.array_equal(loaded._proba_from_blocks([x], speakers), a._proba_from_blocks([x], speakers))
    assert loaded.has_embedding and loaded.normalisation == "speaker" and loaded.adapts_to_speakers
    (tmp_path / "m" / "protonet.npz").write_bytes(b"not an archive")
    with pytest.raises(ModelError, match="re-train or re-copy"):
        load_model(tmp_path / "m")


def test_fitted_temperature_lowers_the_held_out_log_loss():
    """Overlapping classes: raw softmax(-d²) is far too sure of itself on a new speaker; τ from inner folds is not."""
    x, y, s = clusters(n_per=20, shift=2.0, offset_sd=1.0, dim=40, seed=5)  # 37 noise dimensions to overfit
    train, test = s != "s3", s == "s3"

    def nll(model):
        p = model._proba_from_blocks([x[test]], list(s[test]))
        truth = [model.labels_.index(l) for l in y[test]]
        return -np.mean(np.log(np.maximum(p[np.arange(len(truth)), truth], 1e-300)))

    raw = _fit(x[train], y[train], s[train], episodes=200, lr=1e-2)
    fitted = _fit(x[train], y[train], s[train], episodes=200, lr=1e-2, temperature="auto")
    assert fitted.fitted_["temperature_folds"] == 3 and fitted.temperature_["speaker"] > 2.0
    assert nll(fitted) < 0.75 * nll(raw)  # measured 0.585 against 0.950


def test_embedding_is_the_heads_output_on_single_utterance_rows(monkeypatch):
    x, y, s = clusters(seed=4)
    model = _fit(x, y, s, dim=5)
    monkeypatch.setattr(model, "_blocks_from_signals", lambda signals: [x[: len(signals)]])
    emb = model.embed_signals([np.zeros(16000, np.float32)] * 7)
    assert emb.shape == (7, 5) and emb.dtype == np.float64
    import torch

    rows = (x[:7] - model.global_mean_[0]) / model.global_std_[0]
    with torch.no_grad():
        expected = model.head_(torch.from_numpy(rows.astype(np.float32))).double().numpy()
    assert np.allclose(emb, expected, atol=1e-5)


# -- one real corpus --------------------------------------------------------------------------------


def test_real_emodb_subset_beats_chance_on_a_held_out_speaker_and_embeds(emodb_dir):
    """librosa functionals (cached) of 3 EmoDB emotions, 4 speakers; speaker 10 held out."""
    from tests.test_models import emodb_subset

    utts = emodb_subset(emodb_dir)
    train = [u for u in utts if u.speaker != "10"]
    test = [u for u in utts if u.speaker == "10"]
    section = {"family": "protonet", "features": FEATS, "hidden": 64, "dim": 16, "episodes": 200, "shots": 3}
    model = build_model(section).fit(train, progress=False)
    p = model.predict_proba_utterances(test, progress=False)
    ua = np.mean(
        [np.mean(np.array(model.labels_)[p[[u.label == c for u in test]].argmax(1)] == c) for c in model.labels_]
    )
    assert ua > 0.6  # chance is 1/3
    emb = model.embed_utterances(test[:4], progress=False)
    assert emb.shape == (4, 16) and np.isfinite(emb).all()
    # serkit enrol works in its embedding: 3 clips per class of the held-out speaker as support
    from serkit.enrolment import enrol_classifier

    enrolled, chosen = enrol_classifier(model, test, shots=3, seed=0)
    assert enrolled.labels == sorted(model.labels_) and len(chosen) == 9
    rest = [u for u in test if u not in chosen]
    q = enrolled.predict_proba_utterances(rest, progress=False)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-9)
    pred = np.array(enrolled.labels)[q.argmax(1)]
    present = sorted({u.label for u in rest})  # a class of only 3 clips is all support
    assert np.mean([np.mean(pred[[u.label == c for u in rest]] == c) for c in present]) > 0.6
