"""On-disk cache of per-file results (features, embeddings) keyed by file content and extractor config.

The cache lives in ``$SERKIT_CACHE`` (default ``~/.cache/serkit``). Entries are ``.npy`` files
written atomically, so a crash or a parallel worker never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "cache_dir",
    "file_digest",
    "config_digest",
    "FeatureCache",
    "atomic_write_bytes",
    "atomic_write_text",
    "plain_permissions",
]


def cache_dir() -> Path:
    """The user cache directory (``$SERKIT_CACHE`` or ``~/.cache/serkit``), created on demand."""
    root = os.environ.get("SERKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "serkit")
    p = Path(root)
    p.mkdir(parents=True, exist_ok=True)
    return p


@lru_cache(maxsize=65536)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path) -> str:
    """Content hash of a file (memoised per path, size and mtime within a process)."""
    st = os.stat(path)
    return _digest(os.path.abspath(path), st.st_size, st.st_mtime_ns)


def config_digest(config: dict) -> str:
    """Stable hash of a JSON-able configuration."""
    return hashlib.blake2b(json.dumps(config, sort_keys=True, default=str).encode(), digest_size=8).hexdigest()


@lru_cache(maxsize=1)
def _umask() -> int:
    # the umask can only be read by setting it; read once, restored at once
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def plain_permissions(path, *, directory: bool = False) -> None:
    """Give a file or folder made by ``tempfile`` (owner-only: 0600 / 0700) the permissions a plain
    ``open()`` or ``mkdir()`` would have given it under the process umask (usually 0644 / 0755),
    so a model, report or cache entry written atomically is as readable as any other file."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename (the file gets the
    permissions a plain write would give it, not the temporary file's owner-only ones)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        plain_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class FeatureCache:
    """Cache of arrays for one extractor configuration: ``get(key)`` / ``put(key, array)``."""

    def __init__(self, namespace: str, config: dict, root: Path | None = None):
        self.dir = (root or cache_dir()) / "features" / f"{namespace}-{config_digest(config)}"

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        p = self._path(key)
        try:
            value = np.load(p, allow_pickle=False)
        except FileNotFoundError:
            return None
        except Exception:  # damaged, empty or foreign entry (ValueError, EOFError, BadZipFile): recompute
            return None
        if not isinstance(value, np.ndarray):  # an .npz archive under an .npy name
            value.close()
            return None
        return value

    def put(self, key: str, value: np.ndarray) -> None:
        import io

        buf = io.BytesIO()
        np.save(buf, np.asarray(value), allow_pickle=False)
        atomic_write_bytes(self._path(key), buf.getvalue())
