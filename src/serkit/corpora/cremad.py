"""CREMA-D, the Crowd-sourced Emotional Multimodal Actors Dataset (Cao et al., 2014).

91 actors (48 male, 43 female, aged 20–74, several ethnicities; ids 1001..1091) say 12
sentences in 6 emotions: 7 442 clips, 16 kHz wav in ``AudioWAV/``. Labels here are the
*intended* emotions of the file names (the crowd-rated ones are in the corpus' summary tables).

Emotion codes → canonical label: ANG angry, DIS disgust, FEA fear, HAP happy, NEU neutral,
SAD sad.

File naming ``1001_DFA_ANG_XX.wav``: actor _ sentence (IEO TIE IOM IWW TAI MTI IWL ITH DFA
ITS TSI WSI) _ emotion _ level (LO low, MD medium, HI high, XX unspecified; only sentence IEO
was recorded at three levels).

Layout: ``ROOT/AudioWAV/*.wav`` as in the GitHub release (``ROOT`` may also be ``AudioWAV``);
when ``ROOT`` holds ``VideoDemographics.csv`` (ActorID, Age, Sex, Race, Ethnicity), gender and
age are added. ``extra`` holds ``sentence``, ``level``, ``emotion_code`` and, when known,
``gender`` (m/f) and ``age``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ._common import audio_files, drop_duplicate_ids, not_the_corpus, skipped
from .base import ScanResult, Utterance, register_corpus, require_dir

#: Emotion code → canonical label.
EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified", "X": "unspecified"}

_NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Za-z]{3})_(?P<emotion>[A-Za-z]{3})_(?P<level>[A-Za-z]{1,2})$")


def _demographics(root: Path, problems: list[str]) -> dict[str, dict]:
    for candidate in (root / "VideoDemographics.csv", root.parent / "VideoDemographics.csv"):
        if candidate.is_file():
            break
    else:
        return {}
    out = {}
    try:
        with open(candidate, newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                actor = (row.get("ActorID") or "").strip()
                sex = (row.get("Sex") or "").strip().lower()
                if actor:
                    out[actor] = {
                        "gender": {"male": "m", "female": "f"}.get(sex, "unknown"),
                        "age": (row.get("Age") or "").strip(),
                    }
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        # Demographics are a bonus; a broken table should not stop the scan.
        problems.append(f"could not read {candidate} ({exc}); gender and age left out")
        return {}
    return out


@register_corpus("cremad")
def scan(root) -> ScanResult:
    """Scan a CREMA-D folder (the one holding ``AudioWAV/``, or ``AudioWAV`` itself).

    Raises
    ------
    CorpusError
        ``root`` is missing or holds no file named like ``1001_DFA_ANG_XX.wav``.
    """
    root = require_dir(root, "cremad", "pass the CREMA-D folder holding AudioWAV/, or AudioWAV/ itself")
    # The release also holds AudioMP3/ with the same clips: scanning both would count each twice.
    base = root / "AudioWAV" if (root / "AudioWAV").is_dir() else root
    files = audio_files(base)
    problems: list[str] = []
    demographics = _demographics(root, problems)
    utterances, unnamed, bad_codes = [], [], []
    for f in files:
        m = _NAME.match(f.stem)
        if not m:
            unnamed.append(f)
            continue
        emotion, sentence, level = m["emotion"].upper(), m["sentence"].upper(), m["level"].upper()
        if emotion not in EMOTIONS or sentence not in SENTENCES or level not in LEVELS:
            bad_codes.append(f)
            continue
        extra = {"sentence": sentence, "level": LEVELS[level], "emotion_code": emotion}
        extra.update(demographics.get(m["actor"], {}))
        utterances.append(
            Utterance(
                id=f"{m['actor']}_{sentence}_{emotion}_{level}",
                path=str(f),
                label=EMOTIONS[emotion],
                speaker=m["actor"],
                corpus="cremad",
                extra=extra,
            )
        )
    if not utterances:
        raise not_the_corpus(
            "cremad",
            base,
            files,
            "AudioWAV/ with files named like 1001_DFA_ANG_XX.wav (actor_sentence_emotion_level)",
        )
    problems += skipped("files not named like 1001_DFA_ANG_XX.wav", unnamed, base)
    problems += skipped(
        f"files with a sentence, emotion or level code CREMA-D does not use (emotions: {' '.join(EMOTIONS)})",
        bad_codes,
        base,
    )
    return ScanResult("cremad", str(root), drop_duplicate_ids(utterances, problems, "cremad"), problems)
