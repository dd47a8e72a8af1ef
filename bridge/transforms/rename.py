"""`rename`: explicit name map first, then a prefix (e.g. `cerebras_`) on every metric."""

from __future__ import annotations

from pydantic import Field

from bridge import registry
from bridge.model import Batch
from bridge.schema import TransformConfig
from bridge.transforms.base import Transform


class RenameConfig(TransformConfig):
    names: dict[str, str] = Field(default_factory=dict, description="old name -> new name")
    prefix: str = Field("", description="prepended to every name (after the map)")


@registry.transforms.register("rename")
class Rename(Transform):
    Config = RenameConfig

    def apply(self, batch: Batch) -> Batch:
        names, prefix = self.config.names, self.config.prefix
        return batch.with_metrics([m.replace(name=prefix + names.get(m.name, m.name)) for m in batch.metrics])
