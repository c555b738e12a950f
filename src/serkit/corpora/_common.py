"""Helpers shared by the corpus adapters: finding files, wording problems, refusing wrong folders."""

from __future__ import annotations

from pathlib import Path

from ..audio import AUDIO_EXTENSIONS, find_audio_files
from ..errors import CorpusError
from .base import Utterance

#: Speaker given to utterances whose speaker cannot be known (folder corpora without a pattern).
UNKNOWN_SPEAKER = "unknown"

#: How many names one problem line lists before it only counts the rest.
MAX_LISTED = 10


def audio_files(root: Path) -> list[Path]:
    """Audio files under ``root`` (recursive, sorted), hidden files and folders left out.

    Hidden entries are skipped because macOS copies leave ``._03a01Fa.wav`` resource forks
    beside every file, which are not audio and would each be reported as a problem.
    """
    return [f for f in find_audio_files(root) if not any(part.startswith(".") for part in f.relative_to(root).parts)]


def listed(paths, root: Path | None = None) -> str:
    """``a.wav, b.wav, … (and 12 more)`` for a problem line."""
    names = [str(p.relative_to(root)) if root is not None and isinstance(p, Path) else str(p) for p in paths]
    head = ", ".join(names[:MAX_LISTED])
    return head + (f" (and {len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else "")


def skipped(what: str, paths, root: Path | None = None) -> list[str]:
    """One problem line for a group of skipped files, or none when the group is empty."""
    paths = list(paths)
    if not paths:
        return []
    return [f"{len(paths)} {what}, skipped: {listed(paths, root)}"]


def not_the_corpus(corpus: str, root: Path, files: list[Path], expected: str) -> CorpusError:
    """The error for a folder that holds none of the corpus' files, saying what was expected and found."""
    if not files:
        found = f"it holds no audio files ({' '.join(AUDIO_EXTENSIONS)})"
    else:
        found = f"none of its {len(files)} audio files is named that way (e.g. {listed(files[:3], root)})"
    return CorpusError(f"{corpus}: '{root}' does not look like the {corpus} corpus: expected {expected}; {found}")


def drop_duplicate_ids(utterances: list[Utterance], problems: list[str], corpus: str) -> list[Utterance]:
    """Keep the first utterance of each id, report the others.

    Copies of a corpus often nest a second copy of itself (Kaggle's TESS does) or hold the same
    file twice (CREMA-D's AudioWAV and AudioMP3): counted twice they would inflate results.
    """
    seen: dict[str, str] = {}
    out, dups = [], []
    for u in utterances:
        if u.id in seen:
            dups.append(f"{u.path} (same as {seen[u.id]})")
            continue
        seen[u.id] = u.path
        out.append(u)
    problems.extend(skipped(f"{corpus} files duplicate an utterance already found", dups))
    return out


def folder_wins(path: Path, root: Path, by_name: str, folders: dict, disagree: list[str]) -> str:
    """The emotion of ``path`` for a corpus with one folder per emotion *and* an emotion code in each
    file name (ASED, TurEV-DB): the folder's (``folders``: lower-case folder name → emotion) when
    it has one, else the name's; a disagreement is listed in ``disagree`` (the file is kept)."""
    folder = folders.get(path.parent.name.lower())
    if folder is None or folder == by_name:
        return by_name
    disagree.append(f"{path.relative_to(root)} ({by_name} by name)")
    return folder


def disagreements(disagree: list[str]) -> list[str]:
    """The problem line for the files :func:`folder_wins` listed (none when it listed none)."""
    if not disagree:
        return []
    return [
        f"{len(disagree)} files whose name and emotion folder disagree; the folder's emotion is used: "
        + listed(disagree)
    ]
