"""Feature extraction on signals with known answers: tones, noise, synthetic vowels, silence, EmoDB."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import scipy.stats

from serkit.errors import ConfigError
from serkit.features import extract, get_extractor
from serkit.features import spectral as sp
from serkit.features.functionals import STATS, functional_names, functionals
from serkit.features.spectral import LogMelExtractor
from tests.conftest import DATA

SR = 16000
EMODB_FILE = DATA / "emodb" / "wav" / "03a01Fa.wav"


def tone(freq: float, seconds: float = 1.0, amplitude: float = 0.5, phase: float = 0.3, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def harmonic_tone(f0: float, seconds: float = 1.0, n_harmonics: int = 10) -> np.ndarray:
    """A sawtooth-like tone: harmonics k*f0 at amplitude 1/k with scattered phases."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t + 0.7 * k) / k for k in range(1, n_harmonics + 1))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def vowel(formants=(700.0, 1220.0, 2600.0), bandwidths=(80.0, 90.0, 120.0), f0: float = 120.0, seconds: float = 1.0):
    """Klatt-style vowel: impulses -> -12 dB/oct glottal pulse -> +6 dB/oct lip radiation -> formant resonators."""
    x = np.zeros(int(seconds * SR))
    x[:: int(round(SR / f0))] = 1.0
    g = np.exp(-2 * np.pi * 100.0 / SR)
    x = scipy.signal.lfilter([1.0], [1.0, -2 * g, g * g], x)
    x = np.diff(x, prepend=0.0)
    for f, b in zip(formants, bandwidths):
        r = np.exp(-np.pi * b / SR)
        x = scipy.signal.lfilter([1 - r], [1.0, -2 * r * np.cos(2 * np.pi * f / SR), r * r], x)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def interior(a: np.ndarray, k: int = 5) -> np.ndarray:
    """Frames away from the zero-padded edges."""
    return a[k:-k]


# ------------------------------------------------------------------------------------------ F0


@pytest.mark.parametrize(
    "signal, expected",
    [(tone(220.0), 220.0), (harmonic_tone(150.0), 150.0), (harmonic_tone(95.0), 95.0), (tone(440.0), 440.0)],
    ids=["sine220", "harmonic150", "harmonic95", "sine440"],
)
def test_f0_yin_of_tones(signal, expected):
    hz, voiced = sp.f0(signal, SR)
    assert interior(voiced).all()
    np.testing.assert_allclose(interior(hz), expected, atol=2.0)


def test_f0_pyin_of_tone():
    hz, voiced = sp.f0(tone(220.0, seconds=0.5), SR, method="pyin")
    assert interior(voiced).all()
    np.testing.assert_allclose(interior(hz), 220.0, atol=2.0)


def test_f0_white_noise_is_unvoiced():
    noise = np.random.default_rng(0).normal(0, 0.1, 2 * SR).astype(np.float32)
    hz, voiced = sp.f0(noise, SR)
    assert voiced.mean() < 0.02
    assert np.isnan(hz[~voiced]).all()


def test_f0_silence_is_unvoiced_and_quiet_frames_are_gated():
    hz, voiced = sp.f0(np.zeros(SR, dtype=np.float32), SR)
    assert not voiced.any() and np.isnan(hz).all()
    # a periodic tone 60 dB below the loud part of the signal is not counted as voice
    x = np.concatenate([tone(200.0, 0.5, amplitude=0.5), tone(200.0, 0.5, amplitude=0.0005)])
    _, voiced = sp.f0(x, SR)
    assert voiced[5:45].all() and not voiced[55:-5].any()


def test_f0_unknown_method():
    with pytest.raises(ConfigError, match="unknown F0 method 'crepe'"):
        sp.f0(tone(220.0), SR, method="crepe")


# ------------------------------------------------------------------------------ time domain, spectra


@pytest.mark.parametrize("amplitude, freq", [(0.5, 440.0), (0.05, 1000.0), (0.9, 173.0)])
def test_rms_of_sine_is_amplitude_over_sqrt2(amplitude, freq):
    level = sp.rms(tone(freq, amplitude=amplitude), SR)
    np.testing.assert_allclose(interior(level), amplitude / np.sqrt(2), rtol=0.01)


@pytest.mark.parametrize("freq", [440.0, 1000.0, 3000.0])
def test_zcr_of_sine(freq):
    rate = sp.zcr(tone(freq), SR)
    assert interior(rate).mean() == pytest.approx(2 * freq / SR, rel=0.02)


@pytest.mark.parametrize("freq", [500.0, 1000.0, 4000.0])
def test_spectral_centroid_of_pure_tone(freq):
    centroid = sp.spectral_centroid(tone(freq), SR)
    np.testing.assert_allclose(interior(centroid), freq, rtol=0.02)


def test_log_mel_peak_band_and_mfcc_shapes():
    lm = sp.log_mel(tone(1000.0), SR)
    assert lm.shape == (1 + SR // 160, 64)
    # the loudest band holds 1 kHz, and a 0.5-amplitude sine is about -9 dBFS there (not a normalised dB)
    import librosa

    centres = librosa.mel_frequencies(n_mels=64 + 2, fmax=SR / 2)[1:-1]
    assert abs(centres[np.argmax(interior(lm).mean(axis=0))] - 1000.0) < 60.0
    assert interior(lm).max() > -20.0
    mf = sp.mfcc(tone(1000.0), SR)
    assert mf.shape == (1 + SR // 160, 13) and np.isfinite(mf).all()


def test_deltas_of_a_ramp_is_its_slope():
    ramp = np.arange(50, dtype=float)[:, None] * np.array([[1.0, -3.0]])
    d = sp.deltas(ramp)
    np.testing.assert_allclose(d[4:-4], np.tile([1.0, -3.0], (42, 1)))
    assert sp.deltas(ramp[:1]).shape == (1, 2)  # a one-frame signal still works


# ------------------------------------------------------------------------------------------ formants


@pytest.mark.parametrize(
    "target", [(700.0, 1220.0, 2600.0), (300.0, 870.0, 2240.0), (270.0, 2290.0, 3010.0)], ids=["a", "u", "i"]
)
def test_formants_of_synthetic_vowel(target):
    x = vowel(target)
    fm = sp.formants(x, SR)
    np.testing.assert_allclose(np.nanmedian(fm, axis=0), target, rtol=0.10)
    assert np.isfinite(interior(fm)).mean() > 0.95


def test_formants_are_nan_when_unvoiced():
    fm = sp.formants(np.random.default_rng(1).normal(0, 0.1, SR).astype(np.float32), SR)
    assert np.isnan(fm).mean() > 0.98


# ---------------------------------------------------------------------------------------- functionals


def test_functionals_exact_on_known_matrix():
    frame_rate = 100.0
    t = np.arange(101) / frame_rate  # 0 .. 1 s
    lld = np.stack([2.0 * t + 1.0, np.where(np.arange(101) % 2, 3.0, -1.0), np.full(101, 7.0)], axis=1)
    v, names = functionals(lld, ["ramp", "square", "const"], frame_rate=frame_rate)
    f = dict(zip(names, v))
    assert len(v) == 3 * len(STATS) and "voicing_ratio" not in f
    assert f["ramp_mean"] == pytest.approx(2.0)
    assert f["ramp_std"] == pytest.approx(2.0 * np.std(t))
    assert f["ramp_slope"] == pytest.approx(2.0)  # per second
    assert (f["ramp_min"], f["ramp_max"], f["ramp_range"]) == pytest.approx((1.0, 3.0, 2.0))
    assert (f["ramp_p25"], f["ramp_p50"], f["ramp_p75"], f["ramp_iqr"]) == pytest.approx((1.5, 2.0, 2.5, 1.0))
    assert f["ramp_p01"] == pytest.approx(1.02) and f["ramp_p99"] == pytest.approx(2.98)
    assert f["ramp_skew"] == pytest.approx(0.0, abs=1e-12)
    assert f["ramp_kurtosis"] == pytest.approx(scipy.stats.kurtosis(t))  # about -1.2 for a uniform ramp
    assert f["square_mean"] == pytest.approx((51 * -1.0 + 50 * 3.0) / 101)
    assert f["square_std"] == pytest.approx(np.std(lld[:, 1]))
    assert f["square_slope"] == pytest.approx(np.polyfit(t, lld[:, 1], 1)[0])
    assert [f[f"const_{s}"] for s in ("mean", "std", "skew", "kurtosis", "slope", "range")] == [7.0, 0, 0, 0, 0, 0]


def test_functionals_match_numpy_and_scipy_on_random_data():
    x = np.random.default_rng(2).normal(size=(257, 5)) ** 3
    v, _ = functionals(x, list("abcde"), frame_rate=50.0)
    got = v.reshape(5, len(STATS))
    t = np.arange(257) / 50.0
    want = np.stack(
        [
            x.mean(0), x.std(0), x.min(0), *np.percentile(x, [1, 25, 50, 75, 99], axis=0), x.max(0), np.ptp(x, 0),
            np.subtract(*np.percentile(x, [75, 25], axis=0)), scipy.stats.skew(x), scipy.stats.kurtosis(x),
            np.polyfit(t, x, 1)[0],
        ],
        axis=1,
    )  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_functionals_voiced_only_columns():
    f0 = np.array([np.nan, 100.0, 110.0, np.nan, 130.0, np.nan, np.nan, np.nan])
    lld = np.stack([np.arange(8.0), f0], axis=1)
    v, names = functionals(lld, ["rms", "f0"], frame_rate=100.0)
    f = dict(zip(names, v))
    assert f["voicing_ratio"] == pytest.approx(3 / 8)
    assert f["f0_mean"] == pytest.approx(340 / 3)
    assert f["f0_min"] == 100.0 and f["f0_max"] == 130.0 and f["f0_p50"] == 110.0
    assert f["f0_slope"] == pytest.approx(np.polyfit([0.01, 0.02, 0.04], [100, 110, 130], 1)[0])  # over voiced frames
    assert names == functional_names(["rms", "f0"])
    # all unvoiced: zeros and a zero voicing ratio, never NaN
    v, _ = functionals(np.stack([np.ones(8), np.full(8, np.nan)], axis=1), ["rms", "f0"], frame_rate=100.0)
    assert np.isfinite(v).all() and not v[len(STATS) :].any()
    # no frames at all
    v, _ = functionals(np.zeros((0, 2)), ["rms", "f0"], frame_rate=100.0)
    assert v.shape == (2 * len(STATS) + 1,) and not v.any()


def test_functionals_errors():
    with pytest.raises(ConfigError, match="2 columns but 3 names"):
        functionals(np.zeros((4, 2)), ["a", "b", "c"], frame_rate=100.0)
    with pytest.raises(ConfigError, match="unknown functional 'median'"):
        functionals(np.zeros((4, 2)), ["a", "b"], frame_rate=100.0, stats=("median",))


# ----------------------------------------------------------------------------------------- extractors


def test_librosa_extractor_names_and_values():
    ex = get_extractor("librosa")
    names = ex.feature_names()
    assert len(names) == len(set(names)) == 913
    assert len(ex.lld_names()) == 120
    x = vowel(f0=120.0)
    v = ex.functionals(x)
    assert v.shape == (913,) and v.dtype == np.float32 and np.isfinite(v).all()
    f = dict(zip(names, v))
    assert f["f0_p50"] == pytest.approx(SR / 133, abs=1.0)  # the impulse train's period is 133 samples
    assert f["F1_p50"] == pytest.approx(700, rel=0.1) and f["F2_p50"] == pytest.approx(1220, rel=0.1)
    assert f["voicing_ratio"] > 0.95
    lld = ex.lld(x)
    assert lld.shape == (1 + len(x) // 160, 120)
    assert pickle.loads(pickle.dumps(ex)).config() == ex.config()


@pytest.mark.parametrize("name", ["librosa", "logmel"])
def test_silent_and_tiny_signals_give_finite_features(name):
    ex = get_extractor(name)
    for x in (np.zeros(SR, dtype=np.float32), np.zeros(7, dtype=np.float32), tone(300.0, 0.004)):
        v = ex.functionals(x)
        assert v.shape == (len(ex.feature_names()),) and np.isfinite(v).all()
    v = dict(zip(ex.feature_names(), ex.functionals(np.zeros(SR, dtype=np.float32))))
    if name == "librosa":
        assert v["voicing_ratio"] == 0.0 and v["f0_mean"] == 0.0 and v["rms_max"] == 0.0


@pytest.mark.parametrize(
    "name, options",
    [
        ("librosa", {"n_mfcc": 20, "f0": "pyin"}),
        ("logmel", {"n_mels": 40}),
        ("egemaps", {"level": "lld"}),
        ("compare", {}),
    ],
)
def test_extractor_config_round_trips(name, options):
    ex = get_extractor(name, **options)
    again = get_extractor(name, sampling_rate=ex.sampling_rate, **ex.config())
    assert again.full_config() == ex.full_config()
    assert ex.full_config()["version"] >= 1 and ex.full_config()["name"] == name


def test_librosa_extractor_option_errors():
    with pytest.raises(ConfigError, match="unknown F0 method 'swipe'"):
        get_extractor("librosa", f0="swipe").functionals(tone(200.0))
    with pytest.raises(ConfigError, match="deltas must be 0, 1 or 2"):
        get_extractor("librosa", deltas=3).feature_names()


def test_logmel_extractor():
    ex = get_extractor("logmel")
    assert ex.feature_names()[:3] == ["logmel_1_mean", "logmel_1_std", "logmel_2_mean"]
    v = ex.functionals(tone(1000.0))
    assert v.shape == (128,)
    assert ex.lld(tone(1000.0)).shape == (101, 64)


# ------------------------------------------------------------------------------------------ openSMILE


@pytest.fixture(scope="module")
def emodb_signal():
    if not EMODB_FILE.exists():
        pytest.skip(f"EmoDB not found at {EMODB_FILE}")
    pytest.importorskip("opensmile")
    from serkit.audio import read

    return read(EMODB_FILE, SR)[0]


@pytest.mark.parametrize("name, n", [("egemaps", 88), ("compare", 6373)])
def test_opensmile_feature_counts_on_emodb(emodb_signal, name, n):
    ex = get_extractor(name)
    v = ex.functionals(emodb_signal)
    assert v.shape == (n,) and len(ex.feature_names()) == n and np.isfinite(v).all()
    # the Smile object is cached on the instance but not pickled (workers build their own)
    assert "_smiles" in vars(ex) and "_smiles" not in vars(pickle.loads(pickle.dumps(ex)))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(ex)).functionals(emodb_signal), v)


def test_egemaps_lld_level_agrees_with_opensmile_functionals(emodb_signal):
    # serkit's functionals of the eGeMAPS LLDs over voiced frames = openSMILE's own F0 mean
    own = dict(zip(get_extractor("egemaps").feature_names(), get_extractor("egemaps").functionals(emodb_signal)))
    ex = get_extractor("egemaps", level="lld")
    ours = dict(zip(ex.feature_names(), ex.functionals(emodb_signal)))
    assert len(ours) == 25 * len(STATS) + 1
    f0 = "F0semitoneFrom27.5Hz_sma3nz"
    assert ours[f"{f0}_mean"] == pytest.approx(own[f"{f0}_amean"], rel=1e-4)
    assert 0.2 < ours["voicing_ratio"] < 0.9


def test_yin_f0_agrees_with_opensmile_on_speech(emodb_signal):
    lld = get_extractor("compare").lld(emodb_signal)
    theirs = lld[:, 0][lld[:, 0] > 0]  # F0final_sma, 0 when unvoiced
    hz, voiced = sp.f0(emodb_signal, SR)
    assert np.nanmedian(hz) == pytest.approx(np.median(theirs), rel=0.03)
    assert voiced.mean() == pytest.approx((lld[:, 0] > 0).mean(), abs=0.15)


def test_opensmile_short_signal_is_padded(emodb_signal):
    v = get_extractor("egemaps").functionals(emodb_signal[:400])  # 25 ms: openSMILE alone gives NaN
    assert np.isfinite(v).all()


# ----------------------------------------------------------------------------------------- extract()


class CountingLogMel(LogMelExtractor):
    calls = 0

    def functionals(self, signal):
        type(self).calls += 1
        return super().functionals(signal)


def _write_tones(folder: Path, n: int) -> list[Path]:
    import soundfile as sf

    paths = []
    for i in range(n):
        p = folder / f"tone{i}.wav"
        rate = 22050 if i % 2 else SR  # extract() resamples to the extractor's 16 kHz
        sf.write(p, tone(200.0 + 50 * i, 0.3, sr=rate), rate)
        paths.append(p)
    return paths


def test_extract_caches_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("SERKIT_CACHE", str(tmp_path / "cache"))
    paths = _write_tones(tmp_path, 3)
    ex = CountingLogMel()
    CountingLogMel.calls = 0
    first = extract(ex, paths, n_jobs=1, progress=False)
    assert CountingLogMel.calls == 3 and first.shape == (3, 128)
    second = extract(ex, paths, n_jobs=1, progress=False)
    assert CountingLogMel.calls == 3  # no extraction the second time
    np.testing.assert_array_equal(first, second)
    extract(CountingLogMel(n_mels=32), paths, n_jobs=1, progress=False)  # another config: another cache entry
    assert CountingLogMel.calls == 6


def test_extract_in_worker_processes_matches_serial(tmp_path, monkeypatch):
    monkeypatch.setenv("SERKIT_CACHE", str(tmp_path / "cache"))
    paths = _write_tones(tmp_path, 10)  # > 8 items, so extract() uses the process pool
    ex = get_extractor("librosa")
    parallel = extract(ex, paths, n_jobs=2, progress=False, cache=False)
    serial = extract(ex, paths, n_jobs=1, progress=False, cache=False)
    np.testing.assert_allclose(parallel, serial, rtol=1e-6)
    assert parallel[3, ex.feature_names().index("f0_p50")] == pytest.approx(350.0, abs=2.0)


@pytest.mark.parametrize("speed, f0", [(1.25, 500.0), (0.8, 320.0), (1.0, 400.0)])
def test_speed_view_plays_the_clip_faster(speed, f0):
    """Known answer: a 400 Hz tone played 1.25 times faster is a 500 Hz tone, 0.8 s long."""
    from serkit.features.base import SpeedView

    ex = get_extractor("librosa")
    view = SpeedView(ex, speed)
    out = view.functionals(tone(400.0, 1.0))
    assert out[ex.feature_names().index("f0_p50")] == pytest.approx(f0, rel=0.01)
    assert view._change(tone(400.0, 1.0)).shape == (round(SR / speed),)
    assert view.full_config() == {**ex.full_config(), "speed": speed}
    assert pickle.loads(pickle.dumps(view)).full_config() == view.full_config()


def test_speed_views_are_cached_apart(tmp_path, monkeypatch):
    from serkit.features.base import SpeedView

    monkeypatch.setenv("SERKIT_CACHE", str(tmp_path / "cache"))
    paths = _write_tones(tmp_path, 2)  # 200 and 250 Hz
    ex = get_extractor("librosa")
    col = ex.feature_names().index("f0_p50")
    plain = extract(ex, paths, n_jobs=1, progress=False)
    faster = extract(SpeedView(ex, 1.1), paths, n_jobs=1, progress=False)
    np.testing.assert_allclose(faster[:, col], plain[:, col] * 1.1, rtol=0.01)
    np.testing.assert_array_equal(extract(ex, paths, n_jobs=1, progress=False), plain)


def test_speeds_option_errors():
    from serkit.features.base import parse_speeds

    assert parse_speeds("0.9,1,1.1") == [0.9, 1.0, 1.1] and parse_speeds(1) == [1.0]
    for bad, match in [("fast", "not a number"), ([], "empty"), ([3], "outside 0.5..2"), ([1, 1], "twice")]:
        with pytest.raises(ConfigError, match=match):
            parse_speeds(bad)


def test_missing_opensmile_package_says_how_to_install(monkeypatch):
    import sys

    import serkit.features.opensmile as osm

    monkeypatch.setitem(sys.modules, "opensmile", None)  # makes `import opensmile` fail
    monkeypatch.setattr(osm, "_PROCESS_SMILES", {})
    with pytest.raises(ConfigError, match=r"pip install 'serkit\[opensmile\]'"):
        get_extractor("egemaps").functionals(tone(200.0))
