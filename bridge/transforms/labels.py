"""`labels`: add, drop and rename point attributes; add resource attributes."""

from __future__ import annotations

from pydantic import Field

from bridge import registry
from bridge.model import Attrs, Batch, Point
from bridge.schema import TransformConfig
from bridge.transforms.base import Transform


class LabelsConfig(TransformConfig):
    add: dict[str, str] = Field(default_factory=dict, description="set on every point (overrides)")
    drop: list[str] = Field(default_factory=list, description="removed from every point")
    rename: dict[str, str] = Field(default_factory=dict, description="old key -> new key")
    add_resource: dict[str, str] = Field(default_factory=dict, description="set on the batch's resource")


@registry.transforms.register("labels")
class Labels(Transform):
    Config = LabelsConfig

    def __init__(self, config: LabelsConfig) -> None:
        super().__init__(config)
        self._cache: dict[Attrs, Attrs] = {}  # series repeat every window: rewrite each label set once

    def _rewrite(self, attrs: Attrs) -> Attrs:
        cached = self._cache.get(attrs)
        if cached is None:
            config = self.config
            out = {config.rename.get(k, k): v for k, v in attrs if k not in config.drop}
            out.update(config.add)
            cached = tuple(sorted(out.items()))
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[attrs] = cached
        return cached

    def apply(self, batch: Batch) -> Batch:
        metrics = [
            m.with_points([Point(self._rewrite(p.attributes), p.value, p.start_ns, p.end_ns) for p in m.points])
            for m in batch.metrics
        ]
        resource = batch.resource
        if self.config.add_resource:
            resource = tuple(sorted({**dict(resource), **self.config.add_resource}.items()))
        batch = batch.with_metrics(metrics)
        batch.resource = resource
        return batch
