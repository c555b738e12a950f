"""The ``Utterance`` record, the corpus registry and shared validation for corpus adapters."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .._registry import Registry
from ..errors import CorpusError

__all__ = ["Utterance", "ScanResult", "CORPORA", "register_corpus", "scan_corpus", "require_dir"]


@dataclass(frozen=True)
class Utterance:
    """One labelled stretch of speech: a whole file, or ``start``..``end`` seconds of it.

    ``label`` is the corpus' own label until :func:`serkit.labels.map_utterances` maps it onto a
    label set. ``speaker`` is always set (evaluation is speaker-independent by default).
    """

    id: str
    path: str
    label: str
    speaker: str
    corpus: str
    start: float | None = None
    end: float | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass
class ScanResult:
    """What a scan found: the utterances, and the problems worth telling the user (files skipped, …)."""

    corpus: str
    root: str
    utterances: list[Utterance]
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        labels: dict[str, int] = {}
        speakers: dict[str, int] = {}
        for u in self.utterances:
            labels[u.label] = labels.get(u.label, 0) + 1
            speakers[u.speaker] = speakers.get(u.speaker, 0) + 1
        return {
            "corpus": self.corpus,
            "root": self.root,
            "n_utterances": len(self.utterances),
            "labels": dict(sorted(labels.items())),
            "speakers": dict(sorted(speakers.items())),
            "problems": list(self.problems),
        }


#: name → ``scan(root, **options) -> ScanResult``
CORPORA: Registry[Callable[..., ScanResult]] = Registry("corpus")


def register_corpus(name: str):
    """Register a corpus adapter ``scan(root, **options) -> ScanResult`` under ``name``."""
    return CORPORA.register(name)


def require_dir(root, corpus: str, hint: str) -> Path:
    p = Path(root).expanduser()
    if not p.exists():
        raise CorpusError(f"{corpus}: folder '{p}' does not exist; {hint}")
    if not p.is_dir():
        raise CorpusError(f"{corpus}: '{p}' is not a folder; {hint}")
    return p


def scan_corpus(name: str, root, *, check_audio: bool = False, **options) -> ScanResult:
    """Scan ``root`` with the adapter registered as ``name``.

    With ``check_audio=True`` every file's header is read; unreadable files are dropped and listed
    in ``problems`` rather than failing the scan.
    """
    from .. import corpora as _c  # noqa: F401  (registers the adapters)

    result = CORPORA.get(name)(root, **options)
    if not result.utterances:
        raise CorpusError(
            f"{name}: found no utterances under '{root}'"
            + (f" ({'; '.join(result.problems[:3])})" if result.problems else "")
            + f"; check that ROOT is the {name} folder"
        )
    if check_audio:
        from ..audio import info
        from ..errors import AudioError

        good = []
        bad_paths: dict[str, str] = {}
        for u in result.utterances:
            if u.path not in bad_paths:
                try:
                    info(u.path)
                except AudioError as exc:
                    bad_paths[u.path] = str(exc)
            if u.path in bad_paths:
                continue
            good.append(u)
        result.problems.extend(f"unreadable, skipped: {msg}" for msg in bad_paths.values())
        result.utterances = good
    return result
