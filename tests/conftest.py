"""Shared fixtures: tiny synthetic audio for unit tests, the real corpora for integration tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

DATA = Path(os.environ.get("SERKIT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")).resolve()


def data_dir(name: str) -> Path:
    """A corpus folder under ``$SERKIT_DATA``; skips the test when it is absent."""
    p = DATA / name
    if not p.exists():
        pytest.skip(f"corpus {name} not found under {DATA} (set SERKIT_DATA)")
    return p


@pytest.fixture
def emodb_dir() -> Path:
    return data_dir("emodb")


@pytest.fixture
def tess_dir() -> Path:
    return data_dir("tess")


@pytest.fixture
def ravdess_dir() -> Path:
    return data_dir("ravdess-sample")


def tone(freq=220.0, seconds=1.0, sr=16000, amp=0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
