"""Logging of the service: API keys never reach a log line (``api_key=***``)."""

from __future__ import annotations

import logging
import re

__all__ = ["redact_logs"]

_SECRET = re.compile(r"((?:^|[?&])api_key=)[^&\s\"']*", re.IGNORECASE)


class _RedactKeys(logging.Filter):
    """Replace the value of every ``api_key=`` query parameter in a log line with ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_SECRET.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str) and "api_key=" in record.msg.lower():
            record.msg = _SECRET.sub(r"\1***", record.msg)
        return True


def redact_logs() -> None:
    """Install the key-redacting filter on uvicorn's loggers (idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactKeys) for f in logger.filters):
            logger.addFilter(_RedactKeys())
