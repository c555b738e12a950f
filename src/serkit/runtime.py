"""Process and thread policy: how many threads and worker processes serkit uses, and that workers die with their parent.

One place for the runtime choices that are never saved with a model: torch threads
(:func:`default_threads`, ``$SERKIT_THREADS``), extraction worker processes (:func:`default_jobs`,
``$SERKIT_JOBS``) and the lifetime of those workers (:func:`process_pool`, :func:`handle_sigterm`).

Workers never outlive the process that started them:

- each worker asks Linux for ``SIGKILL`` when its parent dies (``prctl(PR_SET_PDEATHSIG)``), where
  the parent is a single-threaded fork server (the parent-death signal follows the *thread* that
  forked, so it is not used for workers forked from a thread that may end);
- each worker also runs a watchdog thread that exits the worker within
  :data:`WATCHDOG_INTERVAL_S` once the process that created its pool is gone (covers SIGKILL of a
  ``fork``-context parent and non-Linux systems);
- :func:`handle_sigterm` (installed by the CLI) turns SIGTERM into a prompt exit that first kills
  the workers of every pool made by :func:`process_pool`, instead of waiting for queued work.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import weakref

from .errors import ConfigError

__all__ = [
    "onnx_session",
    "default_threads",
    "default_jobs",
    "io_threads",
    "cpu_count",
    "process_alive",
    "process_pool",
    "worker_init",
    "kill_pools",
    "stopping",
    "handle_sigterm",
    "WATCHDOG_INTERVAL_S",
]

#: How often a worker checks that the process that created its pool is alive (seconds).
WATCHDOG_INTERVAL_S = 0.5

_PR_SET_PDEATHSIG = 1


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _env_count(name: str) -> int | None:
    env = os.environ.get(name)
    if not env:
        return None
    try:
        return max(1, int(env))
    except ValueError:
        raise ConfigError(f"${name}={env!r} is not a whole number; e.g. {name}=2") from None


def default_threads() -> int:
    """Torch threads to use now: ``$SERKIT_THREADS``, else the cores not busy with other work.

    On a shared machine a torch thread team is only as fast as its most preempted thread: every
    operation ends at a barrier, so with one core busy elsewhere a 2-thread team measured 5–25x
    *slower* per training step than a single thread (SoundNet8 conv4–conv7 step: 30 ms on 1
    thread, 470–840 ms on 2). So the trainer counts the other runnable tasks (``/proc/loadavg``)
    before every epoch and leaves their cores alone; on an idle machine it uses every core. Set
    ``$SERKIT_THREADS`` for a fixed count (bitwise-identical reruns need one).
    """
    fixed = _env_count("SERKIT_THREADS")
    if fixed is not None:
        return fixed
    now = time.monotonic()
    if now - _THREADS_SEEN[0] < _THREADS_TTL:
        return _THREADS_SEEN[1]
    threads = max(1, cpu_count() - _others_running())
    _THREADS_SEEN[:] = [now, threads]
    return threads


# Reading the load takes ~10 ms (a few spaced /proc/loadavg samples): reuse the answer for a
# second, so per-call prediction (streaming, serving) does not pay it every time while epochs,
# seconds apart, still see the current load.
_THREADS_TTL = 1.0
_THREADS_SEEN: list = [float("-inf"), 1]


def _others_running(samples: int = 3, interval: float = 0.005) -> int:
    """Runnable tasks other than this reader (median of a few ``/proc/loadavg`` snapshots); 0 where unknown."""
    seen = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        seen.append(running - 1)  # the reading thread itself is running
        if i + 1 < samples:
            time.sleep(interval)
    return max(0, sorted(seen)[len(seen) // 2])


def io_threads() -> int:
    """Threads that decode audio files (libsndfile and soxr release the GIL): the cores plus two,
    at most 8, so reading overlaps with waiting on the disk without crowding the classifier."""
    return min(8, cpu_count() + 2)


def default_jobs() -> int:
    """Worker processes for feature extraction: ``$SERKIT_JOBS`` or the number of cores."""
    fixed = _env_count("SERKIT_JOBS")
    return fixed if fixed is not None else cpu_count()


# -- worker processes ------------------------------------------------------------------------------

_POOLS: weakref.WeakSet = weakref.WeakSet()
_STOPPING = threading.Event()


def stopping() -> bool:
    """True once :func:`kill_pools` ran: work that lost its workers should stop, not fall back in-process."""
    return _STOPPING.is_set()


def process_pool(jobs: int, context):
    """A :class:`~concurrent.futures.ProcessPoolExecutor` whose workers die with this process.

    Use it like the executor (``with process_pool(2, ctx) as pool: ...``); :func:`kill_pools`
    (called on SIGTERM) stops its workers at once.
    """
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=worker_init, initargs=(os.getpid(),))
    _POOLS.add(pool)
    _STOPPING.clear()  # new work after a stop (a test's service closed, say) runs normally
    return pool


def worker_init(owner_pid: int) -> None:
    """Initializer of every serkit worker process: die with the owner, one BLAS thread."""
    parent = os.getppid()
    if parent != owner_pid:  # forked by a (single-threaded) fork server: tie our life to it
        _set_parent_death_signal()
    if not process_alive(owner_pid) or os.getppid() != parent:  # the owner died before we got here
        os._exit(1)
    threading.Thread(target=_watchdog, args=(owner_pid, parent), name="serkit-watchdog", daemon=True).start()
    # Each worker is one of `jobs` processes on as many cores: nested BLAS/OpenMP threads only
    # oversubscribe them (measured: 2x the CPU time for the librosa family).
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: the watchdog still works
        pass


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0); when the OS will not say (no permission, another
    error) it counts as alive, so nothing is killed or removed on a guess."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _watchdog(owner_pid: int, parent: int) -> None:
    while True:
        time.sleep(WATCHDOG_INTERVAL_S)
        if os.getppid() != parent or not process_alive(owner_pid):
            os._exit(1)


def kill_pools() -> None:
    """Stop every pool made by :func:`process_pool` now: cancel queued work, kill the workers."""
    _STOPPING.set()
    for pool in list(_POOLS):
        processes = dict(getattr(pool, "_processes", None) or {})
        try:
            pool.shutdown(wait=False, cancel_futures=True)
        except Exception:  # pragma: no cover - a pool already broken
            pass
        for proc in processes.values():
            try:
                proc.kill()
            except Exception:  # pragma: no cover - already gone
                pass


def handle_sigterm() -> None:
    """Make SIGTERM end this process like Ctrl-C does, but without waiting for queued work.

    The handler kills the workers of every pool and raises :class:`SystemExit` (status 143), so
    ``finally`` blocks and context managers still run. Only the main thread can install it; from
    elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def _on_sigterm(signum, frame):
        kill_pools()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _on_sigterm)


#: onnxruntime sessions by (path, size, mtime), one per process (:func:`onnx_session`)
_SESSIONS: dict = {}


def onnx_session(path: str):
    """A one-thread onnxruntime session of ``path`` (callers run independent inputs on parallel
    threads instead: the GE2E graph, :mod:`serkit.features.ge2e`; an exported classifier,
    :class:`serkit.models.features.OnnxEstimator`), kept per process; a file onnxruntime cannot read
    is a :class:`~serkit.errors.ModelError` that names it."""
    from .errors import ModelError

    path = str(path)
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)  # a file rewritten in place gets a new session
    if key not in _SESSIONS:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            _SESSIONS[key] = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / RuntimeError types
            raise ModelError(
                f"'{path}' is not a readable ONNX graph ({type(exc).__name__}); re-export the model or re-copy it"
            ) from None
    return _SESSIONS[key]
