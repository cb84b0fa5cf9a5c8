"""Configuration: defaults that work with only DATABRICKS_HOST and a credential, a strictly validated YAML file for the rest."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

DEFAULT_LISTEN = "0.0.0.0:9977"
# shard.index taken from a StatefulSet pod's ordinal, the end of its host name.
FROM_HOSTNAME = "from_hostname"


class ConfigError(Exception):
    """A configuration problem; the message names the file, the key and what is wrong."""


@dataclass
class CollectorSettings:
    name: str
    enabled: bool
    interval: float
    timeout: float
    options: dict[str, Any] = field(default_factory=dict)
    validated: bool = False        # the collector's validate_options has typed the options


@dataclass
class SinkSettings:
    name: str
    enabled: bool
    interval: float
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkspaceSettings:
    name: str
    # Passed to databricks-sdk's Config as keyword arguments; empty means "from the environment / ~/.databrickscfg".
    auth: dict[str, str]
    workspace_id: str | None = None
    # SQL collectors (system tables): the warehouse they query, and a CA bundle for its TLS certificate.
    warehouse_id: str | None = None
    tls_ca_bundle: str | None = None
    index: int = 0              # position in the file: account-wide work (budgets) is done by the first workspace

    @property
    def host(self) -> str:
        return self.auth.get("host") or os.environ.get("DATABRICKS_HOST", "")


@dataclass
class Settings:
    workspaces: list[WorkspaceSettings]
    collectors: dict[str, CollectorSettings]
    sinks: dict[str, SinkSettings] = field(default_factory=dict)
    state_file: str | None = None
    lookback: float = 3600.0
    listen_address: str = DEFAULT_LISTEN
    log_level: str = "info"
    log_format: str = "text"
    max_series_per_collector: int = 50_000
    max_series_per_workspace: int = 200_000
    shard_index: int = 0
    shard_count: int = 1
    source: str = "<defaults>"


# Keys of a workspace entry that go straight to databricks-sdk's Config (its unified auth).
AUTH_KEYS = (
    "host", "token", "profile", "config_file", "auth_type", "client_id", "client_secret",
    "azure_client_id", "azure_client_secret", "azure_tenant_id", "azure_workspace_resource_id",
)
SECRET_KEYS = ("token", "client_secret", "azure_client_secret")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_duration(value: Any) -> float:
    """'30s', '5m', '1h', '1d', '250ms' or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration such as 30s, 5m or 1h, got {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def expand_env(value: str, where: str) -> str:
    """${VAR} in a string comes from the environment, so secrets need not be written into the file."""
    def sub(match):
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return os.environ[name]
    return _ENV_REF.sub(sub, value)


class Reader:
    """Walks one mapping of the YAML document, remembering where it is so errors can name the key."""

    def __init__(self, source: str, path: str, data: Any):
        self.source, self.path = source, path
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise self.error(f"expected a mapping, got {type(data).__name__}")
        self.data, self.used = data, set()

    def where(self, key: str | None = None) -> str:
        path = f"{self.path}.{key}" if self.path and key else (key or self.path or "<top level>")
        return f"{self.source}: {path}"

    def error(self, message: str, key: str | None = None) -> ConfigError:
        return ConfigError(f"{self.where(key)}: {message}")

    def get(self, key: str, kind: str, default: Any = None, check: Callable[[Any], Any] | None = None) -> Any:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            return default
        value = self.data[key]
        try:
            if kind in ("int", "float", "bool", "duration") and isinstance(value, str) and _ENV_REF.search(value):
                # `shard.index: ${SHARD_INDEX}`: the environment holds text, read here as YAML reads a scalar.
                value = yaml.safe_load(expand_env(value, self.where(key)))
            value = _coerce(value, kind)
            if isinstance(value, str):
                value = expand_env(value, self.where(key))
            return check(value) if check else value
        except ConfigError:
            raise
        except (TypeError, ValueError, re.error) as exc:
            raise self.error(str(exc), key) from None

    def child(self, key: str) -> "Reader":
        self.used.add(key)
        return Reader(self.source, f"{self.path}.{key}" if self.path else key, self.data.get(key))

    def finish(self) -> None:
        unknown = sorted(set(map(str, self.data)) - self.used)
        if unknown:
            raise self.error(f"unknown key (allowed: {', '.join(sorted(self.used))})", unknown[0])


def _coerce(value: Any, kind: str) -> Any:
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {value!r}")
    elif kind == "str":
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise TypeError(f"expected a string, got {value!r}")
        value = str(value)
    elif kind == "duration":
        value = parse_duration(value)
    elif kind == "regex_list":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TypeError(f"expected a list of regular expressions, got {value!r}")
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    elif kind == "list":
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {value!r}")
    elif kind == "mapping":      # structured: the collector's validate_options checks the entries
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise TypeError(f"expected a mapping, got {value!r}")
    elif kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"expected an integer, got {value!r}")
    elif kind == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"expected a number, got {value!r}")
        value = float(value)
    elif kind == "str_list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TypeError(f"expected a list of strings, got {value!r}")
    elif kind == "dict":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise TypeError(f"expected a mapping, got {value!r}")
        value = {k: str(v) for k, v in value.items()}
    return value


def option_value(value: Any, kind: str, positive: bool = False) -> Any:
    """An entry of a structured option (a collector's validate_options), coerced and checked like a top-level key
    of that kind; raises TypeError or ValueError with the reason, for the collector to name the key."""
    value = _coerce(value, kind)
    return _positive(value) if positive else value


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


def _not_negative(value: float) -> float:
    if value < 0:
        raise ValueError("must not be negative (0 means no limit)")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value.lower() not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}")
        return value.lower()
    return check


def parse_listen_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return value


def read_yaml(path: str, what: str) -> Any:
    """A YAML document, or a ConfigError naming the file and what is wrong with it."""
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def load(path: str | None, collector_specs: dict[str, Any], sink_specs: dict[str, Any] | None = None) -> Settings:
    """Read settings from a YAML file (or defaults when path is None). collector_specs and sink_specs map a
    component's name to its class, which declares default_interval, default_enabled and its own options
    (key -> (kind, default))."""
    source = path or "<defaults>"
    top = Reader(source, "", read_yaml(path, "configuration file") if path else {})
    settings = Settings(workspaces=[], collectors={}, source=source)
    settings.state_file = top.get("state_file", "str")
    settings.lookback = top.get("lookback", "duration", 3600.0)
    web = top.child("web")
    settings.listen_address = web.get("listen_address", "str", DEFAULT_LISTEN, parse_listen_address)
    web.finish()
    log = top.child("log")
    settings.log_level = log.get("level", "str", "info", _choice("debug", "info", "warning", "error"))
    settings.log_format = log.get("format", "str", "text", _choice("text", "json"))
    log.finish()

    cardinality = top.child("cardinality")
    settings.max_series_per_collector = cardinality.get("max_series_per_collector", "int", 50_000, _not_negative)
    settings.max_series_per_workspace = cardinality.get("max_series_per_workspace", "int", 200_000, _not_negative)
    cardinality.finish()
    shard = top.child("shard")
    settings.shard_count = shard.get("count", "int", 1, _positive)
    if shard.data.get("index") == FROM_HOSTNAME:
        shard.used.add("index")
        settings.shard_index = _pod_ordinal(socket.gethostname(), shard)
    else:
        settings.shard_index = shard.get("index", "int", 0, _not_negative)
    if settings.shard_index >= settings.shard_count:
        raise shard.error(f"must be below shard.count ({settings.shard_count})", "index")
    shard.finish()

    collectors = top.child("collectors")
    for name, spec in collector_specs.items():
        section = collectors.child(name)
        interval = section.get("interval", "duration", float(spec.default_interval), _positive)
        settings.collectors[name] = CollectorSettings(
            name=name,
            enabled=section.get("enabled", "bool", spec.default_enabled),
            interval=interval,
            # A cycle that takes longer than its interval is a failure: the next one is already due.
            timeout=section.get("timeout", "duration", max(interval, 10.0), _positive),
            options={key: section.get(key, kind, default) for key, (kind, default) in spec.options.items()},
        )
        section.finish()
        # Structured options (budgets, discounts) are checked by the collector itself, named by file and key.
        if settings.collectors[name].enabled:
            spec.validate_options(settings.collectors[name].options, section.error)
            settings.collectors[name].validated = True
    collectors.finish()

    sinks = top.child("sinks")
    for name, spec in (sink_specs or {}).items():
        section = sinks.child(name)
        settings.sinks[name] = SinkSettings(
            name=name,
            enabled=section.get("enabled", "bool", spec.default_enabled),
            interval=section.get("interval", "duration", float(spec.default_interval), _positive),
            options={key: section.get(key, kind, default) for key, (kind, default) in spec.options.items()},
        )
        section.finish()
        # What the kinds alone cannot check (limits, choices, optional packages), named by file and key; only for
        # enabled sinks, since some checks read the environment (OTEL_EXPORTER_OTLP_PROTOCOL=grpc set for another
        # program must not stop an exporter whose OTLP sink is off).
        if settings.sinks[name].enabled and hasattr(spec, "validate_options"):
            spec.validate_options(settings.sinks[name].options, section.error)
    sinks.finish()

    entries = top.data.get("workspaces")
    top.used.add("workspaces")
    if entries is None:
        # The one workspace of the environment: DATABRICKS_HOST and its credential, and its SQL warehouse.
        entries = [{}]
        warehouse = os.environ.get("DATABRICKS_WAREHOUSE_ID")
        if warehouse:
            try:
                entries = [{"warehouse_id": _warehouse_id(warehouse)}]
            except ValueError as exc:
                raise ConfigError(f"DATABRICKS_WAREHOUSE_ID: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise top.error("expected a non-empty list of workspaces", "workspaces")
    names = set()
    for index, entry in enumerate(entries):
        reader = Reader(source, f"workspaces[{index}]", entry)
        auth = {key: value for key in AUTH_KEYS if (value := reader.get(key, "str")) is not None}
        if "host" in auth and not re.match(r"^(https?://)?[A-Za-z0-9.\-\[\]:]+/?$", auth["host"]):
            raise reader.error(f"not a workspace URL: {auth['host']!r}", "host")
        workspace = WorkspaceSettings(
            name=reader.get("name", "str") or "",
            auth=auth,
            workspace_id=reader.get("workspace_id", "str"),
            warehouse_id=reader.get("warehouse_id", "str", check=_warehouse_id),
            tls_ca_bundle=reader.get("tls_ca_bundle", "str", check=_readable_file),
            index=index,
        )
        reader.finish()
        if not workspace.host and not auth.get("profile") and not os.environ.get("DATABRICKS_CONFIG_PROFILE"):
            where = reader.where("host") if path else "DATABRICKS_HOST"
            raise ConfigError(f"{where}: no workspace host: set DATABRICKS_HOST (and a credential such as "
                              f"DATABRICKS_TOKEN) or give workspaces[].host in a --config.file")
        workspace.name = workspace.name or _default_name(workspace.host) or f"workspace-{index}"
        if workspace.name in names:
            raise reader.error(f"duplicate workspace name {workspace.name!r}", "name")
        names.add(workspace.name)
        settings.workspaces.append(workspace)
    top.finish()
    settings.workspaces = [w for w in settings.workspaces
                           if shard_of(w, settings.shard_count) == settings.shard_index]
    return settings


def _pod_ordinal(hostname: str, shard: Reader) -> int:
    """The ordinal a StatefulSet gives its pod, which is also the pod's host name: `databricks-exporter-2` is 2."""
    match = re.fullmatch(r".+-(\d+)", hostname)
    if not match:
        raise shard.error(f"{FROM_HOSTNAME}: the host name {hostname!r} does not end in -<ordinal> as a StatefulSet "
                          f"pod's does (such as databricks-exporter-2); give the index as a number instead", "index")
    return int(match.group(1))


def shard_of(workspace: WorkspaceSettings, count: int) -> int:
    """Which of `count` exporters watches this workspace: a stable hash of its host (or name), so every
    exporter computes the same split without talking to the others."""
    key = (workspace.host or workspace.name).lower().rstrip("/").removeprefix("https://").removeprefix("http://")
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % count


def _warehouse_id(value: str) -> str:
    if not re.match(r"^[A-Za-z0-9]+$", value):
        raise ValueError(f"expected a SQL warehouse id such as 1a2b3c4d5e6f7a8b, got {value!r}")
    return value


def _readable_file(value: str) -> str:
    if not os.path.isfile(value) or not os.access(value, os.R_OK):
        raise ValueError(f"not a readable file: {value!r}")
    return value


def _default_name(host: str) -> str:
    return re.sub(r"^https?://", "", host or "").rstrip("/")
