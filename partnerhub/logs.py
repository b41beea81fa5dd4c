"""JSON logs carrying the correlation id (W3C traceparent) of the request or event being handled."""

from __future__ import annotations

import json
import logging
import os
import random
import sys
from contextvars import ContextVar, Token
from datetime import UTC, datetime

_traceparent: ContextVar[str | None] = ContextVar("traceparent", default=None)


# Trace ids need to be unique, not secret: a generator seeded from the OS (again in every forked child) instead of
# a read of /dev/urandom per request.
_trace_ids = random.Random()
os.register_at_fork(after_in_child=_trace_ids.seed)


def new_traceparent() -> str:
    return f"00-{_trace_ids.getrandbits(128):032x}-{_trace_ids.getrandbits(64):016x}-01"


def current_traceparent() -> str | None:
    return _traceparent.get()


def set_traceparent(value: str | None) -> None:
    _traceparent.set(value)


def swap_traceparent(value: str | None) -> Token[str | None]:
    """Makes `value` current until restore_traceparent(token)."""
    return _traceparent.set(value)


def restore_traceparent(token: Token[str | None]) -> None:
    _traceparent.reset(token)


def trace_id(traceparent: str | None) -> str | None:
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 else None


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace = trace_id(current_traceparent())
        if trace:
            entry["trace_id"] = trace
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("PARTNERHUB_LOG_LEVEL", level))
    logging.captureWarnings(True)  # Python warnings become JSON log lines (logger py.warnings) like the rest
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
