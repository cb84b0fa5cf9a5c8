"""Where an exporter's shard index comes from: the file, the environment, or a StatefulSet pod's ordinal."""

import socket

import pytest

from databricks_exporter.collectors import COLLECTORS
from databricks_exporter.config import ConfigError, load

HOSTS = "workspaces: [{host: 'https://adb-1.azuredatabricks.net', token: t}]\n"


@pytest.fixture
def config(tmp_path):
    def write(shard: str) -> str:
        path = tmp_path / "config.yml"
        path.write_text(HOSTS + shard)
        return str(path)
    return write


def load_shard(path: str) -> tuple[int, int]:
    settings = load(path, COLLECTORS)
    return settings.shard_index, settings.shard_count


def test_index_and_count_come_from_the_environment(config, monkeypatch):
    monkeypatch.setenv("SHARD_INDEX", "2")
    monkeypatch.setenv("SHARD_COUNT", "5")
    assert load_shard(config("shard: {index: '${SHARD_INDEX}', count: '${SHARD_COUNT}'}\n")) == (2, 5)


def test_an_environment_value_that_is_no_number_names_the_key(config, monkeypatch):
    monkeypatch.setenv("SHARD_INDEX", "two")
    path = config("shard: {index: '${SHARD_INDEX}', count: 3}\n")
    with pytest.raises(ConfigError, match=r"shard\.index: expected an integer, got 'two'") as error:
        load(path, COLLECTORS)
    assert str(error.value).startswith(path)


@pytest.mark.parametrize("hostname, index", [("databricks-exporter-0", 0), ("databricks-exporter-2", 2),
                                             ("exporter-eu-west-1-1", 1)])
def test_from_hostname_takes_the_statefulset_ordinal(config, monkeypatch, hostname, index):
    monkeypatch.setattr(socket, "gethostname", lambda: hostname)
    assert load_shard(config("shard: {index: from_hostname, count: 3}\n")) == (index, 3)


@pytest.mark.parametrize("hostname", ["databricks-exporter-7d9f8b6c4-x2k9q", "databricks-exporter", "exporter-",
                                      "-3x", "3"])
def test_from_hostname_without_an_ordinal_is_a_config_error(config, monkeypatch, hostname):
    monkeypatch.setattr(socket, "gethostname", lambda: hostname)
    path = config("shard: {index: from_hostname, count: 3}\n")
    with pytest.raises(ConfigError) as error:
        load(path, COLLECTORS)
    message = str(error.value)
    assert message.startswith(f"{path}: shard.index: from_hostname: the host name {hostname!r} does not end in "
                              "-<ordinal>"), message


def test_an_ordinal_beyond_the_count_is_a_config_error(config, monkeypatch):
    """A StatefulSet scaled to 4 replicas while the file still says count 3: pod 3 must not start watching."""
    monkeypatch.setattr(socket, "gethostname", lambda: "databricks-exporter-3")
    with pytest.raises(ConfigError, match=r"shard\.index: must be below shard\.count \(3\)"):
        load(config("shard: {index: from_hostname, count: 3}\n"), COLLECTORS)
