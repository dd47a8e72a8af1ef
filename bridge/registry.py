"""Type name -> component class, for sources, transforms and sinks.

Built-ins register themselves with a decorator when their module is imported,
and a lookup imports only the module of the type asked for (BUILTIN_*): a sink
that is not configured costs no import (the `otlp` sink's module alone pulls in
protobuf and the OpenTelemetry SDK). Third parties ship a component through the
entry-point groups `metrics_bridge.sources`, `metrics_bridge.transforms` and
`metrics_bridge.sinks` (name = the `type` users write in YAML, value = the
class), without forking the bridge; a built-in's name is never a plug-in's.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from bridge.sinks.base import Sink
    from bridge.sources.base import Source
    from bridge.transforms.base import Transform

log = logging.getLogger(__name__)


class Component(Protocol):
    """What every registered class has: the `type` users write in YAML, set when it is registered."""

    type_name: ClassVar[str]


T = TypeVar("T", bound=Component)


class Registry(Generic[T]):
    def __init__(self, kind: str, builtins: Mapping[str, str]) -> None:
        self.kind = kind
        self.group = f"metrics_bridge.{kind}s"
        self.builtins = dict(builtins)  # type name -> the module that registers it when imported
        self._types: dict[str, type[T]] = {}
        self._entry_points_loaded = False

    def register(self, type_name: str) -> Callable[[type[T]], type[T]]:
        def decorate(cls: type[T]) -> type[T]:
            self._types[type_name] = cls
            cls.type_name = type_name
            return cls

        return decorate

    def get(self, type_name: str) -> type[T] | None:
        if type_name not in self._types:
            module = self.builtins.get(type_name)
            if module is not None:
                importlib.import_module(module)  # its decorator registers it
            else:
                self._load_entry_points()
        return self._types.get(type_name)

    def require(self, type_name: str) -> type[T]:
        """The class of a type the config's validation has already found (LookupError otherwise)."""
        cls = self.get(type_name)
        if cls is None:
            raise LookupError(f"unknown {self.kind} type {type_name!r}")
        return cls

    def names(self) -> list[str]:
        """Every type a config may name, without importing a built-in."""
        self._load_entry_points()
        return sorted(self._types.keys() | self.builtins.keys())

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name in self._types or ep.name in self.builtins:
                continue
            try:
                cls = ep.load()
                cls.type_name = ep.name
                self._types[ep.name] = cls
            except Exception as exc:  # noqa: BLE001  # a broken plug-in must not take the bridge down
                log.warning("plug-in %s %r failed to load: %s", self.kind, ep.name, exc)


BUILTIN_SOURCES = {
    "cerebras": "bridge.sources.cerebras",
    "file": "bridge.sources.file",
    "prometheus": "bridge.sources.prometheus",
    "simulator": "bridge.sources.simulator",
}
BUILTIN_TRANSFORMS = {
    "filter": "bridge.transforms.filter",
    "labels": "bridge.transforms.labels",
    "limit": "bridge.transforms.limit",
    "relabel": "bridge.transforms.relabel",
    "rename": "bridge.transforms.rename",
}
BUILTIN_SINKS = {
    "console": "bridge.sinks.console",
    "datadog": "bridge.sinks.datadog",
    "grafana_cloud": "bridge.sinks.otlp",
    "grafana_cloud_prometheus": "bridge.sinks.remote_write",
    "jsonl": "bridge.sinks.jsonl",
    "otlp": "bridge.sinks.otlp",
    "remote_write": "bridge.sinks.remote_write",
}

sources: Registry[Source] = Registry("source", BUILTIN_SOURCES)
transforms: Registry[Transform] = Registry("transform", BUILTIN_TRANSFORMS)
sinks: Registry[Sink] = Registry("sink", BUILTIN_SINKS)


def load_builtins() -> None:
    """Import every built-in component (a lookup imports only its own): for tools and tests that want them all."""
    for kind in (sources, transforms, sinks):
        for type_name in kind.builtins:
            kind.get(type_name)
