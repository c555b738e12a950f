"""Corpus adapters: scan a corpus folder into :class:`Utterance` records, one module per corpus.

Registered corpora: ``emodb``, ``ravdess``, ``tess``, ``savee``, ``cremad``, ``iemocap``,
``ased`` (Amharic), ``nemo`` (Polish), ``turev`` (Turkish), ``korean-emotiontts`` (Korean; each
module's docstring describes the corpus and its file naming), and the user's own data as
``folder`` (one sub-folder per label) or ``manifest`` (a CSV file).

>>> from serkit.corpora import CORPORA
>>> CORPORA.names()
['ased', 'cremad', 'emodb', 'folder', 'iemocap', 'korean-emotiontts', 'manifest', 'nemo', 'ravdess', 'savee', 'tess', 'turev']

A label with fewer than :data:`MIN_CLASS_UTTERANCES` utterances after mapping (often a typo in a
manifest, such as ``bored_silly`` for ``bored``) is kept but named in a warning: a class that small
cannot be learned or scored speaker-independently.

Typical use::

    from serkit.corpora import load_corpus, load_corpora
    utts = load_corpus("emodb:/data/emodb", label_set="6class")
    both = load_corpora(["emodb:/data/emodb", "ravdess:/data/ravdess"], label_set="4class")
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
from collections import Counter
from collections.abc import Iterable

from ..errors import ConfigError, CorpusError
from ..labels import NATIVE, map_utterances, resolve_label_set

# Importing the adapters registers them.
from . import ased, cremad, emodb, folder, iemocap, korean_emotiontts, manifest, nemo, ravdess, savee, tess, turev  # noqa: F401
from ._common import UNKNOWN_SPEAKER
from .base import CORPORA, ScanResult, Utterance, register_corpus, require_dir, scan_corpus

__all__ = [
    "Utterance",
    "ScanResult",
    "CORPORA",
    "UNKNOWN_SPEAKER",
    "register_corpus",
    "require_dir",
    "scan_corpus",
    "parse_spec",
    "load_corpus",
    "load_corpora",
    "MIN_CLASS_UTTERANCES",
    "SHARED_FOLDERS",
]

#: The seven corpora of the project's shared data folder (``$SERKIT_DATA``): adapter name → folder
#: under it. The default model is trained on all of them (``scripts/train_default.py``) and the
#: benchmarks evaluate leave-one-corpus-out over them.
SHARED_FOLDERS = {
    "emodb": "emodb",
    "tess": "tess",
    "ravdess": "ravdess-sample",
    "ased": "ased",
    "nemo": "nemo",
    "turev": "turev",
    "korean-emotiontts": "korean-emotiontts",
}

log = logging.getLogger(__name__)

# Spellings users type for the registered names ("CREMA-D", "EmoDB", "Emo-DB", "TurEV-DB",
# "Korean_EmotionTTS" are also accepted by lowercasing and dropping "-"/"_").
_ALIASES = {
    "crema_d": "cremad",
    "crema": "cremad",
    "berlin": "emodb",
    "csv": "manifest",
    "folders": "folder",
    "turev_db": "turev",
    "korean_emotiontts": "korean-emotiontts",
    "koreanemotiontts": "korean-emotiontts",
    "korean": "korean-emotiontts",
}


def _canonical_name(name: str) -> str:
    if str(name).strip().lower() in CORPORA:  # a registered name with a "-" (korean-emotiontts)
        return str(name).strip().lower()
    key = str(name).strip().lower().replace("-", "_")
    if key in CORPORA:
        return key
    return _ALIASES.get(key, key.replace("_", ""))


def parse_spec(spec) -> tuple[str, str, dict]:
    """Split a corpus spec into ``(name, root, options)``.

    A spec is ``"NAME:ROOT"`` (the first ``:`` separates, so ``emodb:C:\\data\\emodb`` works),
    a ``(name, root)`` pair, or a ``(name, root, options)`` triple whose ``options`` dict is
    passed to the adapter (e.g. ``("folder", "data/", {"speaker_pattern": r"^(?P<speaker>\\d+)_"})``).

    >>> parse_spec("EmoDB:/data/emodb")
    ('emodb', '/data/emodb', {})

    Raises
    ------
    ConfigError
        The spec has no ``NAME:`` part or names no registered corpus (the message lists them).
    """
    options: dict = {}
    if isinstance(spec, str):
        name, sep, root = spec.partition(":")
        if not sep or not name.strip() or not root.strip():
            raise ConfigError(
                f"corpus spec {spec!r} is not NAME:ROOT; write e.g. 'emodb:/data/emodb' "
                f"(corpora: {', '.join(CORPORA.names())})"
            )
        root = root.strip()
    elif isinstance(spec, (tuple, list)) and len(spec) in (2, 3) and isinstance(spec[0], str):
        name, root = spec[0], os.fspath(spec[1])
        if len(spec) == 3:
            if not isinstance(spec[2], dict):
                raise ConfigError(f"corpus spec {spec!r}: the third item must be a dict of adapter options")
            options = dict(spec[2])
    else:
        raise ConfigError(f"corpus spec {spec!r} is neither 'NAME:ROOT' nor a (name, root[, options]) tuple")
    key = _canonical_name(name)
    CORPORA.get(key)  # unknown names raise ConfigError listing the registered ones
    return key, str(root), options


def _report(result: ScanResult, dropped: dict, label_set: str) -> None:
    if result.problems:
        log.warning(
            "%s: %d problem(s) while scanning %s: %s",
            result.corpus,
            len(result.problems),
            result.root,
            " | ".join(result.problems[:5]) + (" | …" if len(result.problems) > 5 else ""),
        )
    if dropped:
        log.info(
            "%s: %d utterance(s) left out by label set %s: %s",
            result.corpus,
            sum(dropped.values()),
            label_set,
            ", ".join(f"{k} {v}" for k, v in dropped.items()),
        )


#: Fewest utterances a label should have; smaller labels are listed in a warning by load_corpus/load_corpora.
MIN_CLASS_UTTERANCES = 5


def _warn_small_classes(utterances, what: str) -> None:
    counts = Counter(u.label for u in utterances)
    small = sorted((n, label) for label, n in counts.items() if n < MIN_CLASS_UTTERANCES)
    if small:
        log.warning(
            "%s: %d label(s) with fewer than %d utterances: %s; check for typos in the labels, or drop or merge them",
            what,
            len(small),
            MIN_CLASS_UTTERANCES,
            ", ".join(f"{label!r} ({n})" for n, label in small),
        )


def load_corpus(spec, *, label_set: str = NATIVE, check_audio: bool = False, **options) -> list[Utterance]:
    """Scan one corpus and map its labels onto ``label_set``.

    Parameters
    ----------
    spec : str or tuple
        ``"NAME:ROOT"`` or ``(name, root[, options])``; see :func:`parse_spec`.
    label_set : str
        ``"native"`` (default: the corpus' own labels), ``"6class"`` or ``"4class"``
        (see :mod:`serkit.labels` for the per-corpus mapping).
    check_audio : bool
        Decode every file and leave out those that cannot be used (unreadable, empty, garbage,
        NaN samples, shorter than :data:`serkit.audio.MIN_DURATION_S`), each listed in a warning.
    **options
        Passed to the adapter (e.g. ``channel="both"`` for RAVDESS, ``speaker_pattern`` for
        folders); they override options given in the spec.

    Returns
    -------
    list of Utterance
        Problems found while scanning are logged (logger ``serkit.corpora``) as a warning, and
        the counts dropped by the label set as info; use :func:`scan_corpus` to get them as data.
        Labels with fewer than :data:`MIN_CLASS_UTTERANCES` utterances are named in a warning.

    Raises
    ------
    ConfigError
        Bad spec, unknown corpus, option or label set.
    CorpusError
        The folder is not the corpus, or nothing is left after mapping onto the label set.
    """
    kept = _load_corpus(spec, label_set=label_set, check_audio=check_audio, **options)
    _warn_small_classes(kept, parse_spec(spec)[0])
    return kept


def _load_corpus(spec, *, label_set: str = NATIVE, check_audio: bool = False, **options) -> list[Utterance]:
    name, root, spec_options = parse_spec(spec)
    if label_set != NATIVE:
        resolve_label_set(label_set)  # fail before a long scan
    options = {**spec_options, **options}
    _check_options(name, options)
    result = scan_corpus(name, root, check_audio=check_audio, **options)
    kept, dropped = map_utterances(result.utterances, label_set)
    _report(result, dropped, label_set)
    if not kept:
        raise CorpusError(
            f"{name}: none of the {len(result.utterances)} utterances under '{root}' is in label set "
            f"{label_set!r} (labels found: {', '.join(sorted(dropped))}); use label_set='native' "
            "or rename the labels"
        )
    return kept


def _check_options(name: str, options: dict) -> None:
    """Refuse options the adapter does not take, naming the ones it does (instead of a TypeError)."""
    params = inspect.signature(CORPORA.get(name)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    named = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    known = [p for i, p in enumerate(params) if i > 0 and params[p].kind in named]  # first one is root
    bad = sorted(set(options) - set(known))
    if bad:
        raise ConfigError(
            f"{name}: unknown option(s) {', '.join(bad)}; {name} takes: {', '.join(known) or 'no options'}"
        )


def load_corpora(specs: Iterable, *, label_set: str = NATIVE, check_audio: bool = False) -> list[Utterance]:
    """Load several corpora into one list, e.g. to train on EmoDB and RAVDESS together.

    With more than one corpus, every utterance's ``speaker`` and ``id`` get the corpus' name as a
    prefix (``emodb/03``, ``ravdess/01``), so two corpora's speaker ``"03"`` never count as one
    person in a speaker-independent split. The same corpus name used for two roots (two
    ``folder`` corpora, say) is told apart as ``folder``, ``folder-2``, … in that order.
    With a single spec the result equals :func:`load_corpus`'s.

    Parameters
    ----------
    specs : iterable of spec
        See :func:`parse_spec`. A single string is taken as one spec.
    label_set, check_audio
        As for :func:`load_corpus`, applied to each corpus with its own mapping.

    Raises
    ------
    ConfigError
        No spec, a bad spec, or the same corpus folder listed twice.
    CorpusError
        One of the folders is not its corpus (the message names which).
    """
    if isinstance(specs, str):
        specs = [specs]
    parsed = [parse_spec(s) for s in specs]
    if not parsed:
        raise ConfigError("load_corpora needs at least one corpus spec, e.g. ['emodb:/data/emodb']")
    roots = Counter((name, os.path.realpath(root)) for name, root, _ in parsed)
    twice = [f"{n}:{r}" for (n, r), k in roots.items() if k > 1]
    if twice:
        raise ConfigError(f"corpus listed more than once: {', '.join(twice)}; each utterance would count twice")
    if len(parsed) == 1:
        return load_corpus(parsed[0], label_set=label_set, check_audio=check_audio)
    seen: Counter = Counter()
    out: list[Utterance] = []
    for name, root, options in parsed:
        seen[name] += 1
        tag = name if seen[name] == 1 else f"{name}-{seen[name]}"
        for u in _load_corpus((name, root, options), label_set=label_set, check_audio=check_audio):
            out.append(dataclasses.replace(u, id=f"{tag}/{u.id}", speaker=f"{tag}/{u.speaker}"))
    _warn_small_classes(out, "+".join(name for name, _, _ in parsed))
    return out
