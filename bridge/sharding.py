"""Which sources this replica runs when several replicas share one config (README "Scale-out").

A source belongs to shard `hashmod(name, count)`, Prometheus' hashmod idea: the
last 8 bytes of the MD5 of its name, big-endian, modulo the shard count. MD5 and
not Python's hash(): every replica, and every restart, must agree without
coordinating, and hash() is salted per process.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

from pydantic import Field

from bridge.schema import StrictModel

#: The StatefulSet pod name's ordinal: metrics-bridge-2 is shard 2 (with ha.enabled and 3 shards, so is -5).
_ORDINAL = re.compile(r"-(\d+)$")


class ShardingConfig(StrictModel):
    """The resolved shard: `sharding` keys in the config win over SHARD_COUNT and the pod name."""

    count: int = Field(1, ge=1, description="replicas sharing the sources (SHARD_COUNT if unset)")
    index: int = Field(0, ge=0, description="this replica's shard, 0..count-1 (the pod name's ordinal if unset)")


def hashmod(text: str, modulus: int) -> int:
    """Prometheus' hashmod: the last 8 bytes of the MD5 of the text, big-endian, modulo `modulus`
    (relabel's `hashmod` action; here, the shard of a source name)."""
    digest = hashlib.md5(text.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % modulus


def shard_of(name: str, count: int) -> int:
    """The shard a source name belongs to, the same in every process and every release."""
    return hashmod(name, count)


def owned(names: Iterable[str], sharding: ShardingConfig) -> list[str]:
    """The names this shard runs, in config order."""
    return [name for name in names if shard_of(name, sharding.count) == sharding.index]


def resolve(
    data: object, env: Mapping[str, str], problems: list[str], *, standby: bool = False
) -> tuple[dict[str, object], str]:
    """The `sharding` mapping to validate, and where its index came from (for messages).

    Config keys first, then SHARD_COUNT and the ordinal of POD_NAME (else HOSTNAME).
    With a warm standby (`standby`, ha.enabled) the shard is the ordinal modulo the count:
    pods i and i+count of one StatefulSet share shard i, so a rolling update (one pod at a
    time, highest ordinal first) never restarts both of a shard's replicas at once.
    Problems name where a value came from (the YAML path or the variable), as every config error does.
    """
    if data is not None and not isinstance(data, dict):
        problems.append("sharding: expected a mapping with count and index")
    merged: dict[str, object] = dict(data) if isinstance(data, dict) else {}
    if "count" not in merged and env.get("SHARD_COUNT", "").strip():
        raw = env["SHARD_COUNT"].strip()
        if not (raw.isascii() and raw.isdigit()):
            problems.append(f"SHARD_COUNT: {raw!r} is not a whole number")
            return merged, "sharding.index"
        merged["count"] = int(raw)
    if "index" in merged or str(merged.get("count", 1)).strip() in ("0", "1"):
        return merged, "sharding.index"
    variable = "POD_NAME" if env.get("POD_NAME") else "HOSTNAME"
    pod = env.get(variable, "")
    match = _ORDINAL.search(pod)
    if match is None:
        problems.append(f"sharding.index: not set, and {variable} {pod!r} does not end in a StatefulSet ordinal (-<n>)")
        return merged, "sharding.index"
    ordinal = int(match.group(1))
    count = merged.get("count")
    if standby and isinstance(count, int) and count > 0:
        merged["index"] = ordinal % count
        return merged, f"sharding.index (from {variable} {pod}, modulo {count} with ha.enabled)"
    merged["index"] = ordinal
    return merged, f"sharding.index (from {variable} {pod})"


def check(sharding: ShardingConfig, origin: str, problems: list[str]) -> None:
    """An index outside [0, count) would own nothing: a replica that silently idles."""
    if sharding.index >= sharding.count:
        problems.append(f"{origin}: {sharding.index} is not in [0, {sharding.count}) (the shard count)")
