"""Recognizer on awkward inputs: long recordings (windowed, bounded memory), VAD timelines, tiny files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serkit.inference import Recognizer
from serkit.segmentation import vad_segments


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
    assert duration > rec.long_file_s
    row = rec.predict_file(long_file).iloc[0]
    assert row["error"] == "" and row["start"] == 0.0 and row["end"] == pytest.approx(duration, abs=0.01)
    assert sum(row[f"p_{l}"] for l in rec.labels) == pytest.approx(1.0, abs=1e-5)


def test_timeline_fixed_windows_and_vad(model_dir, long_file):
    rec = Recognizer.load(model_dir)
    t = rec.timeline(long_file, window=4.0, hop=2.0)
    assert list(t["start"])[:3] == [0.0, 2.0, 4.0]
    assert np.all(np.diff(t["start"]) > 0)
    from serkit.features import base

    many = rec.timelines([long_file, long_file.parent / "missing.wav"], window=4.0, hop=2.0)
    assert len(many) == len(t) + 1 and "missing.wav" in many["error"].iloc[-1] + many["file"].iloc[-1]
    assert not base._POOL  # the feature worker processes are gone once the call returns
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


# -- a folder of awkward files through `serkit predict` ---------------------------------------------


@pytest.fixture(scope="module")
def soundnet_dir(tmp_path_factory):
    from tests.quick_models import quick_soundnet

    return quick_soundnet(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def awkward_folder(tmp_path_factory, emodb_dir_module):
    """One good clip, a corrupt file, an empty file, a 1-sample file and a 20-minute recording (in a subfolder)."""
    root = tmp_path_factory.mktemp("awkward")
    clips = sorted((emodb_dir_module / "wav").glob("03a0*.wav"))[:12]
    x, sr = sf.read(clips[0], dtype="float32")
    sf.write(root / "good.wav", x, sr)
    (root / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8)
    (root / "empty.wav").write_bytes(b"")
    sf.write(root / "one.wav", np.zeros(1, np.float32), 16000)
    # 20 minutes: clips with 0.5-1.7 s pauses, repeated (written block by block, never held whole)
    parts = []
    for i, c in enumerate(clips):
        y, _ = sf.read(c, dtype="float32")
        parts += [y, np.zeros(int(sr * (0.5 + (i % 4) * 0.4)), np.float32)]
    unit = np.concatenate(parts)
    (root / "sub").mkdir()
    n = 20 * 60 * sr
    with sf.SoundFile(root / "sub" / "long.wav", "w", sr, 1) as f:
        for k in range(0, n, len(unit)):
            f.write(unit[: min(len(unit), n - k)])
    return root


def test_predict_folder_with_bad_files_and_a_20_minute_file(soundnet_dir, awkward_folder, tmp_path, capsys):
    from serkit.cli import main

    out = tmp_path / "p.csv"
    code = main(
        [
            "predict",
            "-q",
            "--model",
            str(soundnet_dir),
            str(awkward_folder),
            "--out",
            str(out),
            "--max-duration",
            "1800",
        ]
    )
    assert code == 0  # some files failed, not all
    import pandas as pd

    t = pd.read_csv(out, keep_default_na=False)
    by = {Path(f).name: r for f, r in zip(t["file"], t.to_dict("records"))}
    assert set(by) == {"good.wav", "corrupt.wav", "empty.wav", "one.wav", "long.wav"}
    assert "cannot decode" in by["corrupt.wav"]["error"]
    assert "empty (0 bytes)" in by["empty.wav"]["error"]
    assert "shorter than" in by["one.wav"]["error"]
    assert by["good.wav"]["error"] == "" and by["long.wav"]["error"] == ""
    assert float(by["long.wav"]["end"]) == pytest.approx(1200.0)
    probs = [float(by["long.wav"][c]) for c in t.columns if c.startswith("p_")]
    assert sum(probs) == pytest.approx(1.0, abs=1e-4)
    err = capsys.readouterr().err
    assert err.count("error: ") == 3
    # without --max-duration the shared limit (600 s, the HTTP service's) makes the 20 minutes an error row
    code = main(
        ["predict", "-q", "--model", str(soundnet_dir), str(awkward_folder / "sub" / "long.wav"), "--out", str(out)]
    )
    t = pd.read_csv(out, keep_default_na=False)
    assert code == 1 and "1200.0 s long; the limit is 600 s (SERKIT_MAX_DURATION_S" in t["error"].iloc[0]


def test_timeline_of_the_20_minute_file_with_plot(soundnet_dir, awkward_folder, tmp_path):
    import pandas as pd

    from serkit.cli import main

    out = tmp_path / "t.jsonl"
    code = main(
        [
            "predict",
            "-q",
            "--model",
            str(soundnet_dir),
            str(awkward_folder / "sub" / "long.wav"),
            str(awkward_folder / "good.wav"),
            "--timeline",
            "--vad",
            "--plot",
            str(tmp_path / "plots"),
            "--out",
            str(out),
            "--max-duration",
            "1800",
        ]
    )
    assert code == 0
    t = pd.read_json(out, lines=True)
    long = t[t["file"].str.endswith("long.wav")]
    lengths = (long["end"] - long["start"]).to_numpy()
    # 1.5-4 s clips; pauses over 1 s end a segment early, so about one segment per clip, at most 5 s
    assert 250 <= len(long) <= 700, len(long)
    assert lengths.max() <= 5.0 + 1e-6 and np.median(lengths) >= 1.0
    assert np.all(np.diff(long["start"]) > 0) and long["end"].max() <= 1200.0
    assert (tmp_path / "plots" / "long.png").stat().st_size > 10_000
    assert (tmp_path / "plots" / "good.png").exists()


def test_manifest_input(soundnet_dir, awkward_folder, tmp_path):
    rec = Recognizer.load(soundnet_dir)
    from serkit.inputs import Clip, expand_inputs

    (tmp_path / "m.csv").write_text(f"path,label\n{awkward_folder / 'good.wav'},x\nnope.wav,y\n")
    files = expand_inputs([tmp_path / "m.csv"])
    assert files == [Clip(str(awkward_folder / "good.wav")), Clip(str(tmp_path / "nope.wav"))]
    t = rec.predict_batch(files)
    assert t.iloc[0]["error"] == "" and "does not exist" in t.iloc[1]["error"]
    (tmp_path / "bad.csv").write_text("file\nx.wav\n")
    from serkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"lacks column\(s\) path"):
        expand_inputs([tmp_path / "bad.csv"])


def test_predict_batch_arrays_and_paths_agree(soundnet_dir, awkward_folder):
    rec = Recognizer.load(soundnet_dir)
    from serkit.audio import read

    x, _ = read(awkward_folder / "good.wav", rec.sampling_rate)
    a = rec.predict_batch([x]).filter(like="p_").to_numpy()
    b = rec.predict_batch([awkward_folder / "good.wav"]).filter(like="p_").to_numpy()
    np.testing.assert_allclose(a, b, atol=1e-6)
