"""CORAL adaptation of feature models: known answers on synthetic features, the artifact, the errors."""

import copy
import json
import shutil

import numpy as np
import pytest

from serkit.adaptation import adapt_classifier, adapt_model, check_method, post_hoc_method, target_utterances
from serkit.artifact import save_model
from serkit.corpora import Utterance
from serkit.domain import coral_map, domain_stats
from serkit.errors import ConfigError
from serkit.evaluation import evaluate
from serkit.models import load_model
from serkit.models.features import FeatureClassifier


def _source(seed=0, n=90, d=6):
    """Three well-separated Gaussian classes in d dimensions, three speakers."""
    rng = np.random.default_rng(seed)
    means = np.zeros((3, d))
    means[0, 0], means[1, 1], means[2, 2] = 3.0, 3.0, 3.0
    y = np.arange(n) % 3
    x = means[y] + rng.normal(size=(n, d))
    labels = [("angry", "happy", "sad")[k] for k in y]
    speakers = np.array([f"s{i % 3}" for i in range(n)])
    return x, labels, speakers


#: an offset per feature dimension that pushes every clip towards the first class
_OFFSET = np.array([8.0, -4.0, -4.0, 1.0, 2.0, 3.0])


def _model(x, labels, speakers):
    m = FeatureClassifier(["librosa"], classifier="logreg", normalisation="global", grid={"C": [1.0]})
    return m.fit_features([x], labels, speakers)


def _predict(model, x):
    p = model._proba_from_views([[x]], None)
    return [model.labels_[i] for i in p.argmax(1)]


def _ua(y, p):
    from serkit.metrics import unweighted_accuracy

    return unweighted_accuracy(y, p)


def test_coral_undoes_a_gain_and_offset_shift():
    x, labels, speakers = _source()
    model = _model(x, labels, speakers)
    assert model.source_stats_[0].n == len(x)
    # the training rows in the single-utterance space: standardised with the training statistics
    rows = model._domain_rows([[x]])[0]
    np.testing.assert_allclose(model.source_stats_[0].mean, rows.mean(0), atol=1e-12)
    before = _predict(model, x)
    assert _ua(labels, before) > 0.9
    target = 3.0 * x + _OFFSET  # another microphone: a gain and an offset on every feature
    assert _ua(labels, _predict(model, target)) < 0.6  # the unadapted model calls most clips angry
    target_rows = model._domain_rows([[target]])
    maps = [coral_map(s, domain_stats(r)) for s, r in zip(model.source_stats_, target_rows)]
    model.set_domain(maps=maps)
    # Ledoit-Wolf shrinkage is scale invariant, so the map undoes the shift exactly
    assert _predict(model, target) == before


def test_adapted_model_round_trips_and_old_models_say_what_to_do(tmp_path, monkeypatch):
    x, labels, speakers = _source(1)
    model = _model(x, labels, speakers)
    rows = model._domain_rows([[2 * x - 1]])
    model.set_domain(maps=[coral_map(model.source_stats_[0], domain_stats(rows[0]))])
    out = save_model(model, tmp_path / "m")
    meta = json.loads((out / "model.json").read_text())
    assert "domain.npz" in meta["files"]
    with np.load(out / "domain.npz", allow_pickle=False) as z:
        assert {"source_mean_0", "source_cov_triu_0", "map_a_0", "map_b_0"} <= set(z.files)
        d = len(z["source_mean_0"])
        assert z["source_cov_triu_0"].shape == (d * (d + 1) // 2,)  # the symmetric matrix is kept as its triangle
    back, _ = load_model(out)
    np.testing.assert_allclose(back.source_stats_[0].cov, model.source_stats_[0].cov, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(back.source_stats_[0].cov, back.source_stats_[0].cov.T)
    # the first layout (the full matrix, serkit 0.1.0 before the triangle) still loads
    full = tmp_path / "full"
    shutil.copytree(out, full)
    with np.load(out / "domain.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "source_cov_triu_0"}
    np.savez(full / "domain.npz", source_cov_0=back.source_stats_[0].cov.astype(np.float32), **arrays)
    np.testing.assert_allclose(load_model(full)[0].source_stats_[0].cov, back.source_stats_[0].cov, atol=1e-7)
    p1 = model._proba_from_views([[2 * x - 1]], None)
    p2 = back._proba_from_views([[2 * x - 1]], None)
    np.testing.assert_allclose(p1, p2, atol=1e-4)

    # a model saved before serkit kept domain statistics: loads, predicts, and adapt names the fix
    old = tmp_path / "old"
    shutil.copytree(out, old)
    (old / "domain.npz").unlink()
    meta["files"].remove("domain.npz")
    (old / "model.json").write_text(json.dumps(meta))
    legacy, _ = load_model(old)
    assert legacy.source_stats_ is None and legacy.domain_map_ is None
    monkeypatch.setattr("serkit.adaptation.target_utterances", lambda *a, **k: [])
    with pytest.raises(ConfigError, match=r"--source NAME:ROOT.*serkit train"):
        adapt_model(old, "anything", out=tmp_path / "new")


class _Neural:
    family = "neural"
    domain_methods = ()


def test_method_errors_list_the_valid_ones():
    model = FeatureClassifier(["librosa"])
    check_method(model, "coral")
    with pytest.raises(ConfigError, match="valid methods: voices, coral, adabn"):
        check_method(model, "tca")
    with pytest.raises(
        ConfigError, match="does not apply to model family 'features'; methods that apply to it: voices, coral"
    ):
        check_method(model, "adabn")
    with pytest.raises(ConfigError, match="family 'neural'; no method applies to it after training"):
        check_method(_Neural(), "coral")


def test_target_errors(tmp_path):
    with pytest.raises(ConfigError, match="no audio found"):
        target_utterances(str(tmp_path))
    with pytest.raises(ConfigError, match="neither an existing file or folder nor a corpus spec"):
        target_utterances(str(tmp_path / "missing"))
    x, labels, speakers = _source(2)
    model = _model(x, labels, speakers)
    few = [Utterance(f"{i}", f"/x/{i}.wav", "", "target", "target") for i in range(7)]
    with pytest.raises(ConfigError, match="at least 20 target clips.*has 7"):
        adapt_classifier(model, few)


class _RowModel(FeatureClassifier):
    """Feature rows come from ``u.extra['x']`` instead of audio (for the evaluation loop)."""

    def _blocks_from_utterances(self, utterances, progress):
        return [[np.array([u.extra["x"] for u in utterances])]]

    def fit(self, utterances, *, progress=True):
        u = list(utterances)
        return self.fit_features(self._blocks_from_utterances(u, progress)[0], [v.label for v in u],
                                 np.array([v.speaker for v in u]))  # fmt: skip


def test_evaluate_loco_with_coral_is_transductive_and_keeps_unadapted_numbers():
    from functools import partial

    from serkit.adaptation import fold_adapter

    rng = np.random.default_rng(3)
    data = []
    for c, (gain, offset) in enumerate([(1.0, 0.0), (1.0, 0.3), (3.0, _OFFSET)]):
        x, labels, speakers = _source(10 + c, n=60)
        for i in range(len(x)):
            data.append(Utterance(f"{c}-{i}", f"/x/{c}-{i}.wav", labels[i], f"c{c}/{speakers[i]}", f"corpus{c}",
                                  extra={"x": gain * x[i] + offset + 0.01 * rng.normal()}))  # fmt: skip

    def factory():
        return _RowModel(["librosa"], classifier="logreg", normalisation="global", grid={"C": [1.0]})

    r = evaluate(factory, data, "loco", report_both=True, progress=False, domain_adapt=partial(fold_adapter),
                 domain_method="coral")  # fmt: skip
    assert r.extra["transductive"]["method"] == "coral"
    assert set(r.adaptation) == {"none", "domain"} and r.adaptation["none"]["headline"]
    shifted = next(f for f in r.folds if f["test_corpora"] == ["corpus2"])
    assert shifted["ua_by_mode"]["none"] < 0.6 < 0.9 < shifted["ua_by_mode"]["domain"]
    assert "mode `domain`" in r.to_markdown()


def test_cli_adapt_errors_and_info(tmp_path, capsys):
    from serkit.cli import main

    empty = tmp_path / "calls"
    empty.mkdir()
    # the shipped default model keeps its source statistics: what is missing is target audio
    assert main(["adapt", "-q", "--target", str(empty), "--out", str(tmp_path / "m2")]) == 2
    err = capsys.readouterr().err
    assert "no audio found in the target" in err and "Traceback" not in err
    assert main(["adapt", "-q", "--target", str(empty), "--adapt-method", "adabn", "--out", str(tmp_path / "m")]) == 2
    assert "adabn (AdaBN" in (err := capsys.readouterr().err) and "methods that apply to it: voices, coral" in err

    x, labels, speakers = _source(4)
    model = _model(x, labels, speakers)
    info = {"method": "coral", "n_files": 31, "content_hash": "ab" * 32, "target": "calls/", "source_model": "m"}
    out = save_model(model, tmp_path / "adapted", extra={"adaptation": info})
    assert main(["info", "--model", str(out)]) == 0
    assert "adapted:    coral to calls/ (31 files, content sha256 abababababab" in capsys.readouterr().out


class _VoiceRowModel(_RowModel):
    """Rows from ``u.extra['x']`` and voice embeddings from ``u.extra['v']`` (no audio)."""

    def _voice_embeddings(self, *, utterances=None, signals=None, progress=False):
        return np.array([u.extra["v"] for u in utterances])


def _voices_data(seed=5):
    """Three training speakers and a target of two unknown voices, each voice with its own offset."""
    rng = np.random.default_rng(seed)
    x, labels, _ = _source(seed, n=90)
    speakers = [f"s{(i // 3) % 3}" for i in range(90)]  # every speaker has every class
    offsets = {"s0": 0.0, "s1": 2.0, "s2": -2.0}
    train = [Utterance(f"tr{i}", f"/x/tr{i}.wav", labels[i], speakers[i], "src",
                       extra={"x": x[i] + offsets[speakers[i]]}) for i in range(len(x))]  # fmt: skip
    xt, labels_t, _ = _source(seed + 1, n=60)
    voice = np.arange(60) // 30  # two voices, 30 clips each, speakers unknown
    shift = np.where(voice[:, None] == 0, _OFFSET, -_OFFSET[::-1])
    emb = np.eye(4)[voice] + 0.05 * rng.normal(size=(60, 4))
    target = [Utterance(f"t{i}", f"/x/t{i}.wav", labels_t[i], "target", "target",
                        extra={"x": xt[i] + shift[i], "v": emb[i]}) for i in range(60)]  # fmt: skip
    return train, target, voice


def test_voices_standardise_each_unknown_voice_like_a_speaker(tmp_path):
    train, target, voice = _voices_data()
    y = [u.label for u in target]
    model = _VoiceRowModel(["librosa"], classifier="logreg", normalisation="speaker", grid={"C": [1.0]}).fit(train)
    assert model.domain_methods == ("voices", "coral")
    single = model.predict_proba_utterances(target, adapt=False, progress=False)
    assert _ua(y, [model.labels[i] for i in single.argmax(1)]) < 0.6
    assert post_hoc_method(model) == "voices"
    three = adapt_classifier(copy.deepcopy(model), target)  # VOICE_GROUPS = 3: one voice is split in two
    assert sorted(three.voices_["sizes"]) == [15, 15, 30] and three.single_utterance_mode == "voices"
    adapted = model.adapt_voices(target, groups=2, progress=False)
    assert adapted.voices_["sizes"] == [30, 30]
    # without the head, a clip is standardised exactly as if its voice were a known speaker
    views = adapted._blocks_from_utterances(target, False)
    oracle = adapted._proba_from_views(views, np.array([f"v{g}" for g in voice]))
    groups = adapted._voice_of(utterances=target)
    np.testing.assert_allclose(adapted._proba_from_views(views, None, groups, refine=False), oracle, atol=1e-12)
    p = adapted.predict_proba_utterances(target, adapt=False, progress=False)
    assert _ua(y, [adapted.labels[i] for i in p.argmax(1)]) > 0.9
    # a single new clip joins its voice's group; speaker-adapted predictions are unchanged
    one = adapted.predict_proba_utterances(target[40:41], adapt=False, progress=False)
    np.testing.assert_allclose(one, p[40:41], atol=1e-12)
    np.testing.assert_allclose(
        adapted.predict_proba_utterances(target, adapt=True, progress=False),
        _VoiceRowModel(["librosa"], classifier="logreg", normalisation="speaker", grid={"C": [1.0]})
        .fit(train)
        .predict_proba_utterances(target, adapt=True, progress=False),
        atol=1e-12,
    )
    # the groups, their statistics and the head survive saving (voices.npz, no pickle)
    out = save_model(adapted, tmp_path / "m")
    assert "voices.npz" in json.loads((out / "model.json").read_text())["files"]
    back = load_model(out)[0]
    back.__class__ = _VoiceRowModel
    np.testing.assert_allclose(back.predict_proba_utterances(target, adapt=False, progress=False), p, atol=1e-5)


def test_voices_needs_speaker_normalisation():
    x, labels, speakers = _source(6)
    model = _model(x, labels, speakers)  # normalisation: global
    assert model.domain_methods == ("coral",)
    with pytest.raises(ConfigError, match="does not apply to model family 'features'; methods that apply to it: coral"):
        check_method(model, "voices")


def test_a_voices_adapted_model_has_its_own_temperature():
    train, target, _ = _voices_data()
    model = _VoiceRowModel(["librosa"], classifier="logreg", normalisation="speaker", grid={"C": [1.0]}).fit(train)
    model.set_temperatures({"none": 2.0, "speaker": 0.5, "voices": 4.0})
    adapted = model.adapt_voices(target, groups=2, progress=False)
    raw = adapted._proba_from_views(
        adapted._blocks_from_utterances(target, False), None, adapted._voice_of(utterances=target)
    )
    from serkit.calibration import apply_temperature

    np.testing.assert_allclose(
        adapted.predict_proba_utterances(target, adapt=False, progress=False), apply_temperature(raw, 4.0), atol=1e-12
    )
    # calibrated before the voices mode existed: the single-utterance temperature
    adapted.set_temperatures({"none": 2.0, "speaker": 0.5})
    np.testing.assert_allclose(
        adapted.predict_proba_utterances(target, adapt=False, progress=False), apply_temperature(raw, 2.0), atol=1e-12
    )
