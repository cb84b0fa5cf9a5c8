"""The exporter's own errors for what goes wrong in a source: collectors catch these, never the SDK's or the
connector's, which the sources translate at the seam."""

from __future__ import annotations


class SourceError(Exception):
    """A request to Databricks failed for a reason none of the kinds below names (a bad parameter, an unexpected
    answer)."""


class NotFound(SourceError):
    """The thing asked for does not exist (any more): a deleted run, cluster, pipeline or update."""


class Forbidden(SourceError):
    """The credential lacks the permission (403)."""


class Unauthenticated(Forbidden):
    """The credential itself was refused (401): wrong, expired or revoked."""


class Throttled(SourceError):
    """Too many requests (429), still refused after the client's own retries."""


class Unavailable(SourceError):
    """Databricks could not answer (503, 500, a timeout, a broken connection), still after the client's retries."""


class StatementRejected(SourceError):
    """The SQL warehouse ran a statement and refused it (no such table, no permission, bad SQL): it concerns that
    statement only, and trying it again will not help."""
