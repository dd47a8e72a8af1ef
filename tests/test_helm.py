"""The Helm chart, checked with the real helm and Kubernetes' own schemas.

For the default values and every ci/*-values.yaml: `helm lint --strict`,
`helm template`, each rendered object validated by kubernetes-validate
(strict: unknown fields are errors), the rendered bridge config holding exactly
the sources and sinks the values file names (Helm deep-merges values, so chart
defaults must never leak into them), and `metrics-bridge validate` run on it
with the pod's environment. Then what the chart promises: locked-down pods,
probes on the health endpoints, a checksum that rolls pods on config change,
secrets only through the Secret it names. The PrometheusRule and the Grafana
dashboard ConfigMap carry dashboards/ exactly, from the source tree and from the
archive `helm package` makes (the chart's files/ are symlinks to dashboards/,
never copies). The `helm test` Pod carries the Deployment's image, env, Secret,
mounts and security contexts, and its `metrics-bridge check` command runs here
on the rendered config (no Kubernetes API server: `helm test` itself cannot).
Scale-out: the sharded StatefulSet, and ha's warm standby (one StatefulSet of
2 x N pods, the RBAC for exactly the release's Leases, a PodDisruptionBudget per
shard, anti-affinity), cross-checked against bridge.config for every pod: the
Lease its config names is one the Role allows, and the budget that covers it is
that Lease's shard's.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "metrics-bridge"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
MINIMAL_VALUES = CHART / "ci" / "minimal-values.yaml"
DASHBOARDS_VALUES = CHART / "ci" / "dashboards-values.yaml"
DASHBOARDS = ROOT / "dashboards"
# The files of dashboards/ the chart ships, each through a symlink in its files/.
CHART_DASHBOARD_FILES = ("cerebras-grafana.json", "cerebras-rules.yaml")
DEMO = {"sources": {"demo": {"type": "simulator"}}, "sinks": {"console": {"type": "console"}}}
KUBERNETES_VERSION = "1.30.0"  # the oldest minor the chart targets that kubernetes-validate>=1.30 bundles
NAMESPACE = "monitoring"
RELEASE = "mb"
FULLNAME = "mb-metrics-bridge"
# Kinds from CRDs: kubernetes-validate has no schema for them; their shape is asserted below.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
# What the PrometheusRule CRD (prometheus-operator, monitoringv1.RuleGroup and Rule) accepts.
RULE_GROUP_FIELDS = {"name", "interval", "query_offset", "rules", "limit", "partial_response_strategy", "labels"}
RULE_FIELDS = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
CRD_DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
DASHBOARD_CONFIGMAP = "ConfigMap/grafana-dashboards"  # by_kind's key for the second ConfigMap
HEADLESS_SERVICE = "Service/headless"  # by_kind's key for a sharded release's second Service
SHARDING_VALUES = CHART / "ci" / "sharding-values.yaml"
SHARD_ENV = ("SHARD_COUNT", "POD_NAME")  # what a sharded pod's env has that the check pod's has not
HA_VALUES = CHART / "ci" / "ha-values.yaml"  # warm standby, one shard
HA_SHARDING_VALUES = CHART / "ci" / "ha-sharding-values.yaml"  # warm standby, three shards
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"  # set on StatefulSet pods by Kubernetes (1.28+)
SELECTOR_LABELS = {"app.kubernetes.io/name": "metrics-bridge", "app.kubernetes.io/instance": RELEASE}
STATEFUL_VALUES = {SHARDING_VALUES, HA_VALUES, HA_SHARDING_VALUES}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def helm() -> str:
    """The helm binary from scripts/fetch-helm.sh; CI must have it, elsewhere a skip says why."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "fetch-helm.sh")], capture_output=True, check=False, text=True
    )
    path = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if result.returncode != 0 or not os.access(path, os.X_OK):
        message = f"helm could not be obtained by scripts/fetch-helm.sh: {result.stderr.strip()[-500:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def referenced_variables(text: str) -> list[str]:
    return sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)))


def secret_args(values_file: Path | None) -> list[str]:
    """--set-string for each ${VAR} a values file references, as an operator would pass them."""
    if values_file is None or "existingSecret:" in values_file.read_text():
        return []
    names = referenced_variables(values_file.read_text())
    return [arg for name in names for arg in ("--set-string", f"secretEnv.{name}=ci-dummy-{name.lower()}")]


def helm_args(values_file: Path | None, *extra: str) -> list[str]:
    return (["-f", str(values_file)] if values_file else []) + secret_args(values_file) + list(extra)


def render(helm: str, values_file: Path | None = None, *extra: str, chart: Path = CHART) -> list[dict[str, Any]]:
    result = subprocess.run(
        [helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE, *helm_args(values_file, *extra)],
        capture_output=True,
        check=False,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_error(helm: str, *extra: str, chart: Path = CHART) -> str:
    result = subprocess.run(
        [helm, "template", RELEASE, str(chart), *extra], capture_output=True, check=False, text=True
    )
    assert result.returncode != 0, "expected the chart to refuse these values"
    return result.stderr


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each object by its kind; the Grafana dashboard's ConfigMap, next to the config's, by DASHBOARD_CONFIGMAP;
    a sharded release's headless Service, next to the metrics Service, by HEADLESS_SERVICE; ha's per-shard
    PodDisruptionBudgets by their name less the fullname ("PodDisruptionBudget/shard-0")."""
    kinds: dict[str, dict[str, Any]] = {}
    for doc in docs:
        key, name = doc["kind"], doc["metadata"]["name"]
        if key == "ConfigMap" and name == f"{FULLNAME}-grafana-dashboards":
            key = DASHBOARD_CONFIGMAP
        if key == "Service" and name == f"{FULLNAME}-headless":
            key = HEADLESS_SERVICE
        if key == "PodDisruptionBudget" and name != FULLNAME:
            key = f"{key}/{name.removeprefix(FULLNAME + '-')}"
        assert key not in kinds, f"two {key} objects"
        kinds[key] = doc
    return kinds


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The bridge's Deployment, or its StatefulSet when sharded or ha: never both."""
    (found,) = [doc for doc in docs if doc["kind"] in ("Deployment", "StatefulSet")]
    return found


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return workload(docs)["spec"]["template"]["spec"]


def is_ha(docs: list[dict[str, Any]]) -> bool:
    """ha.enabled: the rendered bridge config has the chart's `ha`."""
    return bool((yaml.safe_load(config_text(docs)).get("ha") or {}).get("enabled"))


def pod_env(container: dict[str, Any], pod_name: str) -> dict[str, str]:
    """A container's env as the kubelet resolves it for pod `pod_name` in NAMESPACE: values, and the downward API's
    metadata.name and metadata.namespace; HOSTNAME, which the container runtime sets to the pod's name."""
    fields = {"metadata.name": pod_name, "metadata.namespace": NAMESPACE}
    env = {"HOSTNAME": pod_name}
    for var in container.get("env", []):
        env[var["name"]] = var["value"] if "value" in var else fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def first_pod_name(docs: list[dict[str, Any]]) -> str:
    """The name of the workload's first pod: <fullname>-0, or a Deployment's (any name without an ordinal)."""
    return f"{FULLNAME}-0" if workload(docs)["kind"] == "StatefulSet" else f"{FULLNAME}-5d9f8c7b6-x2x4q"


def statefulset_pod_labels(statefulset: dict[str, Any], ordinal: int) -> dict[str, str]:
    """The labels of pod <statefulset>-<ordinal>: its template's, and those the StatefulSet controller adds
    (apps.kubernetes.io/pod-index since Kubernetes 1.28)."""
    name = statefulset["metadata"]["name"]
    return statefulset["spec"]["template"]["metadata"]["labels"] | {
        "statefulset.kubernetes.io/pod-name": f"{name}-{ordinal}",
        "controller-revision-hash": f"{name}-7c9d5f6b8",
        POD_INDEX_LABEL: str(ordinal),
    }


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a metav1.LabelSelector (matchLabels and matchExpressions, ANDed) selects these labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def anti_affinity(mode: str) -> dict[str, Any] | None:
    """The pod anti-affinity ha.antiAffinity renders: against the release's pods, across nodes."""
    term = {"labelSelector": {"matchLabels": SELECTOR_LABELS}, "topologyKey": "kubernetes.io/hostname"}
    if mode == "soft":
        return {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]
            }
        }
    if mode == "hard":
        return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    return None


def config_text(docs: list[dict[str, Any]]) -> str:
    return by_kind(docs)["ConfigMap"]["data"]["config.yaml"]


def pod_secret_keys(docs: list[dict[str, Any]], values_file: Path | None) -> list[str]:
    """The variables the pod gets from its Secret: the rendered one's keys, or, for an existingSecret
    (made outside Helm), those the values file references."""
    secret = by_kind(docs).get("Secret")
    if secret is not None:
        return sorted(secret["data"])
    if values_file is not None and "existingSecret:" in values_file.read_text():
        return referenced_variables(values_file.read_text())
    return []


VALUE_SETS = [pytest.param(None, id="default")] + [pytest.param(p, id=p.name) for p in CI_VALUES]


def test_the_example_value_sets_exist() -> None:
    assert {p.name for p in CI_VALUES} >= {
        "minimal-values.yaml",
        "datadog-values.yaml",
        "grafana-cloud-values.yaml",
        "both-values.yaml",
        "existing-secret-values.yaml",
        "dashboards-values.yaml",
        "sharding-values.yaml",
        "ha-values.yaml",
        "ha-sharding-values.yaml",
    }
    minimal = yaml.safe_load(MINIMAL_VALUES.read_text())
    assert minimal.keys() == {"config"} and minimal["config"].keys() == {"sources", "sinks"}
    assert len(minimal["config"]["sources"]) == len(minimal["config"]["sinks"]) == 1


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_lint_strict(helm: str, values_file: Path | None) -> None:
    result = subprocess.run(
        [helm, "lint", "--strict", str(CHART), *helm_args(values_file)], capture_output=True, check=False, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_rendered_objects_validate_against_kubernetes_schemas(helm: str, values_file: Path | None) -> None:
    docs = render(helm, values_file)
    assert {"ConfigMap", "Service", "ServiceAccount"} <= set(by_kind(docs))
    assert workload(docs)["kind"] == ("StatefulSet" if values_file in STATEFUL_VALUES else "Deployment")
    assert is_ha(docs) == (values_file in (HA_VALUES, HA_SHARDING_VALUES))
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")


@pytest.mark.parametrize("values_file", CI_VALUES, ids=[p.name for p in CI_VALUES])
def test_rendered_config_holds_exactly_the_sources_and_sinks_of_the_values_file(helm: str, values_file: Path) -> None:
    """Nothing from the chart's defaults (the demo) joins a user's pipeline, and nothing of it is lost."""
    given = yaml.safe_load(values_file.read_text())["config"]
    config = yaml.safe_load(config_text(render(helm, values_file)))
    assert config["sources"] == given["sources"]
    assert config["sinks"] == given["sinks"]


def test_default_install_renders_the_demo(helm: str) -> None:
    """No sources and no sinks: the demo (validated with the other value sets), the user's other keys kept."""
    config = yaml.safe_load(config_text(render(helm)))
    assert {key: config[key] for key in DEMO} == DEMO
    tuned = yaml.safe_load(config_text(render(helm, None, "--set", "config.telemetry.log_level=debug")))
    assert {key: tuned[key] for key in DEMO} == DEMO and tuned["telemetry"]["log_level"] == "debug"


def validate(config: Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`metrics-bridge validate` on a rendered config, in an environment of `env` and PATH only (as the pod's)."""
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", "validate", "-c", str(config)],
        capture_output=True,
        check=False,
        text=True,
        env={**env, "PATH": os.environ.get("PATH", "")},
        cwd=cwd,
    )


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_rendered_config_passes_metrics_bridge_validate(helm: str, values_file: Path | None, tmp_path: Path) -> None:
    """What the pod mounts must pass the real CLI, in an environment holding only what the pod gets: from
    its Secret (dummy values) and its own env (a shard's, ha's); the keys the chart owns are filled in."""
    docs = render(helm, values_file)
    text = config_text(docs)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    env = {key: f"ci-dummy-{key.lower()}" for key in pod_secret_keys(docs, values_file)}
    env |= pod_env(pod_spec(docs)["containers"][0], first_pod_name(docs))
    result = validate(path, env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": ok (" in result.stdout
    config = yaml.safe_load(text)
    assert config["telemetry"]["listen"] == "0.0.0.0:9464"
    assert config["telemetry"]["log_format"] == "json"
    assert config["state_path"] == "/var/lib/metrics-bridge/state.json", "on the spool volume: survives restarts"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "config.sources.node.type=prometheus", "--set", "config.sources.node.url=http://n:9100/metrics"],
            "config.sources is set but config.sinks is empty",
        ),
        (["--set", "config.sinks.console.type=console"], "config.sinks is set but config.sources is empty"),
        (["--set", "demo=false"], "config.sources and config.sinks are empty and demo is false"),
    ],
    ids=["sources-only", "sinks-only", "nothing-and-no-demo"],
)
def test_half_a_pipeline_is_refused_not_completed_with_the_demo(helm: str, args: list[str], message: str) -> None:
    assert message in render_error(helm, *args)


def test_pod_is_locked_down(helm: str) -> None:
    spec = pod_spec(render(helm))
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["runAsNonRoot"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/etc/metrics-bridge": "config", "/var/lib/metrics-bridge": "spool", "/tmp": "tmp"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["spool"]["emptyDir"] == {"sizeLimit": "1Gi"}
    assert volumes["tmp"]["emptyDir"]["medium"] == "Memory"
    assert container["resources"]["limits"]["memory"] == "384Mi"


def test_one_replica_recreated_and_run_with_the_mounted_config(helm: str) -> None:
    deployment = by_kind(render(helm))["Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["run", "-c", "/etc/metrics-bridge/config.yaml", "--grace", "50"]
    assert container["image"] == "metrics-bridge:0.1.0"


def test_probes_and_service_use_the_telemetry_port(helm: str) -> None:
    docs = render(helm, None, "--set", "service.port=9100")
    (container,) = pod_spec(docs)["containers"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    service = by_kind(docs)["Service"]["spec"]
    assert service["ports"] == [{"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}]
    assert service["publishNotReadyAddresses"] is True
    config = yaml.safe_load(config_text(docs))
    assert config["telemetry"]["listen"] == "0.0.0.0:9100"


def test_a_listen_on_another_port_is_refused(helm: str) -> None:
    error = render_error(helm, "--set", "config.telemetry.listen=0.0.0.0:8080")
    assert "must use service.port 9464" in error


def checksums(docs: list[dict[str, Any]]) -> dict[str, str]:
    return by_kind(docs)["Deployment"]["spec"]["template"]["metadata"]["annotations"]


def test_checksum_rolls_pods_on_config_or_secret_change(helm: str) -> None:
    base = checksums(render(helm, None, "--set-string", "secretEnv.DD_API_KEY=one"))
    assert re.fullmatch(r"[0-9a-f]{64}", base["checksum/config"])
    assert base == checksums(render(helm, None, "--set-string", "secretEnv.DD_API_KEY=one")), "deterministic"
    changed = checksums(
        render(helm, None, "--set-string", "secretEnv.DD_API_KEY=one", "--set", "config.telemetry.log_level=debug")
    )
    assert changed["checksum/config"] != base["checksum/config"]
    assert changed["checksum/secret"] == base["checksum/secret"]
    rotated = checksums(render(helm, None, "--set-string", "secretEnv.DD_API_KEY=two"))
    assert rotated["checksum/secret"] != base["checksum/secret"]
    assert rotated["checksum/config"] == base["checksum/config"]


def test_secret_env_becomes_a_secret_exposed_with_env_from(helm: str) -> None:
    values = CHART / "ci" / "datadog-values.yaml"
    docs = render(helm, values)
    secret = by_kind(docs)["Secret"]
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "CEREBRAS_API_KEY": "ci-dummy-cerebras_api_key",
        "DD_API_KEY": "ci-dummy-dd_api_key",
    }
    (container,) = pod_spec(docs)["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": FULLNAME}}]
    config = config_text(docs)
    assert "ci-dummy" not in config and "${DD_API_KEY}" in config, "the ConfigMap holds references, never keys"


def test_existing_secret_is_used_and_no_secret_is_rendered(helm: str) -> None:
    docs = render(helm, CHART / "ci" / "existing-secret-values.yaml")
    kinds = by_kind(docs)
    assert "Secret" not in kinds
    (container,) = pod_spec(docs)["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "metrics-bridge-keys"}}]
    assert "checksum/secret" not in checksums(docs)


def test_default_values_need_no_secret(helm: str) -> None:
    docs = render(helm)
    assert "Secret" not in by_kind(docs)
    assert "envFrom" not in pod_spec(docs)["containers"][0]


def test_a_referenced_variable_nothing_provides_is_refused(helm: str) -> None:
    error = render_error(helm, "-f", str(CHART / "ci" / "datadog-values.yaml"))
    assert "config references ${" in error and "secretEnv." in error
    escaped = render(helm, MINIMAL_VALUES, "--set-string", "config.sinks.collector.headers.x=$${NOT_A_VAR}")
    assert "$${NOT_A_VAR}" in config_text(escaped)


def test_schema_rejects_unknown_and_mistyped_values(helm: str) -> None:
    assert "additional properties 'replicas' not allowed" in render_error(helm, "--set", "replicas=2")
    assert "/config" in render_error(helm, "--set", "config.sourcez.x.type=file")
    assert "/service/port" in render_error(helm, "--set", "service.port=0")
    assert "/prometheusRule" in render_error(helm, "--set", "prometheusRule.enable=true")
    assert "/grafanaDashboards/label" in render_error(helm, "--set", "grafanaDashboards.label=not a label")


def test_optional_objects(helm: str) -> None:
    kinds = by_kind(render(helm, CHART / "ci" / "existing-secret-values.yaml"))
    monitor = kinds["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert monitor["spec"]["selector"]["matchLabels"] == kinds["Service"]["spec"]["selector"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert kinds["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    min_available = by_kind(
        render(helm, None, "--set", "podDisruptionBudget.enabled=true", "--set", "podDisruptionBudget.minAvailable=1")
    )["PodDisruptionBudget"]["spec"]
    assert min_available["minAvailable"] == 1 and "maxUnavailable" not in min_available
    optional = {"ServiceMonitor", "PodDisruptionBudget", "PersistentVolumeClaim", "PrometheusRule", DASHBOARD_CONFIGMAP}
    assert not optional & set(by_kind(render(helm)))


def test_spool_on_a_persistent_volume_claim(helm: str) -> None:
    docs = render(helm, CHART / "ci" / "both-values.yaml")
    claim = by_kind(docs)["PersistentVolumeClaim"]
    assert claim["metadata"]["name"] == f"{FULLNAME}-spool"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["spool"] == {"name": "spool", "persistentVolumeClaim": {"claimName": f"{FULLNAME}-spool"}}
    existing = render(
        helm, None, "--set", "spool.persistence.enabled=true", "--set", "spool.persistence.existingClaim=spool-claim"
    )
    assert "PersistentVolumeClaim" not in by_kind(existing)
    assert {v["name"]: v for v in pod_spec(existing)["volumes"]}["spool"]["persistentVolumeClaim"] == {
        "claimName": "spool-claim"
    }


def install_notes(helm: str, *extra: str) -> str:
    """The NOTES `helm install` prints (client-side dry run)."""
    result = subprocess.run(
        [helm, "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE, *extra],
        capture_output=True,
        check=False,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split("NOTES:", 1)[1]


def test_notes_give_the_first_commands(helm: str) -> None:
    notes = install_notes(helm, "--set", "existingSecret=keys")
    for command in (
        f"kubectl -n {NAMESPACE} rollout status deployment/{FULLNAME}",
        f"kubectl -n {NAMESPACE} logs -f deployment/{FULLNAME}",
        f"port-forward service/{FULLNAME} 9464",
        "localhost:9464/readyz",
        "metrics-bridge validate -c /etc/metrics-bridge/config.yaml",
        "rollout restart",
        "simulator",
        f"helm test {RELEASE} -n {NAMESPACE} --logs",
    ):
        assert command in notes, command


@pytest.fixture(scope="session")
def packaged_chart(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The archive `helm package` makes, as a chart repository or OCI registry would serve it."""
    out = tmp_path_factory.mktemp("package")
    result = subprocess.run([helm, "package", str(CHART), "-d", str(out)], capture_output=True, check=False, text=True)
    assert result.returncode == 0, result.stderr
    (archive,) = out.glob("metrics-bridge-*.tgz")
    return archive


def test_the_chart_ships_dashboards_through_symlinks_not_copies() -> None:
    """One copy in git: each of the chart's files/ links to dashboards/ (which `make dashboards` writes)."""
    assert sorted(p.name for p in (CHART / "files").iterdir()) == sorted(CHART_DASHBOARD_FILES)
    for name in CHART_DASHBOARD_FILES:
        link = CHART / "files" / name
        assert link.is_symlink(), f"{link} must be a symlink to dashboards/{name}, not a copy that can drift"
        assert link.resolve() == (DASHBOARDS / name).resolve()


def test_helm_package_stores_the_dashboards_files_themselves(packaged_chart: Path) -> None:
    """helm follows the symlinks: the archive holds regular files, byte for byte those of dashboards/."""
    with tarfile.open(packaged_chart) as archive:
        for name in CHART_DASHBOARD_FILES:
            member = archive.getmember(f"metrics-bridge/files/{name}")
            assert member.isfile()
            stored = archive.extractfile(member)
            assert stored is not None and stored.read() == (DASHBOARDS / name).read_bytes()


def rendered_dashboards(helm: str, source: str, packaged_chart: Path) -> dict[str, dict[str, Any]]:
    chart = CHART if source == "source-tree" else packaged_chart
    return by_kind(render(helm, DASHBOARDS_VALUES, chart=chart))


CHART_SOURCES = ["source-tree", "helm-package"]


@pytest.mark.parametrize("source", CHART_SOURCES)
def test_prometheus_rule_is_dashboards_rules(helm: str, packaged_chart: Path, source: str) -> None:
    """The PrometheusRule's spec is dashboards/cerebras-rules.yaml (drift fails here), in the CRD's shape."""
    kinds = rendered_dashboards(helm, source, packaged_chart)
    rule = kinds["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == FULLNAME
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert rule["spec"] == yaml.safe_load((DASHBOARDS / "cerebras-rules.yaml").read_text())
    groups = rule["spec"]["groups"]
    assert [g["name"] for g in groups] == ["cerebras-recording", "cerebras-alerts"]
    for group in groups:
        assert set(group) <= RULE_GROUP_FIELDS and isinstance(group["name"], str) and group["name"]
        assert CRD_DURATION.match(group.get("interval", "0")), group["name"]
        for each in group["rules"]:
            assert set(each) <= RULE_FIELDS and isinstance(each["expr"], str), each
            assert ("record" in each) != ("alert" in each), each
            assert CRD_DURATION.match(each.get("for", "0")), each
            for key in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in each.get(key, {}).values()), each
    alerts = {each["alert"] for group in groups for each in group["rules"] if "alert" in each}
    assert {"CerebrasEndpointNotUp", "CerebrasBridgeSendFailing"} <= alerts, "the Cerebras and the bridge alerts"


@pytest.mark.parametrize("source", CHART_SOURCES)
def test_grafana_dashboard_configmap_is_dashboards_json(helm: str, packaged_chart: Path, source: str) -> None:
    """The ConfigMap holds dashboards/cerebras-grafana.json byte for byte, labelled for Grafana's sidecar."""
    configmap = rendered_dashboards(helm, source, packaged_chart)[DASHBOARD_CONFIGMAP]
    assert configmap["data"] == {"cerebras-grafana.json": (DASHBOARDS / "cerebras-grafana.json").read_text()}
    assert json.loads(configmap["data"]["cerebras-grafana.json"])["uid"] == "metrics-bridge-cerebras"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Cerebras"}


def test_grafana_dashboard_label_and_folder_are_configurable(helm: str) -> None:
    docs = render(
        helm,
        None,
        *("--set", "grafanaDashboards.enabled=true", "--set", "grafanaDashboards.label=dashboards"),
        *("--set-string", "grafanaDashboards.labelValue=cerebras", "--set", "grafanaDashboards.labels.team=ml"),
        *("--set", "grafanaDashboards.folderAnnotation=k8s-sidecar-target-directory"),
        *("--set", "grafanaDashboards.folder=/tmp/dashboards/cerebras"),
    )
    metadata = by_kind(docs)[DASHBOARD_CONFIGMAP]["metadata"]
    assert metadata["labels"]["dashboards"] == "cerebras" and metadata["labels"]["team"] == "ml"
    assert "grafana_dashboard" not in metadata["labels"]
    assert metadata["annotations"] == {"k8s-sidecar-target-directory": "/tmp/dashboards/cerebras"}
    plain = by_kind(render(helm, None, "--set", "grafanaDashboards.enabled=true"))[DASHBOARD_CONFIGMAP]
    assert "annotations" not in plain["metadata"], "no folder: no annotation"


def test_a_checkout_without_symlinks_is_refused(helm: str, tmp_path: Path) -> None:
    """git without core.symlinks writes the link's target path as a file: the chart says so instead of shipping it."""
    chart = tmp_path / "metrics-bridge"
    shutil.copytree(CHART, chart, symlinks=True, ignore=shutil.ignore_patterns("files"))
    (chart / "files").mkdir()
    for name in CHART_DASHBOARD_FILES:
        (chart / "files" / name).write_text(f"../../../dashboards/{name}")
    for option in ("prometheusRule", "grafanaDashboards"):
        error = render_error(helm, "--set", f"{option}.enabled=true", chart=chart)
        assert "(it is a symlink to it): check the repository out with symlinks" in error


# `helm test`: templates/tests/check.yaml, a Pod that runs `metrics-bridge check` on the release's config.
# What cannot run here: there is no Kubernetes API server, so nothing is installed, scheduled or pulled, and
# `helm test` itself never runs. What can: the Pod renders for every value set and validates (with every other
# object, in test_rendered_objects_validate_against_kubernetes_schemas and test_lint_strict); it carries exactly
# the Deployment's image, env, Secret, mounts and security contexts (compared with the rendered Deployment, not
# with a copy); and its command runs for real on the rendered config, with the rendered Secret's keys as its
# environment, against loopback stand-ins for what the config points at.
CHECK_POD_ANNOTATIONS = {"helm.sh/hook": "test", "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded"}
# Fields of the bridge's container the check's container must carry unchanged.
SHARED_CONTAINER_FIELDS = ("image", "imagePullPolicy", "envFrom", "env", "securityContext", "volumeMounts", "resources")
SHARED_POD_FIELDS = (
    "serviceAccountName",
    "automountServiceAccountToken",
    "imagePullSecrets",
    "priorityClassName",
    "securityContext",
    "nodeSelector",
    "affinity",
    "tolerations",
)


def check_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = by_kind(docs)["Pod"]
    assert pod["metadata"]["name"] == f"{FULLNAME}-check"
    return pod


def assert_check_pod_matches_the_deployment(docs: list[dict[str, Any]]) -> list[str]:
    """The check pod sees what the bridge sees; returns its command."""
    pod, kinds = check_pod(docs), by_kind(docs)
    assert pod["metadata"]["annotations"] == CHECK_POD_ANNOTATIONS
    spec, bridge_spec = pod["spec"], pod_spec(docs)
    assert spec["restartPolicy"] == "Never"
    for field in SHARED_POD_FIELDS:
        expected = bridge_spec.get(field)
        if field == "automountServiceAccountToken":  # an ha pod's Lease calls need the token; check makes none
            assert expected is is_ha(docs)
            expected = False
        if field == "affinity" and expected in (anti_affinity("soft"), anti_affinity("hard")):
            expected = None  # ha's anti-affinity keeps bridge pods apart; the check pod has the user's affinity only
        assert spec.get(field) == expected, field
    (container,) = spec["containers"]
    (bridge,) = bridge_spec["containers"]
    for field in SHARED_CONTAINER_FIELDS:
        expected = bridge.get(field)
        if field == "env" and expected is not None:  # a shard's own: `check` tries every source
            expected = [var for var in expected if var["name"] not in SHARD_ENV] or None
        assert container.get(field) == expected, field
    assert "args" not in container
    # the config the bridge runs: the same `-c` path, inside the mount of the ConfigMap it reads
    assert bridge["args"][:2] == ["run", "-c"]
    config_path = bridge["args"][2]
    assert container["command"] == ["metrics-bridge", "check", "-c", config_path]
    volumes = {v["name"]: v for v in spec["volumes"]}
    bridge_volumes = {v["name"]: v for v in bridge_spec["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"] + "/")]
    assert volumes[mount["name"]] == bridge_volumes[mount["name"]]
    assert volumes[mount["name"]]["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    assert config_path.removeprefix(mount["mountPath"] + "/") in kinds["ConfigMap"]["data"]
    # every volume the same, except a spool on a claim: check opens none, and a ReadWriteOnce claim
    # held by the bridge's pod cannot be attached on another node
    if workload(docs)["kind"] == "StatefulSet":  # each shard's spool is its claim from volumeClaimTemplates
        (claim,) = workload(docs)["spec"]["volumeClaimTemplates"]
        bridge_volumes["spool"] = {"name": "spool", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
    assert volumes.keys() == bridge_volumes.keys()
    for name, volume in volumes.items():
        if name == "spool" and "persistentVolumeClaim" in bridge_volumes[name]:
            assert volume == {"name": "spool", "emptyDir": {"sizeLimit": "1Gi"}}
        else:
            assert volume == bridge_volumes[name], name
    # never behind the Service (which publishes not-ready addresses) nor counted by the PodDisruptionBudget
    selector = kinds["Service"]["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    return list(container["command"])


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_helm_test_pod_runs_check_with_what_the_bridge_sees(helm: str, values_file: Path | None) -> None:
    assert_check_pod_matches_the_deployment(render(helm, values_file))


def test_helm_test_pod_follows_env_scheduling_and_a_claimed_spool(helm: str) -> None:
    docs = render(
        helm,
        CHART / "ci" / "both-values.yaml",
        *("--set", "extraEnv[0].name=HTTPS_PROXY", "--set", "extraEnv[0].value=http://proxy:3128"),
        *("--set", "extraEnvFrom[0].configMapRef.name=proxy", "--set", "imagePullSecrets[0].name=registry"),
        *("--set", "nodeSelector.pool=egress", "--set", "tolerations[0].operator=Exists"),
        *("--set", "priorityClassName=platform", "--set", "podLabels.team=ml"),
    )
    assert_check_pod_matches_the_deployment(docs)
    pod = check_pod(docs)
    (container,) = pod["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": FULLNAME}}, {"configMapRef": {"name": "proxy"}}]
    assert pod["spec"]["nodeSelector"] == {"pool": "egress"} and pod["metadata"]["labels"]["team"] == "ml"
    assert "persistentVolumeClaim" in {v["name"]: v for v in pod_spec(docs)["volumes"]}["spool"]


def test_helm_test_pod_is_off_with_helm_test_enabled_false(helm: str) -> None:
    assert "Pod" not in by_kind(render(helm, None, "--set", "helmTest.enabled=false"))
    assert "/helmTest" in render_error(helm, "--set", "helmTest.enable=false")


def run_check_pod_command(docs: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The check pod's command on the rendered config, in an environment holding what the pod gets: the rendered
    Secret's keys (envFrom), its env (extraEnv; an ha release's POD_NAMESPACE from the downward API), HOSTNAME,
    and the image's METRICS_BRIDGE_LOG_FORMAT."""
    command = assert_check_pod_matches_the_deployment(docs)
    assert command[:2] == ["metrics-bridge", "check"]
    path = tmp_path / "config.yaml"
    path.write_text(config_text(docs))
    secret = by_kind(docs).get("Secret", {"data": {}})
    env = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    pod = check_pod(docs)
    (container,) = pod["spec"]["containers"]
    env |= pod_env(container, pod["metadata"]["name"])
    env |= {"PATH": os.environ.get("PATH", ""), "METRICS_BRIDGE_LOG_FORMAT": "json"}
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *command[1:-1], str(path)],
        capture_output=True,
        check=False,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


def check_lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert "Traceback" not in result.stderr, result.stderr
    return dict(line.split(": ", 1) for line in result.stdout.splitlines())


@pytest.mark.parametrize("extra", [[], ["--set", "ha.enabled=true"]], ids=["default", "ha"])
def test_helm_test_command_passes_on_the_demo(helm: str, tmp_path: Path, extra: list[str]) -> None:
    """Default values: the check pod checks the embedded simulator (on its own loopback) and the console; with ha,
    on a config whose `ha` needs the namespace its env gives it."""
    result = run_check_pod_command(render(helm, None, *extra), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    found = check_lines(result)
    assert found.keys() == {"source demo", "sink console"}
    assert re.match(r"ok \(\d+ ms\) body parsed: \d+ series in \d+ families; window ended", found["source demo"])
    assert re.match(r"ok \(\d+ ms\) writes to standard output", found["sink console"])


@pytest.mark.parametrize("dd_key_accepted", [True, False], ids=["keys-accepted", "dd-key-refused"])
def test_helm_test_command_on_datadog_values_against_loopback_stand_ins(
    helm: str, tmp_path: Path, dd_key_accepted: bool
) -> None:
    """ci/datadog-values.yaml with the Cerebras API and the Datadog intake replaced by loopback stand-ins (their
    URLs set as an operator would with --set); the keys reach them from the rendered Secret, as envFrom gives
    them. A refused key fails the check (the pod, and `helm test`) with advice in words."""
    from tests.conftest import CEREBRAS_FIXTURES
    from tests.receivers.datadog_intake import DatadogIntake
    from tests.servers import ExpositionServer, Response

    values = CHART / "ci" / "datadog-values.yaml"
    organization = yaml.safe_load(values.read_text())["config"]["sources"]["cerebras"]["organization_id"]
    body = (CEREBRAS_FIXTURES / "two-endpoints-mixed-labels.prom").read_text()
    accepted = "ci-dummy-dd_api_key" if dd_key_accepted else "another-key"
    with ExpositionServer() as cerebras, DatadogIntake(api_keys={accepted}) as intake:
        url = cerebras.route(f"/orgs/{organization}", Response(body=body))
        docs = render(
            helm,
            values,
            *("--set-string", f"config.sources.cerebras.base_url={url.rsplit('/', 1)[0]}"),
            *("--set-string", f"config.sinks.datadog.url={intake.url}"),
        )
        intake_url = intake.url
        result = run_check_pod_command(docs, tmp_path)
        (request,) = cerebras.requests
    assert request.headers["authorization"] == "Bearer ci-dummy-cerebras_api_key", "the Secret's key, from envFrom"
    found = check_lines(result)
    assert found.keys() == {"source cerebras", "sink datadog"}
    assert found["source cerebras"].startswith("ok ("), found
    assert "series in 11 families; window ended" in found["source cerebras"]
    if dd_key_accepted:
        assert result.returncode == 0, result.stdout + result.stderr
        assert found["sink datadog"].startswith("ok (") and f"API key valid at {intake_url}" in found["sink datadog"]
    else:
        assert result.returncode == 1
        assert found["sink datadog"].startswith("failing (")
        assert "the credentials were rejected: check DD_API_KEY or api_key" in found["sink datadog"]
    assert "ci-dummy" not in result.stdout + result.stderr, "keys are never printed"


# Scale-out: sharding.replicas > 1 renders a StatefulSet whose pods split the sources (README "Scale-out").
def test_sharding_renders_a_statefulset_of_n_shards_with_a_claim_each(helm: str) -> None:
    docs = render(helm, SHARDING_VALUES, "--set", "spool.persistence.storageClassName=fast")
    kinds = by_kind(docs)
    assert "Deployment" not in kinds and "PersistentVolumeClaim" not in kinds
    statefulset = kinds["StatefulSet"]
    assert statefulset["metadata"]["name"] == FULLNAME  # pods mb-metrics-bridge-0..2: the ordinal is the shard
    assert statefulset["spec"]["replicas"] == 3
    assert statefulset["spec"]["serviceName"] == f"{FULLNAME}-headless"
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "spool"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "fast",
        "resources": {"requests": {"storage": "1Gi"}},
    }
    spec = pod_spec(docs)
    assert "spool" not in {volume["name"] for volume in spec["volumes"]}  # the claim mounts in its place
    (container,) = spec["containers"]
    assert {"name": "spool", "mountPath": "/var/lib/metrics-bridge"} in container["volumeMounts"]
    env = {var["name"]: var for var in container["env"]}
    assert env["SHARD_COUNT"] == {"name": "SHARD_COUNT", "value": "3"}
    assert env["POD_NAME"] == {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


def test_sharding_adds_a_headless_service_that_the_service_monitor_scrapes(helm: str) -> None:
    kinds = by_kind(render(helm, SHARDING_VALUES))
    headless = kinds[HEADLESS_SERVICE]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == kinds["StatefulSet"]["spec"]["selector"]["matchLabels"]
    selector = kinds["ServiceMonitor"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= headless["metadata"]["labels"].items()  # each shard scraped once, not twice
    assert not selector.items() <= kinds["Service"]["metadata"]["labels"].items()


def test_a_shard_knows_its_shard_from_the_env_the_chart_gives_it(helm: str, tmp_path: Path) -> None:
    """The rendered config and env, as pod mb-metrics-bridge-1 gets them, pass `validate` as shard 1 of 3."""
    docs = render(helm, SHARDING_VALUES)
    config = tmp_path / "config.yaml"
    config.write_text(config_text(docs))
    result = validate(config, {"SHARD_COUNT": "3", "POD_NAME": f"{FULLNAME}-1"}, ROOT)
    assert result.returncode == 0, result.stderr
    assert "shard 1/3: runs " in result.stdout


def test_one_shard_is_the_deployment_and_a_shared_claim_is_refused(helm: str) -> None:
    assert "StatefulSet" not in by_kind(render(helm, None, "--set", "sharding.replicas=1"))
    error = render_error(helm, "--set", "sharding.replicas=2", "--set", "spool.persistence.existingClaim=mine")
    assert "spool.persistence.existingClaim cannot be shared by the shards" in error
    assert "at '/sharding/replicas': minimum: got 0, want 1" in render_error(helm, "--set", "sharding.replicas=0")


# Warm standby: ha.enabled renders one StatefulSet of 2 x N pods, of which pods i and i+N share shard i and its
# Lease (README "Scale-out", "Warm standby"; bridge/ha.py, bridge/sharding.py).
HA_FILES = [pytest.param(HA_VALUES, 1, id="ha-values.yaml"), pytest.param(HA_SHARDING_VALUES, 3, id="ha-sharding")]
# the StatefulSet fields the API server lets an update change; the rest must stay for `ha.enabled` to be an upgrade
STATEFULSET_MUTABLE = {"replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy"}


def lease_names(shards: int) -> list[str]:
    return [f"{FULLNAME}-shard-{i}" for i in range(shards)]


@pytest.mark.parametrize(("values_file", "shards"), HA_FILES)
def test_ha_renders_one_statefulset_of_two_pods_per_shard(helm: str, values_file: Path, shards: int) -> None:
    kinds = by_kind(render(helm, values_file))
    assert "Deployment" not in kinds and "PersistentVolumeClaim" not in kinds
    statefulset = kinds["StatefulSet"]
    assert statefulset["metadata"]["name"] == FULLNAME  # as the sharded one: pods mb-metrics-bridge-0..2N-1
    spec = statefulset["spec"]
    assert spec["replicas"] == 2 * shards
    assert spec["serviceName"] == f"{FULLNAME}-headless"
    assert spec["podManagementPolicy"] == "Parallel"  # scaling only: a rolling update still goes one pod at a time
    assert "updateStrategy" not in spec, "RollingUpdate, maxUnavailable 1: the defaults, one pod of a shard at a time"
    assert spec["selector"]["matchLabels"] == SELECTOR_LABELS
    template = spec["template"]
    assert SELECTOR_LABELS.items() <= template["metadata"]["labels"].items()
    (claim,) = spec["volumeClaimTemplates"]  # a spool and state claim per pod
    assert claim["metadata"]["name"] == "spool" and claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    pod = template["spec"]
    assert pod["automountServiceAccountToken"] is True, "the Lease calls authenticate with the token"
    assert pod["serviceAccountName"] == kinds["ServiceAccount"]["metadata"]["name"]
    (container,) = pod["containers"]
    assert container["env"] == [
        {"name": "SHARD_COUNT", "value": str(shards)},  # N, not 2N: the bridge takes the ordinal modulo N
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # the metrics Service and the headless one select every pod (the standby serves /metrics and is ready too)
    for service in (kinds["Service"], kinds[HEADLESS_SERVICE]):
        assert all(
            selects({"matchLabels": service["spec"]["selector"]}, statefulset_pod_labels(statefulset, ordinal))
            for ordinal in range(2 * shards)
        )
    assert kinds[HEADLESS_SERVICE]["spec"]["clusterIP"] == "None"


def test_ha_on_a_sharded_release_is_an_update_of_its_statefulset(helm: str) -> None:
    """ha.enabled keeps the sharded StatefulSet's name and every field an update may not change (selector,
    serviceName, volumeClaimTemplates, podManagementPolicy): `helm upgrade` adds pods N..2N-1 and their claims, and
    pods 0..N-1 keep theirs."""
    sharded = workload(render(helm, SHARDING_VALUES))
    ha = workload(render(helm, SHARDING_VALUES, "--set", "ha.enabled=true"))
    assert ha["metadata"] == sharded["metadata"]
    fixed = {key for key in sharded["spec"] | ha["spec"] if key not in STATEFULSET_MUTABLE}
    assert fixed >= {"selector", "serviceName", "volumeClaimTemplates", "podManagementPolicy"}
    assert {key: ha["spec"].get(key) for key in fixed} == {key: sharded["spec"].get(key) for key in fixed}
    assert (sharded["spec"]["replicas"], ha["spec"]["replicas"]) == (3, 6)


def test_ha_service_monitor_scrapes_every_pod_once_through_the_headless_service(helm: str) -> None:
    kinds = by_kind(render(helm, HA_SHARDING_VALUES))
    selector = kinds["ServiceMonitor"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= kinds[HEADLESS_SERVICE]["metadata"]["labels"].items()
    assert not selector.items() <= kinds["Service"]["metadata"]["labels"].items()


@pytest.mark.parametrize(("values_file", "shards"), HA_FILES)
def test_ha_config_names_the_release_leases(helm: str, values_file: Path, shards: int) -> None:
    config = yaml.safe_load(config_text(render(helm, values_file)))
    assert config["ha"] == {
        "enabled": True,
        "lease_prefix": FULLNAME,
        "lease_duration_seconds": 15,
        "renew_seconds": 5,
    }
    tuned = render(helm, values_file, "--set", "ha.leaseDurationSeconds=30", "--set-json", "ha.renewSeconds=2.5")
    assert yaml.safe_load(config_text(tuned))["ha"] == config["ha"] | {
        "lease_duration_seconds": 30,
        "renew_seconds": 2.5,
    }


def test_ha_refuses_what_would_not_work(helm: str) -> None:
    """A config.ha of the user's (its names would fall outside the Role), a renew not shorter than the lease, a
    shared claim, an unknown anti-affinity, and a Kubernetes whose StatefulSet pods lack the pod-index label."""
    error = render_error(helm, "--set", "config.ha.enabled=true")
    assert "config.ha is rendered by the chart from the values' ha" in error
    error = render_error(helm, "--set", "ha.enabled=true", "--set", "config.ha.lease_name=mine")
    assert "remove config.ha and set those instead" in error
    error = render_error(helm, "--set", "ha.enabled=true", "--set", "ha.renewSeconds=15")
    assert "ha.renewSeconds (15) must be shorter than ha.leaseDurationSeconds (15)" in error
    error = render_error(helm, "--set", "ha.enabled=true", "--set", "spool.persistence.existingClaim=mine")
    assert "spool.persistence.existingClaim cannot be shared by the pods" in error
    assert "/ha/antiAffinity" in render_error(helm, "--set", "ha.antiAffinity=strict")
    assert "/ha/leaseDurationSeconds" in render_error(helm, "--set", "ha.leaseDurationSeconds=0")
    error = render_error(helm, "--set", "ha.enabled=true", "--kube-version", "1.27.0")
    assert "ha.enabled needs Kubernetes 1.28 or later" in error


@pytest.mark.parametrize(("values_file", "shards"), HA_FILES)
def test_ha_role_allows_exactly_the_shard_leases(helm: str, values_file: Path, shards: int) -> None:
    kinds = by_kind(render(helm, values_file))
    role = kinds["Role"]
    assert role["metadata"]["name"] == FULLNAME and "namespace" not in role["metadata"]  # the release's namespace
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": lease_names(shards),
            "verbs": ["get", "update"],
        },
    ]
    binding = kinds["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": FULLNAME}
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": kinds["ServiceAccount"]["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert binding["subjects"][0]["name"] == pod_spec(render(helm, values_file))["serviceAccountName"]


def test_ha_role_binds_the_service_account_the_pods_run_as_and_rbac_create_false_leaves_it_out(helm: str) -> None:
    args = ("--set", "ha.enabled=true", "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=bridge")
    docs = render(helm, None, *args)
    assert by_kind(docs)["RoleBinding"]["subjects"][0]["name"] == "bridge" == pod_spec(docs)["serviceAccountName"]
    kinds = by_kind(render(helm, None, "--set", "ha.enabled=true", "--set", "rbac.create=false"))
    assert "Role" not in kinds and "RoleBinding" not in kinds
    assert not {"Role", "RoleBinding"} & set(by_kind(render(helm, SHARDING_VALUES))), "only with ha"


def budgets(kinds: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """An ha release's PodDisruptionBudgets, by name."""
    return {doc["metadata"]["name"]: doc for key, doc in kinds.items() if key.startswith("PodDisruptionBudget")}


@pytest.mark.parametrize(("values_file", "shards"), HA_FILES)
def test_ha_budget_per_shard_selects_exactly_its_two_pods(helm: str, values_file: Path, shards: int) -> None:
    """One PodDisruptionBudget per shard i, minAvailable 1 over exactly pods i and i+N of the StatefulSet's 2N, every
    pod under exactly one; and no release-wide one even when podDisruptionBudget.enabled (a pod under two budgets
    cannot be evicted)."""
    kinds = by_kind(render(helm, values_file, "--set", "podDisruptionBudget.enabled=true"))
    found = budgets(kinds)
    assert sorted(found) == lease_names(shards)  # <fullname>-shard-<i>, as the shard's Lease
    statefulset = kinds["StatefulSet"]
    pods = range(statefulset["spec"]["replicas"])
    for i in range(shards):
        budget = found[f"{FULLNAME}-shard-{i}"]
        assert budget["spec"] == {
            "minAvailable": 1,
            "selector": {
                "matchLabels": SELECTOR_LABELS,
                "matchExpressions": [{"key": POD_INDEX_LABEL, "operator": "In", "values": [str(i), str(i + shards)]}],
            },
        }
        selected = {n for n in pods if selects(budget["spec"]["selector"], statefulset_pod_labels(statefulset, n))}
        assert selected == {i, i + shards}
    for n in pods:
        covering = [b for b in found.values() if selects(b["spec"]["selector"], statefulset_pod_labels(statefulset, n))]
        assert len(covering) == 1, n


@pytest.mark.parametrize("mode", ["soft", "hard", "none"])
def test_ha_anti_affinity_spreads_the_release_across_nodes(helm: str, mode: str) -> None:
    docs = render(helm, HA_VALUES, "--set", f"ha.antiAffinity={mode}")
    assert pod_spec(docs).get("affinity") == anti_affinity(mode)
    if mode != "none":  # against every pod of the release, so a shard's two pods too: hard needs 2N nodes
        (term,) = [
            term.get("podAffinityTerm", term)
            for terms in anti_affinity(mode)["podAntiAffinity"].values()
            for term in terms
        ]
        statefulset = workload(docs)
        assert all(selects(term["labelSelector"], statefulset_pod_labels(statefulset, n)) for n in range(2))
    assert "affinity" not in check_pod(docs)["spec"], "the check pod is no bridge replica"
    assert "antiAffinity" not in yaml.safe_load(HA_VALUES.read_text())["ha"]
    assert pod_spec(render(helm, HA_VALUES))["affinity"] == anti_affinity("soft"), "the default"


def test_ha_a_user_affinity_wins(helm: str) -> None:
    term = "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
    args = ("--set", f"{term}.matchExpressions[0].key=pool", "--set", f"{term}.matchExpressions[0].operator=Exists")
    docs = render(helm, HA_SHARDING_VALUES, *args)
    expected = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "Exists"}]}]
            }
        }
    }
    assert pod_spec(docs)["affinity"] == expected
    assert check_pod(docs)["spec"]["affinity"] == expected
    assert_check_pod_matches_the_deployment(docs)


HA_PODS = [
    pytest.param(values_file, shards, ordinal, id=f"{values_file.stem}-pod-{ordinal}")
    for values_file, shards in ((HA_VALUES, 1), (HA_SHARDING_VALUES, 3))
    for ordinal in range(2 * shards)
]


@pytest.mark.parametrize(("values_file", "shards", "ordinal"), HA_PODS)
def test_ha_each_pod_takes_the_lease_the_role_allows_and_its_budget_guards(
    helm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, values_file: Path, shards: int, ordinal: int
) -> None:
    """The chart against the bridge, for every pod <fullname>-<ordinal> of the StatefulSet: the rendered config,
    loaded by bridge.config with the env the chart gives that pod, names Lease <fullname>-shard-<ordinal mod N>, one
    of the Role's resourceNames; its shard index is that too; and the one budget that covers the pod is that Lease's
    shard's, selecting exactly the pod-indexes whose shard it is."""
    from bridge.config import load_config

    docs = render(helm, values_file)
    kinds = by_kind(docs)
    statefulset = kinds["StatefulSet"]
    assert statefulset["spec"]["replicas"] == 2 * shards
    path = tmp_path / "config.yaml"
    path.write_text(config_text(docs))
    pod = f"{FULLNAME}-{ordinal}"  # the StatefulSet's pod names
    env = pod_env(pod_spec(docs)["containers"][0], pod)  # what the chart sets, as the kubelet resolves it
    assert env["SHARD_COUNT"] == str(shards) and env["POD_NAME"] == pod and env["POD_NAMESPACE"] == NAMESPACE
    for name in ("SHARD_COUNT", "POD_NAME", "POD_NAMESPACE", "HOSTNAME"):
        monkeypatch.setenv(name, env[name])
    for key in pod_secret_keys(docs, values_file):  # the Secret's keys (envFrom), dummies
        monkeypatch.setenv(key, f"ci-dummy-{key.lower()}")
    config = load_config(path)
    shard = ordinal % shards
    assert config.ha is not None and config.ha.enabled is True
    assert config.ha.lease_name == f"{FULLNAME}-shard-{shard}"
    assert config.ha.lease_name in kinds["Role"]["rules"][1]["resourceNames"]
    assert config.ha.namespace == NAMESPACE and config.ha.identity == pod
    assert config.sharding is not None and (config.sharding.count, config.sharding.index) == (shards, shard)
    (budget,) = [
        b
        for b in budgets(kinds).values()
        if selects(b["spec"]["selector"], statefulset_pod_labels(statefulset, ordinal))
    ]
    assert budget["metadata"]["name"] == config.ha.lease_name  # the budget that guards the pod is its Lease's shard's
    (expression,) = budget["spec"]["selector"]["matchExpressions"]
    assert expression["key"] == POD_INDEX_LABEL and str(ordinal) in expression["values"]
    assert {int(value) % shards for value in expression["values"]} == {config.sharding.index}


# Every ha.* value but ha.enabled, changed: with ha off none of them may reach a rendered object.
HA_OFF_BUT_TUNED = (
    *("--set", "ha.enabled=false", "--set", "ha.leaseDurationSeconds=30", "--set", "ha.renewSeconds=10"),
    *("--set", "ha.antiAffinity=hard", "--set", "rbac.create=false"),
)


@pytest.mark.parametrize("values_file", [None, SHARDING_VALUES, CHART / "ci" / "existing-secret-values.yaml"])
def test_ha_off_renders_exactly_what_the_chart_rendered_without_it(helm: str, values_file: Path | None) -> None:
    """The Deployment, the sharded StatefulSet and the release-wide budget as before ha existed: ha.* leaves no trace
    when off (the chart was also diffed byte for byte against its rendering before ha, for every ci/ file)."""
    docs = render(helm, values_file)
    assert render(helm, values_file, *HA_OFF_BUT_TUNED) == docs
    assert not {"Role", "RoleBinding"} & set(by_kind(docs))
    assert "ha" not in yaml.safe_load(config_text(docs))
    spec = pod_spec(docs)
    assert spec["automountServiceAccountToken"] is False and "affinity" not in spec
    assert all(var["name"] != "POD_NAMESPACE" for var in spec["containers"][0].get("env", []))
    if values_file == SHARDING_VALUES:
        assert workload(docs)["spec"]["replicas"] == 3


def test_ha_notes_name_the_statefulset_and_the_leases(helm: str) -> None:
    notes = install_notes(helm, "-f", str(HA_SHARDING_VALUES), "--set", "existingSecret=keys")
    for command in (
        f"rollout status statefulset/{FULLNAME}\n",
        f"get lease {' '.join(lease_names(3))} -o custom-columns=",
        f"logs -f {FULLNAME}-0\n",
        f"exec {FULLNAME}-0 -- metrics-bridge validate",
        f"rollout restart statefulset/{FULLNAME}\n",
    ):
        assert command in notes, command
    assert f"{FULLNAME}-<i> and\n{FULLNAME}-<i+3> share shard i" in notes
    assert "deployment/" not in notes and f"{FULLNAME}-a" not in notes
