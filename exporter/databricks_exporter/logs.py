"""Logging: readable text for a terminal or one JSON object per line for a log platform, with secrets redacted."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import urllib.parse

from .config import SECRET_KEYS

# Attributes every LogRecord has; anything else passed in `extra` is structured context.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_SECRET_ENV = ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET", "ARM_CLIENT_SECRET", "AZURE_CLIENT_SECRET",
               "DATABRICKS_AZURE_CLIENT_SECRET", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_HEADER_ENV = ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS")


class Redactor:
    """Replaces every known secret value with '***'. Secrets are registered from the environment, the config and
    the credentials the sinks resolve (AWS keys from boto3's chain, OTLP header values)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.secrets: set[str] = set()
        self._ordered: tuple[str, ...] = ()

    def add(self, value: str | None) -> None:
        if not value or len(value) < 6:
            return
        # The same secret as it appears in URLs and form bodies, too.
        variants = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
        with self._lock:
            if variants <= self.secrets:
                return
            self.secrets |= variants
            # Longest first, so a secret that contains another is replaced whole. A tuple, so formatting on other
            # threads never iterates a set that is being added to.
            self._ordered = tuple(sorted(self.secrets, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, "***")
        return text


REDACT = Redactor()


def register_env_secrets() -> None:
    """Secrets in the environment: credentials, and the values of OTLP headers (API keys)."""
    for name in _SECRET_ENV:
        REDACT.add(os.environ.get(name))
    for name in _HEADER_ENV:
        for pair in os.environ.get(name, "").split(","):
            key, sep, value = pair.partition("=")
            if sep:
                REDACT.add(urllib.parse.unquote(value.strip()))
                REDACT.add(value.strip())


register_env_secrets()


def register_secrets(settings) -> None:
    for workspace in settings.workspaces:
        for key in SECRET_KEYS:
            REDACT.add(workspace.auth.get(key))
    for sink in getattr(settings, "sinks", {}).values():
        for value in (sink.options.get("headers") or {}).values():
            REDACT.add(value)


def _context(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, event, then the record's context (workspace_id,
    collector, correlation_id, duration_seconds, counts...), and the exception if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": REDACT(record.getMessage()),
            **{k: REDACT(v) if isinstance(v, str) else v for k, v in _context(record).items()},
        }
        if record.exc_info:
            entry["exception"] = REDACT(self.formatException(record.exc_info))
        # Redacted before encoding (JSON escapes could hide a secret from the match) and after (context values that
        # are not strings are encoded with str()).
        return REDACT(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = (f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(record.created))}Z {record.levelname:<7} "
                f"{record.name}: {record.getMessage()}")
        context = _context(record)
        if context:
            line += " " + " ".join(f"{k}={v}" for k, v in context.items() if v is not None)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return REDACT(line)


def setup(level: str = "info", fmt: str = "text") -> None:
    register_env_secrets()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDK logs request bodies at DEBUG; keep it at INFO unless asked for its debug explicitly.
    logging.getLogger("databricks.sdk").setLevel(max(logging.INFO, root.level))
    # botocore logs signing material and request headers (the session token among them) at DEBUG; urllib3 every
    # connection. Redaction would catch the secrets, but these are noise at debug level too.
    for name in ("urllib3", "botocore", "boto3"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # Whatever else would reach stderr raw (Python warnings, a thread dying of an uncaught exception) goes through
    # the same formatter, so a JSON log stays one object per line and redacted.
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_exception


def _log_thread_exception(args) -> None:
    if issubclass(args.exc_type, SystemExit):
        return
    logging.getLogger("databricks_exporter").critical(
        "uncaught exception in thread %s", args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
