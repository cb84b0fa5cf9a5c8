"""Logging: readable text for a terminal or one JSON object per line for a log platform, with secrets redacted."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from .config import SECRET_KEYS

# Attributes every LogRecord has; anything else passed in `extra` is structured context.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_SECRET_ENV = ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET", "ARM_CLIENT_SECRET", "AZURE_CLIENT_SECRET",
               "DATABRICKS_AZURE_CLIENT_SECRET", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class Redactor:
    """Replaces every known secret value with '***'. Secrets are registered from the environment and the config."""

    def __init__(self):
        self.secrets: set[str] = set()

    def add(self, value: str | None) -> None:
        if value and len(value) >= 6:
            self.secrets.add(value)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


REDACT = Redactor()
for _name in _SECRET_ENV:
    REDACT.add(os.environ.get(_name))


def register_secrets(settings) -> None:
    for workspace in settings.workspaces:
        for key in SECRET_KEYS:
            REDACT.add(workspace.auth.get(key))


def _context(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **_context(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDK logs request bodies at DEBUG; keep it at INFO unless asked for its debug explicitly.
    logging.getLogger("databricks.sdk").setLevel(max(logging.INFO, root.level))
    logging.getLogger("urllib3").setLevel(logging.WARNING)
