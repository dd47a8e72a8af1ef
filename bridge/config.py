"""Configuration: one YAML file, strict pydantic models, errors that name the YAML path.

Components are validated through the registry (the `type` key picks the model;
the base models live in bridge/schema.py), which imports only the components a
config names, so a plug-in's config is as strict as a built-in's and an
unconfigured sink costs no import. Strings may use `${VAR}`,
`${VAR:-default}` and `${file:/path}`; `$${` is a literal `${`.

A config file is input like any other, so loading is bounded: each YAML node is
walked once however many aliases point at it, the expanded size and the nesting
are capped, `${file:}` reads only small regular files, and whatever the YAML
library cannot convert is a problem at its line, never a traceback. Anything
`run` would refuse while building the pipeline (a regex, a listen address, a
TLS file) is refused here too, so `validate` answers for `run`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import yaml
from pydantic import (
    BaseModel,
    SecretStr,
    ValidationError,
)

from bridge import registry, secrets, sharding
from bridge.schema import (
    HAConfig,
    SeriesConfig,
    SinkConfig,
    SourceConfig,
    StrictModel,
    TelemetryConfig,
    TransformConfig,
    not_a_regular_file,
)
from bridge.sharding import ShardingConfig

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

#: libyaml's loader when PyYAML was built with it: the same results, several times faster.
#: mypy checks _Loader against SafeLoader: both take construct_object from the same BaseConstructor.
if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader
else:
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DEFAULT_CONFIG = "default.yaml"  # shipped inside the package; config/demo.yaml is the same file
MAX_CONFIG_BYTES = 64 * 1024 * 1024
MAX_FILE_VALUE_BYTES = 64 * 1024  # a `${file:}` holds one credential, not a data set
MAX_DEPTH = 64  # real configs nest about 6 deep
MAX_VALUES = 5_000_000  # each use of a YAML alias counts: a "billion laughs" stops here
MAX_REPORTED_PROBLEMS = 100


@dataclass
class BridgeConfig:
    sources: dict[str, SourceConfig]
    sinks: dict[str, SinkConfig]
    transforms: list[TransformConfig] = field(default_factory=list)
    sink_transforms: dict[str, list[TransformConfig]] = field(default_factory=dict)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    series: SeriesConfig = field(default_factory=SeriesConfig)
    state_path: str | None = None  # where forwarded windows are remembered across restarts
    sharding: ShardingConfig = field(default_factory=ShardingConfig)  # which sources this replica runs
    ha: HAConfig = field(default_factory=HAConfig)  # warm standby: a Lease decides which replica runs the sources
    path: str = "<embedded default>"


class ConfigError(Exception):
    """All problems found in one config file, each with its YAML path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = [secrets.redact(p) for p in problems[:MAX_REPORTED_PROBLEMS]]
        if len(problems) > MAX_REPORTED_PROBLEMS:
            self.problems.append(f"... and {len(problems) - MAX_REPORTED_PROBLEMS} more problems")
        super().__init__("\n".join(self.problems))


_TOP_KEYS = {"sources", "sinks", "transforms", "telemetry", "series", "state_path", "sharding", "ha"}
_VAR = re.compile(r"\$(\$?)\{([^}]*)\}")


# ---------------------------------------------------------------- interpolation
_Trail = tuple[Any, ...]  # the keys (str) and list indexes (int) from the top to a node


def _render(prefix: str, trail: _Trail) -> str:
    """A YAML path from its keys: sinks.out.transforms[0].keep_names."""
    path = prefix
    for part in trail:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, part)
    return path


def _read_file_value(file_path: str, where: str, problems: list[str]) -> str:
    reason = not_a_regular_file(file_path, MAX_FILE_VALUE_BYTES)
    if reason:
        problems.append(f"{where}: cannot read {file_path}: {reason}")
        return ""
    try:
        return secrets.read_file(file_path)
    except OSError as exc:
        problems.append(f"{where}: cannot read {file_path}: {exc.strerror}")
    except ValueError as exc:  # e.g. a second line: names the file, never the value
        problems.append(f"{where}: {exc}")
    return ""


def _interpolate(text: str, where: str, problems: list[str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group(1):  # $${...} escapes
            return "${" + match.group(2) + "}"
        expr = match.group(2)
        if expr.startswith("file:"):
            return _read_file_value(expr[5:], where, problems)
        name, sep, default = expr.partition(":-")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            problems.append(f"{where}: bad interpolation ${{{expr}}}")
            return ""
        value = os.environ.get(name)
        if value is None or (sep and value == ""):
            if sep:
                return default
            problems.append(f"{where}: environment variable {name} is not set")
            return ""
        return value

    return _VAR.sub(substitute, text)


class _Interpolation:
    """Interpolates every string of a YAML tree, walking each distinct node once.

    YAML aliases put one node in many places, and aliases of aliases (a "billion
    laughs") expand exponentially: nodes are memoized by identity, so the walk is
    linear in the file, and their expanded size is capped (MAX_VALUES), so nothing
    later expands them either. Nesting is capped too (MAX_DEPTH), and so are cycles.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        self._done: dict[int, tuple[Any, int]] = {}  # id(node) -> (interpolated node, expanded size)
        self._open: set[int] = set()  # nodes being walked: meeting one again is a cycle

    def walk(self, node: Any, trail: _Trail = ()) -> tuple[Any, int]:
        """(the interpolated node, how many values it holds with every alias expanded)."""
        if isinstance(node, str):
            return self._string(node, trail), 1
        if not isinstance(node, (dict, list)):
            return node, 1
        key = id(node)
        if key in self._done:
            return self._done[key]
        if key in self._open or len(trail) >= MAX_DEPTH:
            why = "a YAML alias that contains itself" if key in self._open else f"nested deeper than {MAX_DEPTH} levels"
            self.problems.append(f"{_render('', trail)}: {why}")
            return None, 1
        self._open.add(key)
        size = 1
        out: Any
        if isinstance(node, dict):
            out = {}
            for name, value in node.items():
                out[name], count = self.walk(value, (*trail, str(name)))
                size += count
        else:
            out = []
            for index, value in enumerate(node):
                item, count = self.walk(value, (*trail, index))
                out.append(item)
                size += count
        self._open.discard(key)
        if size > MAX_VALUES:
            where = _render("", trail) or "the config"
            bomb = f"{where}: more than {MAX_VALUES:,} values once YAML aliases are expanded (an alias bomb?)"
            raise ConfigError([*self.problems, bomb])
        self._done[key] = (out, size)
        return out, size

    def _string(self, text: str, trail: _Trail) -> str:
        if "\x00" in text:  # no path, URL or name holds one; os and ssl calls raise on it
            self.problems.append(f"{_render('', trail)}: contains a NUL character")
            text = text.replace("\x00", "")
        return _interpolate(text, _render("", trail), self.problems) if "${" in text else text


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


def _message(error: ErrorDetails) -> str:
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
    except Exception as exc:  # noqa: BLE001  # what pydantic does not wrap (a plug-in validator's TypeError)
        problems.append(f"{path}: cannot be checked: {exc or type(exc).__name__}")
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


def _register_secrets(config: BaseModel, path: str, problems: list[str]) -> None:
    """Register every secret of a validated config; refuse one that cannot go in an HTTP header.

    Iterative, each container once (YAML aliases share nodes: a walk per use could be
    exponential), and only into fields whose type can hold a secret (it runs for every component).
    """
    seen: set[int] = set()
    stack: list[tuple[Any, _Trail]] = [(config, ())]
    while stack:
        node, trail = stack.pop()
        if isinstance(node, SecretStr):
            value = node.get_secret_value()
            secrets.register(value)
            problem = secrets.problem(value)
            if problem:
                problems.append(f"{_render(path, trail)}: {problem}")
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, BaseModel):
            items: Any = ((name, getattr(node, name)) for name in _secret_fields(type(node)))
        elif isinstance(node, dict):
            items = ((str(key), value) for key, value in node.items())
        else:
            items = enumerate(node)
        children = [(value, (*trail, key)) for key, value in items if isinstance(value, _MAY_HOLD_SECRETS)]
        stack.extend(reversed(children))  # depth first, in order: problems come out in file order


_MAY_HOLD_SECRETS = (SecretStr, BaseModel, dict, list, tuple)


@functools.cache
def _secret_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of a model whose type can hold a SecretStr (Any counts: a plug-in may put one there)."""
    return tuple(name for name, info in model.model_fields.items() if _may_hold_secret(info.annotation, {model}))


def _may_hold_secret(annotation: Any, models: set[type[BaseModel]]) -> bool:
    if annotation is SecretStr or annotation is Any:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation not in models and any(
            _may_hold_secret(info.annotation, models | {annotation}) for info in annotation.model_fields.values()
        )
    return any(_may_hold_secret(arg, models) for arg in get_args(annotation))  # unions, lists, dicts


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
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError([f"{origin}: the top level must be a mapping with sources and sinks"])
    for key in data:
        if key not in _TOP_KEYS:
            problems.append(f"{key}: unknown key (expected one of: {', '.join(sorted(_TOP_KEYS))})")
    data, _ = _Interpolation(problems).walk(data)
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
    series = validate_model(SeriesConfig, data.get("series") or {}, "series", problems)
    state_path = data.get("state_path")
    if state_path is not None and not isinstance(state_path, str):
        problems.append("state_path: expected a file path")
    ha_data = data.get("ha")
    standby = isinstance(ha_data, dict) and ha_data.get("enabled") is True
    shard_data, index_origin = sharding.resolve(data.get("sharding"), os.environ, problems, standby=standby)
    shard = validate_model(ShardingConfig, shard_data, "sharding", problems)
    if shard is not None:
        sharding.check(shard, index_origin, problems)
    ha = validate_model(HAConfig, _ha_defaults(ha_data, shard, os.environ, problems), "ha", problems)
    _check_spools(sinks, problems)
    if problems:
        raise ConfigError(problems)
    return BridgeConfig(
        sources=sources,
        sinks=sinks,
        transforms=transforms,
        sink_transforms=sink_transforms,
        telemetry=telemetry,
        series=series,
        state_path=state_path,
        sharding=shard,
        ha=ha,
        path=origin,
    )


def _ha_defaults(
    data: object, shard: ShardingConfig | None, env: Mapping[str, str], problems: list[str]
) -> dict[str, object]:
    """The `ha` mapping to validate: namespace and identity from the pod's env when the config leaves them out."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append("ha: expected a mapping (enabled, lease_name, namespace, identity)")
        return {}
    merged: dict[str, object] = dict(data)
    if not merged.get("enabled"):
        return merged
    if importlib.util.find_spec("kubernetes") is None:
        problems.append("ha.enabled: needs the kubernetes client, the `ha` extra: pip install 'metrics-bridge[ha]'")
    if merged.get("namespace") is None and env.get("POD_NAMESPACE", "").strip():
        merged["namespace"] = env["POD_NAMESPACE"].strip()
    if merged.get("identity") is None:
        identity = env.get("POD_NAME", "").strip() or env.get("HOSTNAME", "").strip()
        if identity:
            merged["identity"] = identity
    if merged.get("lease_name") is None:
        prefix = merged.get("lease_prefix") or "metrics-bridge"
        merged["lease_name"] = f"{prefix}-shard-{shard.index if shard is not None else 0}"
    for key, variable in (("namespace", "POD_NAMESPACE"), ("identity", "POD_NAME or HOSTNAME")):
        if merged.get(key) is None:
            problems.append(f"ha.{key}: not set and ${variable} is empty")
    return merged


def _check_spools(sinks: dict[str, SinkConfig], problems: list[str]) -> None:
    """A spool belongs to one sink: the second sink on a file would refuse to start."""
    owners: dict[str, str] = {}
    for name, config in sinks.items():
        if config.delivery.spool_path is None:
            continue
        real = os.path.realpath(config.delivery.spool_path)
        if real in owners:
            problems.append(
                f"sinks.{name}.delivery.spool_path: already the spool of sink {owners[real]} (each sink needs its own)"
            )
        owners.setdefault(real, name)


class _Loader(_SafeLoader):
    """yaml.safe_load's loader; a scalar its constructors cannot convert is a YAML error at its line.

    Python's int() refuses more than 4300 digits, datetime refuses 2001-02-30, and
    `!!timestamp x` trips an AttributeError: none of them may end in a traceback.
    """

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            kind = str(node.tag).rpartition(":")[2]
            reason = str(exc).split(";")[0] if isinstance(exc, (ValueError, OverflowError)) else "unreadable"
            raise yaml.constructor.ConstructorError(
                None, None, f"not a valid {kind}: {reason}", node.start_mark
            ) from None


def load_yaml(text: str, origin: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f":{mark.line + 1}:{mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{origin}{where}: invalid YAML: {problem}"]) from None
    except RecursionError:  # the pure-Python composer recurses per level (libyaml stops at 1000 levels itself)
        raise ConfigError([f"{origin}: invalid YAML: nested too deeply"]) from None


def _read_config_file(path: str) -> str:
    reason = not_a_regular_file(path, MAX_CONFIG_BYTES)
    if reason:
        raise ConfigError([f"{path}: cannot read: {reason}"])
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x})"]) from None


def load_config(path: str | os.PathLike[str] | None = None) -> BridgeConfig:
    """Load a config file, or the embedded default when path is None."""
    if path is None:
        text = resources.files("bridge").joinpath(DEFAULT_CONFIG).read_text()
        origin = "<embedded default>"
    else:
        origin = str(path)
        text = _read_config_file(origin)
    return parse_config(load_yaml(text, origin), origin=origin)
