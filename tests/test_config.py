"""Configuration: defaults from the environment, strict validation with messages that name the file and the key."""

import pytest

from databricks_exporter.collectors import COLLECTORS
from databricks_exporter.config import ConfigError, load, parse_duration


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path, text):
    path = tmp_path / "config.yml"
    path.write_text(text)
    return str(path)


def test_defaults_need_only_the_environment(monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-1.azuredatabricks.net")
    settings = load(None, COLLECTORS)
    assert [w.host for w in settings.workspaces] == ["https://adb-1.azuredatabricks.net"]
    defaults = {n: (c.enabled, c.interval) for n, c in settings.collectors.items()}
    assert {n: defaults[n] for n in ("clusters", "jobs", "warehouses")} == {
        "clusters": (True, 30), "jobs": (True, 60), "warehouses": (True, 30)}
    assert settings.lookback == 3600


def test_the_environment_names_the_sql_warehouse(monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-1.azuredatabricks.net")
    monkeypatch.delenv("DATABRICKS_WAREHOUSE_ID", raising=False)
    assert load(None, COLLECTORS).workspaces[0].warehouse_id is None
    monkeypatch.setenv("DATABRICKS_WAREHOUSE_ID", "1a2b3c4d5e6f7a8b")
    assert load(None, COLLECTORS).workspaces[0].warehouse_id == "1a2b3c4d5e6f7a8b"
    monkeypatch.setenv("DATABRICKS_WAREHOUSE_ID", "not a warehouse")
    with pytest.raises(ConfigError, match="^DATABRICKS_WAREHOUSE_ID: expected a SQL warehouse id"):
        load(None, COLLECTORS)


def test_no_host_anywhere_is_an_error():
    with pytest.raises(ConfigError, match="DATABRICKS_HOST"):
        load(None, COLLECTORS)


def test_full_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PROD_TOKEN", "dapi-from-env")
    settings = load(write(tmp_path, """
state_file: /tmp/x.json
lookback: 2h
collectors:
  jobs: {interval: 2m, include: ["^etl-"], exclude: ["test"], task_metrics: true}
  clusters: {enabled: false}
workspaces:
  - name: prod
    host: https://prod.cloud.databricks.com
    token: ${PROD_TOKEN}
  - name: dev
    host: https://dev.cloud.databricks.com
    client_id: abc
    client_secret: s3cret-value
"""), COLLECTORS)
    assert settings.lookback == 7200 and settings.state_file == "/tmp/x.json"
    jobs = settings.collectors["jobs"]
    assert (jobs.interval, jobs.options["include"], jobs.options["task_metrics"]) == (120, ["^etl-"], True)
    assert settings.collectors["clusters"].enabled is False
    assert settings.workspaces[0].auth == {"host": "https://prod.cloud.databricks.com", "token": "dapi-from-env"}
    assert settings.workspaces[1].auth["client_id"] == "abc"


@pytest.mark.parametrize("text, key, reason", [
    ("lookbak: 1h\n", "lookbak", "unknown key"),
    ("collectors: {jobs: {intervall: 5s}}\n", "collectors.jobs.intervall", "unknown key"),
    ("collectors: {jobs: {interval: soon}}\n", "collectors.jobs.interval", "duration"),
    ("collectors: {jobs: {interval: 0}}\n", "collectors.jobs.interval", "greater than zero"),
    ("collectors: {jobs: {enabled: yes please}}\n", "collectors.jobs.enabled", "true or false"),
    ("collectors: {jobs: {include: ['(']}}\n", "collectors.jobs.include", "regular expression"),
    ("collectors: {nope: {}}\n", "collectors.nope", "unknown key"),
    ("workspaces: []\n", "workspaces", "non-empty list"),
    ("workspaces: [{host: 'https://a', tokn: x}]\n", "workspaces[0].tokn", "unknown key"),
    ("workspaces: [{token: x}]\n", "workspaces[0].host", "no workspace host"),
    ("workspaces: [{host: 'https://a', token: '${NOT_SET_ANYWHERE}'}]\n", "workspaces[0].token", "NOT_SET_ANYWHERE"),
    ("log: {format: xml}\n", "log.format", "one of"),
    ("shard: {index: 2, count: 2}\n", "shard.index", "below shard.count"),
    ("cardinality: {max_series_per_collector: -1}\n", "cardinality.max_series_per_collector", "negative"),
    ("web: {listen_address: 'localhost'}\n", "web.listen_address", "HOST:PORT"),
    ("collectors: {tables: {tables: {main.orders: {}}}}\n", "collectors.tables.tables[main.orders]",
     "catalog.schema.table"),
    ("collectors: {custom: {queries: [{name: rows, sql: 'SELECT 1 AS n', value_column: n, type: counter}]}}\n",
     "collectors.custom.queries[0].name", "ends in _total"),
    ("- just\n- a list\n", "<top level>", "expected a mapping"),
    ("a: [unclosed\n", "", "not valid YAML"),
])
def test_bad_files_name_the_file_the_key_and_the_reason(tmp_path, monkeypatch, text, key, reason):
    if not key.endswith(".host"):   # a workspace without a host falls back to DATABRICKS_HOST
        monkeypatch.setenv("DATABRICKS_HOST", "https://example.cloud.databricks.com")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load(path, COLLECTORS)
    message = str(error.value)
    assert message.startswith(path) and key in message and reason in message, message


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read"):
        load("/nonexistent/config.yml", COLLECTORS)


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), ("250ms", 0.25),
                                           (90, 90), ("2.5m", 150)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_shards_split_the_workspaces_between_exporters(tmp_path):
    hosts = [f"https://adb-{i}.azuredatabricks.net" for i in range(40)]
    text = "workspaces:\n" + "".join(f"  - {{host: '{h}', token: t}}\n" for h in hosts)
    seen = []
    for index in range(3):
        path = write(tmp_path, text + f"shard: {{index: {index}, count: 3}}\n")
        seen.append([w.host for w in load(path, COLLECTORS).workspaces])
    assert sorted(sum(seen, [])) == sorted(hosts)          # every workspace watched exactly once
    assert all(len(share) >= 5 for share in seen)          # and the shares are roughly even
    assert seen[0] == [w.host for w in load(write(tmp_path, text + "shard: {index: 0, count: 3}\n"),
                                             COLLECTORS).workspaces]   # deterministic


def test_the_default_state_file_is_the_services_state_directory_else_the_users():
    from databricks_exporter.config import default_state_file

    environ = {"STATE_DIRECTORY": "/var/lib/x:/var/lib/y", "HOME": "/home/u"}
    assert default_state_file(environ) == "/var/lib/x/state.json"
    assert default_state_file({"XDG_STATE_HOME": "/s", "HOME": "/home/u"}) == "/s/databricks-exporter/state.json"
    assert default_state_file({"HOME": "/home/u"}).endswith("/.local/state/databricks-exporter/state.json")


def test_retention_is_a_duration_of_seven_days_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", "https://example.cloud.databricks.com")
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi0123456789")
    from databricks_exporter.collectors import COLLECTORS
    from databricks_exporter.config import load
    from databricks_exporter.sinks import SINKS

    path = tmp_path / "config.yml"
    path.write_text("retention: 2d\n")
    assert load(str(path), COLLECTORS, SINKS).retention == 2 * 86400
    assert load(None, COLLECTORS, SINKS).retention == 7 * 86400
