"""Adapters for ASED, nEMO, TurEV-DB and the Korean emotional TTS sample: fake trees for parsing,
the shared real corpora (16 kHz Ogg Opus copies) for the published counts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from serkit import audio, labels
from serkit.corpora import load_corpora, load_corpus, parse_spec, scan_corpus
from serkit.errors import CorpusError
from serkit.labels import map_utterances, native_labels
from tests.conftest import data_dir

NEW = ("ased", "nemo", "turev", "korean-emotiontts")


def touch(path: Path, content: bytes = b"x") -> Path:
    """A placeholder file: adapters parse names only, they never decode audio."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# --------------------------------------------------------------------------- registry and labels


def test_registered_with_their_spellings():
    from serkit.corpora import CORPORA

    assert set(NEW) <= set(CORPORA.names())
    assert parse_spec("TurEV-DB:/x")[0] == "turev"
    assert parse_spec("korean-emotiontts:/x")[0] == "korean-emotiontts"
    assert parse_spec("Korean_EmotionTTS:/x")[0] == "korean-emotiontts"
    assert parse_spec("nEMO:/x")[0] == "nemo" and parse_spec("ASED:/x")[0] == "ased"


def test_code_tables_match_native_labels_and_mappings():
    from serkit.corpora import ased, korean_emotiontts, nemo, turev

    for name, mod in [("ased", ased), ("nemo", nemo), ("turev", turev), ("korean-emotiontts", korean_emotiontts)]:
        assert set(mod.EMOTIONS.values()) == set(native_labels(name)), name
    m = labels.MAPPINGS
    assert m["ased"]["6class"] == {lab: lab for lab in native_labels("ased")} and m["ased"]["4class"]["fear"] is None
    assert m["nemo"]["6class"]["surprise"] is None and m["nemo"]["4class"]["fear"] is None
    # TurEV-DB calm is dropped (not merged into neutral as RAVDESS calm is)
    assert m["turev"]["6class"]["calm"] is None and m["turev"]["4class"]["calm"] is None
    assert m["korean-emotiontts"]["4class"] == {lab: lab for lab in native_labels("korean-emotiontts")}
    assert labels.describe_mappings() in labels.__doc__


# --------------------------------------------------------------------------- adapters on fake trees


def test_ased_parsing(tmp_path):
    for name in [
        "05Angry/a5-03-01-02-50.wav",
        "05Angry/a5-04-01-02-50.wav",
        "05Angry/a5-05-01-01-50.wav",  # a wrong gender field: the speaker's usual one is kept
        "04Sad/S4-04-02-01-29.wav",  # upper-case letter, as in the published copy
        "04Sad/a5-01-01-01-29.wav",  # name says angry, folder sad: the folder wins
        "01Neutral/n1-01-01-01-70.wav",  # speaker outside 01..65: kept, reported
        "01Neutral/x9-01-01-01-01.wav",  # unknown code
        "01Neutral/readme.wav",
    ]:
        touch(tmp_path / name)
    r = scan_corpus("ased", tmp_path)
    by_id = {u.id: u for u in r.utterances}
    assert len(by_id) == 6
    u = by_id["a5-03-01-02-50"]
    assert (u.label, u.speaker, u.corpus) == ("angry", "50", "ased")
    assert u.extra == {"sentence": "03", "repetition": 1, "gender": "m", "emotion_code": "a5"}
    assert by_id["a5-05-01-01-50"].extra["gender"] == "m"
    assert by_id["S4-04-02-01-29"].label == "sad" and by_id["S4-04-02-01-29"].extra["gender"] == "f"
    assert by_id["a5-01-01-01-29"].label == "sad"
    problems = " | ".join(r.problems)
    assert "1 files not named like" in problems and "readme.wav" in problems
    assert "1 files with a code ASED does not use" in problems
    assert "name and emotion folder disagree" in problems and "04Sad/a5-01-01-01-29.wav" in problems
    assert "speaker '70'" in problems


def test_nemo_parsing_with_and_without_table(tmp_path):
    for name in ["KS0_surprised_70.wav", "EB0_anger_1.wav", "EB0_sadness_2.wav", "EB0_bored_3.wav", "x.wav"]:
        touch(tmp_path / "samples" / name)
    r = scan_corpus("nemo", tmp_path)
    assert sorted((u.id, u.label, u.speaker) for u in r.utterances) == [
        ("EB0_anger_1", "angry", "EB0"),
        ("EB0_sadness_2", "sad", "EB0"),
        ("KS0_surprised_70", "surprise", "KS0"),
    ]
    assert r.utterances[0].extra == {"sentence": "1"}  # no data.tsv: names only
    assert any("emotion nEMO does not use" in p for p in r.problems)
    (tmp_path / "data.tsv").write_text(
        "file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage\n"
        "KS0_surprised_70.wav\tsurprised\tKupiłem szafę.\tkupiłem szafę\t        KS0\tmale\t23\n"
        "EB0_anger_1.wav\tfear\tLubię czytać.\tlubię czytać\t        EB0\tfemale\t27\n",
        encoding="utf-8",
    )
    for root in (tmp_path, tmp_path / "samples"):  # the corpus folder or samples/ itself
        r = scan_corpus("nemo", root)
        by_id = {u.id: u for u in r.utterances}
        assert by_id["KS0_surprised_70"].extra == {"sentence": "70", "text": "Kupiłem szafę.", "gender": "m", "age": 23}
        assert by_id["EB0_anger_1"].label == "angry"  # the name decides; the disagreeing row is reported
        problems = " | ".join(r.problems)
        assert "1 files whose data.tsv row disagrees" in problems and "EB0_anger_1" in problems
        assert "1 files not listed in" in problems and "EB0_sadness_2" in problems
    (tmp_path / "data.tsv").write_text("file_id\temotion\nEB0_anger_1.wav\tanger\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"lacks the column\(s\) age, gender, speaker_id"):
        scan_corpus("nemo", tmp_path)


def test_turev_parsing(tmp_path):
    for name in [
        "Sound Source/Calm/1358_sk_beste.wav",
        "Sound Source/Angry/1157_kz_acik.wav",
        "Sound Source/Happy/1157_hl_algi.wav",  # sad by code, in Happy/: the folder wins
        "Sound Source/Sad/9999_hl_okul.wav",  # unknown speaker: kept, reported
        "Sound Source/Sad/1234_zz_okul.wav",
        "Sound Source/Sad/notes.wav",
    ]:
        touch(tmp_path / name)
    for root in (tmp_path, tmp_path / "Sound Source"):
        r = scan_corpus("turev", root)
        by_id = {u.id: u for u in r.utterances}
        assert len(by_id) == 4
        u = by_id["1358_sk_beste"]
        assert (u.label, u.speaker, u.extra) == ("calm", "1358", {"word": "beste", "emotion_code": "sk"})
        assert by_id["1157_hl_algi"].label == "happy"
        problems = " | ".join(r.problems)
        assert "name and emotion folder disagree" in problems and "speaker '9999'" in problems
        assert "1 files with an emotion code TurEV-DB does not use" in problems and "1 files not named" in problems
    kept, dropped = map_utterances(r.utterances, "6class")
    assert dropped == {"calm": 1} and len(kept) == 3


def test_korean_parsing(tmp_path):
    spk = tmp_path / "emotional-to-emotional" / "neo"
    touch(spk / "wav" / "neo00204.wav")
    touch(spk / "wav" / "neo00100.wav")
    touch(spk / "wav" / "neo00301.wav")
    touch(spk / "wav" / "neo00401.wav")  # no emotion
    touch(spk / "wav" / "nea00101.wav")  # in neo's folder: skipped
    (spk / "transcript").mkdir()
    (spk / "transcript" / "neo00204.txt").write_text("\ufeff걱정된다.\n", encoding="utf-8")
    touch(tmp_path / "plain-to-emotional" / "ema" / "wav" / "ema00150.wav")
    touch(tmp_path / "flat" / "nek00001.wav")  # a flattened copy: no speaker folder, accepted
    r = scan_corpus("korean-emotiontts", tmp_path)
    by_id = {u.id: u for u in r.utterances}
    assert sorted(by_id) == ["ema00150", "nek00001", "neo00100", "neo00204", "neo00301"]
    u = by_id["neo00204"]
    assert (u.label, u.speaker, u.corpus) == ("angry", "neo", "korean-emotiontts")
    assert u.extra == {"number": "00204", "script": "emotional", "gender": "m", "text": "걱정된다."}
    assert by_id["neo00100"].label == "neutral" and by_id["neo00301"].label == "sad"
    assert by_id["neo00100"].extra["text"] == ""
    assert by_id["ema00150"].extra["script"] == "plain" and by_id["ema00150"].extra["gender"] == "f"
    assert by_id["ema00150"].label == "happy"
    problems = " | ".join(r.problems)
    assert (
        "1 files numbered outside 00001..00400" in problems and "1 files in the folder of another speaker" in problems
    )


@pytest.mark.parametrize("name", NEW)
def test_wrong_folder_says_what_was_expected(tmp_path, name):
    touch(tmp_path / "03a01Fa.wav")
    with pytest.raises(CorpusError, match=rf"does not look like the {name} corpus: expected .*03a01Fa"):
        scan_corpus(name, tmp_path)


# --------------------------------------------------------------------------- real corpora


def test_real_ased():
    r = scan_corpus("ased", data_dir("ased"))
    assert len(r.utterances) == 2474 and r.problems == []
    assert Counter(u.label for u in r.utterances) == {
        "neutral": 522,
        "fear": 510,
        "happy": 486,
        "sad": 470,
        "angry": 486,
    }
    speakers = {u.speaker: u.extra["gender"] for u in r.utterances}
    assert len(speakers) == 65 and Counter(speakers.values()) == {"f": 25, "m": 40}
    u = next(u for u in r.utterances if u.id == "a5-03-01-02-50")
    assert (u.label, u.speaker, u.extra["sentence"], u.extra["gender"]) == ("angry", "50", "03", "m")
    kept6, dropped6 = map_utterances(r.utterances, "6class")
    kept4, dropped4 = map_utterances(r.utterances, "4class")
    assert len(kept6) == 2474 and dropped6 == {}
    assert len(kept4) == 2474 - 510 == 1964 and dropped4 == {"fear": 510}


def test_real_nemo():
    r = scan_corpus("nemo", data_dir("nemo"))
    assert len(r.utterances) == 4481 and r.problems == []
    assert Counter(u.label for u in r.utterances) == {
        "angry": 749,
        "fear": 736,
        "happy": 749,
        "neutral": 809,
        "sad": 769,
        "surprise": 669,
    }
    assert len({u.speaker for u in r.utterances}) == 9
    assert {(u.extra["gender"], u.extra["age"]) for u in r.utterances if u.speaker == "KS0"} == {("m", 23)}
    u = next(u for u in r.utterances if u.id == "KS0_surprised_70")
    assert (u.label, u.speaker, u.extra["sentence"]) == ("surprise", "KS0", "70") and u.extra["text"]
    kept6, dropped6 = map_utterances(r.utterances, "6class")
    kept4, dropped4 = map_utterances(r.utterances, "4class")
    assert len(kept6) == 4481 - 669 == 3812 and dropped6 == {"surprise": 669}
    assert len(kept4) == 3812 - 736 == 3076 and dropped4 == {"fear": 736, "surprise": 669}


def test_real_turev():
    r = scan_corpus("turev", data_dir("turev"))
    assert len(r.utterances) == 1735 and r.problems == []
    assert Counter(u.label for u in r.utterances) == {"angry": 487, "calm": 408, "happy": 357, "sad": 483}
    per_speaker = Counter(u.speaker for u in r.utterances)
    assert len(per_speaker) == 6 and per_speaker["1157"] == 150
    assert sorted(per_speaker.values()) == [150, 273, 328, 328, 328, 328]
    u = next(u for u in r.utterances if u.id == "1358_sk_beste")
    assert (u.label, u.speaker, u.extra["word"]) == ("calm", "1358", "beste")
    kept6, dropped6 = map_utterances(r.utterances, "6class")
    assert len(kept6) == 1735 - 408 == 1327 and dropped6 == {"calm": 408}
    assert map_utterances(r.utterances, "4class")[1] == {"calm": 408}


def test_real_korean():
    r = scan_corpus("korean-emotiontts", data_dir("korean-emotiontts"))
    assert len(r.utterances) == 300 and r.problems == []
    assert set(Counter(u.speaker for u in r.utterances).values()) == {20}
    assert len({u.speaker for u in r.utterances}) == 15
    assert Counter(u.label for u in r.utterances) == {"neutral": 75, "happy": 75, "angry": 75, "sad": 75}
    assert set(Counter((u.speaker, u.label) for u in r.utterances).values()) == {5}
    assert all(u.extra["text"] and not u.extra["text"].startswith("\ufeff") for u in r.utterances)
    u = next(u for u in r.utterances if u.id == "neo00204")
    assert (u.label, u.speaker, u.extra["script"], u.extra["gender"]) == ("angry", "neo", "emotional", "m")
    for label_set in ("6class", "4class"):
        kept, dropped = map_utterances(r.utterances, label_set)
        assert len(kept) == 300 and dropped == {}


def test_real_opus_files_read_through_serkit_audio():
    """One Ogg Opus file of each corpus decodes at 16 kHz, whole and as a segment, and passes the audio check."""
    from serkit.corpora.base import audio_problem

    for name in NEW:
        utt = load_corpus(f"{name}:{data_dir(name)}")[0]
        head = audio.info(utt.path)
        assert (head.sampling_rate, head.channels, head.format) == (16000, 1, "OGG")
        signal, sr = audio.read(utt.path)
        assert sr == 16000 and len(signal) == head.frames and 0.01 < np.abs(signal).max() <= 1.0
        part, _ = audio.read(utt.path, start=0.1, end=0.3)  # Opus seeks; TurEV words are short
        assert len(part) == 3200 and np.allclose(part, signal[1600:4800], atol=1e-3)
        assert audio_problem(utt.path) is None


def test_real_new_corpora_together():
    utts = load_corpora([f"{name}:{data_dir(name)}" for name in NEW], label_set="6class")
    assert len(utts) == 2474 + 3812 + 1327 + 300
    assert Counter(u.corpus for u in utts)["turev"] == 1327
    assert len({u.speaker for u in utts}) == 65 + 9 + 6 + 15


def test_cli_lists_and_scans_them(capsys):
    import json

    from serkit.cli import main

    assert main(["corpora", "list"]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(NEW) <= set(listed) and "Amharic" in listed["ased"] and "Korean" in listed["korean-emotiontts"]
    assert main(["corpora", "scan", "korean-emotiontts", str(data_dir("korean-emotiontts")), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_utterances"] == 300 and out["labels"] == {"angry": 75, "happy": 75, "neutral": 75, "sad": 75}
