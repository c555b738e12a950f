"""TurEV-DB, the Turkish Emotion Voice Database (Canpolat, Ormanoğlu & Zeyrek, SLTU-CCURL 2020).

Six speakers (numbered 1157, 1234, 1358, 1984, 6783, 7895) say single Turkish words in four
emotions: 1 735 files (angry 487, calm 408, happy 357, sad 483); speaker 1157 has 150 files,
7895 has 273, the others 328 each. 44.1 kHz wav as published; CC BY-NC-ND 4.0.

Emotions (folder, code in the file name → canonical label): ``Angry`` kz → angry, ``Calm`` sk
→ calm, ``Happy`` mt → happy, ``Sad`` hl → sad.
TurEV-DB has no neutral class; *calm* is an emotion the speakers acted, so the 6- and 4-class
label sets leave it out (see :mod:`serkit.labels`).

File naming ``Sound Source/Calm/1358_sk_beste.wav``: speaker _ emotion code _ word.

Layout: ``ROOT/Sound Source/<Emotion>/*.wav`` as published (``ROOT`` may also be the
``Sound Source`` folder). The folder gives the emotion (a file whose code says otherwise is
reported and takes the folder's); files outside an emotion folder take their code's emotion.
Each utterance's ``extra`` holds ``word`` and ``emotion_code``.
"""

from __future__ import annotations

import re
from collections import Counter

from ._common import audio_files, disagreements, drop_duplicate_ids, folder_wins, not_the_corpus, skipped
from .base import ScanResult, Utterance, register_corpus, require_dir

#: Emotion code in the file names → canonical label.
EMOTIONS = {"kz": "angry", "sk": "calm", "mt": "happy", "hl": "sad"}
#: Emotion folder (lowercased) → canonical label.
FOLDERS = {"angry": "angry", "calm": "calm", "happy": "happy", "sad": "sad"}
#: The corpus' six speakers.
SPEAKERS = ("1157", "1234", "1358", "1984", "6783", "7895")
#: The folder the published corpus keeps its audio in.
SOUND_FOLDER = "Sound Source"

_NAME = re.compile(r"^(?P<speaker>\d+)_(?P<code>[a-z]{2})_(?P<word>.+)$", re.IGNORECASE)


@register_corpus("turev")
def scan(root) -> ScanResult:
    """Scan a TurEV-DB folder (the one holding ``Sound Source/``, or ``Sound Source`` itself).

    Raises
    ------
    CorpusError
        ``root`` is missing or holds no file named like ``1358_sk_beste.wav``.
    """
    root = require_dir(root, "turev", f"pass the TurEV-DB folder holding '{SOUND_FOLDER}/' or that folder itself")
    base = root / SOUND_FOLDER if (root / SOUND_FOLDER).is_dir() else root
    files = audio_files(base)
    utterances, problems = [], []
    unnamed, bad_code, disagree = [], [], []
    odd_speakers: Counter = Counter()
    for f in files:
        m = _NAME.match(f.stem)
        if not m:
            unnamed.append(f)
            continue
        code = m["code"].lower()
        if code not in EMOTIONS:
            bad_code.append(f)
            continue
        emotion = folder_wins(f, base, EMOTIONS[code], FOLDERS, disagree)
        spk = m["speaker"]
        if spk not in SPEAKERS:
            odd_speakers[spk] += 1
        utterances.append(
            Utterance(
                id=f.stem,
                path=str(f),
                label=emotion,
                speaker=spk,
                corpus="turev",
                extra={"word": m["word"], "emotion_code": code},
            )
        )
    if not utterances:
        raise not_the_corpus(
            "turev",
            base,
            files,
            f"'{SOUND_FOLDER}/<Emotion>/' folders of files named like 1358_sk_beste.wav (speaker_code_word)",
        )
    problems += skipped("files not named like 1358_sk_beste.wav", unnamed, base)
    problems += skipped(
        f"files with an emotion code TurEV-DB does not use (known: {' '.join(EMOTIONS)})", bad_code, base
    )
    problems += disagreements(disagree)
    for spk, n in sorted(odd_speakers.items()):
        problems.append(f"speaker {spk!r} ({n} files) is not one of TurEV-DB's six ({' '.join(SPEAKERS)}); kept")
    return ScanResult("turev", str(root), drop_duplicate_ids(utterances, problems, "turev"), problems)
