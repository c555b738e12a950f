"""ASED, the Amharic Speech Emotion Dataset v1 (Retta et al., ACM TALLIP 2022).

Amharic speech of 65 participants (25 female, 40 male), recorded in their own dialects at
Northwest University: 25 emotion-specific sentences twice each, and 2 common sentences twice in
each of the 5 emotions. Eight judges reviewed every recording; 2 474 of the 4 550 were kept
(neutral 522, fearful 510, happy 486, sad 470, angry 486). 16 kHz wav as published.

Emotions (folder, code in the file name → canonical label): ``01Neutral`` n1 → neutral,
``02Fearful`` f2 → fear, ``03Happy`` h3 → happy, ``04Sad`` s4 → sad, ``05Angry`` a5 → angry.

File naming ``05Angry/a5-03-01-02-50.wav`` = ``xn-yy-aa-gg-bb``: emotion letter and folder
number, sentence (01..07 within the emotion), repetition (01, 02), gender (01 female, 02 male),
speaker (01..65). The speaker number is reliable; the gender field is not (a few files disagree
with the other files of their speaker: 5 of 2 474 in the published copy), so ``extra["gender"]``
is the speaker's, the one most of their files give (it is not worth a warning: nothing else
depends on it). Letter case is ignored (one file
is named ``S4-…``).

Layout: ``ROOT/<nn><Emotion>/*.wav`` as published; the folder gives the emotion (a file whose
name says otherwise is reported and takes the folder's). Files outside an emotion folder take
the emotion of their name. Each utterance's ``extra`` holds ``sentence``, ``repetition``,
``gender`` (m/f, per speaker) and ``emotion_code``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from ._common import audio_files, disagreements, drop_duplicate_ids, folder_wins, not_the_corpus, skipped
from .base import ScanResult, Utterance, register_corpus, require_dir

#: Emotion code (letter and folder number) → canonical label.
EMOTIONS = {"n1": "neutral", "f2": "fear", "h3": "happy", "s4": "sad", "a5": "angry"}
#: Emotion folder as published → canonical label.
FOLDERS = {"01neutral": "neutral", "02fearful": "fear", "03happy": "happy", "04sad": "sad", "05angry": "angry"}
GENDERS = {"01": "f", "02": "m"}
#: Speakers are numbered 01..65.
N_SPEAKERS = 65

_NAME = re.compile(r"^(?P<code>[a-z]\d)-(?P<sentence>\d\d)-(?P<rep>\d\d)-(?P<gender>\d\d)-(?P<speaker>\d\d)$", re.I)


@register_corpus("ased")
def scan(root) -> ScanResult:
    """Scan an ASED folder (the one holding ``01Neutral`` … ``05Angry``).

    Files named otherwise, or with a code ASED does not use, are listed in ``problems`` and
    skipped; a speaker number outside 01..65 is kept and reported.

    Raises
    ------
    CorpusError
        ``root`` is missing or holds no file named like ``a5-03-01-02-50.wav``.
    """
    root = require_dir(root, "ased", "pass the ASED folder holding 01Neutral ... 05Angry")
    files = audio_files(root)
    problems: list[str] = []
    unnamed, bad_code, disagree = [], [], []
    odd_speakers: Counter = Counter()
    parsed = []
    for f in files:
        m = _NAME.match(f.stem)
        if not m:
            unnamed.append(f)
            continue
        code = m["code"].lower()
        if code not in EMOTIONS or m["rep"] not in ("01", "02") or m["gender"] not in GENDERS:
            bad_code.append(f)
            continue
        emotion = folder_wins(f, root, EMOTIONS[code], FOLDERS, disagree)
        spk = m["speaker"]
        if not 1 <= int(spk) <= N_SPEAKERS:
            odd_speakers[spk] += 1
        parsed.append((f, m, code, emotion))
    if not parsed:
        raise not_the_corpus(
            "ased",
            root,
            files,
            "01Neutral ... 05Angry folders of files named like a5-03-01-02-50.wav "
            "(emotion code, sentence, repetition, gender, speaker)",
        )
    # The gender field is wrong in a few files: each speaker gets the gender most of their files give.
    by_speaker: dict[str, Counter] = defaultdict(Counter)
    for _, m, _, _ in parsed:
        by_speaker[m["speaker"]][m["gender"]] += 1
    gender = {}
    for spk, votes in by_speaker.items():
        (top, n), *rest = votes.most_common()
        gender[spk] = GENDERS[top] if not rest or rest[0][1] < n else "unknown"
    utterances = [
        Utterance(
            id=f.stem,
            path=str(f),
            label=emotion,
            speaker=m["speaker"],
            corpus="ased",
            extra={
                "sentence": m["sentence"],
                "repetition": int(m["rep"]),
                "gender": gender[m["speaker"]],
                "emotion_code": code,
            },
        )
        for f, m, code, emotion in parsed
    ]
    problems += skipped("files not named like a5-03-01-02-50.wav", unnamed, root)
    problems += skipped(
        f"files with a code ASED does not use (emotions {' '.join(EMOTIONS)}, repetition 01 02, gender 01 02)",
        bad_code,
        root,
    )
    problems += disagreements(disagree)
    for spk, n in sorted(odd_speakers.items()):
        problems.append(f"speaker {spk!r} ({n} files) is outside ASED's 01..{N_SPEAKERS}; kept")
    return ScanResult("ased", str(root), drop_duplicate_ids(utterances, problems, "ased"), problems)
