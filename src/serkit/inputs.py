"""What ``serkit predict`` is given, as a list of clips: files, folders and manifests expanded.

A :class:`Clip` is one thing to predict: a whole file, a ``start``..``end`` segment of one (a
manifest row with times), or an entry that cannot be used (its ``error`` says why), so that every
input shows up in the prediction table and in the count of files, none silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, CorpusError

__all__ = ["Clip", "expand_inputs"]


@dataclass(frozen=True)
class Clip:
    """One item to predict: ``path``, optionally only ``start``..``end`` seconds of it.

    ``error`` is set for an entry found while expanding inputs that cannot be read (a FIFO, a
    broken link, a folder that cannot be listed, a bad manifest row); it becomes an error row.
    """

    path: str
    start: float | None = None
    end: float | None = None
    error: str = ""

    def __str__(self) -> str:
        return self.path


def expand_inputs(inputs: Iterable) -> list[Clip]:
    """Clips from files, folders and manifests, in the order given.

    Parameters
    ----------
    inputs
        Audio files (kept as given, even if missing: they become error rows), folders (searched
        recursively for .wav .flac .ogg .mp3, sorted, following linked sub-folders once each)
        and CSV/TSV manifests with a ``path`` column, read by the manifest corpus adapter
        (:mod:`serkit.corpora.manifest`): relative paths are relative to the manifest's folder and
        rows with ``start``/``end`` are segments.

    Returns
    -------
    list of Clip
        Entries of a folder that look like audio but are not readable files (FIFOs, broken
        links, unlistable sub-folders) and bad manifest rows come back with ``error`` set.

    Raises
    ------
    ConfigError
        A manifest has no ``path`` column.
    """
    from .audio import scan_audio_folder

    out: list[Clip] = []
    for item in inputs:
        if isinstance(item, Clip):
            out.append(item)
            continue
        if not str(item).strip():  # Path("") is the current folder: never walk it by accident
            out.append(Clip(str(item), error="an empty path was given; pass an audio file, a folder or a CSV manifest"))
            continue
        p = Path(item)
        if p.is_dir():
            files, problems = scan_audio_folder(p)
            found = [(f, "") for f in files] + [(f, msg) for f, msg in problems]
            out.extend(Clip(str(f), error=msg) for f, msg in sorted(found, key=lambda x: x[0]))
        elif p.suffix.lower() in (".csv", ".tsv") and p.is_file():
            out.extend(_manifest_clips(p))
        else:
            out.append(Clip(str(item)))
    return out


def _manifest_clips(path: Path) -> list[Clip]:
    from .corpora.manifest import scan_for_prediction

    try:
        result = scan_for_prediction(path)
    except CorpusError as exc:
        raise ConfigError(str(exc)) from None
    clips = [Clip(u.path, u.start, u.end) for u in result.utterances]
    clips += [Clip(str(path), error=f"manifest '{path}': {problem}") for problem in result.problems]
    return clips
