"""SAVEE, Surrey Audio-Visual Expressed Emotion (Haq & Jackson, 2009).

Four male British English speakers (DC, JE, JK, KL), postgraduates and researchers at the
University of Surrey, read phonetically balanced TIMIT sentences in 7 emotions: 15 sentences
per emotion and 30 neutral, so 120 utterances per speaker and 480 in all (44.1 kHz wav).

Emotion codes → canonical label: a angry, d disgust, f fear, h happy, n neutral, sa sad,
su surprise.

Two layouts are accepted:

- as published, ``ROOT/AudioData/DC/a01.wav`` (speaker from the folder; ``ROOT`` may also be
  the ``AudioData`` folder),
- flattened (the common "ALL" copy), ``ROOT/DC_a01.wav`` (speaker from the name).

``extra`` holds ``sentence`` (the two-digit number within the emotion) and ``emotion_code``.
"""

from __future__ import annotations

import re
from collections import Counter

from ._common import audio_files, drop_duplicate_ids, not_the_corpus, skipped
from .base import ScanResult, Utterance, register_corpus, require_dir

#: Emotion code → canonical label.
EMOTIONS = {"a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad", "su": "surprise"}
SPEAKERS = ("DC", "JE", "JK", "KL")
#: Utterances per speaker in the complete corpus.
FILES_PER_SPEAKER = 120

# "sa"/"su" must be tried before a lone "s" could match, hence the explicit alternation order.
_NAME = re.compile(r"^(?:(?P<speaker>[A-Za-z]{2})_)?(?P<emotion>sa|su|a|d|f|h|n)(?P<number>\d\d)$", re.IGNORECASE)
_SPEAKER_DIR = re.compile(r"^[A-Za-z]{2}$")


@register_corpus("savee")
def scan(root) -> ScanResult:
    """Scan a SAVEE folder in either layout (``AudioData/DC/a01.wav`` or ``DC_a01.wav``).

    Raises
    ------
    CorpusError
        ``root`` is missing or holds no file named like ``DC_a01.wav`` or ``DC/a01.wav``.
    """
    root = require_dir(root, "savee", "pass the SAVEE folder (holding AudioData/) or a folder of DC_a01.wav files")
    base = root / "AudioData" if (root / "AudioData").is_dir() else root
    files = audio_files(base)
    utterances, problems = [], []
    unnamed, no_speaker, odd_speaker = [], [], Counter()
    for f in files:
        m = _NAME.match(f.stem)
        if not m:
            unnamed.append(f)
            continue
        speaker = m["speaker"] or (f.parent.name if f.parent != base and _SPEAKER_DIR.match(f.parent.name) else None)
        if speaker is None:
            no_speaker.append(f)
            continue
        speaker, code = speaker.upper(), m["emotion"].lower()
        if speaker not in SPEAKERS:
            odd_speaker[speaker] += 1
        utterances.append(
            Utterance(
                id=f"{speaker}_{code}{m['number']}",
                path=str(f),
                label=EMOTIONS[code],
                speaker=speaker,
                corpus="savee",
                extra={"sentence": m["number"], "emotion_code": code},
            )
        )
    if not utterances:
        raise not_the_corpus(
            "savee",
            base,
            files,
            "files named like DC_a01.wav, or AudioData/DC/a01.wav (speaker, emotion code a d f h n sa su, number)",
        )
    problems += skipped("files not named like DC_a01.wav or DC/a01.wav", unnamed, base)
    problems += skipped("files with no speaker in their name or folder", no_speaker, base)
    for spk, n in sorted(odd_speaker.items()):
        problems.append(f"speaker {spk!r} ({n} files) is not one of SAVEE's four ({' '.join(SPEAKERS)}); kept")
    utterances = drop_duplicate_ids(utterances, problems, "savee")
    for spk, n in sorted(Counter(u.speaker for u in utterances).items()):
        if n != FILES_PER_SPEAKER and spk in SPEAKERS:
            problems.append(f"speaker {spk} has {n} files; the complete corpus has {FILES_PER_SPEAKER}")
    return ScanResult("savee", str(root), utterances, problems)
