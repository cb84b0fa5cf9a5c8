"""The REST source: the workspace's REST API through one databricks-sdk WorkspaceClient, asked in domain terms
(clusters, runs, pipeline events, query history) and answered with plain dicts as the API spells them; SDK errors
become the exporter's own (sources/errors.py), and every response is reported by endpoint and status."""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from typing import Callable, Iterable, Iterator
from urllib.parse import urlparse

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk import errors as sdk_errors
from databricks.sdk.config import Config
from databricks.sdk.service.compute import EventType, GetEventsOrder, ListClustersFilterBy, State
from databricks.sdk.service.jobs import RunType
from databricks.sdk.service.sql import QueryFilter, TimeRange

from ..config import WorkspaceSettings
from . import errors
from .report import RequestLog

log = logging.getLogger(__name__)

# The SDK retries 429/503 for up to retry_timeout_seconds; a collector must give up well before its own timeout.
HTTP_TIMEOUT_SECONDS = 30
RETRY_TIMEOUT_SECONDS = 60

_KEEP_SEGMENT = re.compile(r"^(\d+\.\d+|v\d+|[A-Za-z_\-.]+)$")

# SDK error classes, most specific first, and what each is on this side of the seam.
_TRANSLATION: list[tuple[type[Exception], type[errors.SourceError]]] = [
    (sdk_errors.NotFound, errors.NotFound),
    (sdk_errors.PermissionDenied, errors.Forbidden),
    (sdk_errors.Unauthenticated, errors.Unauthenticated),
    (sdk_errors.TooManyRequests, errors.Throttled),
    (sdk_errors.RequestLimitExceeded, errors.Throttled),
    (sdk_errors.ResourceExhausted, errors.Throttled),
    (sdk_errors.TemporarilyUnavailable, errors.Unavailable),
    (sdk_errors.InternalError, errors.Unavailable),
    (sdk_errors.DeadlineExceeded, errors.Unavailable),
    (requests.exceptions.ConnectionError, errors.Unavailable),
    (requests.exceptions.Timeout, errors.Unavailable),
    (TimeoutError, errors.Unavailable),
    (sdk_errors.DatabricksError, errors.SourceError),
]


def translate(exc: BaseException) -> BaseException:
    """The exporter's error for an SDK (or HTTP client) error, with the same message; anything else unchanged.

    When the SDK's retries of a 429 or 503 run out of time it raises TimeoutError from the last answer: that answer
    says what the trouble was."""
    if isinstance(exc, TimeoutError) and isinstance(exc.__cause__, sdk_errors.DatabricksError):
        translated = translate(exc.__cause__)
        translated.args = (f"{exc}: {exc.__cause__}",)
        return translated
    for sdk_class, ours in _TRANSLATION:
        if isinstance(exc, sdk_class):
            translated = ours(str(exc) or type(exc).__name__)
            translated.__cause__ = exc
            return translated
    return exc


@contextlib.contextmanager
def translated():
    """SDK errors raised inside become the exporter's (see translate)."""
    try:
        yield
    except errors.SourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - translate() passes through what it does not know
        raise translate(exc) from exc


def endpoint_template(url: str) -> str:
    """'/api/2.0/sql/warehouses/1a2b3c' -> '/api/2.0/sql/warehouses/{id}': ids never become label values."""
    path = urlparse(url).path
    return "/".join(s if _KEEP_SEGMENT.match(s) or not s else "{id}" for s in path.split("/"))


def iso_ms(ms: float) -> str:
    """Epoch ms as the event log's timestamp format, e.g. 2026-01-01T00:00:00.000Z."""
    ms = int(math.floor(ms))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def make_client(settings: WorkspaceSettings, http_timeout: float = HTTP_TIMEOUT_SECONDS,
                retry_timeout: float = RETRY_TIMEOUT_SECONDS) -> WorkspaceClient:
    """A client using databricks-sdk's unified auth: PAT, OAuth M2M, Azure service principal or a profile,
    from the workspace's settings, then the environment, then ~/.databrickscfg. Raises ValueError when no
    credential can be put together."""
    config = Config(**settings.auth, http_timeout_seconds=int(http_timeout),
                    retry_timeout_seconds=int(retry_timeout))
    return WorkspaceClient(config=config)


def _given(**kwargs) -> dict:
    return {key: value for key, value in kwargs.items() if value is not None}


def _dicts(listing: Callable[[], Iterable]) -> Iterator[dict]:
    """Every item of an SDK listing (it pages as it goes) as a dict, with errors translated page by page."""
    with translated():
        for item in listing():
            yield item.as_dict()


class RestSource:
    """One workspace's REST API in the terms the collectors ask for. Listings are iterators over every page."""

    def __init__(self, client: WorkspaceClient):
        self.client = client

    @classmethod
    def connect(cls, settings: WorkspaceSettings, retry_timeout: float = RETRY_TIMEOUT_SECONDS) -> "RestSource":
        """A source for the workspace (no request made yet). Raises ValueError when no credential can be found."""
        return cls(make_client(settings, retry_timeout=retry_timeout))

    def report_to(self, report: RequestLog) -> None:
        """Every HTTP response from now on, retries included, goes to report.api_request."""
        session = self.client.api_client._api_client._session  # the SDK has no public hook for this

        def hook(response, *args, **kwargs):
            report.api_request(endpoint_template(response.request.url), str(response.status_code))

        session.hooks["response"].append(hook)

    # -- the workspace

    @property
    def host(self) -> str:
        return self.client.config.host

    @property
    def config(self) -> Config:
        """The SDK's configuration: the SQL source signs its connections with the same credential."""
        return self.client.config

    def workspace_id(self, settings: WorkspaceSettings) -> str:
        """The configured id, else what the host metadata or the SCIM Me response header tells."""
        if settings.workspace_id:
            return str(settings.workspace_id)
        with translated():
            return str(self.client.get_workspace_id())

    def current_user(self) -> dict:
        with translated():
            return self.client.current_user.me().as_dict()

    # -- clusters

    def clusters(self, states: list[str]) -> Iterator[dict]:
        """Clusters in the given states (PENDING, RUNNING, TERMINATED, ...)."""
        wanted = ListClustersFilterBy(cluster_states=[State(s) for s in states])
        return _dicts(lambda: self.client.clusters.list(filter_by=wanted))

    def cluster(self, cluster_id: str) -> dict:
        with translated():
            return self.client.clusters.get(cluster_id).as_dict()

    def cluster_events(self, cluster_id: str, start_ms: int, end_ms: int | None = None,
                       types: list[str] | None = None) -> Iterator[dict]:
        """The cluster's events from start_ms on, oldest first."""
        window = _given(start_time=start_ms, end_time=end_ms,
                        event_types=[EventType(t) for t in types] if types else None)
        return _dicts(lambda: self.client.clusters.events(cluster_id, **window, order=GetEventsOrder.ASC,
                                                          page_size=500))

    # -- jobs

    def jobs(self, page_size: int = 100) -> Iterator[dict]:
        return _dicts(lambda: self.client.jobs.list(limit=page_size))

    def job_runs(self, *, start_time_from: int | None = None, start_time_to: int | None = None,
                 active_only: bool | None = None, completed_only: bool | None = None,
                 expand_tasks: bool | None = None, run_type: str | None = None) -> Iterator[dict]:
        """Runs, newest first, 25 to a page (runs/list's largest)."""
        filters = _given(start_time_from=start_time_from, start_time_to=start_time_to, active_only=active_only,
                         completed_only=completed_only, expand_tasks=expand_tasks,
                         run_type=RunType(run_type) if run_type else None)
        return _dicts(lambda: self.client.jobs.list_runs(limit=25, **filters))

    def get_run(self, run_id: int) -> dict:
        with translated():
            return self.client.jobs.get_run(int(run_id)).as_dict()

    # -- pipelines

    def pipelines(self, page_size: int = 100) -> Iterator[dict]:
        return _dicts(lambda: self.client.pipelines.list_pipelines(max_results=page_size))

    def pipeline(self, pipeline_id: str) -> dict:
        with translated():
            return self.client.pipelines.get(pipeline_id).as_dict()

    def pipeline_updates(self, pipeline_id: str, page_size: int) -> list[dict]:
        """One page of the pipeline's updates, newest first."""
        with translated():
            page = self.client.pipelines.list_updates(pipeline_id, max_results=page_size)
            return [update.as_dict() for update in page.updates or []]

    def pipeline_update(self, pipeline_id: str, update_id: str) -> dict:
        with translated():
            update = self.client.pipelines.get_update(pipeline_id, update_id).update
        return update.as_dict() if update else {}

    def pipeline_events(self, pipeline_id: str, since_ms: float, page_size: int) -> Iterator[tuple[list[dict], bool]]:
        """Pages of the pipeline's events from since_ms on, oldest first, each with whether it is the last.

        Read raw, because the SDK drops an event's `details`. The API filters on timestamp, id, update_id and level
        only, and takes a page_token only with max_results: the filter and order travel inside the token."""
        path = f"/api/2.0/pipelines/{pipeline_id}/events"
        query: dict = {"filter": f"timestamp >= '{iso_ms(since_ms)}'", "order_by": "timestamp asc",
                       "max_results": page_size}
        while True:
            with translated():
                page = self.client.api_client.do("GET", path, query=query)
            token = page.get("next_page_token")
            yield page.get("events") or [], not token
            if not token:
                return
            query = {"page_token": token, "max_results": page_size}

    # -- SQL warehouses and their queries

    def warehouses(self) -> Iterator[dict]:
        return _dicts(self.client.warehouses.list)

    def warehouse(self, warehouse_id: str) -> dict:
        with translated():
            return self.client.warehouses.get(warehouse_id).as_dict()

    def query_history(self, *, start_ms: int | None = None, end_ms: int | None = None,
                      statement_ids: list[str] | None = None, page_size: int = 500) -> Iterator[dict]:
        """Queries started in [start_ms, end_ms] or with the given ids, newest first, all pages, with metrics."""
        if statement_ids is not None:
            query_filter = QueryFilter(statement_ids=statement_ids)
        elif start_ms is not None or end_ms is not None:
            query_filter = QueryFilter(query_start_time_range=TimeRange(start_time_ms=start_ms, end_time_ms=end_ms))
        else:
            query_filter = None
        token = None
        while True:
            with translated():
                page = self.client.query_history.list(**_given(filter_by=query_filter), include_metrics=True,
                                                      max_results=page_size, page_token=token)
            for query in page.res or []:
                yield query.as_dict()
            token = page.next_page_token
            if not page.has_next_page or not token:
                return

