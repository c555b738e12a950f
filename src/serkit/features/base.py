"""The feature-extractor interface, its registry, and cached parallel extraction over utterances."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from .._registry import Registry
from ..audio import pad_to
from ..cache import FeatureCache, file_digest
from ..errors import ConfigError
from ..runtime import default_jobs, process_pool, stopping

__all__ = [
    "FeatureExtractor",
    "EXTRACTORS",
    "register_extractor",
    "get_extractor",
    "extract",
    "functionals_parallel",
    "shutdown_pool",
    "ProcessModel",
    "SlowdownViews",
    "parse_slowdown",
    "SpeedView",
    "parse_speeds",
    "ChannelView",
]


class FeatureExtractor:
    """Turns one signal into one fixed-length vector (utterance-level functionals or a pooled embedding).

    Subclasses set ``name`` and ``sampling_rate``, store their options in ``__init__`` and implement
    :meth:`config` (JSON-able; part of the cache key and of a model's ``model.json``),
    :meth:`functionals` and :meth:`feature_names`. :meth:`lld` gives frame-level descriptors where
    the family has them.
    """

    name: str = ""
    sampling_rate: int = 16000
    #: shortest signal accepted (seconds); shorter ones are zero-padded symmetrically
    min_duration: float = 0.0

    def config(self) -> dict:
        """The constructor's options as stored on the instance (``sampling_rate`` aside, which
        :meth:`full_config` adds), so ``type(e)(**e.config())`` rebuilds the extractor."""
        import inspect

        names = inspect.signature(type(self).__init__).parameters
        return {n: getattr(self, n) for n in names if n not in ("self", "sampling_rate")}

    def functionals(self, signal: np.ndarray) -> np.ndarray:
        """[shape=(n_features,), float32] for one float32 mono signal at ``sampling_rate``."""
        raise NotImplementedError

    def functionals_batch(self, signals: Sequence[np.ndarray]) -> np.ndarray:
        """[shape=(n, n_features)]; override where batching is faster (neural embeddings)."""
        return np.stack([self.functionals(s) for s in signals]).astype(np.float32)

    def lld(self, signal: np.ndarray) -> np.ndarray:
        """[shape=(n_frames, n_llds)] frame-level low-level descriptors."""
        raise NotImplementedError(f"{self.name} has no frame-level descriptors")

    def feature_names(self) -> list[str]:
        raise NotImplementedError

    #: whether extraction should run in worker processes (False for extractors that batch in torch)
    parallel: bool = True

    #: bump when the extractor's algorithm changes: it joins the cache key, so stale features are not reused
    VERSION: int = 1

    def full_config(self) -> dict:
        """``config()`` plus name, rate and code version: the cache key and what ``model.json`` records."""
        return {"name": self.name, "sampling_rate": self.sampling_rate, **self.config(), "version": self.VERSION}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


EXTRACTORS: Registry[type] = Registry(
    "feature set", plugins=("serkit.features", ("spectral", "opensmile", "soundnet", "ge2e"))
)


class ProcessModel:
    """A network built once per process, on first use, by ``build()``; never pickled with an extractor.

    >>> m = ProcessModel(lambda: object())
    >>> m.get() is m.get()
    True
    """

    def __init__(self, build: Callable[[], object]):
        self._build = build
        self._model = None
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self._model is None:
                self._model = self._build()
            return self._model


def _factors(value, what: str, lo: float, hi: float, example: str, prefix: str = "") -> list[float]:
    """A number, a comma-separated string or a list as distinct floats in [lo, hi] (errors say ``what``)."""
    items = (
        [s for s in value.split(",") if s.strip()]
        if isinstance(value, str)
        else (list(value) if isinstance(value, (list, tuple)) else [value])
    )
    try:
        out = [float(s) for s in items]
    except (TypeError, ValueError):
        raise ConfigError(f"{prefix}{what} {value!r} is not a number or a list of numbers; e.g. {example}") from None
    if not out:
        raise ConfigError(f"{prefix}empty {what}; give e.g. {example} (1 = the original speed)")
    bad = [k for k in out if not lo <= k <= hi]
    if bad:
        raise ConfigError(f"{prefix}{what} {bad[0]:g} is outside {lo:g}..{hi:g}; 1 is the original speed")
    if len(set(out)) != len(out):
        raise ConfigError(f"{prefix}{what} {out} lists a value twice")
    return out


def parse_slowdown(value, family: str = "soundnet") -> list[float]:
    """``3``, ``"2,3,4"`` or ``[2, 3, 4]`` as a list of floats, each in [0.5, 8] (errors name ``family``).

    >>> parse_slowdown("2, 3"), parse_slowdown(1)
    ([2.0, 3.0], [1.0])
    """
    return _factors(value, "slowdown", 0.5, 8, "3 or '2,3,4'", f"{family}: ")


def parse_speeds(value) -> list[float]:
    """``1``, ``"0.9,1,1.1"`` or ``[0.9, 1, 1.1]`` as a list of speed factors, each in [0.5, 2]
    (1.1 plays the clip 10 % faster).

    >>> parse_speeds("0.9, 1, 1.1")
    [0.9, 1.0, 1.1]
    """
    return _factors(value, "speeds", 0.5, 2, "[0.9, 1, 1.1]")


class SlowdownViews(FeatureExtractor):
    """An extractor for a pretrained network with a fixed input rate (``network_rate``) that can be
    fed the speech at other speeds, one vector per speed, concatenated.

    ``slowdown`` k reads the speech at ``network_rate * k`` Hz and presents it to the network as
    ``network_rate``: played k times slower (k < 1: faster), pitch and formants included. Signals
    come in at the largest of those rates (:attr:`sampling_rate`) and are resampled down for the
    others. Subclasses set ``network_rate``, call :meth:`_set_slowdown` in ``__init__``, and
    implement ``_view_names()`` (one view's feature names) and ``_view(signals)`` (one view's
    vectors, for signals already at the network's rate).
    """

    network_rate: int = 16000

    def _set_slowdown(self, slowdown) -> None:
        self.slowdown = slowdown
        self._slowdowns = parse_slowdown(slowdown, self.name or type(self).__name__)
        #: the rate each view's speech is read at; signals come in at the largest
        self._rates = [int(round(self.network_rate * k)) for k in self._slowdowns]
        self.sampling_rate = max(self._rates)

    def _with_slowdown(self, cfg: dict) -> dict:
        if self._slowdowns != [1.0]:  # slowdown 1 keeps the key (and saved models) it had before the option
            cfg["slowdown"] = list(self._slowdowns)
        return cfg

    def _view_names(self) -> list[str]:
        raise NotImplementedError

    def _view(self, signals: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def feature_names(self) -> list[str]:
        names = self._view_names()
        if self._slowdowns == [1.0]:
            return names
        return [f"x{k:g}_{n}" for k in self._slowdowns for n in names]

    def functionals(self, signal: np.ndarray) -> np.ndarray:
        """[shape=(n_features,), float32] for one float32 mono signal at :attr:`sampling_rate`."""
        return self.functionals_batch([signal])[0]

    def functionals_batch(self, signals: Sequence[np.ndarray]) -> np.ndarray:
        """[shape=(n, n_features), float32] for float32 mono signals at :attr:`sampling_rate`:
        each view of the signals resampled to its rate (the largest one's are the inputs themselves)."""
        from ..audio import resample

        if not len(signals):
            return np.zeros((0, len(self.feature_names())), dtype=np.float32)
        signals = [np.asarray(s, dtype=np.float32).reshape(-1) for s in signals]
        parts = [self._view([resample(s, self.sampling_rate, rate) for s in signals]) for rate in self._rates]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


class _ChangedView(FeatureExtractor):
    """Another extractor's features of every signal changed by :meth:`_change` first: one view of
    each clip, cached under the inner extractor's name and configuration plus :meth:`_view_config`."""

    def __init__(self, inner: FeatureExtractor):
        self.inner = inner
        self.name = inner.name
        self.sampling_rate = inner.sampling_rate
        self.min_duration = inner.min_duration
        self.parallel = inner.parallel

    def _view_config(self) -> dict:
        raise NotImplementedError

    def _change(self, signal: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def config(self) -> dict:
        return {**self.inner.config(), **self._view_config()}

    def full_config(self) -> dict:
        return {**self.inner.full_config(), **self._view_config()}

    def feature_names(self) -> list[str]:
        return self.inner.feature_names()

    def functionals(self, signal: np.ndarray) -> np.ndarray:
        return self.inner.functionals(self._change(signal))

    def functionals_batch(self, signals: Sequence[np.ndarray]) -> np.ndarray:
        # an extractor that runs in this process (torch-batched: ``parallel = False``) gets its
        # signals changed on threads (resampling, filters and codec round trips release the GIL);
        # the others already run in worker processes, one per core
        signals = list(signals)
        changed = [self._change(s) for s in signals] if self.parallel else thread_map(self._change, signals)
        return self.inner.functionals_batch(changed)


class SpeedView(_ChangedView):
    """Another extractor's features of the speech played ``speed`` times faster, tape-style (tempo,
    pitch and formants together): one speed-perturbed view of every clip, with its own cache key.

    >>> from serkit.features import get_extractor
    >>> v = SpeedView(get_extractor("librosa"), 1.1)
    >>> v.full_config()["speed"], v.feature_names() == get_extractor("librosa").feature_names()
    (1.1, True)
    """

    def __init__(self, inner: FeatureExtractor, speed: float):
        super().__init__(inner)
        self.speed = parse_speeds(speed)[0]

    def _view_config(self) -> dict:
        return {"speed": self.speed}

    def _change(self, signal: np.ndarray) -> np.ndarray:
        from ..audio import resample

        # read the samples as if taken `speed` times faster, back at the extractor's own rate
        rate = self.sampling_rate
        changed = resample(np.asarray(signal, np.float32).reshape(-1), int(round(rate * self.speed)), rate)
        return pad_to(changed, int(self.min_duration * rate))


class ChannelView(_ChangedView):
    """Another extractor's features of the clip through a channel condition (:mod:`serkit.channels`:
    ``telephone``, ``codec``, ``noise``, ``level``), with its own cache key: one degraded view of
    every clip, so augmented features are extracted once and then read from the cache.

    The condition's random choices (law, bitrate, SNR, gain, noise) come from a generator seeded by
    ``seed``, the condition's name and the clip's samples, so a clip gets the same degradation in
    every run and in any batch or worker, and different clips get different ones. ``babble``:
    other clips (paths or utterances) that the ``noise`` condition may mix in as babble; they are
    part of the cache key (as a digest of their paths and segments). ``options``: fixed settings of
    the condition instead of drawn ones (``{"snr": 10}``, ``{"kind": "opus", "kbps": 16}``), in the key too.

    >>> from serkit.features import get_extractor
    >>> v = ChannelView(get_extractor("librosa"), "telephone", seed=1)
    >>> v.full_config()["channel"], v.feature_names() == get_extractor("librosa").feature_names()
    ('telephone', True)
    """

    def __init__(self, inner: FeatureExtractor, condition: str, seed: int = 0, *, babble: Sequence = (), options=None):
        from ..channels import CONDITIONS

        CONDITIONS.get(condition)  # an unknown name lists the valid ones
        if babble and condition != "noise":
            raise ConfigError(f"babble clips are for the 'noise' condition, not {condition!r}")
        super().__init__(inner)
        self.condition = condition
        self.seed = int(seed)
        self.babble = [list(_item_key(b)) for b in babble]
        self.options = dict(options or {})  # fixed settings of the condition, e.g. {"snr": 10}
        self._babble_signals: list[np.ndarray] | None = None

    def _view_config(self) -> dict:
        cfg = {"channel": self.condition, "channel_seed": self.seed}
        if self.options:
            cfg["channel_options"] = dict(sorted(self.options.items()))
        if self.babble:
            import hashlib
            import json

            lines = json.dumps(sorted(self.babble, key=str)).encode()
            cfg["babble"] = {"n": len(self.babble), "sha256": hashlib.sha256(lines).hexdigest()[:16]}
        return cfg

    def _babble_clips(self) -> list[np.ndarray] | None:
        if not self.babble:
            return None
        if self._babble_signals is None:
            from ..audio import read

            self._babble_signals = [read(p, self.sampling_rate, start=a, end=b)[0] for p, a, b in self.babble]
        return self._babble_signals

    def _change(self, signal: np.ndarray) -> np.ndarray:
        import zlib

        from ..channels import apply

        x = np.ascontiguousarray(np.asarray(signal, np.float32).reshape(-1))
        rng = np.random.default_rng([self.seed, zlib.crc32(self.condition.encode()), zlib.crc32(x.tobytes())])
        options = {**self.options, "babble": self._babble_clips()} if self.babble else self.options
        changed = apply(self.condition, x, self.sampling_rate, rng=rng, **options)
        return pad_to(changed, int(self.min_duration * self.sampling_rate))


def register_extractor(name: str):
    def deco(cls):
        cls.name = name
        return EXTRACTORS.register(name)(cls)

    return deco


def get_extractor(name: str, **options) -> FeatureExtractor:
    """An extractor by registered name, e.g. ``get_extractor("egemaps")``; unknown names list the known ones."""
    return EXTRACTORS.get(name)(**options)


def _split(value, what: str, allowed, *, family: str) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` as a list of names from ``allowed`` (an error names ``family``)."""
    items = [s.strip() for s in value.split(",")] if isinstance(value, str) else [str(s).strip() for s in value]
    items = [s for s in items if s]
    if not items:
        raise ConfigError(f"{family}: empty {what}; choose from {', '.join(allowed)}")
    bad = [s for s in items if s not in allowed]
    if bad:
        raise ConfigError(f"{family}: unknown {what} {bad[0]!r}; choose from {', '.join(allowed)}")
    if len(set(items)) != len(items):
        raise ConfigError(f"{family}: {what} {items} lists a name twice")
    return items


def _run_parallel(fn, batches: list) -> list:
    """``[fn(b) for b in batches]`` on up to ``default_jobs()`` threads, each running torch single-threaded.

    For the pretrained networks of the embedding extractors. SoundNet's layers past conv2 are tiny (a 3 s clip has 66 conv4 frames), so torch's intra-op
    threads spend most of their time at barriers; on a loaded machine (a busy core) a 2-thread
    team measured 10–30x slower than one thread. Independent clips on independent threads never
    wait for each other, and torch releases the GIL inside its kernels, so threads suffice. Even
    a lone 60 s clip takes only ~0.1 s on one thread.
    """
    import torch

    previous = torch.get_num_threads()
    # Threads take torch's thread count at their first parallel op: set it before they start.
    torch.set_num_threads(1)
    try:
        return thread_map(fn, batches)
    finally:
        torch.set_num_threads(previous)


def thread_map(fn, items: list) -> list:
    """``[fn(x) for x in items]`` on up to ``default_jobs()`` threads (for work that releases the GIL:
    torch kernels, onnxruntime sessions, numpy's FFTs)."""
    jobs = min(default_jobs(), len(items))
    if jobs <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="serkit-worker") as pool:
        return list(pool.map(fn, items))


def _item_key(item) -> tuple[str, float | None, float | None]:
    if isinstance(item, (str, os.PathLike)):
        return str(item), None, None
    return item.path, item.start, item.end


def load_signal(extractor: FeatureExtractor, item) -> np.ndarray:
    from ..audio import read

    path, start, end = _item_key(item)
    signal, _ = read(path, extractor.sampling_rate, start=start, end=end)
    return pad_to(signal, int(extractor.min_duration * extractor.sampling_rate))


def _extract_one(extractor: FeatureExtractor, item) -> np.ndarray:
    return extractor.functionals(load_signal(extractor, item)).astype(np.float32)


def _extract_chunk(extractor: FeatureExtractor, items: list) -> list:
    """Features or the error message of each item: one bad file must not lose the others' work."""
    from ..errors import SerkitError

    out = []
    for it in items:
        try:
            out.append(_extract_one(extractor, it))
        except SerkitError as exc:
            out.append(str(exc))
    return out


#: Public name of the per-chunk step: what an extraction engine runs on its workers.
extract_chunk = _extract_chunk

#: Runs uncached extraction chunks somewhere else while set (:func:`extraction_engine`).
_ENGINE: Callable | None = None


@contextlib.contextmanager
def extraction_engine(run_chunks: Callable):
    """Within the block, :func:`extract` hands its uncached items to ``run_chunks(extractor, chunks)``.

    ``chunks`` is a list of lists of items; ``run_chunks`` yields ``(chunk number, results)`` as
    chunks finish, ``results`` as :data:`extract_chunk` gives them (features or an error message
    per item). The cache is written here, by this process, exactly as with the local pool, so a
    later run on one machine reuses it (``serkit train --engine ray``:
    :func:`serkit.engines.ray_engine.ray_extraction`).
    """
    global _ENGINE
    before, _ENGINE = _ENGINE, run_chunks
    try:
        yield
    finally:
        _ENGINE = before


def _functionals_chunk(extractor: FeatureExtractor, signals: list) -> np.ndarray:
    return extractor.functionals_batch(signals)


_POOL: dict = {}


def _shared_pool(jobs: int):
    """A process pool kept until :func:`shutdown_pool` (prediction calls it batch after batch)."""
    pool = _POOL.get(jobs)
    if pool is not None and (getattr(pool, "_shutdown_thread", False) or getattr(pool, "_broken", False)):
        _POOL.pop(jobs)  # stopped from outside (serkit.runtime.kill_pools, e.g. a service shutting down)
    if jobs in _POOL:
        return _POOL[jobs]  # None: workers could not start here; extraction stays in this process
    ctx = _worker_context()
    _POOL[jobs] = None if ctx is None else process_pool(jobs, ctx)
    return _POOL[jobs]


def _worker_context():
    """The multiprocessing context for extraction workers, or None where workers cannot start.

    fork is cheapest and needs no __main__ guard in user scripts, but forking a parent that already
    runs torch's OpenMP threads can deadlock: then clean workers come from a fork server, which
    re-imports __main__ — impossible for ``python -`` on stdin (extraction then stays in-process).
    """
    import multiprocessing as mp
    import sys

    # librosa compiles its numba kernels when first imported and writes them to a shared on-disk
    # cache; two fresh workers doing that at once can leave an index that points at the wrong
    # machine code (seen: a segfault in librosa.pyin in a later process of a fresh environment).
    # Importing it here first means workers only ever read a complete cache.
    import librosa  # noqa: F401

    if "torch" not in sys.modules:
        return mp.get_context("fork")
    if mp.get_start_method(allow_none=True) not in (None, "fork", "spawn", "forkserver"):
        # inside another library's worker (joblib's loky sets its own start method) a fork server
        # cannot prepare its children; that worker already has its core, so extraction stays here
        return None
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file is not None and not os.path.exists(main_file):
        return None
    return mp.get_context("forkserver")


def shutdown_pool() -> None:
    """Stop the worker processes of :func:`functionals_parallel` (the next call starts new ones)."""
    for jobs, pool in list(_POOL.items()):
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        _POOL.pop(jobs, None)


def functionals_parallel(
    extractor: FeatureExtractor, signals: Sequence[np.ndarray], n_jobs: int | None = None
) -> np.ndarray:
    """``extractor.functionals_batch(signals)`` split over ``n_jobs`` worker processes.

    For in-memory signals (prediction); :func:`extract` does the same for files, with the cache.
    Extractors that batch in torch (``parallel = False``) and small batches run in this process.
    """
    jobs = n_jobs or default_jobs()
    signals = list(signals)
    if jobs <= 1 or not extractor.parallel or len(signals) < 4:
        return extractor.functionals_batch(signals)
    from concurrent.futures.process import BrokenProcessPool

    size = -(-len(signals) // jobs)
    chunks = [signals[k : k + size] for k in range(0, len(signals), size)]
    pool = _shared_pool(jobs)
    if pool is None:
        return extractor.functionals_batch(signals)
    try:
        parts = list(pool.map(_functionals_chunk, [extractor] * len(chunks), chunks))
    except BrokenProcessPool:
        if stopping():  # killed on purpose (SIGTERM, service shutdown): do not redo the work here
            from ..errors import SerkitError

            raise SerkitError("serkit is shutting down; the feature workers were stopped") from None
        # Workers died or could not start (e.g. a __main__ that cannot be re-imported, such as
        # `python -` on stdin): go on in this process from now on rather than failing every batch.
        import logging

        logging.getLogger("serkit.features").warning(
            "feature worker processes failed to run; extracting in one process from now on"
        )
        _POOL[jobs] = None
        return extractor.functionals_batch(signals)
    return np.concatenate(parts, axis=0).astype(np.float32)


def extract(
    extractor: FeatureExtractor,
    items: Iterable,
    *,
    cache: bool = True,
    n_jobs: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Features of every utterance (or path) as ``[shape=(n, n_features), float32]``.

    Results are cached on disk by (file content, segment, extractor config): a second call on the
    same files does no extraction. Uncached items are extracted in ``n_jobs`` worker processes
    (default: all cores) with a progress bar. Unreadable audio raises :class:`serkit.errors.AudioError`
    naming the file.
    """
    items = list(items)
    store = FeatureCache(extractor.name, extractor.full_config()) if cache else None
    out: list[np.ndarray | None] = [None] * len(items)
    keys: list[str | None] = [None] * len(items)
    todo: list[int] = []
    for i, it in enumerate(items):
        if store is not None:
            path, start, end = _item_key(it)
            keys[i] = f"{file_digest(path)}-{start}-{end}".replace(".", "_")
            hit = store.get(keys[i])
            if hit is not None:
                out[i] = hit
                continue
        todo.append(i)
    errors: dict[int, str] = {}

    def done(i: int, value) -> None:
        if isinstance(value, str):
            errors[i] = value
            return
        out[i] = np.asarray(value, dtype=np.float32)
        if store is not None:
            store.put(keys[i], out[i])

    if todo:
        from tqdm.auto import tqdm

        jobs = n_jobs or default_jobs()
        bar = tqdm(total=len(todo), desc=f"features {extractor.name}", unit="file", disable=not progress, leave=False)
        ctx = _worker_context() if _ENGINE is None and jobs > 1 and extractor.parallel and len(todo) > 8 else None
        if _ENGINE is not None:
            chunks = [todo[k : k + 16] for k in range(0, len(todo), 16)]
            for c, values in _ENGINE(extractor, [[items[i] for i in chunk] for chunk in chunks]):
                for i, v in zip(chunks[c], values):
                    done(i, v)
                bar.update(len(chunks[c]))
        elif ctx is not None:
            from concurrent.futures import as_completed

            size = max(1, min(32, len(todo) // (jobs * 4)))
            chunks = [todo[k : k + size] for k in range(0, len(todo), size)]
            # workers die with this process (SIGTERM, SIGKILL): serkit.runtime
            with process_pool(jobs, ctx) as pool:
                futures = {pool.submit(_extract_chunk, extractor, [items[i] for i in c]): c for c in chunks}
                for fut in as_completed(futures):
                    for i, v in zip(futures[fut], fut.result()):
                        done(i, v)
                    bar.update(len(futures[fut]))
        else:
            batch = 16
            from ..errors import SerkitError

            for k in range(0, len(todo), batch):
                idx = todo[k : k + batch]
                signals = {}
                for i in idx:
                    try:
                        signals[i] = load_signal(extractor, items[i])
                    except SerkitError as exc:
                        errors[i] = str(exc)
                good = [i for i in idx if i in signals]
                if good:
                    for i, v in zip(good, extractor.functionals_batch([signals[i] for i in good])):
                        done(i, v)
                bar.update(len(idx))
        bar.close()
    if errors:
        from ..errors import AudioError

        lines = [errors[i] for i in sorted(errors)]
        raise AudioError(
            f"{len(errors)} of {len(items)} files could not be processed (the others are cached): "
            + "; ".join(lines[:5])
            + (f"; … and {len(lines) - 5} more" if len(lines) > 5 else "")
            + ". Remove or fix them; `serkit corpora scan NAME ROOT --check-audio` lists every file serkit cannot use "
            "(serkit train/evaluate skip those; in Python pass check_audio=True to load_corpus)"
        )
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack(out).astype(np.float32)
