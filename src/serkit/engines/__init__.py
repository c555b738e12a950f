"""Engines that run serkit's batch work somewhere other than this process.

The local engine (a process pool: :mod:`serkit.runtime`, :mod:`serkit.features.base`) stays the
default; :mod:`serkit.engines.ray_engine` runs ``serkit predict`` on a Ray cluster with Ray Data.
Nothing here imports Ray at import time: ``serkit`` works without it.
"""

__all__: list[str] = []
