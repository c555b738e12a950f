"""``serkit predict --engine ray``: batch prediction on a Ray cluster with Ray Data, written as Parquet shards.

The pipeline (Ray Data's streaming executor):

1. the driver expands the inputs (:func:`serkit.inputs.expand_inputs`: files, folders, manifests,
   ``.txt`` / ``.parquet`` listings) into a listing of clips, numbered, and drops those whose rows
   are already in the output folder (``--resume``);
2. ``map_batches`` **tasks** decode and resample each batch (:class:`serkit.inference.ClipReader`,
   the local engine's decoding); they ask for no CPU of their own and at most ``2 × workers`` run
   at once, so a pool that holds every core cannot starve them;
3. ``map_batches`` on an **actor pool** of ``workers`` actors, each loading the model once
   (:meth:`serkit.inference.Recognizer.load`: any serkit model folder, the default model when none
   is given) and predicting with :meth:`~serkit.inference.Recognizer.predict_decoded`, the local
   engine's per-batch step: the same rows, the same error rows;
4. the driver takes the rows as they stream back and writes them, every ``shard_rows`` rows or
   ``shard_seconds`` seconds, as one shard ``part-rRRR-SSSSSS.parquet`` (temporary file + atomic
   rename). The shard's Parquet metadata lists the listing numbers of its rows.

Memory: Ray Data streams blocks of ``batch_size`` clips through the operators and applies
backpressure (each operator's output queue is bounded by its share of the object store; an actor
gets at most a few batches in flight), so decoded audio in flight is a few batches per worker
however long the listing; the driver holds only the listing (about 100 bytes a clip) and the rows
of the shard it is filling. Audio never passes through the driver.

Exactly once: a shard is either complete or absent (atomic rename), and its rows' numbers are in
it, so after a crash — even a SIGKILL of the driver — ``--resume`` reads the numbers from the
shards and predicts the rest; rows the driver held but had not written are predicted again.

Fault tolerance is Ray's: the pool's actors have ``max_restarts`` and ``max_task_retries``
(:data:`ACTOR_RESTARTS`), so an actor that dies is replaced and its batch retried; decoding tasks
have ``max_retries``. A file that fails is an error row, as in the local engine; an unexpected
exception in a batch is retried file by file, so it costs only that file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, SerkitError
from ..inputs import Clip, expand_inputs

__all__ = ["predict", "ray_extraction", "require_ray", "JOB_FILE", "ACTOR_RESTARTS", "read_shards"]

#: The job description in the output folder: what the shards there belong to.
JOB_FILE = "_serkit_job.json"
#: An actor of the pool may die and be restarted this many times, and a batch it held retried
#: this many times (Ray's ``max_restarts`` / ``max_task_retries``); decoding tasks get ``max_retries``.
ACTOR_RESTARTS = 3
_SHARD_GLOB = "part-r*.parquet"
_META_KEY = b"serkit.inputs"
_ERRORS_KEY = b"serkit.errors"
_EXTRA = "pip install 'serkit[ray]'"


def require_ray():
    """The ``ray`` module (with Ray Data), or a :class:`~serkit.errors.ConfigError` naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (the [data] extra: pyarrow, pandas)
    except ImportError as exc:
        raise ConfigError(
            f"--engine ray needs Ray with Ray Data ({exc.name or 'ray'} is not installed): {_EXTRA}"
        ) from None
    return ray


def _job_description(clips: list[Clip], model_dir: Path, options: dict) -> dict:
    h = hashlib.sha256()
    for c in clips:
        h.update(f"{c.path}\t{c.start}\t{c.end}\t{c.error}\n".encode())
    model_json = (model_dir / "model.json").read_bytes()
    return {
        "kind": "serkit predict --engine ray",
        "n_inputs": len(clips),
        "inputs_sha256": h.hexdigest(),
        "model": str(model_dir),
        "model_sha256": hashlib.sha256(model_json).hexdigest(),
        "options": options,
    }


def _shards(out: Path) -> list[Path]:
    return sorted(out.glob(_SHARD_GLOB))


def _done_inputs(shards: list[Path]) -> tuple[set[int], int]:
    """The listing numbers already written, and how many of those rows are errors."""
    import pyarrow.parquet as pq

    done: set[int] = set()
    n_errors = 0
    for s in shards:
        meta = pq.read_schema(s).metadata or {}
        done.update(json.loads(meta[_META_KEY]))
        n_errors += int(meta.get(_ERRORS_KEY, b"0"))
    return done, n_errors


def read_shards(out) -> object:
    """All rows of a finished (or partial) job's output folder as one prediction table (pandas).

    The rows are in the order the shards were written; ``sort_values('file')`` for a stable order.
    """
    import pandas as pd

    shards = _shards(Path(out))
    if not shards:
        raise ConfigError(f"'{out}' holds no prediction shards ({_SHARD_GLOB})")
    return pd.concat([pd.read_parquet(s) for s in shards], ignore_index=True)


def _prepare_out(out: Path, job: dict, resume: bool) -> tuple[set[int], int, int]:
    """Check the output folder against the job (writing nothing); ``(done numbers, their errors, run number)``."""
    shards = _shards(out)
    job_file = out / JOB_FILE
    if shards or job_file.exists():
        if not resume:
            held = f"{len(shards)} prediction shards of a job" if shards else f"a started prediction job ({JOB_FILE})"
            raise ConfigError(
                f"'{out}' already holds {held}; pass --resume to continue "
                "that job (its inputs already predicted are skipped), or write to another folder with --out"
            )
        try:
            theirs = json.loads(job_file.read_text())
        except (OSError, ValueError):
            theirs = None
        mine = {k: v for k, v in job.items() if k != "runs"}
        if theirs is None or {k: v for k, v in theirs.items() if k != "runs"} != mine:
            what = (
                "no job description"
                if theirs is None
                else ", ".join(
                    k for k in ("n_inputs", "inputs_sha256", "model_sha256", "options") if theirs.get(k) != job[k]
                )
                + " differ"
            )
            raise ConfigError(
                f"'{out}' holds the shards of another job ({what}); --resume continues only the same inputs, "
                "model and options: write this job to another folder with --out"
            )
        runs = int(theirs.get("runs", 1)) + 1
    else:
        runs = 1
    done, n_errors = _done_inputs(shards)
    return done, n_errors, runs


def _claim_out(out: Path, job: dict, run: int) -> None:
    """Write the job description (once Ray is reachable) and drop a killed run's half-written shard."""
    from ..cache import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(".part-r*.tmp"):
        tmp.unlink(missing_ok=True)
    atomic_write_text(out / JOB_FILE, json.dumps({**job, "runs": run}, indent=2) + "\n")


class _ShardWriter:
    """Rows → ``part-rRRR-SSSSSS.parquet`` shards, each written whole (temporary file + rename)."""

    def __init__(self, out: Path, run: int, columns: list[str]):
        self.out, self.run, self.columns = out, run, columns
        self.seq = 0
        self.n_rows = 0
        self.n_errors = 0
        self.t_first: float | None = None  # perf_counter when the first rows arrived, and how many
        self.n_first = 0

    def write(self, frames: list) -> None:
        import io

        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ..cache import atomic_write_bytes

        df = pd.concat(frames, ignore_index=True)
        idx = [int(i) for i in df["idx"]]
        # the local table's dtypes (Ray hands back Arrow-backed columns): str for text, float64 for numbers
        rows = pd.DataFrame(
            {
                c: df[c].astype(str).tolist()
                if c in ("file", "label", "error")
                else df[c].to_numpy(dtype=np.float64, na_value=np.nan)
                for c in self.columns
            }
        )
        n_err = int((~rows["error"].isin(["", "silence"])).sum())
        table = pa.Table.from_pandas(rows, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta.update({_META_KEY: json.dumps(idx).encode(), _ERRORS_KEY: str(n_err).encode()})
        buf = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(meta), buf)
        name = f"part-r{self.run:03d}-{self.seq:06d}.parquet"
        atomic_write_bytes(self.out / name, buf.getvalue())  # temporary '.part-r….tmp', then rename
        self.seq += 1
        self.n_rows += len(rows)
        self.n_errors += n_err


def _single_threaded() -> None:
    """One core per Ray worker: no extraction pool or extra torch threads inside a task or actor."""
    os.environ["SERKIT_JOBS"] = "1"
    os.environ["SERKIT_THREADS"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _decode_batch(batch, *, reader_fields: dict):
    """Ray task: decode and resample one batch of listing rows (pandas) with the local engine's reader."""
    _single_threaded()
    from ..inference import ClipReader

    reader = ClipReader(**reader_fields)
    t0s, audio, long_t1, long_rate, errors = [], [], [], [], []
    for clip in _clips(batch):
        t0, signal, plan, err = 0.0, None, None, ""
        try:
            t0, signal, plan = reader.load(clip)
        except SerkitError as exc:
            err = str(exc)
        except Exception as exc:  # a decoder's own error (a corrupt file): the file's error row, not the job's end
            err = f"'{clip.path}' could not be decoded: {type(exc).__name__}: {exc}"
        t0s.append(float(t0))
        audio.append(b"" if signal is None else np.ascontiguousarray(signal, dtype=np.float32).tobytes())
        long_t1.append(float(plan[1]) if plan else math.nan)
        long_rate.append(int(plan[2]) if plan else 0)
        errors.append(err)
    out = batch.copy()
    out["t0"], out["audio"], out["long_t1"], out["long_rate"], out["decode_error"] = (
        t0s,
        audio,
        long_t1,
        long_rate,
        errors,
    )
    return out


def _clips(batch) -> list[Clip]:
    def sec(v):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    return [
        Clip(str(p), sec(s), sec(e), str(err or ""))
        for p, s, e, err in zip(batch["path"], batch["start"], batch["end"], batch["error"])
    ]


class _Predictor:
    """Ray actor of the pool: loads the model once, predicts decoded batches into table rows."""

    def __init__(self, model_dir: str, options: dict):
        _single_threaded()
        from ..inference import Recognizer

        try:
            import torch

            torch.set_num_threads(1)
        except ImportError:
            pass
        self.rec = Recognizer.load(model_dir, **options)

    def __call__(self, batch):
        import pandas as pd

        clips = _clips(batch)
        decoded = []
        for t0, a, t1, rate, err in zip(
            batch["t0"], batch["audio"], batch["long_t1"], batch["long_rate"], batch["decode_error"]
        ):
            if err:
                decoded.append((None, None, None, str(err)))
            elif rate:
                decoded.append((float(t0), None, (float(t0), float(t1), int(rate)), None))
            else:
                decoded.append((float(t0), np.frombuffer(a, dtype=np.float32), None, None))
        try:
            rows = self.rec.predict_decoded(clips, decoded)
        except Exception:  # one file the model chokes on must not cost the batch: again file by file
            rows = []
            for c, d in zip(clips, decoded):
                try:
                    rows.extend(self.rec.predict_decoded([c], [d]))
                except Exception as exc:
                    rows.append(self.rec._error_row(c.path, f"'{c.path}' failed: {type(exc).__name__}: {exc}"))
        df = pd.DataFrame(rows, columns=self.rec._columns())
        df.insert(0, "idx", batch["idx"].to_numpy())
        return df


def _connect(ray, address: str | None, workers: int | None) -> None:
    if ray.is_initialized():
        return
    import logging

    kw = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": True}
    if address is None:
        ray.init(num_cpus=workers + 1 if workers else None, include_dashboard=False, **kw)
        return
    where = address
    try:
        where = _probe(address)
        ray.init(address=address, **kw)
    except Exception as exc:  # ConnectionError, or Ray's own for a bad/absent cluster
        if address == "auto":
            where = f"auto ({where or 'no RAY_ADDRESS and no cluster started here with `ray start --head`'})"
        raise ConfigError(
            f"cannot reach the Ray cluster at {where} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "start it with `ray start --head` there, check the address (HOST:PORT of the head's GCS, 6379 by default), "
            "or drop --address to run on a local Ray"
        ) from None


def _probe(address: str, timeout_s: float = 5.0) -> str | None:
    """The ``HOST:PORT`` an address means, after checking that something listens there.

    Ray itself retries an unreachable head for minutes; a TCP connection with a timeout makes a
    wrong address a prompt error. ``ray://`` (Ray Client) addresses are left to Ray.
    """
    import socket

    if address.startswith("ray://"):
        return address
    resolved = address
    if address == "auto":
        try:  # RAY_ADDRESS, else the cluster `ray start` left on this machine
            from ray._private.services import canonicalize_bootstrap_address

            resolved = canonicalize_bootstrap_address(address)
        except Exception:  # noqa: BLE001  (private helper: if it moves, let ray.init decide)
            return None
        if resolved is None:
            raise ConnectionError("no cluster to join")
    host, _, port = resolved.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"'{address}' is not HOST:PORT")
    with socket.create_connection((host, int(port)), timeout=timeout_s):
        pass
    return resolved


def predict(
    inputs,
    out,
    *,
    model=None,
    address: str | None = None,
    workers: int | None = None,
    resume: bool = False,
    batch_size: int = 16,
    shard_rows: int = 1000,
    shard_seconds: float = 10.0,
    max_duration_s: float | None = None,
    min_confidence: float | None = None,
    progress: bool = False,
) -> dict:
    """Predict ``inputs`` on Ray and write the prediction table to ``out/`` as Parquet shards.

    Parameters
    ----------
    inputs
        What ``serkit predict`` takes (:func:`serkit.inputs.expand_inputs`). On a cluster, paths
        must be readable by every node (shared storage).
    out
        Output folder: ``part-rRRR-SSSSSS.parquet`` shards (the local table's columns: ``file,
        start, end, label, p_<label>..., error``) and ``_serkit_job.json``. ``pandas.read_parquet(out)``
        reads them all.
    model
        Model folder (``None``: the shipped default model); every node must be able to read it.
    address
        ``None``: a local Ray on this machine (``workers + 1`` CPUs); ``"auto"`` or ``HOST:PORT``:
        an existing cluster. An already initialised Ray (``ray.init`` in this process) is used as is.
    workers
        Actors in the pool, each with its own copy of the model and one CPU (default: the
        cluster's CPUs less one, at least 1).
    resume
        Continue the job already in ``out``: inputs whose rows are there are skipped.
    batch_size
        Clips per decoding task and per model call.
    shard_rows, shard_seconds
        A shard is written every ``shard_rows`` rows or ``shard_seconds`` seconds, whichever first
        (what a crash can cost to redo).

    Returns
    -------
    dict
        ``files, predicted, skipped, errors, wall_s, files_per_s`` (this run's files over its wall
        time), ``startup_s`` (until the first rows came back), ``steady_files_per_s`` (after that),
        ``shards, out, workers, complete`` (every input has its row).

    Raises
    ------
    ConfigError
        Ray missing (install ``serkit[ray]``), the cluster unreachable, ``out`` holding another
        job's shards, or no inputs.
    """
    from ..inference import DEFAULT_MODEL_DIR

    t_start = time.perf_counter()
    ray = require_ray()
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers} must be at least 1")
    if batch_size < 1 or shard_rows < 1:
        raise ConfigError(f"batch size {batch_size} and rows per shard {shard_rows} must be at least 1")
    clips = expand_inputs(inputs)
    if not clips:
        raise ConfigError(f"no audio files found in {' '.join(map(str, inputs))} (looked for .wav .flac .ogg .mp3)")
    model_dir = Path(model if model is not None else DEFAULT_MODEL_DIR).resolve()
    try:
        meta = json.loads((model_dir / "model.json").read_text())
    except (OSError, ValueError):
        raise ConfigError(
            f"'{model_dir}' is not a serkit model folder (no readable model.json); pass --model DIR"
        ) from None
    from ..audio import duration_limit_s
    from ..calibration import check_min_confidence

    options = {
        "max_duration_s": float(max_duration_s) if max_duration_s is not None else duration_limit_s(),
        "min_confidence": check_min_confidence(min_confidence),
    }
    out = Path(out)
    job = _job_description(clips, model_dir, options)
    _prepare_out(out, job, resume)  # refuse a wrong folder before starting Ray
    _connect(ray, address, workers)
    lock = _lock(out)  # one driver per folder; the kernel drops the lock when this process dies
    try:
        done, old_errors, run = _prepare_out(out, job, resume)  # again, now that no other driver can write
        _claim_out(out, job, run)
        return _predict_pending(
            ray,
            clips,
            done,
            old_errors,
            run,
            out,
            meta=meta,
            model_dir=model_dir,
            options=options,
            workers=workers,
            batch_size=batch_size,
            shard_rows=shard_rows,
            shard_seconds=shard_seconds,
            progress=progress,
            t_start=t_start,
        )
    finally:
        lock.close()


def _lock(out: Path):
    """An exclusive ``flock`` on ``out/.lock`` (a file object; closing it unlocks)."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    fh = open(out / ".lock", "a")  # held for the whole job
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise ConfigError(
            f"another serkit driver is writing to '{out}' now; wait for it, stop it, or write to another folder"
        ) from None
    except OSError:  # a file system without flock (some network mounts): go on unlocked
        pass
    return fh


def _predict_pending(
    ray,
    clips,
    done,
    old_errors,
    run,
    out,
    *,
    meta,
    model_dir,
    options,
    workers,
    batch_size,
    shard_rows,
    shard_seconds,
    progress,
    t_start,
) -> dict:
    from ..audio import MIN_DURATION_S

    pending = [i for i in range(len(clips)) if i not in done]
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 2)) - 1)
    labels = list(meta["labels"])
    columns = ["file", "start", "end", "label", *(f"p_{l}" for l in labels), "error"]
    reader_fields = {
        "sampling_rate": int(meta["sampling_rate"]),
        "min_duration": MIN_DURATION_S,
        "max_duration_s": options["max_duration_s"],
        "long_file_s": 60.0,  # Recognizer's default, as the local engine
    }
    writer = _ShardWriter(out, run, columns)
    if pending:
        _run(
            ray,
            clips,
            pending,
            writer,
            model_dir=model_dir,
            options=options,
            reader_fields=reader_fields,
            workers=workers,
            batch_size=batch_size,
            shard_rows=shard_rows,
            shard_seconds=shard_seconds,
            progress=progress,
        )
    t_end = time.perf_counter()
    wall = t_end - t_start
    total_done = len(done) + writer.n_rows
    steady = None  # files/s once the first rows are back (start-up excluded): what a long job runs at
    if writer.t_first is not None and writer.n_rows > writer.n_first and t_end > writer.t_first:
        steady = round((writer.n_rows - writer.n_first) / (t_end - writer.t_first), 3)
    return {
        "engine": "ray",
        "files": len(clips),
        "predicted": writer.n_rows,
        "skipped": len(done),
        "errors": old_errors + writer.n_errors,
        "errors_this_run": writer.n_errors,
        "wall_s": round(wall, 3),
        "files_per_s": round(writer.n_rows / wall, 3) if wall > 0 else None,
        "startup_s": round(writer.t_first - t_start, 3) if writer.t_first is not None else None,
        "steady_files_per_s": steady,
        "shards": len(_shards(out)),
        "out": str(out),
        "workers": workers,
        "complete": total_done == len(clips),
    }


def _run(
    ray,
    clips,
    pending,
    writer,
    *,
    model_dir,
    options,
    reader_fields,
    workers,
    batch_size,
    shard_rows,
    shard_seconds,
    progress,
) -> None:
    import pyarrow as pa
    from tqdm.auto import tqdm

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours counts files, with their rate and an ETA
    ctx.execution_options.preserve_order = False
    # small jobs: batches small enough that every worker gets some (4 batches per worker)
    batch_size = max(1, min(batch_size, math.ceil(len(pending) / (4 * workers))))
    # the listing as blocks of whole batches (at most ~2000 blocks however long the listing)
    rows_per_block = max(batch_size, math.ceil(len(pending) / 2000 / batch_size) * batch_size)

    def nan(v):
        return math.nan if v is None else float(v)

    blocks = []
    for a in range(0, len(pending), rows_per_block):
        numbers = pending[a : a + rows_per_block]
        part = [clips[i] for i in numbers]
        blocks.append(
            pa.table(
                {
                    "idx": pa.array(numbers, pa.int64()),
                    "path": pa.array([c.path for c in part], pa.string()),
                    "start": pa.array([nan(c.start) for c in part], pa.float64()),
                    "end": pa.array([nan(c.end) for c in part], pa.float64()),
                    "error": pa.array([c.error for c in part], pa.string()),
                }
            )
        )
    bar = tqdm(total=len(pending), desc="predict (ray)", unit="file", disable=not progress, leave=False)
    held, n_held, last = [], 0, time.monotonic()
    t_first = None  # when the first rows came back: start-up (workers, model loads) is before it
    seen: set[int] = set()
    with _ray_quiet():
        ds = ray.data.from_arrow(blocks)
        ds = ds.map_batches(
            _decode_batch,
            fn_kwargs={"reader_fields": reader_fields},
            batch_size=batch_size,
            batch_format="pandas",
            num_cpus=0,  # decoding is light next to the model; the pool's actors hold the cores
            compute=ray.data.TaskPoolStrategy(size=2 * workers),
            max_retries=ACTOR_RESTARTS,
        )
        ds = ds.map_batches(
            _Predictor,
            fn_constructor_kwargs={"model_dir": str(model_dir), "options": options},
            batch_size=batch_size,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=2),
            num_cpus=1,
            # Ray's actor fault tolerance, stated rather than left to the defaults (-1: forever)
            max_restarts=ACTOR_RESTARTS,
            max_task_retries=ACTOR_RESTARTS,
        )
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="pandas", prefetch_batches=1):
                batch = batch[~batch["idx"].isin(seen)]  # a retried batch's rows are written once
                seen.update(int(i) for i in batch["idx"])
                if len(batch):
                    if t_first is None:
                        t_first, n_first = time.perf_counter(), len(batch)
                    held.append(batch)
                    n_held += len(batch)
                    bar.update(len(batch))
                if held and (n_held >= shard_rows or time.monotonic() - last >= shard_seconds):
                    writer.write(held)
                    held, n_held, last = [], 0, time.monotonic()
            if held:
                writer.write(held)
        finally:
            bar.close()
    if t_first is not None:
        writer.t_first, writer.n_first = t_first, n_first


@contextlib.contextmanager
def _ray_quiet():
    """Ray Data's start-up notes and advice (progress bars off, block counts, the per-argument
    ``ray_remote_args`` deprecation of 2.60) are not the user's business; its errors still show."""
    import logging
    import warnings

    log = logging.getLogger("ray.data")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        log.setLevel(level)


def _extract_task(extractor, items: list) -> list:
    """Ray task: one chunk of feature extraction (features or an error message per item)."""
    _single_threaded()
    from ..features.base import extract_chunk

    return extract_chunk(extractor, items)


def ray_extraction(address: str | None = None, workers: int | None = None):
    """A context manager: within it, the feature-cache step (:func:`serkit.features.extract`) runs as Ray tasks.

    Each task extracts a chunk of 16 clips on one CPU (``max_retries`` :data:`ACTOR_RESTARTS`) and
    returns the features; the driver writes them to its content-addressed cache as the local pool
    would, so a second run on one machine reuses them. At most ``4 × CPUs`` chunks are in flight.
    ``serkit train|evaluate --engine ray``.
    """
    from ..features.base import extraction_engine

    ray = require_ray()
    _connect(ray, address, workers)
    task = ray.remote(num_cpus=1, max_retries=ACTOR_RESTARTS)(_extract_task)
    limit = 4 * max(1, workers or int(ray.cluster_resources().get("CPU", 1)))

    def run(extractor, chunks):
        ref = ray.put(extractor)  # shipped once, not once per chunk
        todo = list(enumerate(chunks))
        running: dict = {}
        while todo or running:
            while todo and len(running) < limit:
                k, chunk = todo.pop(0)
                running[task.remote(ref, chunk)] = k
            ready, _ = ray.wait(list(running), num_returns=1)
            for r in ready:
                yield running.pop(r), ray.get(r)

    return extraction_engine(run)
