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


@pytest.fixture(scope="session")
def small_manifest(tmp_path_factory) -> Path:
    """A CSV manifest of 36 real EmoDB clips: speakers 03, 10, 11 x angry/sad/neutral x 4 takes."""
    import csv

    emodb = data_dir("emodb") / "wav"
    root = tmp_path_factory.mktemp("manifest")
    rows, counts = [], {}
    letters = {"W": "angry", "T": "sad", "N": "neutral"}
    for f in sorted(emodb.glob("*.wav")):
        spk, label = f.name[:2], letters.get(f.name[5])
        if spk in ("03", "10", "11") and label and counts.get((spk, label), 0) < 4:
            counts[(spk, label)] = counts.get((spk, label), 0) + 1
            rows.append({"path": str(f), "label": label, "speaker": spk})
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "speaker"])
        w.writeheader()
        w.writerows(rows)
    return root / "manifest.csv"


@pytest.fixture(scope="session")
def small_model_dir(small_manifest, tmp_path_factory) -> Path:
    """An egemaps-svm model trained through the CLI on :func:`small_manifest` (once per session)."""
    from serkit.cli import main

    out = tmp_path_factory.mktemp("model") / "egemaps"
    code = main(["train", "--corpus", f"manifest:{small_manifest}", "--recipe", "egemaps-svm", "--out", str(out), "-q"])
    if code != 0:
        raise RuntimeError(f"training the test model failed with exit code {code}")
    return out
