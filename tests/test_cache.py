"""The feature cache: a damaged entry is recomputed, never unpickled, never a traceback."""

from __future__ import annotations

import pickle

import numpy as np

from serkit.cache import FeatureCache


def test_damaged_entries_read_as_missing(tmp_path):
    cache = FeatureCache("x", {"a": 1}, root=tmp_path)
    cache.put("abcd", np.arange(3.0))
    assert cache.get("abcd").tolist() == [0.0, 1.0, 2.0]
    path = cache._path("abcd")
    import io

    npz = io.BytesIO()
    np.savez(npz, a=np.arange(2))
    for content in (b"", b"\x93NUMPY", pickle.dumps(np.arange(3.0)), b"PK\x03\x04garbage", npz.getvalue()):
        path.write_bytes(content)
        assert cache.get("abcd") is None
    assert cache.get("none") is None


def test_atomic_writes_get_the_permissions_of_plain_writes(tmp_path):
    """mkstemp/mkdtemp make owner-only files (0600) and folders (0700); a report, cache entry or
    model folder written atomically gets what open()/mkdir() would give it under the umask."""
    import os
    import stat

    from serkit import cache
    from serkit.artifact import replace_directory
    from serkit.cache import atomic_write_text

    old = os.umask(0o022)
    try:
        cache._umask.cache_clear()
        atomic_write_text(tmp_path / "report.json", "{}")
        (tmp_path / "plain.json").write_text("{}")
        replace_directory(tmp_path / "model", lambda d: (d / "model.json").write_text("{}"))
        (tmp_path / "plain-dir").mkdir()
        mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
        assert mode(tmp_path / "report.json") == mode(tmp_path / "plain.json") == 0o644
        assert mode(tmp_path / "model") == mode(tmp_path / "plain-dir") == 0o755
    finally:
        os.umask(old)
        cache._umask.cache_clear()
