"""The numpy mel filterbank and spectral contrast equal librosa's (they replaced it on the prediction path)."""

from __future__ import annotations

import numpy as np
import pytest

from serkit.melscale import hz_to_mel, mel_filterbank, mel_to_hz

librosa = pytest.importorskip("librosa")


@pytest.mark.parametrize(
    "sr,n_fft,n_mels,fmin,fmax",
    [
        (16000, 400, 40, 0.0, None),
        (16000, 512, 64, 0.0, None),
        (22050, 1024, 64, 50.0, 8000.0),
        (8000, 256, 24, 20.0, 3800.0),
    ],
)
def test_mel_filterbank_equals_librosa(sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-8)


def test_slaney_scale_known_values():
    # linear below 1 kHz (3 mels per 200 Hz), logarithmic above: 1 kHz is mel 15, 6.4 kHz is mel 42
    np.testing.assert_allclose(hz_to_mel([0.0, 200.0, 1000.0, 6400.0]), [0.0, 3.0, 15.0, 42.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel([123.0, 4321.0])), [123.0, 4321.0])
    assert hz_to_mel(1000.0) == pytest.approx(librosa.hz_to_mel(1000.0))


def test_bad_ranges_are_clear_errors():
    from serkit.errors import ConfigError

    with pytest.raises(ConfigError, match="fmin < fmax"):
        mel_filterbank(16000, 512, 40, 9000.0, None)


def test_spectral_contrast_and_mfcc_dct_equal_librosa_and_scipy(emodb_dir):
    from scipy.fft import dct

    from serkit.audio import read
    from serkit.features.spectral import _contrast, _contrast_bands, _dct_mfcc, _frames, _spectrum

    x, _ = read(sorted((emodb_dir / "wav").glob("*.wav"))[0], 16000)
    mag = np.sqrt(_spectrum(_frames(x, 512, 160)))
    ref = librosa.feature.spectral_contrast(S=mag.T, sr=16000, n_fft=512, fmin=200.0, n_bands=5, quantile=0.02).T
    np.testing.assert_allclose(_contrast(mag, 16000, 512), ref, atol=1e-9)
    m = np.abs(np.random.default_rng(0).normal(size=(40, 513)))  # 22.05 kHz: another band count
    ref = librosa.feature.spectral_contrast(S=m.T, sr=22050, n_fft=1024, fmin=200.0, n_bands=_contrast_bands(22050)).T
    np.testing.assert_allclose(_contrast(m, 22050, 1024), ref, atol=1e-9)
    db = np.random.default_rng(1).normal(size=(50, 64)) * 20
    np.testing.assert_allclose(_dct_mfcc(db, 13), dct(db, type=2, norm="ortho", axis=1)[:, :13], atol=1e-10)
