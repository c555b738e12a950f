"""The HTTP service and its web page (``serkit serve``); needs ``pip install 'serkit[serve]'``."""

from __future__ import annotations

__all__ = ["create_app", "Settings", "serve"]


def __getattr__(name):
    # FastAPI is an optional dependency: import it only when the service is actually used
    if name in __all__:
        from . import app, server, settings

        return getattr({"create_app": app, "Settings": settings, "serve": server}[name], name)
    raise AttributeError(name)
