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

__all__ = ["Clip", "expand_inputs", "LISTING_SUFFIXES"]

#: Files that list the paths to predict (besides CSV/TSV manifests).
LISTING_SUFFIXES = (".txt", ".parquet")


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
        rows with ``start``/``end`` are segments; a ``.txt`` listing (one path a line, blank lines
        and ``#`` comments skipped) or a ``.parquet`` listing (a ``path`` column, optional
        ``start``/``end``), relative paths again relative to the listing's folder.

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
        elif p.suffix.lower() in LISTING_SUFFIXES and p.is_file():
            out.extend(_listing_clips(p))
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


def _listing_clips(path: Path) -> list[Clip]:
    """Clips of a ``.txt`` (one path a line) or ``.parquet`` (``path`` [, ``start``, ``end``]) listing."""
    base = path.parent

    def resolve(p) -> str:
        return str(p) if Path(p).is_absolute() else str(base / p)

    if path.suffix.lower() == ".txt":
        lines = path.read_text(encoding="utf-8").splitlines()
        return [Clip(resolve(x.strip())) for x in lines if x.strip() and not x.lstrip().startswith("#")]
    import pandas as pd

    try:
        table = pd.read_parquet(path)
    except ImportError:
        raise ConfigError(f"reading the listing '{path}' needs pyarrow: pip install pyarrow") from None
    except Exception as exc:  # pyarrow's errors for a file that is not Parquet
        raise ConfigError(
            f"listing '{path}' is not a readable Parquet file ({exc}); write one with a path column"
        ) from None
    if "path" not in table.columns:
        raise ConfigError(f"listing '{path}' has no 'path' column (columns: {', '.join(map(str, table.columns))})")

    def seconds(row, key):
        v = row.get(key)
        return None if v is None or pd.isna(v) else float(v)

    return [Clip(resolve(r["path"]), seconds(r, "start"), seconds(r, "end")) for r in table.to_dict("records")]
