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
