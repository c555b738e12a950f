"""Speed benchmark: how many seconds of audio per second of wall time each model embeds on this CPU.

Every row decodes its files (soundfile; resampling where the model's rate differs), cuts or pads
them to the clip length, and runs the model in batches; the feature cache is not used. Numbers are
the median over repeats after one warm-up pass; peak memory is the process' maximum resident set
(cumulative over the rows run so far: use ``--only`` to measure one row in its own process).
Classifier rows also report their weights' size on disk and the latency of one 1-second window on
one CPU thread (median and p95 over 300 calls; audio array in, probabilities out).

    python benchmarks/speed.py                      # EmoDB under ${SERKIT_DATA:-../shared/data}
    python benchmarks/speed.py --files 128 --repeats 5 --threads 2 --json
    python benchmarks/speed.py --only classifier    # the fine-tuned SoundNet: torch, ONNX fp32, ONNX int8
    python benchmarks/speed.py --only default --repeats 1   # the shipped default model on all 2 800 TESS files

Add a model by appending a row function to ``ROWS``: it takes the :class:`Setup` and returns a
list of ``(label, batch_size, run)`` where ``run(paths)`` processes those files once and returns
the seconds of audio it processed; an optional fourth item ``{"size_mb": ..., "latency": make}``
adds the model size and the latency of ``make()``'s function (one call = one inference).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TARGET_X_REALTIME = 150.0


@dataclass
class Setup:
    files: list[str]
    clip: float  # seconds; 0 = whole files
    threads: int
    only: tuple = ()  # run only rows whose label contains one of these (case-insensitive)
    tess: tuple = ()  # TESS files for the default model's row (whole files)


def _load(path: str, sampling_rate: int, clip: float) -> np.ndarray:
    """Decode ``path`` at ``sampling_rate``, cut to ``clip`` s (only that much is decoded) and zero-pad up to it."""
    from serkit.audio import read

    signal, _ = read(path, sampling_rate, end=clip or None)
    n = int(round(clip * sampling_rate))
    if clip and len(signal) < n:
        signal = np.pad(signal, (0, n - len(signal)))
    return signal


def _batched(paths: list[str], batch: int):
    for k in range(0, len(paths), batch):
        yield paths[k : k + batch]


# -- rows ------------------------------------------------------------------------------------------


def soundnet_rows(setup: Setup) -> list[tuple[str, int, Callable[[list[str]], float]]]:
    """Pretrained embeddings through the feature extractors (what training uses): SoundNet-8 conv5
    mean,max at the original speed, the ``soundnet-linear`` recipe's conv4+conv5 mean,std of the
    speech slowed down 2, 3 and 4 times (nine times the samples through the network, read at
    88.2 kHz), and the GE2E speaker encoder's LSTM frames at one speed (the default model's;
    ``ge2e-svm`` runs three)."""
    from serkit.features import get_extractor

    plain = get_extractor("soundnet", layer="conv5", pool="mean,max")
    slowed = get_extractor("soundnet", layer="conv4,conv5", pool="mean,std", slowdown="2,3,4")

    def make(ex, batch: int):
        sr = ex.sampling_rate

        def run(paths: list[str]) -> float:
            seconds = 0.0
            for chunk in _batched(paths, batch):
                signals = [_load(p, sr, setup.clip) for p in chunk]
                seconds += sum(len(s) for s in signals) / sr
                ex.functionals_batch(signals)
            return seconds

        return run

    return [("SoundNet8 conv5 mean,max", b, make(plain, b)) for b in (1, 16)] + [
        ("SoundNet8 slowdown 2,3,4 conv4+conv5 mean,std", 16, make(slowed, 16)),
        ("GE2E speaker encoder lstm2+lstm3 mean,std", 16, make(get_extractor("ge2e"), 16)),
    ]


def soundnet_res_rows(setup: Setup) -> list[tuple[str, int, Callable[[list[str]], float]]]:
    """SoundNetRes (untrained weights; the speed does not depend on them) at 16 kHz, pooled embedding.

    Run like the SoundNet extractor: batches spread over ``setup.threads`` worker threads with one
    torch thread each (torch's own 2-thread teams stall on a loaded machine, see features/soundnet.py).
    """
    import torch

    from serkit.networks import SoundNetRes

    net = SoundNetRes().eval()
    sr = net.SAMPLING_RATE

    def embed_batch(chunk: list[str]) -> float:
        signals = [_load(p, sr, setup.clip) for p in chunk]
        lengths = torch.tensor([len(s) for s in signals])
        x = torch.zeros(len(signals), int(lengths.max()))
        for i, s in enumerate(signals):
            x[i, : len(s)] = torch.from_numpy(s)
        with torch.inference_mode():
            net.embed(x, lengths=lengths)
        return sum(len(s) for s in signals) / sr

    def make(batch: int):
        def run(paths: list[str]) -> float:
            from concurrent.futures import ThreadPoolExecutor

            previous = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(setup.threads) as pool:
                    return sum(pool.map(embed_batch, list(_batched(paths, batch))))
            finally:
                torch.set_num_threads(previous)

        return run

    return [("SoundNetRes embed (16 kHz, untrained)", 4, make(4))]


_CLASSIFIERS: dict = {}


def _classifier_dirs(setup: Setup) -> dict:
    """Train a quick SoundNet classifier (conv5 + mean/max head, frozen backbone, 3 EmoDB speakers, ~5 s)
    and export it to ONNX fp32 and int8 (calibrated on its training clips); once per process."""
    if _CLASSIFIERS:
        return _CLASSIFIERS
    import tempfile

    from serkit.artifact import save_model
    from serkit.corpora import load_corpus
    from serkit.deploy.export import export_onnx
    from serkit.models.neural import SoundNetClassifier

    root = Path(tempfile.mkdtemp(prefix="serkit-speed-"))
    emodb = Path(setup.files[0]).parent.parent
    utterances = [u for u in load_corpus(f"emodb:{emodb}") if u.speaker in ("03", "08", "09")]
    model = SoundNetClassifier(
        layer="conv5",
        pool="meanmax",
        strategy="freeze",
        train={"epochs": 4, "val_fraction": 0.0, "min_epochs": 1, "crop_seconds": 2.0},
    )
    model.fit(utterances, progress=False)
    _CLASSIFIERS["torch"] = save_model(model, root / "torch")
    _CLASSIFIERS["onnx"] = export_onnx(root / "torch", root / "onnx")
    _CLASSIFIERS["int8"] = export_onnx(
        root / "torch", root / "int8", quantise="int8", calibration=[u.path for u in utterances]
    )
    return _CLASSIFIERS


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.suffix in (".onnx", ".safetensors")) / 2**20


def classifier_rows(setup: Setup) -> list:
    """A fine-tuned SoundNet classifier (conv5, frozen backbone + linear head) in torch fp32, ONNX fp32 and ONNX int8.

    Throughput runs ``Recognizer.predict_batch`` over the files (decoding and resampling included) with
    ``setup.threads`` threads; latency is one 1-second window (22 050 float32 samples in → probabilities
    out, through ``predict_proba``) on one thread.
    """
    from serkit.inference import Recognizer

    dirs = _classifier_dirs(setup)
    rows = []
    for key, label in (
        ("torch", "SoundNet conv5 classifier, torch fp32"),
        ("onnx", "SoundNet conv5 classifier, ONNX fp32"),
        ("int8", "SoundNet conv5 classifier, ONNX int8"),
    ):
        rec = Recognizer.load(dirs[key])
        sr = rec.sampling_rate

        def run(paths, rec=rec, sr=sr):
            seconds = 0.0
            for chunk in _batched(paths, 16):
                signals = [_load(p, sr, setup.clip) for p in chunk]
                rec.classifier.predict_proba(signals)
                seconds += sum(len(s) for s in signals) / sr
            return seconds

        rows.append(
            (
                label,
                16,
                run,
                {"latency": lambda rec=rec: one_window(rec.classifier), "size_mb": round(_dir_mb(dirs[key]), 3)},
            )
        )
    return rows


def default_model_rows(setup: Setup) -> list:
    """The shipped default model through ``Recognizer.predict_batch`` on whole TESS files (decoding included).

    This is what ``serkit predict FOLDER`` does: threads decode, the model's feature extraction runs
    in ``setup.threads`` worker processes (SoundNet in torch threads), the SVM predicts per batch.
    """
    from serkit.inference import DEFAULT_MODEL_DIR, Recognizer

    if not setup.tess or not (DEFAULT_MODEL_DIR / "model.json").exists():
        return []
    rec = Recognizer.load(None)

    def run(paths, rec=rec):
        table = rec.predict_batch(list(paths), batch_size=64)
        failed = table["error"].fillna("").astype(str) != ""
        if failed.any():
            raise RuntimeError(f"default model failed on {int(failed.sum())} files: {table['error'][failed].iloc[0]}")
        return float((table["end"] - table["start"]).sum())

    size = sum(f.stat().st_size for f in DEFAULT_MODEL_DIR.rglob("*") if f.is_file()) / 2**20
    return [
        (
            "default model (6 classes), TESS whole files, predict_batch",
            64,
            run,
            {
                "files": list(setup.tess),
                "size_mb": round(size, 2),
                "latency": lambda rec=rec: one_window(rec.classifier),
                "warmup": list(setup.tess[:64]),
            },
        )
    ]


#: row factories, in table order
ROWS: list[Callable[[Setup], list]] = [soundnet_rows, soundnet_res_rows, classifier_rows, default_model_rows]


# -- driver ----------------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / 1024 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def measure(setup: Setup, repeats: int) -> list[dict]:
    import torch

    results = []
    for factory in ROWS:
        for label, batch, run, *extra in factory(setup):
            if setup.only and not any(k.lower() in label.lower() for k in setup.only):
                continue
            extra = extra[0] if extra else {}
            torch.set_num_threads(setup.threads)  # a row's model may have set its own thread count
            files = extra.get("files", setup.files)
            run(extra.get("warmup", files[: max(batch, 4)]))  # warm-up: weights, allocator, oneDNN kernels
            times, audio = [], 0.0
            for _ in range(repeats):
                t0 = time.perf_counter()
                audio = run(files)
                times.append(time.perf_counter() - t0)
            wall = statistics.median(times)
            results.append(
                {
                    "model": label,
                    "batch": batch,
                    "clip_s": "file" if "files" in extra else (setup.clip or "file"),
                    "files": len(files),
                    "audio_s": round(audio, 1),
                    "wall_s": round(wall, 3),
                    "x_realtime": round(audio / wall, 1),
                    "ms_per_file": round(1000 * wall / len(files), 2),
                    "peak_rss_mb": round(_peak_rss_mb()),
                    "threads": setup.threads,
                    "size_mb": extra.get("size_mb", ""),
                    **latency_ms(extra.get("latency")),
                }
            )
    return results


def one_window(classifier, seconds: float = 1.0):
    """A function that predicts one ``seconds``-long window (random audio at the model's rate) on one thread.

    Torch models get one torch thread (and ``$SERKIT_THREADS=1``, else ``predict_proba`` samples the
    load, ~10 ms, per call; :func:`latency_ms` unsets it), ONNX models a one-thread session.
    """
    window = np.random.default_rng(0).uniform(-0.3, 0.3, int(seconds * classifier.sampling_rate)).astype(np.float32)
    if hasattr(classifier, "set_threads"):
        classifier.set_threads(1)
    else:
        import torch

        torch.set_num_threads(1)
        os.environ["SERKIT_THREADS"] = "1"
    return lambda: classifier.predict_proba([window])


def latency_ms(make, n: int = 300) -> dict:
    """Median and p95 (ms) of ``n`` calls of ``make()``'s function after 30 warm-up calls (shared with compression.py)."""
    if make is None:
        return {"lat_ms_median": "", "lat_ms_p95": ""}
    fn = make()
    for _ in range(30):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    os.environ.pop("SERKIT_THREADS", None)
    ms = np.array(times) * 1000
    return {"lat_ms_median": round(float(np.median(ms)), 3), "lat_ms_p95": round(float(np.percentile(ms, 95)), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", default=os.environ.get("SERKIT_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    )
    ap.add_argument("--files", type=int, default=96, help="EmoDB files per pass (default 96)")
    ap.add_argument("--clip", type=float, default=3.0, help="clip length in seconds; 0 = whole files (default 3)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--tess",
        type=int,
        default=2800,
        help="TESS files for the default model's row (default all 2800; 0 skips the row)",
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only rows whose model label contains TEXT (repeatable), e.g. --only int8; "
        "run one row per process to read its own peak memory",
    )
    args = ap.parse_args(argv)

    from serkit.audio import find_audio_files

    wav = Path(args.data) / "emodb" / "wav"
    if not wav.is_dir():
        print(f"EmoDB not found at '{wav}'; pass --data or set SERKIT_DATA", file=sys.stderr)
        return 2
    files = [str(p) for p in find_audio_files(wav)][: args.files]
    # serkit's extractors size their worker pools from $SERKIT_JOBS; torch's pool from set_num_threads
    os.environ["SERKIT_JOBS"] = str(args.threads)
    tess = [str(p) for p in find_audio_files(Path(args.data) / "tess")][: args.tess] if args.tess else []
    setup = Setup(files=files, clip=args.clip, threads=args.threads, only=tuple(args.only), tess=tuple(tess))
    results = measure(setup, args.repeats)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    cols = [
        "model",
        "batch",
        "clip_s",
        "files",
        "audio_s",
        "wall_s",
        "x_realtime",
        "ms_per_file",
        "peak_rss_mb",
        "size_mb",
        "lat_ms_median",
        "lat_ms_p95",
    ]
    print(f"| {' | '.join(cols)} |")
    print(f"|{'|'.join('---' for _ in cols)}|")
    for r in results:
        print(f"| {' | '.join(str(r[c]) for c in cols)} |")
    print(
        f"\n{args.threads} CPU threads, median of {args.repeats} passes, decoding included; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; targets: SoundNet embedding >= {TARGET_X_REALTIME:g}x, default model on TESS >= 100x real time"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
