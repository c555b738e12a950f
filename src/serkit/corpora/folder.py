"""Any folder of class sub-folders: ``ROOT/<label>/…/*.wav`` — the user's own recordings.

The label is the name of the first-level sub-folder, exactly as written (``"Anger"`` stays
``"Anger"`` under the native label set; :func:`serkit.labels.map_utterances` lowercases and
normalises synonyms when mapping onto ``6class``/``4class``). Hidden folders are ignored.

Speakers matter: serkit evaluates on speakers the model has never heard, which needs to
know who speaks in each file. The speaker is found as follows, first rule that applies:

1. ``speaker_pattern`` given: a regular expression with a named group ``speaker``, searched in
   the file *name* (``r"^(?P<speaker>\\d+)_"`` on ``07_hello.wav`` → ``07``). A file it does not
   match is skipped and listed in ``problems``.
2. The file lies in a sub-folder of its label folder, ``ROOT/angry/anna/x.wav`` → ``anna``.
3. The file stem has a ``_`` or ``-``: the part before the first one,
   ``anna_take3.wav`` → ``anna``, ``spk07-001.wav`` → ``spk07``.
4. Otherwise the speaker is ``"unknown"`` (:data:`UNKNOWN_SPEAKER`) and ``problems`` says so.

Rules 2–3 are guesses and ``problems`` warns when they look wrong (a "speaker" named like a
label, or every speaker speaking a single emotion — ``angry_001.wav`` style names). When files
carry no speaker at all, all of them share ``"unknown"``: a speaker-independent evaluation
then has a single speaker and refuses to run, which is the honest answer; pass
``speaker_pattern`` or arrange ``ROOT/<label>/<speaker>/`` folders, or accept a
speaker-dependent evaluation explicitly.
"""

from __future__ import annotations

import re
from collections import defaultdict

from ..errors import ConfigError, CorpusError
from ._common import UNKNOWN_SPEAKER, audio_files, drop_duplicate_ids, not_the_corpus, skipped
from .base import ScanResult, Utterance, register_corpus, require_dir

_SEP = re.compile(r"[_-]")


def _compile(pattern: str) -> re.Pattern:
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"folder: speaker_pattern {pattern!r} is not a valid regular expression ({exc})") from None
    if "speaker" not in rx.groupindex:
        raise ConfigError(
            f"folder: speaker_pattern {pattern!r} has no named group 'speaker'; "
            r"write it like r'^(?P<speaker>[^_]+)_'"
        )
    return rx


@register_corpus("folder")
def scan(root, *, speaker_pattern: str | None = None) -> ScanResult:
    """Scan ``ROOT/<label>/…/*.wav`` (see the module docstring for how speakers are found).

    Parameters
    ----------
    root : path
    speaker_pattern : str, optional
        Regular expression with a named group ``speaker``, searched in each file name.

    Raises
    ------
    CorpusError
        ``root`` is missing or has no label sub-folder holding audio.
    ConfigError
        ``speaker_pattern`` is not a valid regular expression with a ``speaker`` group.
    """
    rx = _compile(speaker_pattern) if speaker_pattern is not None else None
    root = require_dir(root, "folder", "pass a folder holding one sub-folder per emotion label (ROOT/angry/*.wav, …)")
    files = audio_files(root)
    utterances, problems = [], []
    loose, unmatched, unknown = [], [], []
    by_rule = defaultdict(int)
    for f in files:
        rel = f.relative_to(root)
        if len(rel.parts) < 2:
            loose.append(f)
            continue
        label = rel.parts[0].strip()
        if rx is not None:
            m = rx.search(f.name)
            if not m or not m["speaker"]:
                unmatched.append(f)
                continue
            speaker, rule = m["speaker"], "pattern"
        elif len(rel.parts) >= 3:
            speaker, rule = rel.parts[1], "folder"
        elif _SEP.search(f.stem) and _SEP.split(f.stem, 1)[0]:
            speaker, rule = _SEP.split(f.stem, 1)[0], "prefix"
        else:
            speaker, rule = UNKNOWN_SPEAKER, "unknown"
            unknown.append(f)
        by_rule[rule] += 1
        utterances.append(
            Utterance(
                id=rel.with_suffix("").as_posix(),
                path=str(f),
                label=label,
                speaker=speaker,
                corpus="folder",
                extra={"speaker_from": rule},
            )
        )
    if not utterances:
        if loose and not unmatched:
            raise CorpusError(
                f"folder: '{root}' holds {len(loose)} audio files but no label sub-folders; a folder corpus "
                "needs one sub-folder per emotion (ROOT/angry/*.wav, ROOT/happy/*.wav, …); for a list of "
                "files with labels use a CSV manifest (manifest:FILE.csv)"
            )
        raise not_the_corpus(
            "folder",
            root,
            files,
            "one sub-folder per emotion label holding audio files (ROOT/angry/*.wav, ROOT/happy/*.wav, …)"
            + (f" whose names match speaker_pattern {speaker_pattern!r}" if rx is not None else ""),
        )
    problems += skipped("audio files directly in ROOT, not in a label folder", loose, root)
    problems += skipped(f"files whose name does not match speaker_pattern {speaker_pattern!r}", unmatched, root)
    if unknown:
        problems.append(
            f"{len(unknown)} files carry no speaker (no sub-folder, no '_'/'-' prefix) and share speaker "
            f"{UNKNOWN_SPEAKER!r}: speaker-independent evaluation needs speakers, pass speaker_pattern "
            "or use ROOT/<label>/<speaker>/ folders"
        )
    problems += _speaker_warnings(utterances)
    return ScanResult("folder", str(root), drop_duplicate_ids(utterances, problems, "folder"), problems)


def _speaker_warnings(utterances: list[Utterance]) -> list[str]:
    """Warn when guessed speakers look like labels: LOSO on them would hold out whole emotions."""
    guessed = [u for u in utterances if u.extra["speaker_from"] in ("prefix", "folder")]
    if not guessed:
        return []
    out = []
    labels_lower = {u.label.lower() for u in utterances}
    like_label = sorted({u.speaker for u in guessed if u.speaker.lower() in labels_lower})
    if like_label:
        out.append(
            f"speakers named like labels ({', '.join(like_label[:10])}): the file names probably start with the "
            "emotion, not the speaker; pass speaker_pattern"
        )
    labels_of: dict[str, set] = defaultdict(set)
    for u in guessed:
        labels_of[u.speaker].add(u.label)
    n_labels = len({u.label for u in utterances})
    if not like_label and n_labels > 1 and len(labels_of) > 1 and all(len(v) == 1 for v in labels_of.values()):
        out.append(
            f"every guessed speaker ({len(labels_of)}) speaks a single emotion, so speaker and emotion are "
            "confounded; check the speakers (pass speaker_pattern) before a speaker-independent evaluation"
        )
    return out
