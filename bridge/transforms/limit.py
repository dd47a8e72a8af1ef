"""`limit`: a cardinality bound per family and per batch that keeps the same series, and counts what it drops.

The series admitted first stay admitted (a series' admission is kept in its memo:
one lookup per point in steady state) until they are idle for `series.idle_seconds`
of window time, when they age out as the series table's entries do and make room.
A new series past a limit is dropped, every window it comes back while there is no
room: counted in `bridge_dropped_points_total{sink=<place>, reason="cardinality"}`
(place: the sink whose list holds the transform, `*` for the global list) and
logged once per family per hour of window time, naming the family and the limit.
"""

from __future__ import annotations

import logging
from collections import Counter

from pydantic import Field, model_validator

from bridge import registry, telemetry
from bridge.model import NS_PER_S, Batch, Metric, Series
from bridge.schema import TransformConfig
from bridge.series import new_slot, shared
from bridge.transforms.base import Transform

log = logging.getLogger(__name__)

REASON = "cardinality"
WARN_EVERY_NS = 3600 * NS_PER_S


class LimitConfig(TransformConfig):
    max_series_per_family: int | None = Field(None, ge=1, description="series admitted per metric name")
    max_series: int | None = Field(None, ge=1, description="series admitted across all families")

    @model_validator(mode="after")
    def _some_limit(self) -> LimitConfig:
        if self.max_series_per_family is None and self.max_series is None:
            raise ValueError("set max_series_per_family, max_series or both")
        return self


@registry.transforms.register("limit")
class Limit(Transform):
    Config = LimitConfig

    def __init__(self, config: LimitConfig) -> None:
        super().__init__(config)
        self._slot = new_slot()  # True on an admitted series
        self._admitted: dict[str, dict[Series, None]] = {}
        self._total = 0
        self._last_sweep_ns = 0
        self._warned: dict[str, int] = {}  # family -> window end of its last warning
        #: series dropped per family since this transform was built (`once --dry-run` prints it)
        self.cut: Counter[str] = Counter()

    def apply(self, batch: Batch) -> Batch:
        now_ns = batch.window_end_ns
        self._expire_idle(now_ns)
        metrics = []
        dropped = 0
        for metric in batch.metrics:
            kept = [i for i, series in enumerate(metric.series) if self._admits(metric.name, series)]
            if len(kept) < len(metric):
                dropped += len(metric) - len(kept)
                self._cut(metric, len(metric) - len(kept), now_ns)
            if kept:
                metrics.append(metric if len(kept) == len(metric) else metric.take(kept))
        if dropped:
            telemetry.DROPPED_POINTS.labels(self.place, REASON).inc(dropped)
        return batch.with_metrics(metrics)

    def _admits(self, family: str, series: Series) -> bool:
        if series.memo.get(self._slot):
            return True
        members = self._admitted.setdefault(family, {})
        per_family, total = self.config.max_series_per_family, self.config.max_series
        if (per_family is not None and len(members) >= per_family) or (total is not None and self._total >= total):
            return False
        members[series] = None
        self._total += 1
        series.memo[self._slot] = True
        return True

    def _cut(self, metric: Metric, count: int, now_ns: int) -> None:
        self.cut[metric.name] += count
        last = self._warned.get(metric.name)
        if last is None or now_ns - last >= WARN_EVERY_NS:
            self._warned[metric.name] = now_ns
            limits = ", ".join(
                f"{key} {value}" for key, value in self.config.model_dump(exclude={"type"}).items() if value
            )
            log.warning(
                "limit (%s): family %s has more series than allowed (%s): %d new series dropped this window, "
                "counted in bridge_dropped_points_total{reason=%s}; next warning for it in an hour",
                self.place,
                metric.name,
                limits,
                count,
                REASON,
            )

    def _expire_idle(self, now_ns: int) -> None:
        """Admitted series unseen for the series table's idle time make room, at most every 1/10 of it."""
        idle_ns = shared.idle_ns
        if now_ns - self._last_sweep_ns < idle_ns // 10:
            return
        self._last_sweep_ns = now_ns
        for family, members in list(self._admitted.items()):
            for series in [s for s in members if s.seen_ns < now_ns - idle_ns]:
                del members[series]
                series.memo.pop(self._slot, None)
                self._total -= 1
            if not members:
                del self._admitted[family]
        self._warned = {family: at for family, at in self._warned.items() if now_ns - at < WARN_EVERY_NS}
