"""EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al., Interspeech 2005).

German acted speech: 10 actors (5 female, 5 male) read 10 everyday sentences in 7 emotions;
535 utterances survived the listening test. Originally 16 kHz mono wav.

Speakers (``speaker`` id, gender): 03 m, 08 f, 09 f, 10 m, 11 m, 12 m, 13 f, 14 f, 15 m, 16 f.

Emotions (German initial → canonical label, count in the full corpus):
W *Wut* → angry 127, L *Langeweile* → boredom 81, E *Ekel* → disgust 46, A *Angst* → fear 69,
F *Freude* → happy 71, T *Trauer* → sad 62, N neutral → neutral 79.

File naming ``03a01Fa.wav``: speaker ``03``, text ``a01`` (a01..a07, b01..b03), emotion letter
``F``, version ``a`` (a, b, c, … when an actor recorded a sentence more than once).

Layout: ``ROOT/wav/*.wav`` as distributed (``ROOT`` may also be the ``wav/`` folder itself).
Each utterance's ``extra`` holds ``text``, ``version``, ``gender`` and ``emotion_code``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ._common import audio_files, drop_duplicate_ids, not_the_corpus, skipped
from .base import ScanResult, Utterance, register_corpus, require_dir

#: Emotion letter (German initial) → canonical label.
EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}
#: Speaker → gender, from the corpus documentation.
SPEAKERS = {
    "03": "m",
    "08": "f",
    "09": "f",
    "10": "m",
    "11": "m",
    "12": "m",
    "13": "f",
    "14": "f",
    "15": "m",
    "16": "f",
}

_NAME = re.compile(r"^(?P<speaker>\d\d)(?P<text>[a-z]\d\d)(?P<emotion>[A-Za-z])(?P<version>[a-z]?)$")


@register_corpus("emodb")
def scan(root) -> ScanResult:
    """Scan an EmoDB folder (the corpus folder or its ``wav/`` sub-folder).

    Files named otherwise, or with an emotion letter EmoDB does not use, are listed in
    ``problems`` and skipped; a speaker outside the documented ten is kept and reported.

    Raises
    ------
    CorpusError
        ``root`` is missing or holds no file named like ``03a01Fa.wav``.
    """
    root = require_dir(root, "emodb", "pass the EmoDB folder (the one holding wav/) or its wav/ folder")
    base = root / "wav" if (root / "wav").is_dir() else root
    files = audio_files(base)
    utterances, problems = [], []
    unnamed, bad_emotion, odd_speakers = [], [], {}
    for f in files:
        m = _NAME.match(f.stem)
        if not m:
            unnamed.append(f)
            continue
        code = m["emotion"].upper()
        if code not in EMOTIONS:
            bad_emotion.append(f)
            continue
        spk = m["speaker"]
        if spk not in SPEAKERS:
            odd_speakers.setdefault(spk, 0)
            odd_speakers[spk] += 1
        utterances.append(
            Utterance(
                id=f.stem,
                path=str(f),
                label=EMOTIONS[code],
                speaker=spk,
                corpus="emodb",
                extra={
                    "text": m["text"],
                    "version": m["version"],
                    "gender": SPEAKERS.get(spk, "unknown"),
                    "emotion_code": code,
                },
            )
        )
    if not utterances:
        raise not_the_corpus(
            "emodb",
            base,
            files,
            "wav files named like 03a01Fa.wav (speaker, text, emotion letter, version) in ROOT or ROOT/wav",
        )
    problems += skipped("files not named like 03a01Fa.wav", unnamed, base)
    problems += skipped(
        f"files with an emotion letter EmoDB does not use (known: {' '.join(EMOTIONS)})", bad_emotion, base
    )
    for spk, n in sorted(odd_speakers.items()):
        problems.append(f"speaker {spk!r} ({n} files) is not one of EmoDB's ten ({' '.join(SPEAKERS)}); kept")
    return ScanResult("emodb", str(Path(root)), drop_duplicate_ids(utterances, problems, "emodb"), problems)
