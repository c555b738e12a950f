"""Voice-activity benchmark: frame-level precision / recall / F1 of the ``energy`` and ``silero`` gates.

Test recordings are built from real corpus speech: each of ``--recordings`` recordings (seeded)
is ``--utterances`` EmoDB and TESS clips (half each, drawn at random, resampled to 16 kHz)
separated by silences of uniform random length in 0.3-3 s (also before the first and after the
last), with a white floor at -80 dBFS under everything.

- **Ground truth** comes from the clean speech alone: a 10 ms frame of an utterance is speech when
  its level is at most 35 dB below that utterance's loudest frame, and non-speech gaps shorter
  than 100 ms between speech frames (stop closures, inside words) count as speech; the silences
  between utterances are non-speech.
- **Noise** (all shippable: generated or made from the corpora): white, pink (1/f), brown (1/f^2)
  and babble (six other EmoDB/TESS utterances summed, looped to the recording's length). It is
  scaled so that the *active-speech* SNR (mean-square over the ground-truth speech frames against
  the noise's mean square) is 0, 5 or 10 dB. ``clean`` is the speech with its floor only.
- **Gates**: :func:`serkit.segmentation.frame_activity` on each whole recording, exactly what
  ``--vad energy|silero`` computes (energy threshold ``max(-50 dBFS, p95 - 35 dB)``; silero
  p >= 0.5 in, < 0.35 out). Counts are pooled over all recordings of a condition (micro P/R/F1).
- **Speed**: seconds of audio per second of compute of each gate on one thread (onnxruntime's
  session has one intra-op thread; numpy's energy is single-threaded), the model load excluded.

    python benchmarks/vad.py                          # ${SERKIT_DATA:-/work/shared/data}
    python benchmarks/vad.py --recordings 10 --json   # smaller, machine-readable

The table rows are gate x condition; ``noise @ S dB`` pools the four noise types at S dB.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from serkit.segmentation import GATES, VAD_FRAME, frame_activity
from serkit.training.augment import pink_noise, white_noise

RATE = 16000
FRAME_N = int(RATE * VAD_FRAME)  # 160 samples
SNRS = (10, 5, 0)
NOISES = ("white", "pink", "brown", "babble")


def brown_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """[shape=(n,), float32] brown (1/f^2 power) noise of unit variance, shaped in the frequency domain."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / f, n)
    x -= x.mean()
    return (x / x.std()).astype(np.float32)


def corpus_files(data: Path) -> dict[str, list[Path]]:
    out = {
        "emodb": sorted((data / "emodb").rglob("*.wav")),
        "tess": sorted(p for p in (data / "tess").rglob("*") if p.suffix in (".wav", ".flac")),
    }
    for name, files in out.items():
        if not files:
            sys.exit(f"no {name} files under {data}; set SERKIT_DATA")
    return out


def truth_frames(x: np.ndarray) -> np.ndarray:
    """Speech frames of one clean utterance (see the module docstring)."""
    n = len(x) // FRAME_N
    level = 10 * np.log10(
        np.maximum(np.mean(np.square(x[: n * FRAME_N].reshape(n, FRAME_N), dtype=np.float64), 1), 1e-12)
    )
    speech = level >= level.max() - 35.0
    idx = np.flatnonzero(speech)
    for a, b in zip(idx[:-1], idx[1:]):
        if 1 < b - a <= 10:  # a gap of at most 9 frames (< 100 ms)
            speech[a:b] = True
    return speech


def build(files: dict[str, list[Path]], n_utt: int, rng: np.random.Generator):
    """One recording: (speech [samples], truth [frames], babble [samples])."""
    from serkit.audio import read

    pool = [(c, f) for c in files for f in files[c]]
    picks = [files["emodb"][i] for i in rng.choice(len(files["emodb"]), n_utt // 2, replace=False)]
    picks += [files["tess"][i] for i in rng.choice(len(files["tess"]), n_utt - n_utt // 2, replace=False)]
    rng.shuffle(picks)
    parts, truth = [], []

    def gap():
        k = int(rng.uniform(0.3, 3.0) / VAD_FRAME)
        parts.append(np.zeros(k * FRAME_N, np.float32))
        truth.append(np.zeros(k, bool))

    gap()
    for f in picks:
        x, _ = read(f, RATE)
        x = x[: len(x) // FRAME_N * FRAME_N].astype(np.float32)
        parts.append(x)
        truth.append(truth_frames(x))
        gap()
    speech = np.concatenate(parts)
    speech += 10 ** (-80 / 20) * white_noise(len(speech), rng)
    babble = np.zeros(len(speech), np.float64)
    used = set(map(str, picks))
    others = [f for _, f in pool if str(f) not in used]
    for i in rng.choice(len(others), 6, replace=False):
        y, _ = read(others[i], RATE)
        y = y / (np.sqrt(np.mean(np.square(y, dtype=np.float64))) + 1e-12)
        babble += np.resize(np.roll(y, int(rng.integers(len(y)))), len(speech))
    return speech, np.concatenate(truth), babble.astype(np.float32)


def mix(speech: np.ndarray, truth: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    active = np.repeat(truth, FRAME_N)
    p_speech = float(np.mean(np.square(speech[active], dtype=np.float64)))
    p_noise = float(np.mean(np.square(noise, dtype=np.float64)))
    y = speech + noise * np.sqrt(p_speech / p_noise / 10 ** (snr / 10))
    peak = float(np.max(np.abs(y)))
    return (y / peak * 0.9 if peak > 0.9 else y).astype(np.float32)  # same scale for both: SNR kept


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("SERKIT_DATA", "/work/shared/data"))
    ap.add_argument("--recordings", type=int, default=20)
    ap.add_argument("--utterances", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    files = corpus_files(Path(args.data))
    frame_activity(np.zeros(RATE, np.float32), RATE, "silero")  # load the model outside the timing
    counts: dict[tuple[str, str], np.ndarray] = {}
    seconds = dict.fromkeys(GATES, 0.0)
    audio_s = 0.0
    for _ in range(args.recordings):
        speech, truth, babble = build(files, args.utterances, rng)
        n = len(truth)
        noises = {
            "white": white_noise(len(speech), rng),
            "pink": pink_noise(len(speech), rng),
            "brown": brown_noise(len(speech), rng),
            "babble": babble,
        }
        conditions = [("clean", "clean", speech)]
        conditions += [
            (f"{k} {s} dB", f"noise @ {s} dB", mix(speech, truth, noises[k], s)) for s in SNRS for k in NOISES
        ]
        for name, pooled, y in conditions:
            audio_s += len(y) / RATE
            for gate in GATES:
                t = time.perf_counter()
                _, pred = frame_activity(y, RATE, gate)
                seconds[gate] += time.perf_counter() - t
                pred = np.r_[pred[:n], np.zeros(max(0, n - len(pred)), bool)]
                c = np.array([(pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()])
                for key in {name, pooled}:
                    counts[(gate, key)] = counts.get((gate, key), 0) + c
    names = ["clean"] + [f"{k} {s} dB" for s in SNRS for k in NOISES] + [f"noise @ {s} dB" for s in SNRS]
    rows = []
    for name in names:
        for gate in GATES:
            p, r, f = prf(*counts[(gate, name)])
            rows.append({"condition": name, "gate": gate, "precision": p, "recall": r, "f1": f})
    speed = {g: audio_s / max(seconds[g], 1e-9) for g in GATES}
    if args.json:
        print(json.dumps({"rows": rows, "x_realtime": speed, "audio_s_per_gate": audio_s}, indent=1))
        return 0
    print(
        f"{args.recordings} recordings x {args.utterances} utterances, seed {args.seed}; {audio_s / 60:.1f} min of audio per gate"
    )
    print(f"{'condition':<16} " + "  ".join(f"{g + ' P':>9} {'R':>5} {'F1':>5}" for g in GATES))
    for name in names:
        cells = []
        for gate in GATES:
            r = next(x for x in rows if x["condition"] == name and x["gate"] == gate)
            cells.append(f"{r['precision']:9.3f} {r['recall']:5.3f} {r['f1']:5.3f}")
        print(f"{name:<16} " + "  ".join(cells))
    print("speed (one thread): " + ", ".join(f"{g} {speed[g]:.0f}x real time" for g in GATES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
