"""The Helm chart, checked with the real helm and Kubernetes' own schemas.

For the default values and every ci/*-values.yaml: `helm lint --strict`,
`helm template`, each rendered object validated by kubernetes-validate
(strict: unknown fields are errors), the rendered bridge config holding exactly
the sources and sinks the values file names (Helm deep-merges values, so chart
defaults must never leak into them), and `metrics-bridge validate` run on it
with the pod's environment. Then what the chart promises: locked-down pods,
probes on the health endpoints, a checksum that rolls pods on config change,
secrets only through the Secret it names.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "metrics-bridge"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
MINIMAL_VALUES = CHART / "ci" / "minimal-values.yaml"
DEMO = {"sources": {"demo": {"type": "simulator"}}, "sinks": {"console": {"type": "console"}}}
KUBERNETES_VERSION = "1.30.0"  # the oldest minor the chart targets that kubernetes-validate>=1.30 bundles
NAMESPACE = "monitoring"
RELEASE = "mb"
FULLNAME = "mb-metrics-bridge"
# Kinds from CRDs: kubernetes-validate has no schema for them; their shape is asserted below.
CRD_KINDS = {"ServiceMonitor"}

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


def render(helm: str, values_file: Path | None = None, *extra: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *helm_args(values_file, *extra)],
        capture_output=True,
        check=False,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_error(helm: str, *extra: str) -> str:
    result = subprocess.run(
        [helm, "template", RELEASE, str(CHART), *extra], capture_output=True, check=False, text=True
    )
    assert result.returncode != 0, "expected the chart to refuse these values"
    return result.stderr


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds: dict[str, dict[str, Any]] = {}
    for doc in docs:
        assert doc["kind"] not in kinds, f"two {doc['kind']} objects"
        kinds[doc["kind"]] = doc
    return kinds


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(docs)["Deployment"]["spec"]["template"]["spec"]


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
    assert {"ConfigMap", "Deployment", "Service", "ServiceAccount"} <= set(by_kind(docs))
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


@pytest.mark.parametrize("values_file", VALUE_SETS)
def test_rendered_config_passes_metrics_bridge_validate(helm: str, values_file: Path | None, tmp_path: Path) -> None:
    """What the pod mounts must pass the real CLI, in an environment holding only what the pod gets from
    its Secret (dummy values); the keys the chart owns are filled in."""
    docs = render(helm, values_file)
    text = config_text(docs)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    env = {key: f"ci-dummy-{key.lower()}" for key in pod_secret_keys(docs, values_file)}
    env["PATH"] = os.environ.get("PATH", "")
    result = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "validate", "-c", str(path)],
        capture_output=True,
        check=False,
        text=True,
        env=env,
        cwd=tmp_path,
    )
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
    assert not {"ServiceMonitor", "PodDisruptionBudget", "PersistentVolumeClaim"} & set(by_kind(render(helm)))


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


def test_notes_give_the_first_commands(helm: str) -> None:
    result = subprocess.run(
        [
            helm,
            "install",
            RELEASE,
            str(CHART),
            "--dry-run=client",
            "--namespace",
            NAMESPACE,
            "--set",
            "existingSecret=keys",
        ],
        capture_output=True,
        check=False,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    for command in (
        f"kubectl -n {NAMESPACE} rollout status deployment/{FULLNAME}",
        f"kubectl -n {NAMESPACE} logs -f deployment/{FULLNAME}",
        f"port-forward service/{FULLNAME} 9464",
        "localhost:9464/readyz",
        "metrics-bridge validate -c /etc/metrics-bridge/config.yaml",
        "rollout restart",
        "simulator",
    ):
        assert command in notes, command
