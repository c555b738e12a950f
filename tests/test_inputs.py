"""What `serkit predict` is given: linked folders, FIFOs, broken links, manifests with segments, and
audio that does not say how long it is (issue 13 items 2 and 7)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from serkit.inputs import Clip, expand_inputs


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tests.quick_models import quick_soundnet

    return quick_soundnet(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def speech():
    from tests.conftest import data_dir

    clips = sorted((data_dir("emodb") / "wav").glob("03a0*.wav"))[:4]
    return np.concatenate([sf.read(c, dtype="float32")[0] for c in clips]), 16000


def lengthless_flac(path: Path, x: np.ndarray, sr: int) -> Path:
    """A FLAC whose STREAMINFO total-samples field is 0 ("unknown", legal FLAC)."""
    sf.write(path, x, sr, format="FLAC")
    b = bytearray(path.read_bytes())
    assert b[:4] == b"fLaC" and b[4] & 0x7F == 0  # STREAMINFO first; its bytes 10..17 end in the 36-bit count
    v = int.from_bytes(b[18:26], "big") & ~((1 << 36) - 1)
    b[18:26] = v.to_bytes(8, "big")
    path.write_bytes(bytes(b))
    assert sf.info(str(path)).frames == 2**63 - 1  # what libsndfile makes of it
    return path


# -- reading audio that gives no length ----------------------------------------------------------------
def test_lengthless_flac_reads_as_a_stream(tmp_path, speech):
    from serkit import audio

    x, sr = speech
    p = lengthless_flac(tmp_path / "u.flac", x, sr)
    i = audio.info(p)
    assert i.counted and not i.truncated and i.frames == len(x) and i.duration == pytest.approx(len(x) / sr)
    assert audio.info(p, max_duration_s=1.0).truncated
    y, _ = audio.read(p)
    sf.write(tmp_path / "k.flac", x, sr)  # the same samples in a FLAC that says its length
    ref, _ = sf.read(tmp_path / "k.flac", dtype="float32")
    np.testing.assert_array_equal(y, ref)
    part, _ = audio.read(p, start=1.0, end=1.5)
    np.testing.assert_array_equal(part, ref[16000:24000])
    assert sum(len(b) for b in audio.blocks(p, 1000)) == len(x)


def test_folder_with_a_lengthless_flac_gives_rows_within_seconds_and_bounded_memory(tmp_path, model_dir, speech):
    x, sr = speech
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "good.wav", x[: 2 * sr], sr)
    lengthless_flac(folder / "short.flac", x[: 3 * sr], sr)  # under the limit: predicted
    lengthless_flac(folder / "long.flac", np.tile(x, 4), sr)  # ~40 s, over a 20 s limit: an error row
    env = dict(os.environ, SERKIT_MAX_DURATION_S="20", PYTHONPATH=str(Path(__file__).parents[1] / "src"))

    def limit():  # 4 GiB of address space: the old code's window list of 2^63 samples dies, not hangs
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "serkit.cli", "predict", "-q", "--model", str(model_dir), str(folder)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        preexec_fn=limit,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    import io

    t = pd.read_csv(io.StringIO(proc.stdout), keep_default_na=False)
    by = {Path(f).name: r for f, r in zip(t["file"], t.to_dict("records"))}
    assert set(by) == {"good.wav", "short.flac", "long.flac"}
    assert by["good.wav"]["error"] == "" and by["short.flac"]["error"] == ""
    assert float(by["short.flac"]["end"]) == pytest.approx(3.0, abs=1e-3)  # all of it was read
    assert "does not say how long it is" in by["long.flac"]["error"]
    assert "the limit is 20 s (SERKIT_MAX_DURATION_S" in by["long.flac"]["error"]
    assert elapsed < 120  # seconds of work (the model loads in the subprocess), not a hang


def test_duration_limit_is_a_recognizer_option(model_dir, speech, tmp_path):
    from serkit.inference import Recognizer

    x, sr = speech
    sf.write(tmp_path / "a.wav", x, sr)
    rec = Recognizer.load(model_dir, max_duration_s=2.0)
    row = rec.predict_batch([tmp_path / "a.wav"]).iloc[0]
    assert f"{len(x) / sr:.1f} s long; the limit is 2 s (SERKIT_MAX_DURATION_S" in row["error"]
    from serkit.errors import AudioError

    with pytest.raises(AudioError, match="SERKIT_MAX_DURATION_S"):
        rec.timeline(tmp_path / "a.wav")


# -- folders: linked sub-folders, FIFOs, broken links ---------------------------------------------------
@pytest.fixture
def linked_folder(tmp_path, speech):
    """``set/`` holds links to actor folders elsewhere, a link cycle, a FIFO and a broken link."""
    x, sr = speech
    for actor in ("a1", "a2"):
        (tmp_path / "actors" / actor).mkdir(parents=True)
        sf.write(tmp_path / "actors" / actor / f"{actor}.wav", x[: 2 * sr], sr)
    s = tmp_path / "set"
    s.mkdir()
    (s / "a1").symlink_to(tmp_path / "actors" / "a1", target_is_directory=True)
    (s / "a2").symlink_to(tmp_path / "actors" / "a2", target_is_directory=True)
    (s / "again").symlink_to(tmp_path / "actors" / "a1", target_is_directory=True)  # the same folder twice
    (tmp_path / "actors" / "a2" / "up").symlink_to(s, target_is_directory=True)  # a cycle: a2/up -> set
    os.mkfifo(s / "pipe.wav")
    (s / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    (s / "notes.txt").write_text("not audio")
    return s


def test_expand_follows_links_once_and_reports_fifos_and_broken_links(linked_folder):
    clips = expand_inputs([linked_folder])
    names = {Path(c.path).name: c.error for c in clips}
    assert set(names) == {"a1.wav", "a2.wav", "pipe.wav", "gone.wav"}  # a1 once, no endless cycle
    assert names["a1.wav"] == names["a2.wav"] == ""
    assert "not a regular file" in names["pipe.wav"]
    assert "broken symbolic link" in names["gone.wav"]


def test_predict_linked_folder_counts_every_entry(linked_folder, model_dir, capsys):
    from serkit.cli import main

    code = main(["predict", "-q", "--model", str(model_dir), str(linked_folder), "--format", "jsonl"])
    assert code == 0
    t = pd.read_json(io_text(capsys.readouterr().out), lines=True)
    assert len(t) == 4 and (t["error"] == "").sum() == 2
    assert main(["predict", "--model", str(model_dir), str(linked_folder)]) == 0
    err = capsys.readouterr().err
    assert "2 of 4 files predicted, 2 failed" in err


def test_fifo_named_explicitly_is_not_a_regular_file(tmp_path, model_dir, capsys):
    from serkit.cli import main

    os.mkfifo(tmp_path / "live.wav")  # opening it would block until a writer comes: it must not be opened
    assert main(["predict", "--model", str(model_dir), str(tmp_path / "live.wav")]) == 1
    err = capsys.readouterr().err
    assert "is not a regular file" in err and "empty (0 bytes)" not in err


def test_unlistable_folder_is_an_error_entry(tmp_path, monkeypatch, speech):
    x, sr = speech
    (tmp_path / "ok").mkdir()
    (tmp_path / "locked").mkdir()
    sf.write(tmp_path / "ok" / "a.wav", x[:sr], sr)
    real = os.scandir

    def scandir(path):  # as if 'locked' were chmod 000 (root reads anything, so a real chmod proves nothing)
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    clips = expand_inputs([tmp_path])
    assert sorted(Path(c.path).name for c in clips) == ["a.wav", "locked"]
    locked = [c for c in clips if c.path.endswith("locked")][0]
    assert "cannot be listed (Permission denied)" in locked.error


# -- manifests go through the manifest adapter ---------------------------------------------------------
def test_manifest_segments_are_predicted_as_segments(tmp_path, model_dir, speech):
    from serkit.audio import read
    from serkit.inference import Recognizer

    x, sr = speech
    sf.write(tmp_path / "call.wav", x, sr)
    (tmp_path / "m.csv").write_text("path,start,end\ncall.wav,1.0,2.5\ncall.wav,,\ncall.wav,3,2\n")
    clips = expand_inputs([tmp_path / "m.csv"])
    assert clips[:2] == [Clip(str(tmp_path / "call.wav"), 1.0, 2.5), Clip(str(tmp_path / "call.wav"))]
    assert "start/end" in clips[2].error and clips[2].path == str(tmp_path / "m.csv")  # the bad row is counted
    rec = Recognizer.load(model_dir)
    t = rec.predict_batch(clips)
    assert list(t["start"][:2]) == [1.0, 0.0] and list(t["end"][:2]) == [2.5, pytest.approx(len(x) / sr, abs=1e-3)]
    seg, _ = read(tmp_path / "call.wav", rec.sampling_rate, start=1.0, end=2.5)
    ref = rec.predict_signals([seg]).filter(like="p_").to_numpy()[0]
    np.testing.assert_allclose(t.filter(like="p_").to_numpy()[0], ref, atol=1e-6)
    whole = rec.predict_file(tmp_path / "call.wav").filter(like="p_").to_numpy()[0]
    assert np.abs(t.filter(like="p_").to_numpy()[1] - whole).max() < 1e-6
    assert t["error"].iloc[2] != "" and t["label"].iloc[2] == ""


def io_text(s: str):
    import io

    return io.StringIO(s)


def test_service_predicts_a_lengthless_flac_and_counts_no_further_than_its_limit(tmp_path, model_dir, speech):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from serkit.inference import Recognizer
    from serkit.serve.app import Settings, create_app

    x, sr = speech
    p = lengthless_flac(tmp_path / "u.flac", x[: 3 * sr], sr)
    with TestClient(create_app(Recognizer.load(model_dir), Settings(max_duration_s=2.0))) as client:
        r = client.post("/v1/predict", files={"file": ("u.flac", p.read_bytes(), "audio/flac")})
        assert r.status_code == 413 and "SERKIT_MAX_DURATION_S" in r.json()["detail"]
    with TestClient(create_app(Recognizer.load(model_dir), Settings())) as client:
        r = client.post("/v1/predict", files={"file": ("u.flac", p.read_bytes(), "audio/flac")})
        assert r.status_code == 200, r.text
        assert r.json()["duration"] == pytest.approx(3.0, abs=1e-3)


def test_bad_duration_limit_setting_is_a_clear_error(monkeypatch, model_dir):
    from serkit.errors import AudioError
    from serkit.inference import Recognizer

    monkeypatch.setenv("SERKIT_MAX_DURATION_S", "ten minutes")
    with pytest.raises(AudioError, match="SERKIT_MAX_DURATION_S='ten minutes' must be a positive number"):
        Recognizer.load(model_dir)


def test_one_reader_of_the_duration_limit():
    """SERKIT_MAX_DURATION_S means the same to the CLI/Python (audio.duration_limit_s) and the service."""
    from serkit.audio import duration_limit_s
    from serkit.errors import AudioError
    from serkit.serve.settings import Settings

    assert (
        Settings.from_env({"SERKIT_MAX_DURATION_S": "42"}).max_duration_s
        == duration_limit_s({"SERKIT_MAX_DURATION_S": "42"})
        == 42.0
    )
    assert Settings.from_env({}).max_duration_s == duration_limit_s({}) == 600.0
    for read in (duration_limit_s, Settings.from_env):
        with pytest.raises(AudioError, match="at least 0.1"):
            read({"SERKIT_MAX_DURATION_S": "0.05"})


def test_an_empty_path_is_an_error_row_not_the_current_folder(tmp_path, monkeypatch):
    from serkit.inputs import expand_inputs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.wav").write_bytes(b"")  # would be found if "" were read as "."
    clips = expand_inputs(["", "  "])
    assert [c.error for c in clips] == ["an empty path was given; pass an audio file, a folder or a CSV manifest"] * 2


def test_txt_and_parquet_listings_expand_to_clips(tmp_path):
    from serkit.errors import ConfigError

    (tmp_path / "sub").mkdir()
    txt = tmp_path / "list.txt"
    txt.write_text("# calls of May\n/abs/a.wav\n\n  sub/b.flac  \n")
    assert expand_inputs([txt]) == [Clip("/abs/a.wav"), Clip(str(tmp_path / "sub/b.flac"))]
    pq = tmp_path / "list.parquet"
    pd.DataFrame({"path": ["c.wav", "/abs/d.wav"], "start": [1.5, None], "end": [3.0, None]}).to_parquet(pq)
    assert expand_inputs([pq]) == [Clip(str(tmp_path / "c.wav"), 1.5, 3.0), Clip("/abs/d.wav")]
    pd.DataFrame({"file": ["x.wav"]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ConfigError, match="no 'path' column"):
        expand_inputs([tmp_path / "bad.parquet"])
