"""What a remote-write sink remembers between batches, besides counter state: staleness and metadata.

Counter state is the OTLP sink's cumulative normaliser (the one counter rule: delta counters and
histograms become running totals, absent delta series carry their total forward). On top of it:

- Staleness. Prometheus writes a staleness marker (a special NaN) when a scraped series
  disappears, so `up`-style gauges and instant queries stop showing it at once instead of
  5 minutes later. Here: a series sent in a source's batch and absent from that source's next
  batch gets one marker at the new batch's window end; it is then forgotten (back, it is new).
- Metadata. Type, help and unit of each family, sent with the first request of a batch once
  per family per hour of window time (Prometheus re-sends metadata periodically too).
"""

from __future__ import annotations

from bridge.model import NS_PER_S, Attrs

METADATA_INTERVAL_NS = 3600 * NS_PER_S


class Staleness:
    """Per source: the series (as encoded labels) its last batch sent."""

    def __init__(self) -> None:
        self._sent: dict[Attrs, set[bytes]] = {}  # one set per source resource, as large as its last batch

    def vanished(self, resource: Attrs, sent: list[bytes]) -> list[bytes]:
        """Series the source's previous batch sent and this one does not, in a stable order; remembers this one."""
        current = set(sent)
        previous = self._sent.get(resource)
        self._sent[resource] = current
        if previous is None or previous <= current:
            return []
        return sorted(previous - current)


class MetadataSchedule:
    """When each family's metadata was last sent, in window time."""

    def __init__(self, interval_ns: int = METADATA_INTERVAL_NS) -> None:
        self.interval_ns = interval_ns
        self._sent_ns: dict[str, int] = {}

    def due(self, families: dict[str, bytes], now_ns: int) -> list[bytes]:
        """The metadata of the families not sent within the interval; they count as sent now."""
        due = []
        for family, metadata in families.items():
            sent_ns = self._sent_ns.get(family)
            if sent_ns is None or now_ns - sent_ns >= self.interval_ns:
                self._sent_ns[family] = now_ns
                due.append(metadata)
        return due
