"""The voice-activity gates (serkit.segmentation): energy and silero, one interface, selected by name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from serkit import segmentation
from serkit.errors import ConfigError
from serkit.segmentation import GATES, check_gate, file_activity, frame_activity, vad_segments, window_gate


@pytest.fixture
def padded(emodb_dir, tmp_path):
    """A real EmoDB utterance with 1 s of silence before and after (at its own 16 kHz)."""
    x, sr = sf.read(emodb_dir / "wav" / "03a01Fa.wav", dtype="float32")
    pad = np.zeros(sr, np.float32)
    y = np.concatenate([pad, x, pad])
    path = tmp_path / "padded.wav"
    sf.write(path, y, sr)
    return path, y, sr, len(x) / sr


@pytest.mark.parametrize("gate", GATES)
def test_gate_finds_the_speech_between_the_silences(padded, gate):
    _, y, sr, dur = padded
    score, speech = frame_activity(y, sr, gate)
    assert len(score) == len(speech) == int(len(y) / sr * 100)
    assert not speech[:100].any()  # the first second is silent
    assert not speech[-80:].any()  # the last 0.8 s (a detector may hang on ~0.1 s after speech)
    inside = speech[100 : 100 + int(dur * 100)]
    assert inside.mean() > 0.6, inside.mean()


def test_silero_at_another_rate_and_from_a_file_in_blocks(padded, tmp_path):
    path, y, sr, _ = padded
    # 70 s: the file is read in 60-s blocks, the model's state carried over, same frames as at once
    long = np.tile(y, int(np.ceil(70 * sr / len(y))))[: 70 * sr]
    sf.write(tmp_path / "long.wav", long, sr)
    p_file, s_file = file_activity(tmp_path / "long.wav", sr, "silero")
    p_all, s_all = frame_activity(long, sr, "silero")
    assert len(p_file) == len(p_all) == 7000
    np.testing.assert_allclose(p_file, p_all, atol=1e-5)
    # 8 kHz input is resampled to the model's 16 kHz: same speech frames, nearly
    from serkit.audio import resample

    _, s8 = frame_activity(resample(y, sr, 8000), 8000, "silero")
    _, s16 = frame_activity(y, sr, "silero")
    assert np.mean(s8 == s16) > 0.95


def test_unknown_gate_names_the_valid_ones():
    assert check_gate(True) == segmentation.DEFAULT_GATE
    for call in (lambda: check_gate("webrtc"), lambda: frame_activity(np.zeros(1600), 16000, "webrtc")):
        with pytest.raises(ConfigError, match="energy, silero"):
            call()


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(segmentation.importlib.util, "find_spec", lambda name: None)
    segmentation._silero_session.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"needs the silero-vad package: pip install 'serkit\[vad\]'"):
            frame_activity(np.zeros(16000, np.float32), 16000, "silero")
    finally:
        segmentation._silero_session.cache_clear()


def test_segments_from_a_gates_speech_frames():
    # the gate's frames decide; the score only says where to cut
    speech = np.r_[np.zeros(100, bool), np.ones(700, bool), np.zeros(200, bool), np.ones(150, bool)]
    score = speech.astype(float)
    assert vad_segments(score, speech=speech) == [(0.9, 3.9), (3.9, 8.1), (9.9, 11.5)]
    assert vad_segments(score, speech=np.zeros(1150, bool)) == []


def test_window_gate(padded):
    _, y, sr, _ = padded
    assert window_gate("energy") is None  # the window engine's own RMS gate
    silent = window_gate("silero")
    assert silent(y[: sr // 2], sr)  # half a second of silence
    assert silent(0.01 * np.random.default_rng(0).standard_normal(sr).astype(np.float32), sr)  # noise, no speech
    assert not silent(y[sr : 3 * sr], sr)


def test_cli_timeline_vad_option(padded, tmp_path):
    from serkit.cli import main

    path, _, _, dur = padded
    out = tmp_path / "t.csv"
    assert main(["predict", "-q", str(path), "--timeline", "--vad", "silero", "--out", str(out)]) == 0
    t = pd.read_csv(out, keep_default_na=False)
    assert len(t) >= 1 and (t["error"] == "").all()
    assert t["start"].min() >= 0.85 and t["end"].max() <= 1.0 + dur + 0.3
    with pytest.raises(SystemExit):  # argparse lists the choices
        main(["predict", str(path), "--timeline", "--vad", "webrtc"])


def test_scorer_with_the_silero_gate_skips_noise_windows(padded):
    from serkit.windows import Scorer, Window
    from tests.test_windows import _Fixed

    _, y, sr, _ = padded
    noise = 0.02 * np.random.default_rng(1).standard_normal(sr).astype(np.float32)  # loud enough for the RMS gate
    s = Scorer(_Fixed([[1.0, 0.0]]), sr, gate=window_gate("silero"))
    rows = s.rows([Window(0.0, 1.0, noise), Window(1.0, 2.0, y[sr : 2 * sr])])
    assert [r["error"] for r in rows] == ["silence", ""]
