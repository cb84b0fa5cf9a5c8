"""The REST source: one databricks-sdk WorkspaceClient per workspace, with every request counted by endpoint and status."""

from __future__ import annotations

import logging
import re
from typing import Callable
from urllib.parse import urlparse

from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config

from ..config import WorkspaceSettings

log = logging.getLogger(__name__)

# The SDK retries 429/503 for up to retry_timeout_seconds; a collector must give up well before its own timeout.
HTTP_TIMEOUT_SECONDS = 30
RETRY_TIMEOUT_SECONDS = 60

_KEEP_SEGMENT = re.compile(r"^(\d+\.\d+|v\d+|[A-Za-z_\-.]+)$")


def endpoint_template(url: str) -> str:
    """'/api/2.0/sql/warehouses/1a2b3c' -> '/api/2.0/sql/warehouses/{id}': ids never become label values."""
    path = urlparse(url).path
    return "/".join(s if _KEEP_SEGMENT.match(s) or not s else "{id}" for s in path.split("/"))


def make_client(settings: WorkspaceSettings, http_timeout: float = HTTP_TIMEOUT_SECONDS,
                retry_timeout: float = RETRY_TIMEOUT_SECONDS) -> WorkspaceClient:
    """A client using databricks-sdk's unified auth: PAT, OAuth M2M, Azure service principal or a profile,
    from the workspace's settings, then the environment, then ~/.databrickscfg."""
    config = Config(**settings.auth, http_timeout_seconds=int(http_timeout),
                    retry_timeout_seconds=int(retry_timeout))
    return WorkspaceClient(config=config)


def count_requests(client: WorkspaceClient, record: Callable[[str, str], None]) -> None:
    """Call record(endpoint, status_code) for every HTTP response the client receives, retries included."""
    session = client.api_client._api_client._session  # the SDK has no public hook for this

    def hook(response, *args, **kwargs):
        record(endpoint_template(response.request.url), str(response.status_code))

    session.hooks["response"].append(hook)


def resolve_workspace_id(client: WorkspaceClient, settings: WorkspaceSettings) -> str:
    """The configured id, else what the host metadata or the SCIM Me response header tells."""
    if settings.workspace_id:
        return str(settings.workspace_id)
    return str(client.get_workspace_id())


def serving_endpoints(client: WorkspaceClient) -> list[dict]:
    """Every model serving endpoint as the API spells it. Read raw: the SDK's summary model drops fields of the
    served entities (scale_to_zero_enabled, workload_size)."""
    return client.api_client.do("GET", "/api/2.0/serving-endpoints").get("endpoints") or []


def serving_endpoint_metrics(client: WorkspaceClient, name: str) -> str:
    """The endpoint's metrics export: Prometheus/OpenMetrics text."""
    contents = client.serving_endpoints.export_metrics(name).contents
    raw = contents.read() if hasattr(contents, "read") else contents
    return raw.decode() if isinstance(raw, bytes) else str(raw or "")
