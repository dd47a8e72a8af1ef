"""`labels`: add, drop and rename point attributes; add resource attributes."""

from __future__ import annotations

from pydantic import Field

from bridge import registry
from bridge.model import Batch, Metric, Series
from bridge.schema import TransformConfig
from bridge.series import new_slot, shared
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
        self._slot = new_slot()  # each series' rewritten twin, interned once in the shared table

    def _rewrite(self, metric: Metric, series: Series) -> Series:
        rewritten: Series | None = series.memo.get(self._slot)
        if rewritten is None:
            config = self.config
            out = {config.rename.get(k, k): v for k, v in series.attributes if k not in config.drop}
            out.update(config.add)
            attributes = tuple(sorted(out.items()))
            rewritten = series.memo[self._slot] = shared.intern(metric.name, attributes, attributes)
        rewritten.seen_ns = series.seen_ns
        return rewritten

    def apply(self, batch: Batch) -> Batch:
        metrics = [m.replace(series=[self._rewrite(m, s) for s in m.series]) for m in batch.metrics]
        resource = batch.resource
        if self.config.add_resource:
            resource = tuple(sorted({**dict(resource), **self.config.add_resource}.items()))
        batch = batch.with_metrics(metrics)
        batch.resource = resource
        return batch
