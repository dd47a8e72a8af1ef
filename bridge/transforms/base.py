"""The transform contract: a pure function from batch to batch, applied in order."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from bridge.model import Batch
from bridge.schema import TransformConfig


class Transform(abc.ABC):
    Config: ClassVar[type[TransformConfig]] = TransformConfig
    type_name: ClassVar[str]
    #: where it runs: a sink's name, or `*` for the global list (the `sink` label of what it drops)
    place: str = "*"

    def __init__(self, config: Any) -> None:
        self.config = config

    @abc.abstractmethod
    def apply(self, batch: Batch) -> Batch:
        """Return a new batch; never mutate the input (other sinks share it)."""
