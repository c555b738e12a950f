"""``serkit train --engine ray --nproc N``: the data-parallel fit of a network family as Ray Train workers.

The per-rank function is the one ``serkit train --nproc N`` spawns on one machine
(:func:`serkit.api._train_rank` over :mod:`serkit.training.distributed`); here Ray Train's
``TorchTrainer`` starts ``N`` workers (one CPU each, or one GPU each when the cluster has GPUs), sets
up their process group (gloo, or NCCL on GPUs) and runs it. Rank 0 saves the model folder into a
temporary folder and reports it as the run's checkpoint; the driver copies it into ``out``
atomically. On a cluster every node must read the corpora at the same paths, and the checkpoint
goes through Ray's ``storage_path`` (``$SERKIT_RAY_STORAGE``, default a temporary folder on the
driver: on several nodes it must be storage every node reaches, e.g. NFS or ``s3://``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError, SerkitError
from .ray_engine import _connect, require_ray

__all__ = ["train_data_parallel"]


def train_data_parallel(nproc: int, fn: Callable, args: tuple, *, out, address: str | None = None) -> Path:
    """Run ``fn(model_dir, *args)`` on ``nproc`` Ray Train workers and put rank 0's ``model_dir`` at ``out``.

    ``address``: ``None`` for a local Ray on this machine (``nproc`` CPUs), else ``"auto"`` or the
    cluster's ``HOST:PORT``. Returns ``out``.
    """
    from ..artifact import replace_directory

    ray = require_ray()
    try:
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError as exc:  # pragma: no cover - ray without its train module
        raise ConfigError(f"Ray Train is not installed ({exc}); pip install 'serkit[ray]'") from None
    from ..training.distributed import timeout_s

    _connect(ray, address, nproc)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 0))
    use_gpu = gpus >= nproc
    if not use_gpu and cpus < nproc:
        raise ConfigError(
            f"--nproc {nproc} Ray Train workers need {nproc} CPUs but the cluster has {cpus}; use --nproc {max(1, cpus)}"
        )
    storage = os.environ.get("SERKIT_RAY_STORAGE") or tempfile.mkdtemp(prefix="serkit-ray-train-")
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"fn": fn, "args": args, "threads": 1},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo", timeout_s=int(timeout_s())),
        scaling_config=ScalingConfig(num_workers=nproc, use_gpu=use_gpu, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(storage_path=storage, name="serkit-train", failure_config=FailureConfig(max_failures=0)),
    )
    try:
        result = trainer.fit()
    except Exception as exc:  # Ray's TrainingFailedError wraps the worker's exception
        raise _worker_error(exc) from None
    if result.error is not None:
        raise _worker_error(result.error)
    if result.checkpoint is None:
        raise SerkitError("the Ray Train run ended without rank 0's model; see the workers' output above")
    try:
        with result.checkpoint.as_directory() as d:
            return replace_directory(out, lambda tmp: shutil.copytree(d, tmp, dirs_exist_ok=True))
    finally:
        if not os.environ.get("SERKIT_RAY_STORAGE"):
            shutil.rmtree(storage, ignore_errors=True)


def _worker(config: dict) -> None:
    """One Ray Train worker: the per-rank fit, rank 0's model folder reported as the checkpoint."""
    import ray.train

    os.environ["SERKIT_THREADS"] = str(config["threads"])  # one CPU per worker
    rank = ray.train.get_context().get_world_rank()
    with tempfile.TemporaryDirectory(prefix="serkit-rank-") as tmp:
        model_dir = Path(tmp) / "model"
        config["fn"](str(model_dir), *config["args"])
        checkpoint = ray.train.Checkpoint.from_directory(str(model_dir)) if rank == 0 else None
        ray.train.report({"rank": rank}, checkpoint=checkpoint)  # a barrier: every rank reports once


def _worker_error(exc: BaseException) -> SerkitError:
    """A serkit error raised in a worker keeps its class and message; anything else is named."""
    seen = exc
    for _ in range(8):  # the worker's own exception sits a few causes down
        if isinstance(seen, SerkitError):
            return type(seen)(str(seen))
        nxt = getattr(seen, "__cause__", None) or getattr(seen, "cause", None)
        errors = getattr(seen, "worker_failures", None) or {}
        if nxt is None and errors:
            nxt = next(iter(errors.values()))
        if nxt is None:
            break
        seen = nxt
    text = str(seen).strip().splitlines()
    return SerkitError(f"the Ray Train run failed: {type(seen).__name__}: {text[-1] if text else ''}")
