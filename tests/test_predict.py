"""Recognizer on awkward inputs: long recordings (windowed, bounded memory), VAD timelines, tiny files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from serkit.inference import Recognizer, vad_segments


@pytest.fixture(scope="module")
def model_dir(small_model_dir):
    return small_model_dir


@pytest.fixture(scope="module")
def long_file(tmp_path_factory, emodb_dir_module):
    """About 2.5 minutes: EmoDB clips separated by 1.5 s pauses, at 16 kHz."""
    clips = sorted((emodb_dir_module / "wav").glob("1[56]a0*.wav"))[:40]
    parts = []
    for c in clips:
        x, sr = sf.read(c, dtype="float32")
        parts += [x, np.zeros(int(1.5 * sr), np.float32)]
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, np.concatenate(parts), sr)
    return path


@pytest.fixture(scope="module")
def emodb_dir_module():
    from tests.conftest import data_dir

    return data_dir("emodb")


def test_long_file_is_predicted_over_windows(model_dir, long_file):
    rec = Recognizer.load(model_dir)
    duration = sf.info(long_file).duration
    assert duration > rec.max_duration
    row = rec.predict_file(long_file).iloc[0]
    assert row["error"] == "" and row["start"] == 0.0 and row["end"] == pytest.approx(duration, abs=0.01)
    assert sum(row[f"p_{l}"] for l in rec.labels) == pytest.approx(1.0, abs=1e-5)


def test_timeline_fixed_windows_and_vad(model_dir, long_file):
    rec = Recognizer.load(model_dir)
    t = rec.timeline(long_file, window=4.0, hop=2.0)
    assert list(t["start"])[:3] == [0.0, 2.0, 4.0]
    assert np.all(np.diff(t["start"]) > 0)
    v = rec.timeline(long_file, vad=True)
    lengths = (v["end"] - v["start"]).to_numpy()
    assert len(v) >= 10
    assert np.all(lengths <= 5.0 + 1e-6)
    assert np.all(np.diff(v["start"]) > 0)


def test_vad_segments_known_answer():
    db = np.r_[np.full(100, -90.0), np.full(700, -20.0), np.full(200, -90.0), np.full(150, -20.0)]
    assert vad_segments(db) == [(0.9, 3.9), (3.9, 8.1), (9.9, 11.5)]
    assert vad_segments(np.full(300, -90.0)) == []


def test_one_sample_file_is_an_error_row(model_dir, tmp_path):
    sf.write(tmp_path / "one.wav", np.zeros(1, np.float32), 16000)
    rec = Recognizer.load(model_dir)
    t = rec.predict_batch([tmp_path / "one.wav"])
    assert t.iloc[0]["label"] == "" and "shorter than" in t.iloc[0]["error"]
