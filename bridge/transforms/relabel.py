"""`relabel`: Prometheus `metric_relabel_configs`, rule for rule, as users already write them.

Semantics are Prometheus' (model/relabel/relabel.go), held to it by a differential
test against Prometheus itself (tests/test_relabel.py): the regex is anchored at both
ends with `.` matching newlines, `replacement` expands as Go's `Regexp.Expand`
does, `hashmod` is md5's last 8 bytes as a big-endian uint64 modulo `modulus`, a
label set to "" is removed. `__name__` is the name Prometheus would see: a
counter family the parser took `_total` off (OpenMetrics naming) shows it again,
and loses it again afterwards. A series renamed keeps its metric's kind,
temporality and unit, and lands in the metric of its new name.

A series' outcome depends only on its name and labels, so it is computed once and
kept in the series' memo: the rewritten series (interned in the shared table) or
None when a rule drops it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from bridge import registry
from bridge.model import Batch, Kind, Metric, Series
from bridge.schema import StrictModel, TransformConfig
from bridge.series import new_slot, shared
from bridge.sharding import hashmod
from bridge.transforms.base import Transform
from bridge.transforms.re2 import compile_re2

Action = Literal[
    "replace",
    "keep",
    "drop",
    "keepequal",
    "dropequal",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
]
NAME = "__name__"
TOTAL = "_total"
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: Prometheus' relabelTarget, `(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+`, rewritten without nested repeats:
#: the same strings, and no exponential backtracking in Python's re on a long non-match.
_TARGET_WITH_VARIABLES = re.compile(r"(?:[a-zA-Z_]|\$(?=\w)|\$\{\w+\})(?:\w|\$(?=\w)|\$\{\w+\})*", re.ASCII)
_DEFAULTS = {"separator": ";", "regex": "(.*)", "replacement": "$1", "modulus": 0}


class RelabelRule(StrictModel):
    """One Prometheus `relabel_config`; checked as Prometheus checks it, so what it refuses is refused here."""

    source_labels: list[str] = Field(default_factory=list, description="labels whose values are joined")
    separator: str = Field(";", description="between the joined values")
    regex: str = Field("(.*)", description="RE2, anchored at both ends")
    modulus: int = Field(0, ge=0, description="hashmod: the modulus")
    target_label: str = Field("", description="the label written (replace may use $1, ${name})")
    replacement: str = Field("$1", description="written to target_label ($1, ${1}, $name, ${name})")
    action: Action = "replace"

    @field_validator("action", mode="before")
    @classmethod
    def _lowercase_action(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value  # Prometheus takes `Replace` too

    @field_validator("regex")
    @classmethod
    def _re2(cls, value: str) -> str:
        compile_re2(value)
        return value

    @model_validator(mode="after")
    def _as_prometheus_validates(self) -> RelabelRule:
        action, target = self.action, self.target_label
        if action == "hashmod" and self.modulus == 0:
            raise ValueError("hashmod requires a non-zero modulus")
        writes = action in ("replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal")
        if writes and not target:
            raise ValueError(f"{action} requires target_label")
        if writes and not (
            _LABEL_NAME.fullmatch(target) or (action == "replace" and _TARGET_WITH_VARIABLES.fullmatch(target))
        ):
            raise ValueError(f"{target!r} is not a valid target_label for {action}")
        set_fields = {name for name in _DEFAULTS if getattr(self, name) != _DEFAULTS[name]}
        if action in ("lowercase", "uppercase") and "replacement" in set_fields:
            raise ValueError(f"replacement cannot be set for {action}")
        if action in ("keepequal", "dropequal") and set_fields:
            raise ValueError(f"{action} takes only source_labels and target_label")
        if action in ("labeldrop", "labelkeep") and (set_fields - {"regex"} or self.source_labels or target):
            raise ValueError(f"{action} takes only regex")
        if action == "labelmap" and not _TARGET_WITH_VARIABLES.fullmatch(self.replacement):
            raise ValueError(f"{self.replacement!r} is not a valid replacement for labelmap")
        return self


class RelabelConfig(TransformConfig):
    configs: list[RelabelRule] = Field(description="Prometheus relabel_configs, applied in order")


def expand(template: str, match: re.Match[str]) -> str:
    """Go's `Regexp.ExpandString`: `$1`, `${1}`, `$name`, `${name}`, `$$`; an unknown group is ""."""
    out: list[str] = []
    rest = template
    while (dollar := rest.find("$")) >= 0:
        out.append(rest[:dollar])
        rest = rest[dollar + 1 :]
        if rest.startswith("$"):
            out.append("$")
            rest = rest[1:]
            continue
        brace = rest.startswith("{")
        body = rest[1:] if brace else rest
        length = 0
        while length < len(body) and (body[length].isalnum() or body[length] == "_"):
            length += 1
        if length == 0 or (brace and not body.startswith("}", length)):
            out.append("$")  # malformed: the `$` is text
            continue
        name = body[:length]
        rest = body[length + 1 :] if brace else body[length:]
        out.append(_group(match, name) or "")
    out.append(rest)
    return "".join(out)


def _group(match: re.Match[str], name: str) -> str | None:
    if name.isdigit() and name.isascii():
        number = int(name) if name == "0" or not name.startswith("0") else -1
        return match.group(number) if 0 <= number <= match.re.groups else None
    return match.group(name) if name in match.re.groupindex else None


class _Rule:
    """A validated rule with its regex compiled, applied to a label dict in place (False: the series is dropped)."""

    def __init__(self, config: RelabelRule) -> None:
        self.config = config
        self.regex = compile_re2(config.regex)
        self.apply = getattr(self, f"_{config.action}")

    def _value(self, labels: dict[str, str]) -> str:
        return self.config.separator.join(labels.get(name, "") for name in self.config.source_labels)

    def _keep(self, labels: dict[str, str]) -> bool:
        return self.regex.fullmatch(self._value(labels)) is not None

    def _drop(self, labels: dict[str, str]) -> bool:
        return self.regex.fullmatch(self._value(labels)) is None

    def _keepequal(self, labels: dict[str, str]) -> bool:
        return labels.get(self.config.target_label, "") == self._value(labels)

    def _dropequal(self, labels: dict[str, str]) -> bool:
        return labels.get(self.config.target_label, "") != self._value(labels)

    def _replace(self, labels: dict[str, str]) -> bool:
        config = self.config
        value = self._value(labels)
        if (
            not value
            and config.regex == _DEFAULTS["regex"]
            and "$" not in config.target_label
            and "$" not in config.replacement
        ):
            _set(labels, config.target_label, config.replacement)  # Prometheus' fast path, same result
            return True
        match = self.regex.fullmatch(value)
        if match is not None:
            target = expand(config.target_label, match)
            if _LABEL_NAME.fullmatch(target):
                _set(labels, target, expand(config.replacement, match))
        return True

    def _lowercase(self, labels: dict[str, str]) -> bool:
        _set(labels, self.config.target_label, self._value(labels).lower())
        return True

    def _uppercase(self, labels: dict[str, str]) -> bool:
        _set(labels, self.config.target_label, self._value(labels).upper())
        return True

    def _hashmod(self, labels: dict[str, str]) -> bool:
        _set(labels, self.config.target_label, str(hashmod(self._value(labels), self.config.modulus)))
        return True

    def _labelmap(self, labels: dict[str, str]) -> bool:
        for name, value in sorted(labels.items()):
            match = self.regex.fullmatch(name)
            if match is not None:
                _set(labels, expand(self.config.replacement, match), value)
        return True

    def _labeldrop(self, labels: dict[str, str]) -> bool:
        for name in [n for n in labels if self.regex.fullmatch(n)]:
            del labels[name]
        return True

    def _labelkeep(self, labels: dict[str, str]) -> bool:
        for name in [n for n in labels if not self.regex.fullmatch(n)]:
            del labels[name]
        return True


def _set(labels: dict[str, str], name: str, value: str) -> None:
    """Prometheus' labels.Builder.Set: an empty value removes the label."""
    if value:
        labels[name] = value
    else:
        labels.pop(name, None)


def exposed_name(metric: Metric) -> str:
    """The sample name Prometheus relabels: a counter's samples end in `_total`, which the parser took off."""
    suffixed = metric.kind is Kind.COUNTER and metric.monotonic and not metric.name.endswith(TOTAL)
    return metric.name + TOTAL if suffixed else metric.name


_UNSEEN = object()


@registry.transforms.register("relabel")
class Relabel(Transform):
    Config = RelabelConfig

    def __init__(self, config: RelabelConfig) -> None:
        super().__init__(config)
        self.rules = [_Rule(rule) for rule in config.configs]
        self._slot = new_slot()  # each series' outcome: its rewritten twin, or None when dropped

    def relabel(self, metric: Metric, series: Series) -> Series | None:
        """The series these rules make of one series (memoised: a series' name and labels never change)."""
        outcome: Any = series.memo.get(self._slot, _UNSEEN)
        if outcome is _UNSEEN:
            labels = dict(series.attributes)
            labels[NAME] = exposed_name(metric)
            suffixed = labels[NAME] != metric.name
            outcome = None
            if all(rule.apply(labels) for rule in self.rules) and labels.get(NAME):
                new_name = labels.pop(NAME)
                if suffixed and new_name != TOTAL:
                    new_name = new_name.removesuffix(TOTAL)
                attributes = tuple(sorted(labels.items()))
                outcome = shared.intern(new_name, attributes, attributes)
            series.memo[self._slot] = outcome
        if outcome is not None:
            outcome.seen_ns = series.seen_ns  # the twin ages out of the shared table with its original
        return outcome  # type: ignore[no-any-return]  # Series | None, as stored above

    def apply(self, batch: Batch) -> Batch:
        out: dict[tuple[str, Any, Any], Metric] = {}
        seen: set[Series] = set()
        for metric in batch.metrics:
            for i, series in enumerate(metric.series):
                twin = self.relabel(metric, series)
                if twin is None or twin in seen:  # dropped, or a duplicate: the first one stays, as in Prometheus
                    continue
                seen.add(twin)
                key = (twin.family, metric.kind, metric.temporality)
                target = out.get(key)
                if target is None:
                    target = out[key] = metric.replace(name=twin.family, series=[], values=[], starts=[], ends=[])
                target.series.append(twin)
                target.values.append(metric.values[i])
                target.starts.append(metric.starts[i])
                target.ends.append(metric.ends[i])
        return batch.with_metrics(list(out.values()))
