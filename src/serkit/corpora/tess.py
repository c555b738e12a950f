"""TESS, the Toronto Emotional Speech Set (Dupuis & Pichora-Fuller, 2010).

Two female speakers of Canadian English, OAF (older, 64) and YAF (younger, 26), say
"Say the word ___" for 200 target words in 7 emotions: 200 files per speaker and emotion,
2 800 in all (24 414 Hz wav as published).

Emotions (name in the files → canonical label): angry, disgust, fear, happy, neutral, sad,
ps (*pleasant surprise*) → surprise.

File naming ``OAF_back_angry.wav``: speaker _ word _ emotion. Layout ``ROOT/<SPK>_<emotion>/``
(e.g. ``OAF_angry/``, ``YAF_pleasant_surprised/``).

The published copies are not quite regular, so this adapter is tolerant: case is ignored
(``OAF_Fear/``, ``YAF_germ_Angry.wav``), a truncated speaker prefix is completed when it names
one speaker unambiguously (``OAF_neutral/OA_bite_neutral.wav`` → OAF), the emotion may be
spelled out (``pleasant_surprise``, ``surprised``, ``fearful``), and when the file name
carries no emotion the folder's is used. A file whose name and folder disagree (speaker or
emotion) is reported in ``problems`` and takes the *folder*'s value: the folders are what
the authors sorted by listening. Each utterance's ``extra`` holds ``word``.
"""

from __future__ import annotations

from collections import Counter

from ._common import audio_files, drop_duplicate_ids, not_the_corpus, skipped
from .base import ScanResult, Utterance, register_corpus, require_dir

#: The corpus' two speakers.
SPEAKERS = ("OAF", "YAF")
#: Emotion as spelled in file or folder names (lowercased, ``_``-joined) → canonical label.
EMOTIONS = {
    "angry": "angry",
    "anger": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "happy": "happy",
    "happiness": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "sadness": "sad",
    "ps": "surprise",
    "pleasant_surprise": "surprise",
    "pleasant_surprised": "surprise",
    "surprise": "surprise",
    "surprised": "surprise",
}
#: Files per speaker and emotion in the complete corpus.
FILES_PER_SPEAKER_EMOTION = 200


def _speaker(token: str) -> str:
    tok = token.upper()
    if tok in SPEAKERS:
        return tok
    candidates = [s for s in SPEAKERS if tok and s.startswith(tok)]
    return candidates[0] if len(candidates) == 1 else tok


def _split_emotion(tokens: list[str]) -> tuple[list[str], str | None]:
    """Split ``tokens`` into (the rest, canonical emotion) trying the longest emotion suffix first."""
    low = [t.lower() for t in tokens]
    for n in (2, 1):
        if len(low) > n and "_".join(low[-n:]) in EMOTIONS:
            return tokens[:-n], EMOTIONS["_".join(low[-n:])]
    return tokens, None


def _folder(name: str) -> tuple[str | None, str | None]:
    """(speaker, emotion) of a ``<SPK>_<emotion>`` folder, or (None, None)."""
    tokens = name.replace("-", "_").replace(" ", "_").split("_")
    rest, emotion = _split_emotion(tokens)
    if emotion is None or len(rest) != 1:
        return None, None
    return _speaker(rest[0]), emotion


@register_corpus("tess")
def scan(root) -> ScanResult:
    """Scan a TESS folder (the one holding ``OAF_angry/`` … ``YAF_sad/``).

    Raises
    ------
    CorpusError
        ``root`` is missing or holds no file named like ``OAF_back_angry.wav``.
    """
    root = require_dir(root, "tess", "pass the TESS folder holding the <SPK>_<emotion> folders (OAF_angry, …)")
    files = audio_files(root)
    utterances, problems = [], []
    unnamed, disagree, odd_speaker = [], [], Counter()
    for f in files:
        tokens = f.stem.replace("-", "_").replace(" ", "_").split("_")
        rest, emotion = _split_emotion(tokens)
        dir_speaker, dir_emotion = _folder(f.parent.name)
        if emotion is None and len(tokens) >= 2 and dir_emotion is not None:
            rest, emotion = tokens, dir_emotion  # name without emotion: speaker_word
        if emotion is None or len(rest) < 2:
            unnamed.append(f)
            continue
        speaker, word = _speaker(rest[0]), "_".join(rest[1:]).lower()
        if dir_speaker is not None and (dir_speaker, dir_emotion) != (speaker, emotion):
            disagree.append(
                f"{f.relative_to(root)} ({speaker} {emotion} by name, {dir_speaker} {dir_emotion} by folder)"
            )
            speaker, emotion = dir_speaker, dir_emotion
        if speaker not in SPEAKERS:
            odd_speaker[speaker] += 1
        utterances.append(
            Utterance(
                id=f"{speaker}_{word}_{emotion}",
                path=str(f),
                label=emotion,
                speaker=speaker,
                corpus="tess",
                extra={"word": word},
            )
        )
    if not utterances:
        raise not_the_corpus(
            "tess",
            root,
            files,
            "<SPK>_<emotion> folders of files named like OAF_back_angry.wav (speaker_word_emotion)",
        )
    problems += skipped("files not named like OAF_back_angry.wav", unnamed, root)
    if disagree:
        problems.append(
            f"{len(disagree)} files whose name and folder disagree; the folder's speaker/emotion is used: "
            + "; ".join(disagree[:10])
            + (f" (and {len(disagree) - 10} more)" if len(disagree) > 10 else "")
        )
    for spk, n in sorted(odd_speaker.items()):
        problems.append(f"speaker {spk!r} ({n} files) is not one of TESS' two ({' '.join(SPEAKERS)}); kept")
    utterances = drop_duplicate_ids(utterances, problems, "tess")
    for (spk, emo), n in sorted(Counter((u.speaker, u.label) for u in utterances).items()):
        if n != FILES_PER_SPEAKER_EMOTION and spk in SPEAKERS:
            problems.append(f"{spk} {emo}: {n} files; the complete corpus has {FILES_PER_SPEAKER_EMOTION}")
    return ScanResult("tess", str(root), utterances, problems)
