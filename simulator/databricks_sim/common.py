"""What every domain of the simulated workspace shares: time units, users, the Databricks error body, page tokens
and the stable hashes that give entities ids without any shared counter."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
import time

SECOND_MS = 1_000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

USERS = [
    "ana.silva@example.com", "bo.chen@example.com", "carla.jones@example.com", "dev.patel@example.com",
    "eli.novak@example.com", "fatima.khan@example.com", "gus.meyer@example.com", "hana.sato@example.com",
]
SERVICE_PRINCIPAL = "svc-automation@example.com"
TEAMS = [
    ("data-eng", "CC-1010"), ("analytics", "CC-1020"), ("ml-platform", "CC-1030"),
    ("finance", "CC-1040"), ("marketing", "CC-1050"), ("risk", "CC-1060"),
]


class ApiError(Exception):
    """An error answered with an HTTP status and a Databricks error body {"error_code", "message"}, with `details`
    (ErrorInfo and the like) when given."""

    def __init__(self, status: int, error_code: str, message: str, details: list[dict] | None = None):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.details = details

    def body(self) -> dict:
        body = {"error_code": self.error_code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


def permission_denied(message: str, domain: str) -> ApiError:
    """403 on one object the caller may list but not read (a run, an event log, a cluster's events)."""
    return ApiError(403, "PERMISSION_DENIED", message, [{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "PERMISSION_DENIED",
        "domain": f"{domain}.databricks.com", "metadata": {}}])


def invalid_parameter(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


def does_not_exist(message: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", message)


def legacy_does_not_exist(message: str) -> ApiError:
    """clusters/get, jobs/get and jobs/runs/get answer unknown ids with 400 INVALID_PARAMETER_VALUE "... does not
    exist"; databricks-sdk carries error overrides that turn exactly these into ResourceDoesNotExist."""
    return invalid_parameter(message)



def encode_page_token(cursor: dict) -> str:
    raw = json.dumps(cursor, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> dict:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        cursor = json.loads(raw)
        if not isinstance(cursor, dict):
            raise ValueError
        return cursor
    except ValueError:
        raise invalid_parameter(f"Invalid page token: {token[:40]}") from None


def sql_timestamp(ms: int) -> dt.datetime:
    """Epoch milliseconds as a naive UTC datetime, as a SQL TIMESTAMP column holds it."""
    return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)


def digest(*parts, size: int = 8) -> bytes:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=size).digest()


def stable_hex(*parts, n: int = 16) -> str:
    return digest(*parts, size=(n + 1) // 2).hex()[:n]


def stable_int(*parts, bound: int) -> int:
    return int.from_bytes(digest(*parts), "big") % bound


def fast_randint(rng: random.Random, lo: int, hi: int) -> int:
    """random.randint without its argument checking, which dominates run generation at benchmark scale."""
    return lo + int(rng.random() * (hi - lo + 1))


def make_cluster_id(created_ms: int, *parts) -> str:
    """Real cluster ids look like 0923-164208-meows279: creation MMDD-HHMMSS and eight lowercase characters."""
    t = time.gmtime(created_ms // 1000)
    suffix = base64.b32encode(digest(*parts, size=5)).decode().lower()
    return f"{t.tm_mon:02d}{t.tm_mday:02d}-{t.tm_hour:02d}{t.tm_min:02d}{t.tm_sec:02d}-{suffix}"

