"""Configuration: one YAML file, strict pydantic models, errors that name the YAML path.

Components are validated through the registry (the `type` key picks the model),
so a plug-in's config is as strict as a built-in's. Strings may use `${VAR}`,
`${VAR:-default}` and `${file:/path}`; `$${` is a literal `${`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from bridge import registry, secrets

DEFAULT_CONFIG = "default.yaml"  # shipped inside the package; config/demo.yaml is the same file


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid")


class ComponentConfig(StrictModel):
    type: str


class SourceConfig(ComponentConfig):
    pass


class TransformConfig(ComponentConfig):
    pass


class DeliveryConfig(StrictModel):
    """Per-sink queue, retry and spool policy (bridge/delivery; README "Delivery and reliability")."""

    max_batches: int = Field(1000, ge=1, description="queued payloads before the oldest is evicted")
    max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="queued payload bytes held in memory before eviction (no spool)"
    )
    max_age_seconds: float | None = Field(
        None, gt=0, description="drop a payload whose window ended longer ago (sink default if unset: Datadog 3540)"
    )
    retry_initial_seconds: float = Field(1.0, gt=0, description="backoff ceiling after the first failure")
    retry_max_seconds: float = Field(60.0, gt=0, description="cap of the backoff ceiling; Retry-After may exceed it")
    drain_order: Literal["newest_first", "oldest_first"] = Field(
        "newest_first",
        description="after an outage: live data first, then backfill (newest_first); or in window order, for "
        "backends that refuse out-of-order samples (oldest_first)",
    )
    spool_path: str | None = Field(None, description="SQLite file that keeps unacknowledged payloads across restarts")
    spool_max_bytes: int = Field(
        256 * 1024 * 1024, ge=1024, description="spooled payload bytes before the oldest is evicted (with a spool)"
    )


class SinkConfig(ComponentConfig):
    transforms: list[dict[str, Any]] = Field(default_factory=list)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)


class TelemetryConfig(StrictModel):
    listen: str | None = Field(
        None, pattern=r"^(\[[0-9a-fA-F:]+\]|[^:\s]*):\d{1,5}$",
        description="host:port for /metrics, /healthz, /readyz (e.g. 0.0.0.0:9464); off if unset",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"


@dataclass
class BridgeConfig:
    sources: dict[str, SourceConfig]
    sinks: dict[str, SinkConfig]
    transforms: list[TransformConfig] = field(default_factory=list)
    sink_transforms: dict[str, list[TransformConfig]] = field(default_factory=dict)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    state_path: str | None = None  # where forwarded windows are remembered across restarts
    path: str = "<embedded default>"


class ConfigError(Exception):
    """All problems found in one config file, each with its YAML path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = [secrets.redact(p) for p in problems]
        super().__init__("\n".join(self.problems))


_TOP_KEYS = {"sources", "sinks", "transforms", "telemetry", "state_path"}
_VAR = re.compile(r"\$(\$?)\{([^}]*)\}")


# ---------------------------------------------------------------- interpolation
def _interpolate(text: str, path: str, problems: list[str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group(1):  # $${...} escapes
            return "${" + match.group(2) + "}"
        expr = match.group(2)
        if expr.startswith("file:"):
            file_path = expr[5:]
            try:
                return secrets.read_file(file_path)
            except OSError as exc:
                problems.append(f"{path}: cannot read {file_path}: {exc.strerror}")
            except ValueError as exc:  # e.g. a second line: names the file, never the value
                problems.append(f"{path}: {exc}")
            return ""
        name, sep, default = expr.partition(":-")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            problems.append(f"{path}: bad interpolation ${{{expr}}}")
            return ""
        value = os.environ.get(name)
        if value is None or (sep and value == ""):
            if sep:
                return default
            problems.append(f"{path}: environment variable {name} is not set")
            return ""
        return value

    return _VAR.sub(substitute, text)


def _interpolate_tree(node: Any, path: str, problems: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, _join(path, str(k)), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(v, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if isinstance(node, str):
        return _interpolate(node, path, problems)
    return node


# ---------------------------------------------------------------- validation
def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _loc_path(prefix: str, loc: tuple[Any, ...], data: Any) -> str:
    """The YAML path of a pydantic error location, walking the data to skip union tags."""
    path = prefix
    node = data
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
        elif isinstance(node, dict) and part not in node and node.get("type") == part:
            continue  # the tag pydantic adds for a discriminated union branch, not a YAML key
        elif part in ("function-after", "function-before", "function-wrap"):
            continue
        else:
            path = _join(path, str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return path


def _message(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return error["msg"].removeprefix("Value error, ")  # our own validators' messages are already sentences


def validate_model(model: type[StrictModel], data: Any, path: str, problems: list[str]) -> Any:
    """Validate data against model; record each error with its YAML path. Never includes input values."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            problems.append(f"{_loc_path(path, error['loc'], data)}: {_message(error)}")
        return None


def validate_component(kind: registry.Registry[Any], data: Any, path: str, problems: list[str]) -> Any:
    if not isinstance(data, dict):
        problems.append(f"{path}: expected a mapping with a `type` key")
        return None
    type_name = data.get("type")
    if not isinstance(type_name, str):
        problems.append(f"{path}.type: required key is missing")
        return None
    cls = kind.get(type_name)
    if cls is None:
        problems.append(f"{path}.type: unknown {kind.kind} type {type_name!r} (known: {', '.join(kind.names())})")
        return None
    config = validate_model(cls.Config, data, path, problems)
    if config is not None:
        _register_secrets(config, path, problems)
    return config


def _register_secrets(node: Any, path: str, problems: list[str]) -> None:
    """Register every secret of a validated config; refuse one that cannot go in an HTTP header."""
    if isinstance(node, SecretStr):
        value = node.get_secret_value()
        secrets.register(value)
        problem = secrets.problem(value)
        if problem:
            problems.append(f"{path}: {problem}")
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            _register_secrets(getattr(node, name), _join(path, name), problems)
    elif isinstance(node, dict):
        for key, value in node.items():
            _register_secrets(value, _join(path, str(key)), problems)
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            _register_secrets(value, f"{path}[{index}]", problems)


def _transform_list(data: Any, path: str, problems: list[str]) -> list[TransformConfig]:
    if data is None:
        return []
    if not isinstance(data, list):
        problems.append(f"{path}: expected a list of transforms")
        return []
    configs = [validate_component(registry.transforms, item, f"{path}[{i}]", problems) for i, item in enumerate(data)]
    return [c for c in configs if c is not None]


def _named(section: str, data: Any, kind: registry.Registry[Any], problems: list[str]) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{section}: expected a mapping of name -> {kind.kind}")
        return {}
    out = {}
    for name, item in data.items():
        config = validate_component(kind, item, f"{section}.{name}", problems)
        if config is not None:
            out[str(name)] = config
    return out


def parse_config(data: Any, *, origin: str = "<config>") -> BridgeConfig:
    """Validate an already-loaded YAML tree; raise ConfigError listing every problem."""
    registry.load_builtins()
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError([f"{origin}: the top level must be a mapping with sources and sinks"])
    for key in data:
        if key not in _TOP_KEYS:
            problems.append(f"{key}: unknown key (expected one of: {', '.join(sorted(_TOP_KEYS))})")
    data = _interpolate_tree(data, "", problems)
    sources = _named("sources", data.get("sources"), registry.sources, problems)
    sinks = _named("sinks", data.get("sinks"), registry.sinks, problems)
    if not data.get("sources"):
        problems.append("sources: at least one source is required")
    if not data.get("sinks"):
        problems.append("sinks: at least one sink is required")
    transforms = _transform_list(data.get("transforms"), "transforms", problems)
    sink_transforms = {
        name: _transform_list(config.transforms, f"sinks.{name}.transforms", problems) for name, config in sinks.items()
    }
    telemetry = validate_model(TelemetryConfig, data.get("telemetry") or {}, "telemetry", problems)
    state_path = data.get("state_path")
    if state_path is not None and not isinstance(state_path, str):
        problems.append("state_path: expected a file path")
    if problems:
        raise ConfigError(problems)
    return BridgeConfig(
        sources=sources,
        sinks=sinks,
        transforms=transforms,
        sink_transforms=sink_transforms,
        telemetry=telemetry,
        state_path=state_path,
        path=origin,
    )


def load_yaml(text: str, origin: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f":{mark.line + 1}:{mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{origin}{where}: invalid YAML: {problem}"]) from None


def load_config(path: str | os.PathLike[str] | None = None) -> BridgeConfig:
    """Load a config file, or the embedded default when path is None."""
    if path is None:
        text = resources.files("bridge").joinpath(DEFAULT_CONFIG).read_text()
        origin = "<embedded default>"
    else:
        origin = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError([f"{origin}: cannot read: {exc.strerror}"]) from None
    return parse_config(load_yaml(text, origin), origin=origin)
