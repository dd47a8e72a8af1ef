"""Config loading: strict models, errors that name the YAML path, interpolation, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import ConfigError, load_config, parse_config

SINK = {"out": {"type": "console"}}


def problems(data: object) -> list[str]:
    with pytest.raises(ConfigError) as error:
        parse_config(data)
    return error.value.problems


def test_the_embedded_default_and_the_demo_copy_are_the_same_valid_file() -> None:
    config = load_config(None)
    assert config.sources["demo"].type == "simulator" and config.sinks["console"].type == "console"
    repo = Path(__file__).resolve().parents[1]
    assert (repo / "config" / "demo.yaml").read_text() == (repo / "bridge" / "default.yaml").read_text()


def test_every_example_config_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "CEREBRAS_API_KEY",
        "DD_API_KEY",
        "GRAFANA_CLOUD_TOKEN",
        "GRAFANA_CLOUD_INSTANCE_ID",
        "CEREBRAS_ORG_ID",
        "OTLP_TOKEN",
    ):
        monkeypatch.setenv(var, "example-value-1234")
    examples = sorted((Path(__file__).resolve().parents[1] / "config").glob("*.yaml"))
    assert examples
    for path in examples:
        load_config(path)


def test_unknown_keys_are_named_with_their_path() -> None:
    found = problems(
        {
            "sources": {"cb": {"type": "prometheus", "url": "http://x", "intervall_seconds": 5}},
            "sinks": SINK,
            "sinkz": {},
        }
    )
    assert "sources.cb.intervall_seconds: unknown key" in found
    assert any(p.startswith("sinkz: unknown key") for p in found)


def test_wrong_values_and_missing_keys_are_named() -> None:
    found = problems(
        {
            "sources": {"cb": {"type": "prometheus", "timeout_seconds": -1}},
            "sinks": {"out": {"type": "console", "transforms": [{"type": "filter", "keep_names": "x"}]}},
        }
    )
    assert "sources.cb.url: required key is missing" in found
    assert any(p.startswith("sources.cb.timeout_seconds:") and "greater than 0" in p for p in found)
    assert any(p.startswith("sinks.out.transforms[0].keep_names:") for p in found)


def test_unknown_types_list_the_known_ones() -> None:
    (found,) = problems({"sources": {"cb": {"type": "nope"}}, "sinks": SINK})
    assert found.startswith("sources.cb.type: unknown source type 'nope' (known: cerebras, file, prometheus")


def test_discriminated_auth_reports_the_right_branch() -> None:
    found = problems(
        {
            "sources": {"p": {"type": "prometheus", "url": "http://x", "auth": {"type": "basic", "user": "a"}}},
            "sinks": SINK,
        }
    )
    assert found == ["sources.p.auth.username: required key is missing", "sources.p.auth.user: unknown key"]


def test_interpolation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("from-a-file-0001\n")
    monkeypatch.setenv("EXPORTER_URL", "http://127.0.0.1:9100/metrics")
    monkeypatch.delenv("UNSET_VAR", raising=False)
    config = parse_config(
        {
            "sources": {
                "p": {
                    "type": "prometheus",
                    "url": "${EXPORTER_URL}",
                    "auth": {"type": "bearer", "token": f"${{file:{secret_file}}}"},
                    "resource": {"team": "${UNSET_VAR:-platform}", "literal": "$${NOT_A_VAR}"},
                }
            },
            "sinks": SINK,
        }
    )
    source = config.sources["p"]
    assert source.url == "http://127.0.0.1:9100/metrics"
    assert source.auth.token.get_secret_value() == "from-a-file-0001"
    assert source.resource == {"team": "platform", "literal": "${NOT_A_VAR}"}


def test_missing_variables_and_files_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    found = problems(
        {
            "sources": {
                "p": {
                    "type": "prometheus",
                    "url": "${NOPE_NOT_SET}",
                    "auth": {"type": "bearer", "token": "${file:/does/not/exist}"},
                }
            },
            "sinks": SINK,
        }
    )
    assert "sources.p.url: environment variable NOPE_NOT_SET is not set" in found
    assert any(p.startswith("sources.p.auth.token: cannot read /does/not/exist") for p in found)


def test_errors_never_echo_secret_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_TOKEN", "canary-secret-5678")
    found = problems(
        {
            "sources": {
                "p": {
                    "type": "prometheus",
                    "url": "http://x",
                    "auth": {"type": "bearer", "token": "${CANARY_TOKEN}", "bogus": 1},
                    "timeout_seconds": "${CANARY_TOKEN}",
                }
            },
            "sinks": SINK,
        }
    )
    assert found and not any("canary-secret-5678" in p for p in found)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("sources:\n  a: [1, 2\nsinks: {}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"{path}:3" in str(error.value) and "invalid YAML" in str(error.value)


def test_validator_messages_read_as_sentences(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CEREBRAS_API_KEY", raising=False)
    (found,) = problems({"sources": {"cb": {"type": "cerebras", "organization_id": "org_x"}}, "sinks": SINK})
    assert found == "sources.cb: api_key is not set and $CEREBRAS_API_KEY is empty"
