"""RAVDESS, the Ryerson Audio-Visual Database of Emotional Speech and Song (Livingstone & Russo, 2018).

24 professional actors (12 female, 12 male; odd actor number = male) say two neutral North
American English sentences in 8 emotions at two intensities. Audio-only speech: 60 files per
actor, 1 440 in all, 48 kHz wav; the song part (channel 02) has 44 files per actor
(actors 01–24 except 18).

Emotions (code → canonical label): 01 neutral, 02 calm, 03 happy, 04 sad, 05 angry,
06 fearful → fear, 07 disgust, 08 surprised → surprise. Neutral has only the normal intensity.

File naming ``03-01-05-01-02-01-12.wav`` = modality (01 audio-video, 02 video-only,
03 audio-only) - vocal channel (01 speech, 02 song) - emotion - intensity (01 normal,
02 strong) - statement (01 "Kids are talking by the door", 02 "Dogs are sitting by the door") -
repetition (01, 02) - actor (01..24).

Layout: ``ROOT/Actor_XX/*.wav`` (any nesting is accepted; an ``Actor_XX`` folder must agree with
the actor in the file name). Each utterance's ``extra`` holds ``intensity`` (normal/strong),
``gender`` (m/f), ``statement``, ``repetition``, ``channel`` (speech/song) and ``emotion_code``.
"""

from __future__ import annotations

import re
from collections import Counter

from ..errors import ConfigError, CorpusError
from ._common import audio_files, drop_duplicate_ids, not_the_corpus, skipped
from .base import ScanResult, Utterance, register_corpus, require_dir

#: Emotion code → canonical label.
EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
CHANNELS = {"01": "speech", "02": "song"}
#: Speech files per actor in the complete corpus (8 emotions × 2 statements × 2 repetitions
#: × 2 intensities, minus neutral's missing strong intensity).
SPEECH_FILES_PER_ACTOR = 60

_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_ACTOR_DIR = re.compile(r"^actor_?(\d+)$", re.IGNORECASE)


@register_corpus("ravdess")
def scan(root, *, channel: str = "speech") -> ScanResult:
    """Scan a RAVDESS folder (the one holding ``Actor_01`` … ``Actor_24``).

    Parameters
    ----------
    root : path
    channel : {"speech", "song", "both"}
        Which vocal channel to keep; audio-only modality (03) is always required.

    Raises
    ------
    CorpusError
        ``root`` is missing or holds no file named like ``03-01-05-01-02-01-12.wav``.
    ConfigError
        ``channel`` is not one of the three choices.
    """
    wanted = {"speech": {"01"}, "song": {"02"}, "both": {"01", "02"}}.get(channel)
    if wanted is None:
        raise ConfigError(f"ravdess: unknown channel {channel!r}; use 'speech', 'song' or 'both'")
    root = require_dir(root, "ravdess", "pass the RAVDESS folder holding the Actor_XX folders")
    files = audio_files(root)
    utterances, problems = [], []
    unnamed, bad_codes, other_modality, other_channel, wrong_folder, neutral_strong = [], [], [], [], [], []
    for f in files:
        m = _NAME.match(f.stem)
        if not m:
            unnamed.append(f)
            continue
        modality, chan, emo, inten, stmt, rep, actor = m.groups()
        if emo not in EMOTIONS or inten not in INTENSITIES or stmt not in STATEMENTS or chan not in CHANNELS:
            bad_codes.append(f)
            continue
        if not 1 <= int(actor) <= 24 or rep not in ("01", "02"):
            bad_codes.append(f)
            continue
        if modality != "03":
            other_modality.append(f)
            continue
        if chan not in wanted:
            other_channel.append(f)
            continue
        folder = _ACTOR_DIR.match(f.parent.name)
        if folder and int(folder.group(1)) != int(actor):
            # A misfiled recording: trusting either number would silently give a speaker the
            # other's voice, which breaks speaker-independent splits.
            wrong_folder.append(f)
            continue
        if emo == "01" and inten == "02":
            neutral_strong.append(f)
        utterances.append(
            Utterance(
                id=f.stem,
                path=str(f),
                label=EMOTIONS[emo],
                speaker=actor,
                corpus="ravdess",
                extra={
                    "intensity": INTENSITIES[inten],
                    "gender": "m" if int(actor) % 2 else "f",
                    "statement": STATEMENTS[stmt],
                    "repetition": int(rep),
                    "channel": CHANNELS[chan],
                    "emotion_code": emo,
                },
            )
        )
    if not utterances:
        if other_modality or other_channel:
            raise CorpusError(
                f"ravdess: '{root}' holds RAVDESS files but none of the {channel} channel in the audio-only "
                f"modality ({len(other_channel)} of another channel, {len(other_modality)} of another modality); "
                "pass channel='song' or 'both', or use the audio-only speech download"
            )
        raise not_the_corpus(
            "ravdess",
            root,
            files,
            "Actor_XX folders of wav files named like 03-01-05-01-02-01-12.wav "
            "(modality-channel-emotion-intensity-statement-repetition-actor)",
        )
    problems += skipped("files not named like 03-01-05-01-02-01-12.wav", unnamed, root)
    problems += skipped("files with a code RAVDESS does not use", bad_codes, root)
    problems += skipped(
        "files of the audio-video or video-only modality (RAVDESS audio is modality 03)", other_modality, root
    )
    problems += skipped("files in an Actor_XX folder of another actor", wrong_folder, root)
    if other_channel:
        problems.append(
            f"{len(other_channel)} files of another vocal channel skipped (channel={channel!r}; "
            "pass channel='both' to keep them)"
        )
    if neutral_strong:
        problems.append(
            f"{len(neutral_strong)} neutral files claim strong intensity, which RAVDESS does not record; kept: "
            + ", ".join(p.name for p in neutral_strong[:10])
        )
    utterances = drop_duplicate_ids(utterances, problems, "ravdess")
    if channel == "speech":
        per_actor = Counter(u.speaker for u in utterances)
        for actor, n in sorted(per_actor.items()):
            if n != SPEECH_FILES_PER_ACTOR:
                problems.append(f"actor {actor} has {n} speech files; the complete corpus has {SPEECH_FILES_PER_ACTOR}")
    return ScanResult("ravdess", str(root), utterances, problems)
