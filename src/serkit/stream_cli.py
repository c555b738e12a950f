"""``serkit stream``: real-time recognition from a file played at real-time speed, stdin or a microphone.

Capture and inference run on separate threads joined by a bounded queue of windows: the capture
side (file reader, stdin reader or the sound card's callback) cuts windows with the one window
engine's :class:`~serkit.windows.Cutter` and queues them; the inference side classifies them with
its :class:`~serkit.windows.Scorer` (silence gate, optional EMA smoothing) and prints one line per
window — the same rows, to the last digit, as the WebSocket ``/v1/stream`` gives for the same
audio, window, hop and ``ema``. When inference falls behind a live source (the
microphone, a file played at ``speed > 0``) windows are *dropped*, counted and reported — never
silently; sources that can wait (stdin, a file at ``speed 0``) are paused instead.

Exit codes: 0 when the input ended (end of file, stdin closed); 130 after Ctrl-C (SIGINT) and 143
after SIGTERM — in every case after printing the summary (windows, drops, latency median/p95).
"""

from __future__ import annotations

import json
import queue
import signal
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .errors import AudioError, ConfigError
from .segmentation import window_gate
from .windows import Cutter, Scorer, StreamLimits

__all__ = ["StreamStats", "run_stream", "file_chunks", "stdin_chunks"]

_CHUNK_SECONDS = 0.05  # capture granularity: 50 ms, like a sound card's period


@dataclass
class StreamStats:
    """What a stream did: counts and capture-to-result latencies (seconds)."""

    windows: int = 0
    classified: int = 0
    silent: int = 0
    dropped: int = 0
    audio_seconds: float = 0.0
    latencies: list = field(default_factory=list)
    stopped_by: str = "end of input"

    def summary(self) -> dict:
        lat = np.asarray(self.latencies) * 1000.0
        return {
            "windows": self.windows,
            "classified": self.classified,
            "silent": self.silent,
            "dropped": self.dropped,
            "audio_s": round(self.audio_seconds, 3),
            "latency_ms_median": round(float(np.median(lat)), 2) if lat.size else None,
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 2) if lat.size else None,
            "stopped_by": self.stopped_by,
        }


# -- sources: iterators of float32 chunks ------------------------------------------------------------


def file_chunks(path, *, speed: float = 1.0, stop: threading.Event | None = None) -> tuple[int, Iterator]:
    """``(sampling_rate, chunks)`` of a file played at ``speed`` × real time (0: as fast as possible).

    The file is decoded block by block (:func:`serkit.audio.blocks`), so a long recording, or one
    whose header does not say its length, is never held whole.
    """
    from .audio import blocks, info

    rate = info(path, max_duration_s=0.0).sampling_rate  # raises AudioError with a helpful message for bad files
    block = max(1, int(_CHUNK_SECONDS * rate))

    def gen():
        t0 = time.monotonic()
        sent = 0
        for data in blocks(path, block):
            if stop is not None and stop.is_set():
                return
            if speed > 0:
                # pace by the audio clock: sample n is due at t0 + n / (rate * speed)
                delay = t0 + (sent + len(data)) / (rate * speed) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            sent += len(data)
            yield data

    return rate, gen()


def stdin_chunks(stream, *, rate: int | None, fmt: str = "s16") -> tuple[int, Iterator]:
    """``(sampling_rate, chunks)`` from a byte stream: a WAV stream (detected by its RIFF header) or raw PCM.

    Raw PCM is little-endian mono ``fmt`` (``s16`` or ``f32``) at ``rate`` Hz. A WAV stream may
    be endless (a header written by ``arecord``, ``sox`` or ``ffmpeg`` to a pipe): its size fields
    are ignored.
    """
    from .streaming import decode_pcm

    head = _read_exact(stream, 4)
    channels = 1
    if head == b"RIFF":
        rate, channels, fmt = _wav_header(stream)
    else:
        if rate is None:
            raise ConfigError("raw PCM on stdin needs its sample rate: pass --rate HZ (or send a WAV stream)")
    width = {"s16": 2, "f32": 4, "s32": 4}[fmt]
    frame = width * channels
    block = max(1, int(_CHUNK_SECONDS * rate)) * frame

    def gen():
        pending = b"" if head == b"RIFF" else head
        while True:
            data = stream.read(block)  # blocks until a whole block or the end of the stream
            if not data:
                return  # stdin closed (a trailing partial sample is ignored)
            data = pending + data
            cut = len(data) - len(data) % frame
            pending = data[cut:]
            if cut:
                x = _decode(data[:cut], fmt, decode_pcm)
                yield x.reshape(-1, channels).mean(axis=1) if channels > 1 else x

    return int(rate), gen()


def _decode(data: bytes, fmt: str, decode_pcm) -> np.ndarray:
    if fmt == "s32":
        return np.frombuffer(data, "<i4").astype(np.float32) / 2**31
    return decode_pcm(data, fmt)


def _read_exact(stream, n: int) -> bytes:
    out = b""
    while len(out) < n:
        got = stream.read(n - len(out))
        if not got:
            break
        out += got
    return out


def _wav_header(stream) -> tuple[int, int, str]:
    """Parse a WAV header from a non-seekable stream up to the ``data`` chunk: (rate, channels, fmt)."""
    if _read_exact(stream, 8)[4:8] != b"WAVE":
        raise AudioError("stdin starts with RIFF but is not a WAVE stream; send WAV or raw PCM with --rate")
    rate = channels = bits = tag = None
    while True:
        hdr = _read_exact(stream, 8)
        if len(hdr) < 8:
            raise AudioError("the WAV stream on stdin ended inside its header; send a complete WAV header")
        cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
        if cid == b"data":
            break
        body = _read_exact(stream, size + (size & 1))
        if cid == b"fmt ":
            tag, channels, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag is in the GUID
                tag = struct.unpack("<H", body[24:26])[0]
    if rate is None:
        raise AudioError("the WAV stream on stdin has no fmt chunk before its data; send a standard WAV header")
    fmt = {(1, 16): "s16", (1, 32): "s32", (3, 32): "f32"}.get((tag, bits))
    if fmt is None:
        raise AudioError(
            f"WAV stream format tag {tag} with {bits}-bit samples is not supported on stdin; send 16-bit PCM, "
            "e.g. `ffmpeg -i in -f wav -acodec pcm_s16le -`"
        )
    return int(rate), int(channels), fmt


def mic_source(rate: int, device=None):
    """Import sounddevice lazily and check the device; returns the module."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library itself is missing
        raise ConfigError(
            f"microphone input needs the sounddevice package and PortAudio ({exc}); install them with "
            "`pip install sounddevice` (and `apt-get install libportaudio2`), or stream a file/stdin instead"
        ) from None
    try:
        sd.check_input_settings(device=device, channels=1, samplerate=rate, dtype="float32")
    except Exception as exc:
        raise ConfigError(
            f"no usable microphone (device {device!r} at {rate} Hz: {exc}); list devices with "
            "`python -m sounddevice` and pass --device, or use --file / --stdin"
        ) from None
    return sd


# -- the engine ----------------------------------------------------------------------------------------


def run_stream(
    recognizer,
    *,
    source: str,
    path=None,
    speed: float = 1.0,
    rate: int | None = None,
    pcm: str = "s16",
    device=None,
    window: float = 3.0,
    hop: float = 1.0,
    ema: float = 1.0,
    queue_size: int = 4,
    when_busy: str | None = None,
    fmt: str = "text",
    out=None,
    err=None,
    stdin=None,
    vad: str = "energy",
) -> tuple[StreamStats, int]:
    """Run a stream until its input ends or a signal stops it; print rows and the summary.

    Parameters
    ----------
    recognizer : serkit.inference.Recognizer
    source : {"file", "stdin", "mic"}
    path, speed
        ``source="file"``: the file and its playback speed (× real time; 0 = as fast as possible).
    rate, pcm
        ``source="stdin"``: raw PCM rate (Hz) and sample format (``s16``/``f32``); a WAV stream
        brings its own. ``source="mic"``: the capture rate (default: the model's).
    window, hop
        Seconds.
    ema
        Weight of the newest window in the exponential moving average of probabilities
        (1 = no smoothing; 0.3 smooths over about three windows).
    queue_size
        Windows waiting for inference at most.
    when_busy : {"drop", "wait"}, optional
        What the capture side does when the queue is full; default ``drop`` for live sources
        (microphone, file at ``speed > 0``) and ``wait`` otherwise.
    fmt : {"text", "jsonl"}
        One line per window on ``out``; the summary goes to ``err`` (JSON with ``jsonl``).
    vad : {"energy", "silero"}
        The silence gate: ``energy`` is the window engine's RMS gate; ``silero`` also skips
        windows where Silero VAD hears under 0.2 s of speech (:func:`serkit.segmentation.window_gate`).

    Returns
    -------
    stats : StreamStats
    exit_code : int
        0 (input ended), 130 (SIGINT) or 143 (SIGTERM).
    """
    if not (window > 0 and hop > 0):
        raise ConfigError(f"window ({window}s) and hop ({hop}s) must both be positive")
    if not 0 < ema <= 1:
        raise ConfigError(f"--ema {ema} must be in (0, 1]; 1 turns smoothing off")
    gate = window_gate(vad)  # an unknown gate or a missing silero-vad fails before any output
    if queue_size < 1:
        raise ConfigError(f"--queue {queue_size} must be at least 1")
    out = out or sys.stdout
    err = err or sys.stderr
    live = source == "mic" or (source == "file" and speed > 0)
    when_busy = when_busy or ("drop" if live else "wait")
    if when_busy not in ("drop", "wait"):
        raise ConfigError(f"when_busy {when_busy!r}: use 'drop' or 'wait'")

    stats = StreamStats()
    stop = threading.Event()
    windows: queue.Queue = queue.Queue(maxsize=queue_size)
    done = object()
    exit_code = [0]

    def put(item):
        stats.windows += 1
        if when_busy == "drop":
            try:
                windows.put_nowait(item)
            except queue.Full:
                stats.dropped += 1
            return
        while not stop.is_set():
            try:
                windows.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    # the source, opened now so that a bad file or device fails before any output
    if source == "file":
        in_rate, chunks = file_chunks(path, speed=speed, stop=stop)
    elif source == "stdin":
        in_rate, chunks = stdin_chunks(stdin if stdin is not None else sys.stdin.buffer, rate=rate, fmt=pcm)
    elif source == "mic":
        in_rate = int(rate or recognizer.sampling_rate)
        sd = mic_source(in_rate, device)
        chunks = None
    else:
        raise ConfigError(f"unknown stream source {source!r}; use file, stdin or mic")
    # the one window engine; the bounded queue already bounds the work, so no windows-per-second cap
    cutter = Cutter(in_rate, window, hop, limits=StreamLimits.from_env(max_windows_per_s=None))
    scorer = Scorer(recognizer, in_rate, ema=ema, min_confidence=recognizer.min_confidence, gate=gate)

    def cut(chunk):
        now = time.monotonic()
        for w in cutter.feed(chunk):
            put((w, now))

    min_samples = int(recognizer.min_duration * in_rate)
    capture_error: list = []

    def capture():
        try:
            if chunks is not None:
                for chunk in chunks:
                    if stop.is_set():
                        break
                    stats.audio_seconds += len(chunk) / in_rate
                    cut(chunk)
            else:

                def callback(indata, frames, time_info, status):
                    stats.audio_seconds += frames / in_rate
                    cut(indata[:, 0].copy())

                with sd.InputStream(
                    samplerate=in_rate,
                    channels=1,
                    dtype="float32",
                    device=device,
                    blocksize=int(_CHUNK_SECONDS * in_rate),
                    callback=callback,
                ):
                    while not stop.wait(0.1):
                        pass
            if not stop.is_set():
                for w in cutter.flush(min_samples):
                    put((w, time.monotonic()))
        except Exception as exc:  # reported by the main thread after the summary
            capture_error.append(exc)
        finally:
            while True:  # the sentinel must arrive even when the queue is full
                try:
                    windows.put(done, timeout=0.1)
                    break
                except queue.Full:
                    if stop.is_set():
                        try:
                            windows.get_nowait()
                        except queue.Empty:
                            pass

    def on_signal(signum, frame):
        stats.stopped_by = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
        exit_code[0] = 130 if signum == signal.SIGINT else 143
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    # a daemon: a blocked stdin read must not keep the process alive after a signal
    reader = threading.Thread(target=capture, name="serkit-capture", daemon=True)
    reader.start()
    labels = recognizer.labels
    try:
        while True:
            try:
                item = windows.get(timeout=0.1)
            except queue.Empty:
                if stop.is_set() and not reader.is_alive():
                    break
                continue
            if item is done:
                break
            if stop.is_set():
                continue  # after a signal: drain what is queued without classifying it
            w, captured = item
            full = scorer.rows([w])[0]
            del full["file"]
            if full["error"]:
                stats.silent += 1
                row = {k: full[k] for k in ("start", "end", "label", "error")}
            else:
                stats.classified += 1
                row = full
            latency = time.monotonic() - captured
            stats.latencies.append(latency)
            row["latency_ms"] = round(latency * 1000, 2)
            _print_row(row, labels, fmt, out)
    finally:
        stop.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    reader.join(timeout=1.0)
    summary = stats.summary()
    if fmt == "jsonl":
        err.write(json.dumps({"summary": summary}) + "\n")
    else:
        err.write(
            f"stream: {summary['windows']} windows ({summary['classified']} classified, {summary['silent']} silent, "
            f"{summary['dropped']} dropped) over {summary['audio_s']:.1f} s of audio; latency capture-to-result "
            f"median {summary['latency_ms_median']} ms, p95 {summary['latency_ms_p95']} ms; stopped by "
            f"{summary['stopped_by']}\n"
        )
    err.flush()
    if capture_error:
        raise capture_error[0]
    return stats, exit_code[0]


def _print_row(row: dict, labels, fmt: str, out) -> None:
    if fmt == "jsonl":
        out.write(json.dumps(row) + "\n")
    else:
        probs = "  ".join(f"{l} {row[f'p_{l}']:.2f}" for l in labels) if not row["error"] else "(silence)"
        out.write(f"{row['start']:9.2f} {row['end']:9.2f}  {row['label'] or '-':10s} {probs}\n")
    out.flush()
