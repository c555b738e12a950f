"""Korean emotional TTS corpus (KAIST / Selvas AI, 2017–2018), the public 5 % sample.

Conversational Korean read in four emotions by 15 speakers, in two parts:
``emotional-to-emotional`` (10 speakers, nea … nee female, nek … neo male, reading scripts
written for each emotion) and ``plain-to-emotional`` (5 speakers, ema emb female, emf emg emh
male, reading neutral scripts with an emotion). The full corpus has 400 sentences per speaker
(100 per emotion); the public sample has 5 per emotion and speaker, 300 files in all.
22.05 kHz wav as published; CC BY-NC-SA 4.0, research use only.

Emotions (file number → canonical label): 00001–00100 neutral (일반), 00101–00200 happy (기쁨),
00201–00300 angry (화남), 00301–00400 sad (슬픔).

File naming ``emotional-to-emotional/neo/wav/neo00204.wav``: the first three letters are the
speaker, the five digits the sentence number. Each speaker's ``transcript/neo00204.txt``
(UTF-8 with BOM) holds the sentence spoken.

Layout: ``ROOT/<part>/<speaker>/wav/*.wav`` as published (any nesting is accepted; a folder named
after a speaker must agree with the speaker in the file name). Each utterance's ``extra`` holds
``number``, ``script`` (emotional: scripts written for the emotion, plain: neutral scripts),
``gender`` (m/f) and ``text`` (the transcript, empty when its file is missing). The two parts'
speakers have different codes and are taken as different people (``ema`` is not ``nea``).
"""

from __future__ import annotations

import re
from collections import Counter

from ._common import audio_files, drop_duplicate_ids, not_the_corpus, skipped
from .base import ScanResult, Utterance, register_corpus, require_dir

#: Hundreds of the file number (``(number - 1) // 100``) → canonical label.
EMOTIONS = {0: "neutral", 1: "happy", 2: "angry", 3: "sad"}
#: Speaker → gender, from the corpus documentation.
SPEAKERS = {
    **{s: "f" for s in ("ema", "emb", "nea", "neb", "nec", "ned", "nee")},
    **{s: "m" for s in ("emf", "emg", "emh", "nek", "nel", "nem", "nen", "neo")},
}
#: Speaker code prefix → which scripts the speaker read.
SCRIPTS = {"ne": "emotional", "em": "plain"}
#: Sentences per speaker and emotion in the full corpus.
SENTENCES_PER_EMOTION = 100

_NAME = re.compile(r"^(?P<speaker>[a-z]{3})(?P<number>\d{5})$", re.IGNORECASE)


def _speaker_folder(f) -> str | None:
    """The speaker whose folder holds ``f`` (``<speaker>/wav/x.wav`` or ``<speaker>/x.wav``), if any.

    Only the corpus' own speaker codes count, so a flattened copy in any folder is accepted.
    """
    for parent in (f.parent, f.parent.parent):
        if parent.name.lower() in SPEAKERS:
            return parent.name.lower()
    return None


def _transcript(f, speaker: str, stem: str) -> str:
    """The sentence in ``<speaker>/transcript/<stem>.txt`` beside ``wav/``, or ``""`` when there is none."""
    for folder in (f.parent.parent / "transcript", f.parent / "transcript"):
        p = folder / f"{stem}.txt"
        try:
            return p.read_text(encoding="utf-8-sig").strip()
        except (OSError, UnicodeDecodeError):
            continue
    return ""


@register_corpus("korean-emotiontts")
def scan(root) -> ScanResult:
    """Scan the Korean emotional TTS folder (holding ``emotional-to-emotional/`` and ``plain-to-emotional/``).

    Raises
    ------
    CorpusError
        ``root`` is missing or holds no file named like ``neo00204.wav``.
    """
    root = require_dir(
        root,
        "korean-emotiontts",
        "pass the folder holding emotional-to-emotional/ and plain-to-emotional/ (or one of them)",
    )
    files = audio_files(root)
    utterances, problems = [], []
    unnamed, bad_number, wrong_folder = [], [], []
    odd_speakers: Counter = Counter()
    for f in files:
        m = _NAME.match(f.stem)
        if not m:
            unnamed.append(f)
            continue
        number = int(m["number"])
        emotion = EMOTIONS.get((number - 1) // 100) if number >= 1 else None
        if emotion is None:
            bad_number.append(f)
            continue
        spk = m["speaker"].lower()
        folder = _speaker_folder(f)
        if folder is not None and folder != spk:
            # A misfiled recording: either code would give one speaker the other's voice.
            wrong_folder.append(f)
            continue
        if spk not in SPEAKERS:
            odd_speakers[spk] += 1
        stem = f"{spk}{m['number']}"
        utterances.append(
            Utterance(
                id=stem,
                path=str(f),
                label=emotion,
                speaker=spk,
                corpus="korean-emotiontts",
                extra={
                    "number": m["number"],
                    "script": SCRIPTS.get(spk[:2], "unknown"),
                    "gender": SPEAKERS.get(spk, "unknown"),
                    "text": _transcript(f, spk, f.stem),
                },
            )
        )
    if not utterances:
        raise not_the_corpus(
            "korean-emotiontts",
            root,
            files,
            "<part>/<speaker>/wav/ folders of files named like neo00204.wav (speaker code, sentence number)",
        )
    problems += skipped("files not named like neo00204.wav", unnamed, root)
    problems += skipped(f"files numbered outside 00001..{4 * SENTENCES_PER_EMOTION:05d} (no emotion)", bad_number, root)
    problems += skipped("files in the folder of another speaker", wrong_folder, root)
    for spk, n in sorted(odd_speakers.items()):
        problems.append(f"speaker {spk!r} ({n} files) is not one of the corpus' 15 ({' '.join(SPEAKERS)}); kept")
    return ScanResult(
        "korean-emotiontts", str(root), drop_duplicate_ids(utterances, problems, "korean-emotiontts"), problems
    )
