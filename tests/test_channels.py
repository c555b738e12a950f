"""Channel conditions (serkit.channels), ChannelView and FeatureClassifier(channels=...): known answers."""

from __future__ import annotations

import numpy as np
import pytest

from serkit import channels as ch
from serkit.errors import ConfigError
from tests.conftest import tone

SR = 16000


def _power_above(x: np.ndarray, sr: int, hz: float) -> float:
    p = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / sr)
    return float(p[f > hz].sum() / p.sum())


@pytest.fixture(scope="module")
def speech():
    from serkit.audio import read
    from tests.conftest import data_dir

    return read(data_dir("emodb") / "wav" / "03a01Fa.wav", SR)[0]


def test_telephone_removes_everything_above_4_khz():
    white = (0.1 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32)
    assert _power_above(white, SR, 4000) > 0.45  # white noise in: half its power is above 4 kHz
    for law in ("mu", "a"):
        y = ch.apply("telephone", white, SR, seed=0, law=law)
        assert y.shape == white.shape and y.dtype == np.float32
        assert _power_above(y, SR, 4000) < 0.01
        assert _power_above(y, SR, 3600) < 0.05  # and the 3400 Hz band edge holds
    # at 44.1 kHz too (resampled to 8 kHz and back)
    y = ch.apply("telephone", tone(1000, 1.0, 44100, 0.3), 44100, seed=0)
    assert len(y) == 44100 and _power_above(y, 44100, 4000) < 0.01


def test_companding_round_trip_keeps_a_sine_above_30_db():
    x = tone(440, 1.0, 8000, 0.5)
    assert ch.snr_db(x, ch.mu_law(x) - x) >= 30.0
    assert ch.snr_db(x, ch.a_law(x) - x) >= 30.0
    # 8-bit: a quiet sine loses more than a loud one, but μ-law keeps it far better than linear 8 bits
    quiet = tone(440, 1.0, 8000, 0.01)
    linear = np.round(quiet * 127.5) / 127.5
    assert ch.snr_db(quiet, ch.mu_law(quiet) - quiet) > ch.snr_db(quiet, linear - quiet) + 10


@pytest.mark.parametrize("kind", ["opus", "mp3"])
def test_codec_is_a_real_low_bitrate_round_trip(kind, speech):
    if kind not in ch.available_codecs():
        pytest.skip(f"this libsndfile cannot write {kind}")
    y = ch.apply("codec", speech, SR, seed=0, kind=kind, kbps=24)
    assert abs(len(y) - len(speech)) <= SR // 50  # within a 20 ms frame (here: equal)
    assert np.corrcoef(y, speech)[0, 1] > 0.8  # aligned, not shifted by the codec's delay
    assert not np.allclose(y, speech, atol=1e-3)  # lossy: something was thrown away
    decoded, size = ch.encode_decode(speech, kind, 24)
    kbps = size * 8 / 1000 / (len(speech) / SR)
    assert 16 <= kbps <= 36  # the bitrate asked for, give or take the container (a 2-s clip)
    # a lower bitrate loses more
    lo = ch.apply("codec", speech, SR, seed=0, kind=kind, kbps=16)
    assert ch.snr_db(speech, lo - speech) < ch.snr_db(speech, y - speech)


def test_noise_reaches_the_requested_snr(speech):
    for snr in (5.0, 10.0, 15.0):
        for kind in ("white", "pink", "brown"):
            y = ch.apply("noise", speech, SR, seed=1, snr=snr, kind=kind)
            assert ch.snr_db(speech, y - speech) == pytest.approx(snr, abs=0.5)
    babble = [tone(300, 0.5), tone(450, 0.7), tone(700, 0.3), tone(200, 1.1)]
    y = ch.apply("noise", speech, SR, seed=1, snr=10, kind="babble", babble=babble)
    assert ch.snr_db(speech, y - speech) == pytest.approx(10.0, abs=0.5)
    # drawn: within 5..15 dB
    for seed in range(5):
        y = ch.apply("noise", speech, SR, seed=seed)
        assert 4.5 <= ch.snr_db(speech, y - speech) <= 15.5
    with pytest.raises(ConfigError, match="babble"):
        ch.apply("noise", speech, SR, seed=0, kind="babble")


def test_level_changes_rms_by_the_requested_db():
    x = tone(220, 1.0, SR, 0.05)
    rms = lambda s: float(np.sqrt(np.mean(np.square(s, dtype=np.float64))))  # noqa: E731
    for db in (-10.0, -3.0, 6.0, 10.0):
        y = ch.apply("level", x, SR, seed=0, db=db)
        assert 20 * np.log10(rms(y) / rms(x)) == pytest.approx(db, abs=0.01)
    loud = ch.apply("level", tone(220, 1.0, SR, 0.9), SR, seed=0, db=10)
    assert np.max(np.abs(loud)) <= 1.0  # clipped, as a recorder would


def test_same_seed_same_output_and_unknown_names_list_the_valid_ones(speech):
    x = speech[: SR // 2]
    for name in ch.condition_names():
        a = ch.apply(name, x, SR, seed=7)
        b = ch.apply(name, x, SR, seed=7)
        assert np.array_equal(a, b), name
        assert a.shape == x.shape and a.dtype == np.float32
    assert not np.array_equal(ch.apply("noise", x, SR, seed=1), ch.apply("noise", x, SR, seed=2))
    assert ch.condition_names() == ["codec", "level", "noise", "telephone"]
    with pytest.raises(ConfigError, match="codec, level, noise, telephone"):
        ch.apply("radio", x, SR)
    with pytest.raises(ConfigError, match="opus, mp3"):
        ch.apply("codec", x, SR, kind="aac")


def test_channel_view_has_its_own_cache_key_and_degrades_the_clip(speech):
    from serkit.features import get_extractor
    from serkit.features.base import ChannelView

    inner = get_extractor("librosa")
    view = ChannelView(inner, "telephone", seed=0)
    keys = {str(inner.full_config()), str(view.full_config()), str(ChannelView(inner, "telephone", 1).full_config())}
    assert len(keys) == 3  # the clean extractor, and one per seed
    assert str(ChannelView(inner, "codec", 0).full_config()) not in keys
    assert view.feature_names() == inner.feature_names()
    # the view's features are the inner extractor's features of the degraded clip, the same every time
    x = speech[:SR]
    rows = view.functionals_batch([x, x])
    assert np.array_equal(rows[0], rows[1])
    assert not np.allclose(rows[0], inner.functionals(x))
    # fixed options join the key and reach the condition
    fixed = ChannelView(inner, "noise", 0, options={"snr": 10.0, "kind": "white"})
    assert fixed.full_config()["channel_options"] == {"kind": "white", "snr": 10.0}
    assert str(fixed.full_config()) != str(ChannelView(inner, "noise", 0).full_config())
    heard = fixed._change(x)
    assert ch.snr_db(x, heard - x) == pytest.approx(10.0, abs=0.5)
    with pytest.raises(ConfigError, match="codec, level, noise, telephone"):
        ChannelView(inner, "radio")


def test_channel_view_of_an_in_process_extractor_changes_signals_on_threads(speech):
    """GE2E runs in this process (``parallel = False``), so its view changes a batch on threads:
    the same rows as changing the clips one by one."""
    from serkit.features import get_extractor
    from serkit.features.base import ChannelView

    inner = get_extractor("ge2e")
    view = ChannelView(inner, "codec", seed=0)
    assert not view.parallel
    clips = [speech[:SR], speech[SR : 2 * SR], speech[: SR // 2 * 3]]
    np.testing.assert_array_equal(
        view.functionals_batch(clips), inner.functionals_batch([view._change(x) for x in clips])
    )


def test_feature_classifier_trains_on_channel_rows(emodb_dir, tmp_path):
    from serkit.artifact import save_model
    from serkit.corpora import load_corpus
    from serkit.models import load_model
    from serkit.models.features import FeatureClassifier

    utts, counts = [], {}
    for u in load_corpus(f"emodb:{emodb_dir}"):
        key = (u.speaker, u.label)
        if u.speaker in ("03", "08") and u.label in ("angry", "sad") and counts.get(key, 0) < 3:
            counts[key] = counts.get(key, 0) + 1
            utts.append(u)
    assert len(utts) == 12
    channels = ["telephone", "codec", "noise", "level"]
    model = FeatureClassifier(["librosa"], grid={"C": [0.01]}, channels=channels).fit(utts, progress=False)
    assert model.estimators_[0][-1].shape_fit_[0] == len(utts) * (1 + len(channels))
    assert model.selected_["training_rows"] == 60
    assert len(model.global_mean_) == 1  # the clean view's statistics only: predictions use it alone
    plain = FeatureClassifier(["librosa"], grid={"C": [0.01]}).fit(utts, progress=False)
    np.testing.assert_allclose(model.global_mean_[0], plain.global_mean_[0])
    p = model.predict_proba_utterances(utts, progress=False)
    assert p.shape == (12, 2) and float(np.mean(p.argmax(1) == [model.labels_.index(u.label) for u in utts])) > 0.5
    # through_channel: a copy hearing the clips through a condition; the original is unchanged
    heard = model.through_channel("telephone", seed=0).predict_proba_utterances(utts, progress=False)
    assert heard.shape == p.shape and not np.allclose(heard, p)
    np.testing.assert_allclose(model.predict_proba_utterances(utts, progress=False), p)
    save_model(model, tmp_path / "m")
    loaded, _ = load_model(tmp_path / "m")
    assert loaded.channels == channels and loaded.config()["selected"]["training_rows"] == 60
    np.testing.assert_allclose(loaded.predict_proba_utterances(utts, progress=False), p)
    # channel_copies: one — a single copy per clip, through the condition drawn for that clip, read
    # from the same cache entries as the copy-per-condition model's
    one = FeatureClassifier(["librosa"], grid={"C": [0.01]}, channels=channels, channel_copies="one")
    drawn = one.channel_draw(utts)
    assert list(one.channel_draw(utts[5:])) == list(drawn[5:])  # a clip's draw does not depend on the others
    assert len(set(drawn)) >= 2
    each_rows, one_rows = model._channel_blocks(utts, False), one._channel_blocks(utts, False)
    assert len(one_rows) == 1
    for i, c in enumerate(drawn):
        np.testing.assert_array_equal(one_rows[0][0][i], each_rows[channels.index(c)][0][i])
    one.fit(utts, progress=False)
    assert one.estimators_[0][-1].shape_fit_[0] == 24 and one.selected_["training_rows"] == 24
    save_model(one, tmp_path / "one")
    assert load_model(tmp_path / "one")[0].channel_copies == "one"
    with pytest.raises(ConfigError, match="'each'"):
        FeatureClassifier(["librosa"], channels=channels, channel_copies="all")
    with pytest.raises(ConfigError, match="codec, level, noise, telephone"):
        FeatureClassifier(["librosa"], channels=["radio"])
    with pytest.raises(ConfigError, match="no audio"):
        model.fit_features([np.zeros((4, 2))], ["a", "b", "a", "b"], np.array(["s"] * 4))
