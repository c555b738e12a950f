"""Corpus adapters and label mapping: tiny fake trees for parsing, the shared real corpora for counts."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serkit import labels
from serkit.corpora import (
    CORPORA,
    UNKNOWN_SPEAKER,
    load_corpora,
    load_corpus,
    parse_spec,
    scan_corpus,
)
from serkit.errors import ConfigError, CorpusError
from serkit.labels import map_utterances, native_labels, resolve_label_set
from tests.conftest import DATA  # noqa: E402  (one place resolves $SERKIT_DATA)


def touch(path: Path, content: bytes = b"x") -> Path:
    """An empty-ish placeholder: adapters parse names only, they never decode audio."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def write_wav(path: Path, seconds: float = 0.1, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    return path


def need(folder: str) -> Path:
    p = DATA / folder
    if not p.is_dir():
        pytest.skip(f"real corpus {p} not available (set SERKIT_DATA)")
    return p


# --------------------------------------------------------------------------- registry and labels


def test_all_adapters_registered():
    assert CORPORA.names() == [
        "ased",
        "cremad",
        "emodb",
        "folder",
        "iemocap",
        "korean-emotiontts",
        "manifest",
        "nemo",
        "ravdess",
        "savee",
        "tess",
        "turev",
    ]


def test_adapter_code_tables_match_native_labels():
    from serkit.corpora import cremad, emodb, iemocap, ravdess, savee, tess

    for name, mod in [
        ("emodb", emodb),
        ("ravdess", ravdess),
        ("tess", tess),
        ("savee", savee),
        ("cremad", cremad),
        ("iemocap", iemocap),
    ]:
        assert set(mod.EMOTIONS.values()) == set(native_labels(name)), name
        assert set(native_labels(name)) <= set(labels.CANONICAL_LABELS)


def test_label_sets():
    assert resolve_label_set("6class") == ["neutral", "happy", "sad", "angry", "fear", "disgust"]
    assert resolve_label_set("4class") == ["neutral", "happy", "sad", "angry"]
    with pytest.raises(ConfigError, match=r"unknown label set '7class'.*6class, 4class, native"):
        resolve_label_set("7class")
    with pytest.raises(ConfigError, match="native_labels"):
        resolve_label_set("native")


def test_native_labels_errors():
    assert native_labels("ravdess") == ["neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise"]
    with pytest.raises(ConfigError, match="labels are the data's own"):
        native_labels("folder")
    with pytest.raises(ConfigError, match="unknown corpus 'nope'"):
        native_labels("nope")


def test_mapping_tables():
    m = labels.MAPPINGS
    assert m["ravdess"]["6class"]["calm"] == "neutral" and m["ravdess"]["6class"]["surprise"] is None
    assert m["ravdess"]["4class"]["fear"] is None
    assert m["emodb"]["6class"]["boredom"] is None and m["emodb"]["6class"]["angry"] == "angry"
    assert m["iemocap"]["4class"]["excited"] == "happy" and m["iemocap"]["4class"]["frustrated"] is None
    assert m["cremad"]["6class"] == {lab: lab for lab in native_labels("cremad")}
    # every target is in its set, every corpus label has an entry
    for corpus, sets in m.items():
        for set_name, table in sets.items():
            assert set(table) == set(native_labels(corpus))
            assert {t for t in table.values() if t} <= set(resolve_label_set(set_name))


def test_docstring_table_is_true():
    assert labels.describe_mappings() in labels.__doc__


def test_generic_mapping_synonyms():
    from serkit.corpora import Utterance

    utts = [
        Utterance(str(i), f"{i}.wav", lab, "s1", "folder")
        for i, lab in enumerate(
            ["Anger", "happiness", "SADNESS", "fearful", "Disgusted", "surprised", "neutral", "contempt"]
        )
    ]
    kept, dropped = map_utterances(utts, "6class")
    assert [u.label for u in kept] == ["angry", "happy", "sad", "fear", "disgust", "neutral"]
    assert kept[0].extra["native_label"] == "Anger"
    assert dropped == {"contempt": 1, "surprised": 1}
    kept4, dropped4 = map_utterances(utts, "4class")
    assert len(kept4) == 4 and dropped4["fearful"] == 1
    same, none = map_utterances(utts, "native")
    assert same == utts and none == {}
    with pytest.raises(ConfigError, match="unknown label set"):
        map_utterances(utts, "8class")


# --------------------------------------------------------------------------- adapters on fake trees


def test_emodb_parsing_and_both_roots(tmp_path):
    for name in ["03a01Fa.wav", "16b10Lb.wav", "09a05Ta.wav", "readme.wav", "03a01Xa.wav"]:
        touch(tmp_path / "emodb" / "wav" / name)
    touch(tmp_path / "emodb" / "wav" / "._03a01Fa.wav")  # macOS resource fork: ignored silently
    for root in (tmp_path / "emodb", tmp_path / "emodb" / "wav"):
        r = scan_corpus("emodb", root)
        by_id = {u.id: u for u in r.utterances}
        assert set(by_id) == {"03a01Fa", "16b10Lb", "09a05Ta"}
        assert (by_id["03a01Fa"].label, by_id["03a01Fa"].speaker) == ("happy", "03")
        assert by_id["16b10Lb"].label == "boredom" and by_id["16b10Lb"].extra["gender"] == "f"
        assert by_id["03a01Fa"].extra == {"text": "a01", "version": "a", "gender": "m", "emotion_code": "F"}
        assert any("readme.wav" in p for p in r.problems)
        assert any("03a01Xa.wav" in p and "emotion letter" in p for p in r.problems)
        assert not any("._" in p for p in r.problems)


def test_emodb_wrong_folder_says_what_was_expected(tmp_path):
    touch(tmp_path / "song.wav")
    touch(tmp_path / "other.flac")
    with pytest.raises(
        CorpusError, match=r"does not look like the emodb corpus: expected .*03a01Fa\.wav.*2 audio files"
    ):
        scan_corpus("emodb", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="holds no audio files"):
        scan_corpus("emodb", tmp_path / "empty")
    with pytest.raises(CorpusError, match="does not exist"):
        scan_corpus("emodb", tmp_path / "missing")


def test_ravdess_parsing(tmp_path):
    a1 = tmp_path / "Actor_01"
    touch(a1 / "03-01-05-02-02-01-01.wav")  # angry strong, dogs, actor 1 (male)
    touch(a1 / "03-01-02-01-01-02-01.wav")  # calm
    touch(a1 / "03-02-03-01-01-01-01.wav")  # song: skipped by default
    touch(a1 / "01-01-03-01-01-01-01.wav")  # audio-video modality
    touch(a1 / "03-01-09-01-01-01-01.wav")  # emotion 09 does not exist
    touch(a1 / "03-01-03-01-01-01-02.wav")  # actor 02 misfiled in Actor_01
    touch(tmp_path / "Actor_02" / "03-01-01-01-01-01-02.wav")
    r = scan_corpus("ravdess", tmp_path)
    by_id = {u.id: u for u in r.utterances}
    assert set(by_id) == {"03-01-05-02-02-01-01", "03-01-02-01-01-02-01", "03-01-01-01-01-01-02"}
    u = by_id["03-01-05-02-02-01-01"]
    assert (u.label, u.speaker) == ("angry", "01")
    assert u.extra["intensity"] == "strong" and u.extra["gender"] == "m"
    assert u.extra["statement"].startswith("Dogs") and u.extra["channel"] == "speech"
    assert by_id["03-01-01-01-01-01-02"].extra["gender"] == "f"
    text = " ".join(r.problems)
    assert "another vocal channel" in text and "modality" in text
    assert "03-01-09-01-01-01-01.wav" in text and "another actor" in text
    both = scan_corpus("ravdess", tmp_path, channel="both")
    assert any(u.extra["channel"] == "song" for u in both.utterances)
    with pytest.raises(ConfigError, match="unknown channel"):
        scan_corpus("ravdess", tmp_path, channel="choir")


def test_ravdess_song_only_folder_explains(tmp_path):
    touch(tmp_path / "Actor_01" / "03-02-03-01-01-01-01.wav")
    with pytest.raises(CorpusError, match="channel='song'"):
        scan_corpus("ravdess", tmp_path)


def test_tess_parsing_and_tolerance(tmp_path):
    touch(tmp_path / "OAF_angry" / "OAF_back_angry.flac")
    touch(tmp_path / "OAF_neutral" / "OA_bite_neutral.wav")  # truncated speaker, as in the real corpus
    touch(tmp_path / "YAF_pleasant_surprised" / "YAF_back_ps.wav")
    touch(tmp_path / "OAF_Fear" / "OAF_BEAN_Fear.wav")  # odd case
    touch(tmp_path / "YAF_sad" / "YAF_dog_happy.wav")  # name and folder disagree
    touch(tmp_path / "YAF_sad" / "notes.wav")
    r = scan_corpus("tess", tmp_path)
    got = {(u.speaker, u.extra["word"], u.label) for u in r.utterances}
    assert got == {
        ("OAF", "back", "angry"),
        ("OAF", "bite", "neutral"),
        ("YAF", "back", "surprise"),
        ("OAF", "bean", "fear"),
        ("YAF", "dog", "sad"),
    }
    text = " ".join(r.problems)
    assert "disagree" in text and "YAF_dog_happy" in text and "notes.wav" in text


def test_savee_both_layouts(tmp_path):
    flat = tmp_path / "flat"
    for name in ["DC_a01.wav", "JE_sa15.wav", "KL_su03.wav", "JK_n30.wav", "DC_x01.wav"]:
        touch(flat / name)
    r = scan_corpus("savee", flat)
    got = {(u.speaker, u.label, u.extra["sentence"]) for u in r.utterances}
    assert got == {("DC", "angry", "01"), ("JE", "sad", "15"), ("KL", "surprise", "03"), ("JK", "neutral", "30")}
    assert any("DC_x01.wav" in p for p in r.problems)
    nested = tmp_path / "savee"
    touch(nested / "AudioData" / "DC" / "a01.wav")
    touch(nested / "AudioData" / "JE" / "su02.wav")
    r2 = scan_corpus("savee", nested)
    assert {(u.id, u.speaker, u.label) for u in r2.utterances} == {
        ("DC_a01", "DC", "angry"),
        ("JE_su02", "JE", "surprise"),
    }


def test_cremad_parsing(tmp_path):
    wav = tmp_path / "AudioWAV"
    for name in [
        "1001_DFA_ANG_XX.wav",
        "1002_IEO_HAP_HI.wav",
        "1091_TSI_NEU_XX.wav",
        "1001_DFA_XYZ_XX.wav",
        "junk.wav",
    ]:
        touch(wav / name)
    touch(tmp_path / "AudioMP3" / "1001_DFA_ANG_XX.mp3")  # same clips again: must not be counted
    (tmp_path / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n1002,21,Female,Caucasian,Not Hispanic\n"
    )
    r = scan_corpus("cremad", tmp_path)
    by_id = {u.id: u for u in r.utterances}
    assert set(by_id) == {"1001_DFA_ANG_XX", "1002_IEO_HAP_HI", "1091_TSI_NEU_XX"}
    assert (by_id["1001_DFA_ANG_XX"].label, by_id["1001_DFA_ANG_XX"].speaker) == ("angry", "1001")
    assert by_id["1002_IEO_HAP_HI"].extra["level"] == "high" and by_id["1002_IEO_HAP_HI"].extra["gender"] == "f"
    assert "gender" not in by_id["1091_TSI_NEU_XX"].extra
    assert any("1001_DFA_XYZ_XX.wav" in p for p in r.problems) and any("junk.wav" in p for p in r.problems)
    assert all(u.path.endswith(".wav") for u in r.utterances)


def _iemocap_tree(root: Path) -> Path:
    ev = root / "Session1" / "dialog" / "EmoEvaluation"
    ev.mkdir(parents=True)
    (ev / "Categorical").mkdir()  # sub-folders of EmoEvaluation are per-annotator files: not read
    (ev / "Categorical" / "Ses01F_impro01_e2_cat.txt").write_text("[1.0 - 2.0]\tSes01F_impro01_F000\tang\t[1, 1, 1]\n")
    lines = [
        "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]",
        "",
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]",
        "C-E2:\tNeutral;\t()",
        "A-E3:\tval 3; act 2; dom  2;\t()",
        "",
        "[10.0100 - 11.3925]\tSes01F_impro01_M002\texc\t[3.5000, 3.5000, 3.0000]",
        "[12.0 - 13.5]\tSes01F_impro01_F003\txxx\t[2.0000, 3.0000, 3.0000]",
        "[14.0 - 15.5]\tSes01F_impro01_M004\toth\t[2.0000, 3.0000, 3.0000]",
        "[16.0 - 17.5]\tSes01F_impro01_M005\tfru\t[2.0000, 3.0000, 3.0000]",
        "[18.0 - 19.5]\tSes01F_impro01_F006\tang\t[2.0000, 3.0000, 3.0000]",  # no wav
        "[20.0 - 21.5]\tSes01F_impro01_F007\tlol\t[2.0000, 3.0000, 3.0000]",  # unknown code
    ]
    (ev / "Ses01F_impro01.txt").write_text("\n".join(lines) + "\n")
    (ev / "Ses01M_script01_1.txt").write_text("[1.0 - 2.0]\tSes01M_script01_1_F000\tsad\t[2.0, 2.0, 2.0]\n")
    wav = root / "Session1" / "sentences" / "wav"
    for utt in ["F000", "M002", "F003", "M004", "M005", "F007"]:
        touch(wav / "Ses01F_impro01" / f"Ses01F_impro01_{utt}.wav")
    touch(wav / "Ses01M_script01_1" / "Ses01M_script01_1_F000.wav")
    return root


def test_iemocap_parsing(tmp_path):
    root = _iemocap_tree(tmp_path / "IEMOCAP_full_release")
    r = scan_corpus("iemocap", root)
    by_id = {u.id: u for u in r.utterances}
    assert set(by_id) == {"Ses01F_impro01_F000", "Ses01F_impro01_M002", "Ses01F_impro01_M005", "Ses01M_script01_1_F000"}
    assert by_id["Ses01F_impro01_M002"].speaker == "Ses01M"  # the speaking actor, not the marker wearer
    assert by_id["Ses01F_impro01_M002"].label == "excited"
    assert by_id["Ses01M_script01_1_F000"].speaker == "Ses01F"
    u = by_id["Ses01F_impro01_F000"]
    assert (u.label, u.start, u.end) == ("neutral", None, None)
    assert u.extra["dialog_start"] == pytest.approx(6.2901) and u.extra["valence"] == 2.5 and u.extra["improvised"]
    assert u.path.endswith("sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav")
    text = " ".join(r.problems)
    assert "1 utterances labelled xxx" in text and "1 utterances labelled oth" in text
    assert "'lol'" in text and "no wav file" in text and "Ses01F_impro01_F006" in text
    assert {u.label for u in scan_corpus("iemocap", root, keep_other=True).utterances} >= {"other"}
    impro = scan_corpus("iemocap", root, improvised_only=True).utterances
    assert all(u.extra["improvised"] for u in impro) and len(impro) == 3
    # 4class: excited merged into happy, frustrated dropped
    kept, dropped = map_utterances(r.utterances, "4class")
    assert sorted(u.label for u in kept) == ["happy", "neutral", "sad"] and dropped == {"frustrated": 1}


def test_iemocap_wrong_folder(tmp_path):
    touch(tmp_path / "a.wav")
    with pytest.raises(CorpusError, match=r"expected Session1\.\.Session5"):
        scan_corpus("iemocap", tmp_path)


def test_folder_speakers(tmp_path):
    touch(tmp_path / "Anger" / "anna_001.wav")
    touch(tmp_path / "Anger" / "bob-002.wav")
    touch(tmp_path / "happy" / "carl" / "take1.wav")
    touch(tmp_path / "happy" / "x.wav")
    touch(tmp_path / "loose.wav")
    touch(tmp_path / ".hidden" / "h_1.wav")
    r = scan_corpus("folder", tmp_path)
    got = {(u.label, u.speaker, u.extra["speaker_from"]) for u in r.utterances}
    assert got == {
        ("Anger", "anna", "prefix"),
        ("Anger", "bob", "prefix"),
        ("happy", "carl", "folder"),
        ("happy", UNKNOWN_SPEAKER, "unknown"),
    }
    text = " ".join(r.problems)
    assert "loose.wav" in text and "carry no speaker" in text and "h_1" not in text
    r2 = scan_corpus("folder", tmp_path, speaker_pattern=r"^(?P<speaker>[a-z]+)[_-]")
    assert {u.speaker for u in r2.utterances} == {"anna", "bob"}
    assert "does not match speaker_pattern" in " ".join(r2.problems)
    with pytest.raises(ConfigError, match="named group 'speaker'"):
        scan_corpus("folder", tmp_path, speaker_pattern=r"^(\w+)_")
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        scan_corpus("folder", tmp_path, speaker_pattern=r"(?P<speaker>")


def test_folder_warns_when_speakers_look_like_labels(tmp_path):
    for lab in ["angry", "sad"]:
        for i in range(2):
            touch(tmp_path / lab / f"{lab}_{i}.wav")
    r = scan_corpus("folder", tmp_path)
    assert any("named like labels" in p for p in r.problems)


def test_folder_without_label_folders(tmp_path):
    touch(tmp_path / "a.wav")
    with pytest.raises(CorpusError, match="no label sub-folders.*manifest"):
        scan_corpus("folder", tmp_path)


def test_manifest(tmp_path):
    write_wav(tmp_path / "audio" / "a.wav")
    touch(tmp_path / "audio" / "b.wav")
    csv = tmp_path / "list.csv"
    csv.write_text(
        "Path, Label ,speaker,start,end,session\n"
        "audio/a.wav,angry,s1,,,x\n"
        "audio/b.wav,Happiness,s2,0.5,1.5,\n"
        "audio/b.wav,sad,s2,1.5,1.0,\n"  # end before start
        "audio/missing.wav,sad,s3,,,\n"
        "audio/a.wav,,s1,,,\n"  # empty label
        "audio/b.wav,sad,s2,abc,2,\n"
        "\n"
    )
    r = scan_corpus("manifest", csv)
    assert [(u.id, u.label, u.speaker, u.start, u.end) for u in r.utterances] == [
        ("audio/a", "angry", "s1", None, None),
        ("audio/b@0.5-1.5", "Happiness", "s2", 0.5, 1.5),
    ]
    assert r.utterances[0].extra == {"session": "x"}
    assert Path(r.utterances[0].path) == tmp_path / "audio" / "a.wav"
    text = " ".join(r.problems)
    assert "line 4" in text and "line 7" in text and "missing.wav" in text and "line 6" in text
    kept, _ = map_utterances(r.utterances, "4class")
    assert [u.label for u in kept] == ["angry", "happy"]


def test_manifest_missing_columns(tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_text("file,emotion,speaker\na.wav,angry,s1\n")
    with pytest.raises(CorpusError, match=r"lacks column\(s\) path, label; found 'file', 'emotion', 'speaker'"):
        scan_corpus("manifest", csv)
    with pytest.raises(CorpusError, match="no manifest.csv"):
        scan_corpus("manifest", tmp_path)


def test_check_audio_drops_unreadable(tmp_path):
    write_wav(tmp_path / "wav" / "03a01Fa.wav")
    touch(tmp_path / "wav" / "03a01Wa.wav", b"not audio")
    r = scan_corpus("emodb", tmp_path, check_audio=True)
    assert [u.id for u in r.utterances] == ["03a01Fa"]
    assert any(p.startswith("skipped: ") and "03a01Wa" in p for p in r.problems)


def _bad_files(folder: Path) -> dict[str, Path]:
    """The four kinds of unusable file the issue found, next to good ones."""
    folder.mkdir(parents=True, exist_ok=True)
    nan = folder / "nan.wav"
    sf.write(nan, np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    empty = touch(folder / "empty.wav", b"")
    garbage = touch(folder / "garbage.wav", b"RIFF....WAVEfmt " + bytes(range(256)) * 4)
    tiny = folder / "tiny.wav"
    sf.write(tiny, np.full(8, 0.1, dtype=np.float32), 16000)  # 8 samples: 0.5 ms
    return {"nan": nan, "empty": empty, "garbage": garbage, "tiny": tiny}


def test_check_audio_skips_nan_empty_garbage_and_too_short_files_alike(tmp_path, caplog):
    from serkit.audio import MIN_DURATION_S

    for label in ("angry", "sad"):
        for k in range(5):
            write_wav(tmp_path / label / f"{label}{k}.wav", seconds=0.3)
    bad = _bad_files(tmp_path / "angry")
    r = scan_corpus("folder", tmp_path, check_audio=True)
    assert sorted(Path(u.path).name for u in r.utterances) == sorted(
        [f"angry{k}.wav" for k in range(5)] + [f"sad{k}.wav" for k in range(5)]
    )
    skipped = [p for p in r.problems if p.startswith("skipped: ")]
    assert len(skipped) == 4
    text = " | ".join(skipped)
    for path in bad.values():
        assert path.name in text
    assert "NaN" in text and f"shorter than the {MIN_DURATION_S:g} s" in text
    with caplog.at_level(logging.WARNING, logger="serkit.corpora"):
        kept = load_corpus(f"folder:{tmp_path}", check_audio=True)
    assert len(kept) == 10 and "5 problem(s)" in caplog.text  # 4 skipped files + the speaker note
    # a 0.1 s clip is the shortest serkit accepts: kept, as predict keeps it
    write_wav(tmp_path / "sad" / "edge.wav", seconds=MIN_DURATION_S)
    assert len(scan_corpus("folder", tmp_path, check_audio=True).utterances) == 11


def test_segment_shorter_than_the_minimum_is_skipped(tmp_path):
    from serkit.corpora.base import audio_problem

    path = write_wav(tmp_path / "a.wav", seconds=1.0)
    assert audio_problem(path) is None
    assert audio_problem(path, 0.2, 0.5) is None
    assert "shorter than" in audio_problem(path, 0.2, 0.25)
    assert "shorter than" in audio_problem(path, 0.95, 3.0)  # the file ends after 0.05 s


def test_train_skips_bad_files_instead_of_failing(tmp_path, emodb_dir):
    """`serkit train` on a folder corpus with a NaN, an empty, a garbage and an 8-sample file: rc 0."""
    import json
    import shutil

    from serkit.cli import main

    root = tmp_path / "corpus"
    wavs = sorted((emodb_dir / "wav").glob("*.wav"))
    picked = {"angry": [w for w in wavs if w.name[5] == "W"][:5], "sad": [w for w in wavs if w.name[5] == "T"][:5]}
    for label, files in picked.items():
        for w in files:
            (root / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(w, root / label / w.name)
    _bad_files(root / "angry")
    out = tmp_path / "model"
    assert (
        main(
            [
                "train",
                "--corpus",
                f"folder:{root}",
                "--recipe",
                "librosa-svm",
                "--out",
                str(out),
                "-q",
                "--set",
                "model.grid={C: [1.0]}",
            ]
        )
        == 0
    )
    meta = json.loads((out / "model.json").read_text())
    assert meta["trained_on"]["n_utterances"] == 10


def test_a_label_typo_is_named_in_a_warning(tmp_path, caplog):
    from serkit.corpora import MIN_CLASS_UTTERANCES

    rows = ["path,label,speaker"]
    for k in range(6):
        rows.append(f"{write_wav(tmp_path / f'b{k}.wav')},bored,s{k % 2}")
        rows.append(f"{write_wav(tmp_path / f'h{k}.wav')},happy,s{k % 2}")
    rows.append(f"{write_wav(tmp_path / 'x.wav')},bored_silly,s0")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="serkit.corpora"):
        utts = load_corpus(f"manifest:{tmp_path / 'm.csv'}")
    assert len(utts) == 13
    assert f"fewer than {MIN_CLASS_UTTERANCES} utterances: 'bored_silly' (1)" in caplog.text
    assert "'bored'" not in caplog.text and "'happy'" not in caplog.text


def test_quiet_silences_library_warnings(tmp_path):
    import subprocess
    import sys

    # a library warning raised while the command runs (as scikit-learn's are)
    code = (
        "import warnings, sys; import serkit.cli as c; "
        "c.COMMANDS['recipes'] = lambda a: warnings.warn('a scikit-learn style notice', FutureWarning) or 0; "
        "c.main(sys.argv[1:])"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    env.pop("PYTHONWARNINGS", None)
    loud = subprocess.run([sys.executable, "-c", code, "recipes"], capture_output=True, text=True, env=env)
    quiet = subprocess.run([sys.executable, "-c", code, "recipes", "-q"], capture_output=True, text=True, env=env)
    assert "a scikit-learn style notice" in loud.stderr
    assert "a scikit-learn style notice" not in quiet.stderr


# --------------------------------------------------------------------------- load_corpus / load_corpora


def test_parse_spec():
    assert parse_spec("EmoDB:/data/emodb") == ("emodb", "/data/emodb", {})
    assert parse_spec("crema-d:C:\\x") == ("cremad", "C:\\x", {})
    assert parse_spec(("folder", Path("/d"), {"speaker_pattern": "(?P<speaker>x)"}))[2] == {
        "speaker_pattern": "(?P<speaker>x)"
    }
    with pytest.raises(ConfigError, match="not NAME:ROOT"):
        parse_spec("/data/emodb")
    with pytest.raises(ConfigError, match="unknown corpus 'berlinx'; known: ased, cremad, emodb"):
        parse_spec("berlinx:/data")


def test_load_corpus_options_and_label_set(tmp_path):
    touch(tmp_path / "wav" / "03a01La.wav")
    touch(tmp_path / "wav" / "03a01Wa.wav")
    assert [u.label for u in load_corpus(f"emodb:{tmp_path}")] == ["boredom", "angry"]
    assert [u.label for u in load_corpus(("emodb", tmp_path), label_set="6class")] == ["angry"]
    with pytest.raises(ConfigError, match="unknown label set"):
        load_corpus(f"emodb:{tmp_path}", label_set="5class")
    with pytest.raises(ConfigError, match="emodb: unknown option.*channel.*takes: no options"):
        load_corpus(f"emodb:{tmp_path}", channel="song")
    only_bored = tmp_path / "b"
    touch(only_bored / "03a01La.wav")
    with pytest.raises(CorpusError, match="none of the 1 utterances.*boredom"):
        load_corpus(f"emodb:{only_bored}", label_set="4class")


def test_load_corpora_prefixes_speakers(tmp_path, caplog):
    touch(tmp_path / "emodb" / "wav" / "03a01Wa.wav")
    touch(tmp_path / "emodb" / "wav" / "03a01La.wav")
    touch(tmp_path / "rav" / "Actor_03" / "03-01-02-01-01-01-03.wav")
    touch(tmp_path / "f1" / "angry" / "03_x.wav")
    touch(tmp_path / "f2" / "angry" / "03_x.wav")
    specs = [
        f"emodb:{tmp_path / 'emodb'}",
        ("ravdess", tmp_path / "rav"),
        f"folder:{tmp_path / 'f1'}",
        f"folder:{tmp_path / 'f2'}",
    ]
    with caplog.at_level(logging.INFO, logger="serkit.corpora"):
        utts = load_corpora(specs, label_set="6class")
    assert sorted((u.speaker, u.label) for u in utts) == [
        ("emodb/03", "angry"),
        ("folder-2/03", "angry"),
        ("folder/03", "angry"),
        ("ravdess/03", "neutral"),  # calm → neutral
    ]
    assert len({u.id for u in utts}) == 4
    assert "boredom 1" in caplog.text
    single = load_corpora([f"emodb:{tmp_path / 'emodb'}"])
    assert {u.speaker for u in single} == {"03"}
    with pytest.raises(ConfigError, match="more than once"):
        load_corpora([f"emodb:{tmp_path / 'emodb'}", f"emodb:{tmp_path / 'emodb' / '.'}"])
    with pytest.raises(ConfigError, match="at least one"):
        load_corpora([])


# --------------------------------------------------------------------------- real corpora


def test_real_emodb():
    r = scan_corpus("emodb", need("emodb"))
    assert len(r.utterances) == 535 and r.problems == []
    assert Counter(u.label for u in r.utterances) == {
        "angry": 127,
        "boredom": 81,
        "disgust": 46,
        "fear": 69,
        "happy": 71,
        "sad": 62,
        "neutral": 79,
    }
    assert sorted({u.speaker for u in r.utterances}) == ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]
    kept, dropped = map_utterances(r.utterances, "6class")
    assert len(kept) == 535 - 81 == 454 and dropped == {"boredom": 81}


def test_real_ravdess_sample():
    r = scan_corpus("ravdess", need("ravdess-sample"))
    assert len(r.utterances) == 120 and r.problems == []
    assert Counter(u.speaker for u in r.utterances) == {"01": 60, "02": 60}
    assert not any(u.label == "neutral" and u.extra["intensity"] == "strong" for u in r.utterances)
    assert {u.extra["gender"] for u in r.utterances if u.speaker == "01"} == {"m"}
    kept, dropped = map_utterances(r.utterances, "6class")
    assert dropped == {"surprise": 16}
    assert Counter(u.label for u in kept)["neutral"] == 8 + 16  # neutral + calm


def test_real_tess():
    r = scan_corpus("tess", need("tess"))
    assert len(r.utterances) == 2800 and r.problems == []
    counts = Counter((u.speaker, u.label) for u in r.utterances)
    assert set(counts.values()) == {200} and len(counts) == 14
