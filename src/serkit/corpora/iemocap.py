"""IEMOCAP, the Interactive Emotional Dyadic Motion Capture database (Busso et al., 2008).

Five sessions, each a dyad of one female and one male actor (10 speakers), improvised and
scripted dialogs segmented into ~10 000 utterances (about 12 h, 16 kHz wav), each labelled by
the majority of three or more annotators.

Category codes → canonical label: neu neutral, hap happy, exc excited, sad sad, ang angry,
fru frustrated, fea fear, sur surprise, dis disgust, oth other; ``xxx`` = annotators did not
agree. ``xxx`` utterances are always dropped and ``oth`` ones too unless ``keep_other=True``;
their counts appear in ``problems``.

Layout (``IEMOCAP_full_release``)::

    Session1/dialog/EmoEvaluation/Ses01F_impro01.txt
    Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav

Each evaluation file has one line per utterance,
``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]``:
time within the dialog (s), utterance id, category, and valence, activation, dominance (1–5).

Speaker: session + the gender of the person speaking in *this* utterance, i.e. the letter
before the final number (``Ses01F_impro01_M002`` → ``Ses01M``), not the one after ``SesNN``,
which is the gender of the actor wearing the motion-capture markers.

``start``/``end`` stay ``None``: each utterance has its own wav, and the times refer to the
dialog recording (kept as ``extra["dialog_start"]``/``["dialog_end"]``). ``extra`` also holds
``session``, ``gender``, ``dialog``, ``improvised`` (bool), ``valence``, ``activation``,
``dominance``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ..errors import ConfigError, CorpusError
from ._common import listed
from .base import ScanResult, Utterance, register_corpus, require_dir

#: Category code → canonical label (``xxx`` has none: no agreement).
EMOTIONS = {
    "neu": "neutral",
    "hap": "happy",
    "exc": "excited",
    "sad": "sad",
    "ang": "angry",
    "fru": "frustrated",
    "fea": "fear",
    "sur": "surprise",
    "dis": "disgust",
    "oth": "other",
}
NO_AGREEMENT = "xxx"

_LINE = re.compile(
    r"^\[\s*(?P<start>\d+(?:\.\d*)?)\s*-\s*(?P<end>\d+(?:\.\d*)?)\s*\]\s+(?P<utt>\S+)\s+(?P<code>\S+)\s+\[(?P<vad>[^\]]*)\]"
)
_UTT = re.compile(r"^(?P<session>Ses\d\d)[FM]_(?P<rest>.+)_(?P<gender>[FM])\d+$")
_SESSION_DIR = re.compile(r"^Session(\d+)$", re.IGNORECASE)


def _sessions(root: Path) -> list[Path]:
    if _SESSION_DIR.match(root.name) and (root / "dialog").is_dir():
        return [root]  # ROOT is one session folder
    return sorted((d for d in root.iterdir() if d.is_dir() and _SESSION_DIR.match(d.name)), key=lambda d: d.name)


@register_corpus("iemocap")
def scan(root, *, sessions=None, improvised_only: bool = False, keep_other: bool = False) -> ScanResult:
    """Scan ``IEMOCAP_full_release`` (or one ``SessionN`` folder) from its EmoEvaluation files.

    Parameters
    ----------
    root : path
    sessions : iterable of int, optional
        Keep only these sessions (1..5); all by default.
    improvised_only : bool
        Keep only the improvised dialogs (a common protocol: scripted lines carry the script's
        emotion more than the actor's).
    keep_other : bool
        Keep ``oth`` utterances as label ``other`` instead of dropping them.

    Raises
    ------
    CorpusError
        ``root`` holds no ``SessionN`` folder, or no evaluation file.
    """
    root = require_dir(root, "iemocap", "pass IEMOCAP_full_release, the folder holding Session1..Session5")
    found = _sessions(root)
    if not found:
        raise CorpusError(
            f"iemocap: '{root}' does not look like IEMOCAP: expected Session1..Session5 folders, each with "
            f"dialog/EmoEvaluation/*.txt and sentences/wav/<dialog>/<utterance>.wav; found "
            f"{listed(sorted(p.name for p in root.iterdir())[:10]) or 'nothing'}"
        )
    if sessions is not None:
        try:
            wanted = {int(s) for s in sessions}
        except (TypeError, ValueError):
            raise ConfigError(f"iemocap: sessions must be numbers 1..5, got {sessions!r}") from None
        found = [d for d in found if int(_SESSION_DIR.match(d.name).group(1)) in wanted]
        if not found:
            raise ConfigError(f"iemocap: none of sessions {sorted(wanted)} is under '{root}'")
    utterances, problems = [], []
    dropped: Counter = Counter()
    unknown: Counter = Counter()
    bad_lines, no_wav, bad_ids = [], [], []
    n_eval_files = 0
    for session_dir in found:
        eval_dir = session_dir / "dialog" / "EmoEvaluation"
        wav_dir = session_dir / "sentences" / "wav"
        eval_files = sorted(eval_dir.glob("*.txt")) if eval_dir.is_dir() else []
        if not eval_files:
            problems.append(f"{session_dir.name}: no dialog/EmoEvaluation/*.txt, session skipped")
            continue
        n_eval_files += len(eval_files)
        for ef in eval_files:
            with open(ef, encoding="utf-8", errors="replace") as fh:
                for lineno, line in enumerate(fh, 1):
                    # Only "[start - end]" lines are utterances; the rest are headers and the
                    # individual annotators' votes (C-E1:, A-E1:, …).
                    if not line.startswith("["):
                        continue
                    m = _LINE.match(line)
                    if not m:
                        bad_lines.append(f"{ef.name}:{lineno}")
                        continue
                    utt, code = m["utt"], m["code"].lower()
                    um = _UTT.match(utt)
                    if not um:
                        bad_ids.append(f"{ef.name}:{lineno} {utt}")
                        continue
                    if code == NO_AGREEMENT or (code == "oth" and not keep_other):
                        dropped[code] += 1
                        continue
                    if code not in EMOTIONS:
                        unknown[code] += 1
                        continue
                    dialog = utt.rsplit("_", 1)[0]
                    improvised = "_impro" in utt
                    if improvised_only and not improvised:
                        continue
                    wav = wav_dir / dialog / f"{utt}.wav"
                    if not wav.is_file():
                        no_wav.append(str(wav.relative_to(root)) if wav.is_relative_to(root) else str(wav))
                        continue
                    try:
                        v, a, d = (float(x) for x in m["vad"].split(","))
                    except ValueError:
                        v = a = d = float("nan")
                    utterances.append(
                        Utterance(
                            id=utt,
                            path=str(wav),
                            label=EMOTIONS[code],
                            speaker=f"{um['session']}{um['gender']}",
                            corpus="iemocap",
                            extra={
                                "session": um["session"],
                                "gender": um["gender"].lower(),
                                "dialog": dialog,
                                "improvised": improvised,
                                "valence": v,
                                "activation": a,
                                "dominance": d,
                                "dialog_start": float(m["start"]),
                                "dialog_end": float(m["end"]),
                            },
                        )
                    )
    if n_eval_files == 0:
        raise CorpusError(
            f"iemocap: no evaluation files under '{root}': expected SessionN/dialog/EmoEvaluation/*.txt "
            "(the IEMOCAP_full_release layout)"
        )
    if dropped[NO_AGREEMENT]:
        problems.append(f"{dropped[NO_AGREEMENT]} utterances labelled xxx (annotators did not agree), dropped")
    if dropped["oth"]:
        problems.append(f"{dropped['oth']} utterances labelled oth (other), dropped (pass keep_other=True to keep)")
    for code, n in sorted(unknown.items()):
        problems.append(f"{n} utterances with unknown category {code!r} (known: {' '.join(EMOTIONS)} xxx), skipped")
    if bad_lines:
        problems.append(f"{len(bad_lines)} unreadable evaluation lines, skipped: {listed(bad_lines)}")
    if bad_ids:
        problems.append(f"{len(bad_ids)} utterance ids not like Ses01F_impro01_M002, skipped: {listed(bad_ids)}")
    if no_wav:
        problems.append(f"{len(no_wav)} utterances have no wav file, skipped: {listed(no_wav)}")
    seen: set[str] = set()
    unique = []
    for u in utterances:
        if u.id not in seen:
            seen.add(u.id)
            unique.append(u)
    if len(unique) != len(utterances):
        problems.append(f"{len(utterances) - len(unique)} utterances listed twice in the evaluation files; kept once")
    return ScanResult("iemocap", str(root), unique, problems)
