"""Data-parallel training: the process group the trainer sees, its shards and collectives, the local launcher.

:class:`serkit.training.Trainer` asks :func:`world` once per fit. Without an initialised
``torch.distributed`` process group (or with one process) it trains exactly as before. Inside
one — started by :func:`launch` (``serkit train --nproc N`` on one machine) or by Ray Train
(:mod:`serkit.engines.ray_train`) — every rank runs the same fit on the same data and:

* draws the same epoch order and the same crops (one seed-derived generator on every rank), cuts
  every batch into ``N`` contiguous shards (:func:`shard`) and trains on its own one, so every
  rank takes the same number of steps and the global batch is the one-process batch;
* scales its loss by ``N × shard / batch`` before DistributedDataParallel averages the gradients,
  so for a mean loss the averaged gradient is the one-process gradient of the whole batch (tested
  to 1e-6; with class-weighted losses the weights' normaliser is per shard, a small difference);
* computes speaker statistics, validation and the frozen-prefix cache on its shard of the
  utterances and all-gathers the rows (:func:`gather`), so early stopping sees identical numbers
  and stops at the same epoch everywhere;
* averages the batch norms' running statistics over ranks after each epoch
  (:func:`average_batchnorm`); within a step each rank normalises by its own shard's statistics
  (no SyncBatchNorm: it has no CPU implementation);
* leaves saving to rank 0 (the caller's job: :func:`serkit.api.train`).

:func:`launch` spawns ``N`` processes on this machine (gloo on CPU, NCCL on GPUs, one GPU per rank),
each with ``cores // N`` torch threads; a rank that fails takes the others down (their collectives
time out after :data:`TIMEOUT_S` at worst), and its serkit error is re-raised in the parent.
"""

from __future__ import annotations

import datetime
import json
import os
import pickle
import socket
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .. import errors
from ..errors import ConfigError, SerkitError

__all__ = [
    "World",
    "world",
    "backend",
    "shard",
    "gather",
    "all_sum",
    "scale_loss",
    "average_batchnorm",
    "launch",
    "TIMEOUT_S",
]

#: Seconds a collective waits for the other ranks before it fails (``$SERKIT_DDP_TIMEOUT_S``); a
#: hung rank costs at most this, a crashed one nothing (its death ends the others at once).
TIMEOUT_S = 600.0


@dataclass(frozen=True)
class World:
    """This process's place in the process group (``rank 0 of 1`` without one)."""

    rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """The initialised ``torch.distributed`` process group's rank and size, or ``World(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def backend() -> str:
    """``"nccl"`` when CUDA is available, else ``"gloo"``."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def timeout_s() -> float:
    env = os.environ.get("SERKIT_DDP_TIMEOUT_S")
    if not env:
        return TIMEOUT_S
    try:
        return max(1.0, float(env))
    except ValueError:
        raise ConfigError(f"$SERKIT_DDP_TIMEOUT_S={env!r} is not a number of seconds; e.g. 600") from None


def shard(n: int, rank: int, size: int) -> np.ndarray:
    """Positions ``0..n-1`` of rank ``rank``'s contiguous shard (sizes differ by at most one).

    >>> [shard(5, r, 2).tolist() for r in range(2)]
    [[0, 1, 2], [3, 4]]
    """
    return np.array_split(np.arange(n), size)[rank]


def gather(fn: Callable[[np.ndarray], object], idx: np.ndarray, w: World):
    """``fn(idx)`` computed shard by shard across the ranks and put back together, on every rank.

    ``fn`` maps an index array to rows: a tensor, an array (concatenated on axis 0) or a list. With
    one process, or fewer indices than ranks, ``fn(idx)`` is computed here in full.
    """
    idx = np.asarray(idx)
    if not w.distributed or len(idx) < w.size:
        return fn(idx)
    part = fn(idx[shard(len(idx), w.rank, w.size)])
    parts: list = [None] * w.size
    dist.all_gather_object(parts, part)
    if isinstance(part, torch.Tensor):
        return torch.cat([p.to(part.device) for p in parts])
    if isinstance(part, np.ndarray):
        return np.concatenate(parts)
    return [x for p in parts for x in p]


def all_sum(values: Sequence[float], w: World) -> list[float]:
    """The sum over ranks of a few numbers (float64)."""
    if not w.distributed:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return t.cpu().tolist()


def scale_loss(loss: torch.Tensor, n_here: int, n_batch: int, w: World) -> torch.Tensor:
    """This rank's mean loss weighted by its share of the batch: DDP's gradient average then is the
    gradient of the whole batch's mean loss. With one process, ``loss`` itself."""
    if not w.distributed:
        return loss
    return loss * (w.size * n_here / n_batch)


def average_batchnorm(net: nn.Module, w: World) -> None:
    """Set every batch norm's running mean and variance to their mean over the ranks."""
    if not w.distributed:
        return
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            for buf in (m.running_mean, m.running_var):
                t = buf.detach().to(_collective_device(), torch.float64)
                dist.all_reduce(t)
                buf.copy_((t / w.size).to(buf.device, buf.dtype))


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


class StepModule(nn.Module):
    """What DistributedDataParallel wraps: ``forward(fn)`` returns ``fn(net)``.

    The trainer runs a network through several entry points (``forward_from``, ``pooled_from`` +
    ``from_pooled``); passing the step as a function keeps one DDP forward per backward.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, fn):
        return fn(self.net)


def wrap(net: nn.Module, device: torch.device):
    """``net`` in DistributedDataParallel (its parameters that need gradients, as they are now)."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    ids = [device] if device.type == "cuda" else None
    # no buffer broadcast before every forward: running statistics are averaged after each epoch
    # instead (average_batchnorm); the buffers are equal at the start anyway (same seed, same data)
    newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    sync = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
    return DistributedDataParallel(StepModule(net), device_ids=ids, **sync)


# -- the local launcher ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def threads_per_rank(nproc: int) -> int:
    from ..runtime import cpu_count

    return max(1, cpu_count() // nproc)


def launch(nproc: int, fn: Callable, args: tuple = (), *, timeout: float | None = None):
    """Run ``fn(*args)`` in ``nproc`` new processes forming one process group; return rank 0's result.

    Each process gets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` (127.0.0.1) and a free
    ``MASTER_PORT``, ``$SERKIT_THREADS`` = cores // ``nproc`` (unless set), its GPU when there are
    ``nproc`` of them, and a process group (:func:`backend`) whose collectives time out after
    ``timeout`` seconds (default :data:`TIMEOUT_S`). ``fn`` and ``args`` must be picklable (a
    module-level function). When a rank fails, the others are stopped and its error is raised
    here: the same serkit error class with its message, or a :class:`serkit.errors.SerkitError`
    naming the rank and the exception.
    """
    import torch.multiprocessing as mp

    nproc = int(nproc)
    if nproc < 1:
        raise ConfigError(f"--nproc {nproc} must be at least 1")
    if torch.cuda.is_available() and torch.cuda.device_count() < nproc:
        raise ConfigError(
            f"--nproc {nproc} asks for one GPU per process but {torch.cuda.device_count()} are visible; "
            f"use --nproc {torch.cuda.device_count()} or hide the GPUs (CUDA_VISIBLE_DEVICES='') to train on CPU"
        )
    timeout = timeout_s() if timeout is None else float(timeout)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="serkit-ddp-") as tmp:
        try:
            mp.start_processes(
                _rank_main,
                args=(nproc, port, timeout, fn, args, tmp),
                nprocs=nproc,
                join=True,
                start_method="spawn",
            )
        except mp.ProcessRaisedException as exc:
            raise _rank_error(Path(tmp), nproc, exc) from None
        except mp.ProcessExitedException as exc:
            raise _rank_error(Path(tmp), nproc, exc) from None
        with open(Path(tmp) / "result.pkl", "rb") as fh:
            return pickle.load(fh)


def _rank_main(rank: int, nproc: int, port: int, timeout: float, fn: Callable, args: tuple, tmp: str) -> None:
    """One spawned rank: environment, process group, ``fn``, its result or error on disk."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    os.environ.setdefault("SERKIT_THREADS", str(threads_per_rank(nproc)))
    if torch.cuda.is_available():
        torch.cuda.set_device(rank)
    try:
        dist.init_process_group(backend(), rank=rank, world_size=nproc, timeout=datetime.timedelta(seconds=timeout))
        result = fn(*args)
        if rank == 0:
            with open(Path(tmp) / "result.pkl", "wb") as fh:
                pickle.dump(result, fh)
        dist.barrier()  # leave together: a rank whose peers' sockets close under it can abort in gloo
    except BaseException as exc:
        record = {
            "rank": rank,
            "type": type(exc).__name__,
            "serkit": isinstance(exc, SerkitError),
            "message": str(exc),
            "traceback": traceback.format_exc(),
        }
        (Path(tmp) / f"error-{rank}.json").write_text(json.dumps(record))
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _rank_error(tmp: Path, nproc: int, exc: Exception) -> SerkitError:
    """The first failed rank's error (a serkit error keeps its class and message)."""
    records = []
    for r in range(nproc):
        p = tmp / f"error-{r}.json"
        if p.exists():
            records.append(json.loads(p.read_text()))
    # the rank that failed first is the one whose error is not a collective's complaint about the others
    records.sort(key=lambda d: (not d["serkit"], "gloo" in d["message"].lower() or "nccl" in d["message"], d["rank"]))
    if not records:
        return SerkitError(f"a training process died without an error message ({exc}); see its output above")
    d = records[0]
    cls = getattr(errors, d["type"], None) if d["serkit"] else None
    if isinstance(cls, type) and issubclass(cls, SerkitError):
        return cls(d["message"])
    last = d["traceback"].strip().splitlines()[-1] if d["traceback"] else d["message"]
    return SerkitError(f"training process {d['rank']} of {nproc} failed: {d['type']}: {d['message'] or last}")
