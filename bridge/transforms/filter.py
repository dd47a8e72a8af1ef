"""`filter`: keep or drop metrics by name and points by label matchers (regexes, full match)."""

from __future__ import annotations

import re

from pydantic import Field

from bridge import registry
from bridge.model import Attrs, Batch, Metric, Series
from bridge.schema import Regex, TransformConfig
from bridge.series import new_slot
from bridge.transforms.base import Transform


class FilterConfig(TransformConfig):
    keep_names: list[Regex] = Field(default_factory=list, description="keep only metrics whose name matches one")
    drop_names: list[Regex] = Field(default_factory=list, description="drop metrics whose name matches one")
    keep_points: dict[str, Regex] = Field(default_factory=dict, description="keep points whose labels match all")
    drop_points: dict[str, Regex] = Field(default_factory=dict, description="drop points whose labels match all")


def _any(patterns: list[re.Pattern[str]], text: str) -> bool:
    return any(p.fullmatch(text) for p in patterns)


def _matches(matchers: dict[str, re.Pattern[str]], attrs: Attrs) -> bool:
    labels = dict(attrs)
    return all(pattern.fullmatch(labels.get(key, "")) for key, pattern in matchers.items())


@registry.transforms.register("filter")
class Filter(Transform):
    Config = FilterConfig

    def __init__(self, config: FilterConfig) -> None:
        super().__init__(config)
        self.keep_names = [re.compile(p) for p in config.keep_names]
        self.drop_names = [re.compile(p) for p in config.drop_names]
        self.keep_points = {k: re.compile(v) for k, v in config.keep_points.items()}
        self.drop_points = {k: re.compile(v) for k, v in config.drop_points.items()}
        self._slot = new_slot()  # each series' verdict, decided once (a series' labels never change)

    def _keeps_metric(self, metric: Metric) -> bool:
        if self.keep_names and not _any(self.keep_names, metric.name):
            return False
        return not _any(self.drop_names, metric.name)

    def apply(self, batch: Batch) -> Batch:
        metrics = []
        for metric in batch.metrics:
            if not self._keeps_metric(metric):
                continue
            if self.keep_points or self.drop_points:
                kept = [i for i, series in enumerate(metric.series) if self._keeps(series)]
                if not kept:
                    continue
                metrics.append(metric if len(kept) == len(metric) else metric.take(kept))
            else:
                metrics.append(metric)
        return batch.with_metrics(metrics)

    def _keeps(self, series: Series) -> bool:
        verdict: bool | None = series.memo.get(self._slot)
        if verdict is None:
            attrs = series.attributes
            verdict = series.memo[self._slot] = (not self.keep_points or _matches(self.keep_points, attrs)) and not (
                self.drop_points and _matches(self.drop_points, attrs)
            )
        return verdict
