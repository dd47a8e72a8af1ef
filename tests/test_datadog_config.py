"""The datadog sink's configuration: sites, key sources, strictness, redaction."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from bridge import secrets
from bridge.config import ConfigError, parse_config
from bridge.sinks.datadog.config import SITES, DatadogSinkConfig


@pytest.fixture(autouse=True)
def no_datadog_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DD_API_KEY", raising=False)
    monkeypatch.delenv("DD_SITE", raising=False)


def sink_config(**settings: Any) -> DatadogSinkConfig:
    config = parse_config(
        {
            "sources": {"demo": {"type": "simulator"}},
            "sinks": {"dd": {"type": "datadog", **settings}},
        }
    )
    return config.sinks["dd"]  # type: ignore[return-value]


def problems(**settings: Any) -> list[str]:
    with pytest.raises(ConfigError) as failure:
        sink_config(**settings)
    return failure.value.problems


def test_defaults() -> None:
    config = sink_config(api_key="key-from-config")
    assert config.base_url == "https://api.datadoghq.com"
    assert (config.compression, config.statistic_mode, config.service_checks, config.namespace) == (
        "zstd",
        "tag",
        True,
        "auto",
    )
    assert (config.host, config.tags, config.flush_first_value, config.validate_api_key) == (None, [], False, False)


@pytest.mark.parametrize("site", SITES)
def test_every_site_has_its_api_host(site: str) -> None:
    assert sink_config(api_key="k" * 8, site=site).base_url == f"https://api.{site}"


def test_dd_site_is_honoured_but_config_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DD_SITE", "datadoghq.eu")
    assert sink_config(api_key="k" * 8).base_url == "https://api.datadoghq.eu"
    assert sink_config(api_key="k" * 8, site="us5.datadoghq.com").base_url == "https://api.us5.datadoghq.com"
    assert sink_config(api_key="k" * 8, url="http://127.0.0.1:9/").base_url == "http://127.0.0.1:9"


def test_unknown_site_names_its_path() -> None:
    [problem] = problems(api_key="k" * 8, site="datadoghq.org")
    assert problem.startswith("sinks.dd.site: ") and "datadoghq.org" in problem and "url" in problem


def test_unknown_keys_are_errors() -> None:
    assert problems(api_key="k" * 8, statistics="tag") == ["sinks.dd.statistics: unknown key"]


def test_api_key_from_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "dd.key"
    key_file.write_text("key-from-file-123\n")
    monkeypatch.setenv("DD_API_KEY", "key-from-env-456")
    assert sink_config(api_key="key-from-config").resolved_api_key == "key-from-config"
    assert sink_config(api_key_file=str(key_file)).resolved_api_key == "key-from-file-123"
    assert sink_config().resolved_api_key == "key-from-env-456"


def test_resolved_keys_are_registered_for_redaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "dd.key"
    key_file.write_text("file-secret-abc\n")
    sink_config(api_key_file=str(key_file))
    monkeypatch.setenv("DD_API_KEY", "env-secret-def")
    sink_config()
    assert secrets.redact("file-secret-abc env-secret-def") == "*** ***"


def test_missing_or_unreadable_key_is_an_error(tmp_path: Path) -> None:
    [problem] = problems()
    assert "DD_API_KEY" in problem and "api_key_file" in problem
    [problem] = problems(api_key_file=str(tmp_path / "absent"))
    assert "cannot read" in problem
    (tmp_path / "empty").write_text("\n")
    [problem] = problems(api_key_file=str(tmp_path / "empty"))
    assert "is empty" in problem


def test_zstd_needs_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sink_config(api_key="k" * 8, compression="zstd").compression == "zstd"
    monkeypatch.setitem(sys.modules, "zstandard", None)
    [problem] = problems(api_key="k" * 8, compression="zstd")
    assert problem.startswith("sinks.dd.compression: ") and "zstandard" in problem


def test_compression_level_fits_the_codec() -> None:
    assert sink_config(api_key="k" * 8, compression="zstd", compression_level=15).compression_level == 15
    [problem] = problems(api_key="k" * 8, compression="gzip", compression_level=15)
    assert "1..9" in problem
