"""The ``Utterance`` record, the corpus registry and shared validation for corpus adapters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .._registry import Registry
from ..errors import CorpusError

__all__ = ["Utterance", "ScanResult", "CORPORA", "register_corpus", "scan_corpus", "require_dir", "audio_problem"]


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
CORPORA: Registry[Callable[..., ScanResult]] = Registry(
    "corpus",
    plugins=(
        "serkit.corpora",
        (
            "ased",
            "cremad",
            "emodb",
            "folder",
            "iemocap",
            "korean_emotiontts",
            "manifest",
            "nemo",
            "ravdess",
            "savee",
            "tess",
            "turev",
        ),
    ),
)


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

    With ``check_audio=True`` every utterance's audio is checked the way training and prediction
    will read it (:func:`audio_problem`): unreadable, empty, garbage, NaN-filled files and clips
    shorter than :data:`serkit.audio.MIN_DURATION_S` are all dropped the same way and listed in
    ``problems`` (``"skipped: ..."``) rather than failing the scan or a later step.
    """
    result = CORPORA.get(name)(root, **options)
    if not result.utterances:
        raise CorpusError(
            f"{name}: found no utterances under '{root}'"
            + (f" ({'; '.join(result.problems[:3])})" if result.problems else "")
            + f"; check that ROOT is the {name} folder"
        )
    if check_audio:
        from concurrent.futures import ThreadPoolExecutor

        from ..runtime import io_threads

        keys = list(dict.fromkeys((u.path, u.start, u.end) for u in result.utterances))
        # libsndfile decodes without the GIL: a few threads make the check several times faster
        with ThreadPoolExecutor(max_workers=io_threads()) as pool:
            verdicts = dict(zip(keys, pool.map(lambda k: audio_problem(*k), keys)))
        result.problems.extend(f"skipped: {v}" for v in verdicts.values() if v is not None)
        result.utterances = [u for u in result.utterances if verdicts[(u.path, u.start, u.end)] is None]
    return result


def audio_problem(
    path, start: float | None = None, end: float | None = None, *, headers: dict | None = None
) -> str | None:
    """Why ``path`` (or its ``start``..``end`` seconds) cannot be used, or None when it can.

    Reads the header, then decodes the samples a block at a time (bounded memory, also for files
    of unknown length): the clip must decode, hold at least :data:`serkit.audio.MIN_DURATION_S`
    seconds and contain only finite samples.
    """
    import numpy as np
    import soundfile as sf

    from ..audio import MIN_DURATION_S, info
    from ..errors import AudioError

    headers = {} if headers is None else headers
    if path not in headers:
        try:
            headers[path] = info(path)
        except AudioError as exc:
            headers[path] = str(exc)
    header = headers[path]
    if isinstance(header, str):
        return header
    sr = header.sampling_rate
    first = 0 if start is None else max(0, int(round(start * sr)))
    last = header.frames if end is None else min(header.frames, int(round(end * sr)))
    where = f"'{path}'"
    if start is not None or end is not None:
        where += f" ({start or 0:g}-{end:g} s)" if end is not None else f" (from {start:g} s)"
    n_read = 0
    try:
        with sf.SoundFile(str(path)) as f:
            if first:
                f.seek(first)
            remaining = last - first
            while remaining > 0:
                block = f.read(min(remaining, 1 << 16), dtype="float32", always_2d=True)
                if block.size == 0:  # the header promised more than the file holds
                    break
                if not np.isfinite(block).all():
                    return f"{where} contains NaN or infinite samples; the file is corrupt: re-export it"
                n_read += len(block)
                remaining -= len(block)
    except Exception as exc:  # libsndfile errors on garbage after a valid header
        return f"cannot decode {where} ({exc}); the file is corrupt: re-export it"
    if n_read < MIN_DURATION_S * sr:
        return (
            f"{where} is {n_read / sr:.3f} s long, shorter than the {MIN_DURATION_S:g} s serkit needs "
            "(serkit.audio.MIN_DURATION_S)"
        )
    return None
