"""The source seam: no module outside sources/ imports databricks-sdk or databricks-sql-connector, and what goes
wrong in Databricks reaches the collectors as the exporter's own errors, whether the SDK raises it from its own
classes or from the simulated workspace's real HTTP answers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from databricks.sdk import errors as sdk_errors

from databricks_exporter.config import WorkspaceSettings
from databricks_exporter.sources import errors
from databricks_exporter.sources.rest import RestSource, translate

PACKAGE = Path(__file__).resolve().parent.parent / "exporter" / "databricks_exporter"


def imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_sources_import_the_sdk_or_the_connector():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "sources":
            continue
        for name in imported_modules(ast.parse(path.read_text(), str(path))):
            if name.startswith(("databricks.sdk", "databricks.sql")):
                offenders.append(f"{relative}: {name}")
    assert offenders == []
    # The walk does see such imports where they are.
    assert "databricks.sdk.errors" in imported_modules(ast.parse((PACKAGE / "sources" / "rest.py").read_text()))
    assert "databricks.sql" in imported_modules(ast.parse((PACKAGE / "sources" / "sql.py").read_text()))


@pytest.mark.parametrize("status, error_code, expected", [
    (403, "PERMISSION_DENIED", errors.Forbidden),
    (401, "UNAUTHENTICATED", errors.Unauthenticated),
    (404, "RESOURCE_DOES_NOT_EXIST", errors.NotFound),
    (404, "NOT_FOUND", errors.NotFound),
    (429, "REQUEST_LIMIT_EXCEEDED", errors.Throttled),
    (429, "TOO_MANY_REQUESTS", errors.Throttled),
    (503, "TEMPORARILY_UNAVAILABLE", errors.Unavailable),
    (500, "INTERNAL_ERROR", errors.Unavailable),
    (400, "INVALID_PARAMETER_VALUE", errors.SourceError),
])
def test_the_sdks_errors_become_the_exporters(status, error_code, expected):
    # The class the SDK raises for that answer: by error_code where it has one, else by HTTP status.
    sdk_class = sdk_errors.ERROR_CODE_MAPPING.get(error_code) or sdk_errors.STATUS_CODE_MAPPING[status]
    ours = translate(sdk_class("Simulated answer", error_code=error_code))
    assert type(ours) is expected and str(ours) == "Simulated answer"
    assert isinstance(ours.__cause__, sdk_class)


def test_what_is_not_an_sdk_error_passes_unchanged():
    malformed = KeyError("run_id")
    assert translate(malformed) is malformed


def source(simulator, retry_timeout: float = 2) -> RestSource:
    settings = WorkspaceSettings(name="sim", auth={"host": simulator.url, "token": simulator.token})
    return RestSource.connect(settings, retry_timeout=retry_timeout)


def test_the_simulated_workspaces_answers_through_the_real_sdk(simulator):
    rest = source(simulator)
    with pytest.raises(errors.NotFound):
        rest.get_run(987654321)
    with pytest.raises(errors.NotFound):
        rest.cluster("0000-000000-nosuchcluster")

    simulator.faults.set({"rules": [{"endpoint": "GET /api/2.1/clusters/list", "rate_limited": 1.0}]})
    with pytest.raises(errors.Throttled):       # still 429 when the SDK's retries give up
        list(rest.clusters(["RUNNING"]))
    simulator.faults.set({"rules": [{"endpoint": "GET /api/2.0/sql/warehouses", "unavailable": 1.0}]})
    with pytest.raises(errors.Unavailable):     # 503
        list(rest.warehouses())
    simulator.faults.set({"rules": [{"endpoint": "GET /api/2.2/jobs/list", "server_error": 1.0}]})
    with pytest.raises(errors.Unavailable):     # 500
        list(rest.jobs())
    simulator.faults.set({"token_expired": True})
    with pytest.raises(errors.Unauthenticated):     # 401
        rest.current_user()
    simulator.faults.clear()
    assert rest.current_user()["userName"]
