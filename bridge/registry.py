"""Type name -> component class, for sources, transforms and sinks.

Built-ins register themselves with a decorator; third parties ship a
component through the entry-point groups `metrics_bridge.sources`,
`metrics_bridge.transforms` and `metrics_bridge.sinks` (name = the `type`
users write in YAML, value = the class), without forking the bridge.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.group = f"metrics_bridge.{kind}s"
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
            self._load_entry_points()
        return self._types.get(type_name)

    def require(self, type_name: str) -> type[T]:
        """The class of a type the config's validation has already found (LookupError otherwise)."""
        cls = self.get(type_name)
        if cls is None:
            raise LookupError(f"unknown {self.kind} type {type_name!r}")
        return cls

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._types)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name in self._types:
                continue
            try:
                cls = ep.load()
                cls.type_name = ep.name
                self._types[ep.name] = cls
            except Exception as exc:  # noqa: BLE001  # a broken plug-in must not take the bridge down
                log.warning("plug-in %s %r failed to load: %s", self.kind, ep.name, exc)


sources: Registry[Source] = Registry("source")
transforms: Registry[Transform] = Registry("transform")
sinks: Registry[Sink] = Registry("sink")


def load_builtins() -> None:
    """Import the built-in components so their decorators run."""
    from bridge import sinks as _sinks  # noqa: F401
    from bridge import sources as _sources  # noqa: F401
    from bridge import transforms as _transforms  # noqa: F401
