"""How the sources report what they ask of Databricks: one interface for both, so that neither writes metrics itself
and the engine decides where the numbers go."""

from __future__ import annotations

from typing import Protocol


class RequestLog(Protocol):
    """Receives one call per REST response and per SQL statement (the engine's Workspace counts them)."""

    def api_request(self, endpoint: str, status_code: str) -> None:
        """A REST response: the endpoint as a template ('/api/2.1/jobs/runs/get'), and its HTTP status code."""

    def sql_statement(self, collector: str, outcome: str, seconds: float | None) -> None:
        """A SQL statement a collector ran: outcome success, error or skipped (the warehouse was not woken, and no
        duration)."""

