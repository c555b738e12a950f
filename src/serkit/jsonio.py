"""One JSON encoder for everything serkit writes (``model.json``, ``report.json``, exports).

numpy scalars and arrays become numbers and lists, paths strings, sets and tuples lists; anything
else is refused, so a value that cannot be read back never ends up in a file silently.
"""

from __future__ import annotations

import json
from pathlib import PurePath

__all__ = ["json_default", "dumps"]


def json_default(obj):
    """``default=`` hook of :func:`json.dumps` for the types serkit stores.

    >>> import numpy as np
    >>> json.dumps({"n": np.int64(3), "x": np.arange(2.0)}, default=json_default)
    '{"n": 3, "x": [0.0, 1.0]}'
    """
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(
        f"cannot store a {type(obj).__name__} in JSON ({obj!r:.80}); convert it to a number, string or list"
    )


def dumps(obj, *, indent: int | None = 2, **kwargs) -> str:
    """:func:`json.dumps` with :func:`json_default` (UTF-8 text kept as it is)."""
    kwargs.setdefault("ensure_ascii", False)
    return json.dumps(obj, indent=indent, default=json_default, **kwargs)
