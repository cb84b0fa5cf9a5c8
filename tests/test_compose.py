"""docker-compose.yml and the image, tested without Docker: the file parses, everything it mounts exists and is
the configuration the other tests run, ports and addresses agree across the stack, and the image is non-root
with a health check."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import free_port, http_get, wait_for
from test_integration import parse, total
from test_rules import ALERTMANAGER_CONFIG, PROMETHEUS, RULE_FILES

from databricks_exporter import config
from databricks_sim.server import DEFAULT_TOKEN

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
ENV_EXAMPLE = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line.strip() and not line.startswith("#"))

PORTS = {"exporter": 9977, "prometheus": 9090, "alertmanager": 9093, "grafana": 3000, "simulator": 8080}


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ${VAR:-default} (default when unset or empty) and ${VAR-default} (when unset)."""
    env = env or {}

    def replace(match: re.Match) -> str:
        name, colon, default = match.group(1), match.group(2), match.group(3) or ""
        if name in env and (env[name] or not colon):
            return env[name]
        return default
    return re.sub(r"\$\{(\w+)(?:(:?)-([^}]*))?\}", replace, str(value))


def bind_mounts(service: str) -> dict[str, Path]:
    """Container path -> host path of the service's bind mounts (named volumes left out)."""
    mounts = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def host_path(service: str, container_path: str) -> Path:
    """Where a path inside the service's container comes from on the host, through its bind mounts."""
    for target, source in sorted(bind_mounts(service).items(), key=lambda item: -len(item[0])):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / Path(container_path).relative_to(target)
    raise AssertionError(f"{service}: nothing mounted at {container_path}")


def flag(service: str, name: str) -> str:
    command = SERVICES[service]["command"]
    command = shlex.split(command) if isinstance(command, str) else command
    (value,) = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}=")]
    return value


def test_the_stack_has_its_five_services():
    assert set(SERVICES) == {"simulator", "exporter", "prometheus", "alertmanager", "grafana"}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_bind_mount_exists_in_the_repository(service):
    for target, source in bind_mounts(service).items():
        assert source.exists(), f"{service} mounts {source.relative_to(ROOT)} at {target}, which does not exist"
        assert ROOT in source.parents, "mounts stay inside the repository"
    named = [v.split(":")[0] for v in SERVICES[service].get("volumes", []) if not v.startswith(".")]
    assert set(named) <= set(COMPOSE.get("volumes") or {}), "named volumes are declared"


def test_ports_are_the_documented_ones():
    for service, port in PORTS.items():
        assert f"{port}:{port}" in SERVICES[service]["ports"], service
    assert config.DEFAULT_LISTEN.endswith(":9977")


# --- Prometheus runs the files the rule tests run --------------------------------------------------------------

def test_prometheus_runs_the_tested_config_and_rules():
    config_path = flag("prometheus", "config.file")
    assert host_path("prometheus", config_path) == PROMETHEUS / "prometheus.yml"
    prometheus = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    loaded = set()
    for pattern in prometheus["rule_files"]:
        container_glob = str(Path(config_path).parent / pattern)
        directory = host_path("prometheus", str(Path(container_glob).parent))
        loaded |= set(directory.glob(Path(pattern).name))
    assert loaded == set(RULE_FILES), "the rule files Prometheus loads in compose are the ones promtool tests"


def test_prometheus_scrapes_and_alerts_the_compose_services():
    prometheus = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == "databricks"]
    assert job["static_configs"][0]["targets"] == [f"exporter:{PORTS['exporter']}"]
    targets = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == [f"alertmanager:{PORTS['alertmanager']}"]


# --- Alertmanager runs the tested config, templates and secrets from the mounted folder ---------------------------

def test_alertmanager_runs_the_tested_config():
    config_path = flag("alertmanager", "config.file")
    assert host_path("alertmanager", config_path) == ALERTMANAGER_CONFIG
    alertmanager = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for pattern in alertmanager["templates"]:
        container_glob = Path(config_path).parent / pattern
        assert list(host_path("alertmanager", str(container_glob.parent)).glob(container_glob.name)), pattern


def test_alertmanager_secret_files_are_inside_the_mount_with_examples():
    for path in re.findall(r"_file:\s*(\S+)", ALERTMANAGER_CONFIG.read_text()):
        secret = host_path("alertmanager", path)
        assert secret.parent.is_dir(), path
        assert secret.with_name(secret.name + ".example").is_file(), f"{path} has no committed example"
    ignored = (ROOT / "alertmanager" / "secrets" / ".gitignore").read_text()
    assert "*" in ignored, "real secrets stay out of git"


# --- Grafana is provisioned from the generated dashboards ---------------------------------------------------------

def test_grafana_provisions_the_prometheus_service_and_the_dashboards():
    provisioning = host_path("grafana", "/etc/grafana/provisioning")
    assert provisioning == ROOT / "grafana" / "provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert datasource["url"] == f"http://prometheus:{PORTS['prometheus']}"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "databricks.yml").read_text())["providers"]
    dashboards = host_path("grafana", provider["options"]["path"])
    assert dashboards == ROOT / "grafana" / "dashboards" and list(dashboards.glob("*.json"))


def test_grafana_is_open_to_viewers_and_starts_on_the_overview():
    environment = SERVICES["grafana"]["environment"]
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    home = host_path("grafana", environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert json.loads(home.read_text())["uid"] == "databricks-overview"


# --- the simulator by default, a real workspace from .env -----------------------------------------------------------

def test_by_default_the_exporter_watches_the_simulator():
    simulator, exporter = SERVICES["simulator"], SERVICES["exporter"]
    assert simulator["command"][:3] == ["simulate", "--listen", "0.0.0.0:8080"]
    assert interpolate(simulator["deploy"]["replicas"]) == "1"
    environment = exporter["environment"]
    assert interpolate(environment["DATABRICKS_HOST"]) == "http://simulator:8080"
    assert interpolate(environment["DATABRICKS_TOKEN"]) == DEFAULT_TOKEN


def test_the_simulator_serves_sql_that_the_exporter_reaches_and_trusts():
    """The billing and utilization panels need SQL: the simulator's listener, reachable by its service name, on the
    simulator's first serverless warehouse, with the CA it writes to a volume the exporter reads."""
    from databricks_exporter.cli import _parser
    from databricks_sim import SimulatedWorkspace

    simulator, exporter = SERVICES["simulator"], SERVICES["exporter"]
    args = _parser().parse_args(simulator["command"])
    assert args.sql_listen.endswith(":8443") and args.sql_hostname == "simulator" and args.seed == 1
    ca_file = interpolate(exporter["environment"]["SSL_CERT_FILE"])
    tls_volume = {v.split(":")[1]: v.split(":")[0] for v in simulator["volumes"]}[args.sql_tls_dir]
    exporter_mounts = {v.split(":")[1]: v.split(":")[0] for v in exporter["volumes"]}
    assert exporter_mounts[str(Path(ca_file).parent)] == tls_volume and Path(ca_file).name == "ca.pem"
    # a named volume takes the ownership of the image's directory: the one the non-root user owns
    assert args.sql_tls_dir == "/var/lib/databricks-exporter" and "chown exporter:exporter " + args.sql_tls_dir \
        in DOCKERFILE
    warehouse = next(w for w in SimulatedWorkspace(seed=args.seed).warehouses if w.serverless)
    assert interpolate(exporter["environment"]["DATABRICKS_WAREHOUSE_ID"]) == warehouse.id


def test_env_example_points_at_a_real_workspace_and_turns_the_simulator_off():
    simulator, environment = SERVICES["simulator"], SERVICES["exporter"]["environment"]
    assert interpolate(simulator["deploy"]["replicas"], ENV_EXAMPLE) == "0"
    host = interpolate(environment["DATABRICKS_HOST"], ENV_EXAMPLE)
    assert host.startswith("https://") and "simulator" not in host
    assert interpolate(environment["DATABRICKS_TOKEN"], ENV_EXAMPLE) != DEFAULT_TOKEN
    # no simulated warehouse or simulated CA for a real workspace
    assert interpolate(environment["DATABRICKS_WAREHOUSE_ID"], ENV_EXAMPLE) == ""
    assert interpolate(environment["SSL_CERT_FILE"], ENV_EXAMPLE) == "/etc/ssl/certs/ca-certificates.crt"
    # An OAuth .env leaves the token empty: it must stay empty, not become the simulator's token.
    oauth = {**ENV_EXAMPLE, "DATABRICKS_TOKEN": "", "DATABRICKS_CLIENT_ID": "id", "DATABRICKS_CLIENT_SECRET": "s"}
    assert interpolate(environment["DATABRICKS_TOKEN"], oauth) == ""
    assert ".env" in (ROOT / ".gitignore").read_text().split(), "a .env holds a credential"


def test_the_exporter_keeps_its_state_on_a_volume():
    exporter = SERVICES["exporter"]
    command = exporter["command"]
    state_file = command[command.index("--state.file") + 1]
    volumes = {v.split(":")[1]: v.split(":")[0] for v in exporter["volumes"]}
    assert str(Path(state_file).parent) in volumes and volumes[str(Path(state_file).parent)] in COMPOSE["volumes"]


# --- the image ---------------------------------------------------------------------------------------------------

def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Each build stage's instructions, a stage's own after those of the stage it starts FROM."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, args = line.strip().partition(" ")
        if name.upper() == "FROM":
            image, _, stage = args.partition(" AS ")
            current = [*stages.get(image.strip(), []), ("FROM", image.strip())]
            stages[stage.strip()] = current
        else:
            current.append((name.upper(), args.strip()))
    return stages


def instruction(name: str, stage: str = "exporter") -> list[str]:
    return [args for instr, args in dockerfile_stages()[stage] if instr == name]


def test_image_is_small_and_runs_the_exporter_by_default():
    assert list(dockerfile_stages())[-1] == "exporter", "the last stage is what `docker build .` makes"
    assert instruction("FROM") == ["python:3.11-slim", "base"]
    assert instruction("ENTRYPOINT") == ['["databricks-exporter"]']
    assert instruction("CMD") == ['["serve", "--log.format", "json"]']
    assert instruction("EXPOSE") == ["9977"]


def test_the_image_keeps_its_state_on_its_volume_by_default():
    # Without --state.file the exporter keeps its state in $STATE_DIRECTORY: the image's volume.
    assert instruction("ENV")[-1] == "STATE_DIRECTORY=/var/lib/databricks-exporter"
    assert instruction("VOLUME") == ["/var/lib/databricks-exporter"]


def test_the_exporter_image_carries_no_simulator_and_the_simulator_image_does():
    copies = lambda stage: [args.split()[0] for args in instruction("COPY", stage)]
    assert "simulator" not in copies("exporter")
    assert "simulator" in copies("simulator") and any("[simulator]" in run for run in instruction("RUN", "simulator"))
    assert SERVICES["exporter"]["build"]["target"] == "exporter"
    assert SERVICES["simulator"]["build"]["target"] == "simulator"


def test_image_runs_as_a_non_root_user():
    for stage in ("exporter", "simulator"):
        (user,) = instruction("USER", stage)
        assert user.split(":")[0] not in ("root", "0"), user
        names = [name for name, _ in dockerfile_stages()[stage]]
        assert names.index("USER") > max(i for i, name in enumerate(names) if name == "RUN"), \
            "the user is set after the last build step, so it is the one the container runs as"


def healthcheck_code(command: list[str]) -> str:
    assert command[:2] in (["python", "-c"], ["CMD", "python"]), command
    return command[command.index("-c") + 1]


def test_image_health_check_asks_healthz_with_the_standard_library():
    (healthcheck,) = instruction("HEALTHCHECK")
    command = json.loads(healthcheck.split("CMD", 1)[1].strip())
    code = healthcheck_code(command)
    compile(code, "HEALTHCHECK", "exec")
    assert "http://127.0.0.1:9977/healthz" in code and "urllib.request" in code


def test_simulator_health_check_asks_an_unauthenticated_path():
    (healthcheck,) = instruction("HEALTHCHECK", "simulator")
    code = healthcheck_code(json.loads(healthcheck.split("CMD", 1)[1].strip()))
    compile(code, "healthcheck", "exec")
    assert "127.0.0.1:8080/.well-known/databricks-config" in code


def test_dockerignore_lets_through_what_the_image_copies():
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", "everything else stays out of the build context"
    for args in instruction("COPY", "exporter") + instruction("COPY", "simulator"):
        for source in args.split()[:-1]:
            assert f"!{source}" in ignore or f"!{source}/" in ignore, source
            assert (ROOT / source).exists(), source


# --- the compose command lines, run as they are (without Docker) ------------------------------------------------

@pytest.mark.integration
def test_the_compose_simulator_and_exporter_commands_fill_the_sql_panels(tmp_path):
    """The simulator and exporter services' commands and environment, on local ports instead of service names:
    the exporter, with no configuration file, finds the SQL warehouse and trusts the simulator's CA, and its
    billing and utilization collectors succeed."""
    rest, sql, web = free_port(), free_port(), free_port()
    local = {"0.0.0.0:8080": f"127.0.0.1:{rest}", "0.0.0.0:8443": f"127.0.0.1:{sql}", "simulator": "localhost",
             "/var/lib/databricks-exporter": str(tmp_path)}
    command = [local.get(arg, arg) for arg in SERVICES["simulator"]["command"]]
    environment = {k: interpolate(v) for k, v in SERVICES["exporter"]["environment"].items()}
    environment.update(DATABRICKS_HOST=f"http://127.0.0.1:{rest}",
                       SSL_CERT_FILE=str(tmp_path / Path(environment["SSL_CERT_FILE"]).name))
    exporter_command = SERVICES["exporter"]["command"]
    exporter_command = exporter_command[:exporter_command.index("--state.file") + 1] + [
        str(tmp_path / "state.json"), "--web.listen-address", f"127.0.0.1:{web}"]
    env = {**os.environ, **environment}
    env.pop("DATABRICKS_CONFIG_PROFILE", None)
    processes = []
    try:
        processes.append(subprocess.Popen([sys.executable, "-m", "databricks_exporter", *command],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(lambda: (tmp_path / "ca.pem").exists() and _answers(f"http://127.0.0.1:{rest}"), 30,
                 what="the simulator and its CA")
        with open(tmp_path / "exporter.log", "wb") as log:
            processes.append(subprocess.Popen([sys.executable, "-m", "databricks_exporter", *exporter_command],
                                              env=env, stdout=log, stderr=subprocess.STDOUT))
        wait_for(lambda: _answers(f"http://127.0.0.1:{web}/readyz"), 90, what="the exporter's first cycles")
        samples = parse(http_get(f"http://127.0.0.1:{web}/metrics")[2].decode())
        for collector in ("billing", "utilization"):
            assert total(samples, "databricks_exporter_collector_up", collector=collector) == 1, \
                (tmp_path / "exporter.log").read_text()[-3000:]
        assert total(samples, "databricks_billing_cost") > 0
        assert total(samples, "databricks_cluster_cpu_utilization_ratio") > 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:       # every one is stopped, even when one is slow to go
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _answers(url: str) -> bool:
    try:
        return http_get(url, timeout=2)[0] < 500
    except OSError:
        return False
