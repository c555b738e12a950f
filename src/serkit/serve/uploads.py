"""Reading uploads: multipart parsing with size and time limits, and client errors that name the limit."""

from __future__ import annotations

import asyncio
import time

from .settings import MB, Settings

__all__ = ["ClientError", "receive_upload", "display_name"]

#: Multipart framing (boundaries, part headers) on top of the file itself.
FORM_OVERHEAD = 64 * 1024
#: Content types a browser or HTTP client may give an audio part; the decoder decides the rest.
AUDIO_TYPES = ("audio/", "application/octet-stream")


class ClientError(Exception):
    """A problem with what the client sent, answered with ``status`` and ``message``."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def display_name(filename: str | None) -> str:
    """A client's file name made safe to echo back (it is never used as a path)."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name or "upload"


def mb(n: int) -> str:
    return f"{n / MB:.1f} MB"


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


async def _timed_body(request, settings: Settings, limit: int):
    """The request body, chunk by chunk, cut off when it grows past ``limit`` or arrives too slowly.

    A body without (or lying about) Content-Length is cut off here, not after buffering it; a
    client that stops sending (or trickles) is answered 408 instead of holding the connection.
    """
    seen = 0
    deadline = time.monotonic() + settings.upload_timeout_s
    stream = request.stream().__aiter__()
    while True:
        wait = min(settings.body_timeout_s, deadline - time.monotonic())
        if wait <= 0:
            raise _TooSlow(f"the upload took longer than {settings.upload_timeout_s:g} s (SERKIT_UPLOAD_TIMEOUT_S)")
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), wait)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            if time.monotonic() >= deadline:
                raise _TooSlow(
                    f"the upload took longer than {settings.upload_timeout_s:g} s (SERKIT_UPLOAD_TIMEOUT_S)"
                ) from None
            raise _TooSlow(f"no upload data for {settings.body_timeout_s:g} s (SERKIT_BODY_TIMEOUT_S)") from None
        seen += len(chunk)
        if seen > limit + FORM_OVERHEAD:
            raise _TooLarge(seen)
        yield chunk


async def receive_upload(request, settings: Settings):
    """Parse a multipart body with one audio file in field ``file``; returns ``(form, upload)``."""
    from starlette.formparsers import MultiPartException, MultiPartParser
    from starlette.requests import ClientDisconnect

    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ClientError(
            415,
            f"content type {ctype.split(';')[0] or '(none)'!r} is not supported; send the audio as "
            "multipart/form-data with the file in field 'file', e.g. curl -F file=@clip.wav URL",
        )
    limit = int(settings.max_upload_mb * MB)
    too_big = (
        f"the limit is {settings.max_upload_mb:g} MB (SERKIT_MAX_UPLOAD_MB); "
        "send a shorter clip or a compressed format (flac, ogg, mp3)"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise ClientError(413, f"upload is {mb(int(declared))}; {too_big}")

    parser = MultiPartParser(request.headers, _timed_body(request, settings, limit), max_files=1, max_fields=16)
    try:
        form = await parser.parse()
    except _TooLarge as exc:
        raise ClientError(413, f"upload is more than {mb(int(str(exc)))}; {too_big}") from None
    except _TooSlow as exc:
        raise ClientError(408, f"{exc}; send the whole file without pausing", {"Connection": "close"}) from None
    except MultiPartException as exc:
        raise ClientError(400, f"malformed multipart body ({exc}); send one file in field 'file'") from None
    except ClientDisconnect:
        raise ClientError(400, "the client disconnected before the upload finished") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        await form.close()
        raise ClientError(
            400,
            "no file in form field 'file'; send the audio as multipart/form-data, e.g. curl -F file=@clip.wav URL",
        )
    part_type = (upload.content_type or "").split(";")[0].strip().lower()
    if part_type and not part_type.startswith(AUDIO_TYPES):
        await form.close()
        raise ClientError(
            415,
            f"file part has content type {part_type!r}; send audio (audio/wav, audio/flac, audio/ogg, "
            "audio/mpeg) or application/octet-stream",
        )
    if upload.size is not None and upload.size > limit:
        await form.close()
        raise ClientError(413, f"upload is {mb(upload.size)}; {too_big}")
    return form, upload
